"""Causal-LM task: packing never changes a document's loss, generation, runs."""

import functools
import tempfile

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import errors
from flaxllm import train
from flaxllm.data import packing
from flaxllm.tasks import lm
from tests import run_helpers

VOCAB = 40
BOS, EOS, PAD = 1, 2, 0


def _example(rng, prompt_length, text_length):
  return {
      'src_ids': list(rng.integers(3, VOCAB, prompt_length)),
      'tgt_ids': list(rng.integers(3, VOCAB, text_length)),
  }


def _collator(length, loss_on='all', max_prompt_length=0):
  return packing.LMCollator(
      length=length,
      pad_id=PAD,
      sequence_fn=functools.partial(
          packing.lm_sequence,
          bos_id=BOS,
          eos_id=EOS,
          separator_ids=[3],
          loss_on=loss_on,
      ),
      prompt_fn=functools.partial(
          packing.prompt_ids, bos_id=BOS, separator_ids=[3]
      )
      if max_prompt_length
      else None,
      max_prompt_length=max_prompt_length,
  )


def _config(length_prompt=8, length_new=8):
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict({
      'family': 'decoder',
      'd_model': 32,
      'num_heads': 4,
      'num_kv_heads': 2,
      'ffn_dim': 48,
      'num_layers': 2,
      'max_positions': 64,
  })
  config.data = ml_collections.ConfigDict({
      'max_source_length': length_prompt,
      'max_target_length': length_new,
      'source_field': 'src',
  })
  config.init_from = ''
  return config


def _task_and_params():
  task = lm.LMTask(_config(), vocab_size=VOCAB, pad_id=PAD, eos_id=EOS)
  params = nn.unbox(task.init(jax.random.key(0), task.dummy_batch(1)))
  return task, params


class PackingTest(absltest.TestCase):

  def test_packed_rows_restart_positions_and_number_documents(self):
    rng = np.random.default_rng(0)
    examples = [_example(rng, 2, 3) for _ in range(4)]  # 8 tokens, 7 slots
    batch, used = _collator(16).pack_rows(examples, rows=2)
    self.assertEqual(used, 4)
    np.testing.assert_array_equal(
        batch['segment_ids'][0], [1] * 7 + [2] * 7 + [0] * 2
    )
    np.testing.assert_array_equal(batch['positions'][0, :7], np.arange(7))
    np.testing.assert_array_equal(batch['positions'][0, 7:14], np.arange(7))
    np.testing.assert_array_equal(batch['example_mask'], [1.0, 1.0])
    # Targets are the inputs shifted within each document.
    ids, _ = _collator(16).sequence_fn(examples[1])
    np.testing.assert_array_equal(batch['inputs'][0, 7:14], ids[:-1])
    np.testing.assert_array_equal(batch['targets'][0, 7:14], ids[1:])

  def test_loss_on_target_weights_only_the_response(self):
    rng = np.random.default_rng(1)
    example = _example(rng, 3, 2)
    batch = _collator(16, loss_on='target')([example])
    # ids: bos p p p sep t t eos -> targets p p p sep t t eos
    np.testing.assert_array_equal(
        batch['target_mask'][0, :7], [0, 0, 0, 0, 1, 1, 1]
    )

  def test_overlong_document_is_an_error_when_asked(self):
    collator = packing.LMCollator(
        length=4,
        pad_id=PAD,
        sequence_fn=_collator(4).sequence_fn,
        overlong='error',
    )
    example = _example(np.random.default_rng(0), 3, 3)
    with self.assertRaisesRegex(errors.UserInputError, 'overlong'):
      collator([example])

  def test_packed_iterator_resumes_exactly_and_splits_processes(self):
    rng = np.random.default_rng(2)
    examples = [
        _example(rng, rng.integers(0, 4), rng.integers(1, 6)) for _ in range(40)
    ]
    make = functools.partial(
        packing.PackedIterator,
        examples,
        _collator(16),
        global_batch_size=4,
        seed=3,
    )
    straight = make()
    batches = [next(straight) for _ in range(6)]
    resumed = make()
    for _ in range(3):
      next(resumed)
    state = resumed.get_state()
    restored = make()
    restored.set_state(state)
    for expected in batches[3:]:
      got = next(restored)
      for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
    first = next(make(process_index=0, process_count=2))
    second = next(make(process_index=1, process_count=2))
    self.assertEqual(first['inputs'].shape, (2, 16))
    self.assertFalse(np.array_equal(first['inputs'], second['inputs']))


class LMTaskTest(absltest.TestCase):

  def test_packing_does_not_change_any_documents_loss(self):
    task, params = _task_and_params()
    rng = np.random.default_rng(4)
    examples = [
        _example(rng, rng.integers(0, 4), rng.integers(1, 5)) for _ in range(6)
    ]
    collator = _collator(task.length)
    unpacked = collator(examples)
    packed, used = collator.pack_rows(examples, rows=len(examples))
    self.assertEqual(used, len(examples))
    self.assertLess(int(packed['example_mask'].sum()), len(examples))
    sums_unpacked = jax.jit(task.eval_metrics)(params, unpacked)
    sums_packed = jax.jit(task.eval_metrics)(params, packed)
    self.assertEqual(
        float(sums_unpacked['denominator']), float(sums_packed['denominator'])
    )
    np.testing.assert_allclose(
        sums_unpacked['loss_sum'], sums_packed['loss_sum'], rtol=1e-5
    )

  def test_without_segment_ids_packing_would_change_the_loss(self):
    task, params = _task_and_params()
    rng = np.random.default_rng(5)
    examples = [_example(rng, 2, 3) for _ in range(4)]
    collator = _collator(task.length)
    packed, _ = collator.pack_rows(examples, rows=4)
    leaky = dict(packed, segment_ids=np.where(packed['segment_ids'] > 0, 1, 0))
    exact = jax.jit(task.eval_metrics)(params, packed)['loss_sum']
    leaked = jax.jit(task.eval_metrics)(params, leaky)['loss_sum']
    self.assertGreater(abs(float(exact) - float(leaked)), 1e-4)

  def test_predict_continues_each_prompt_like_uncached_greedy(self):
    task, params = _task_and_params()
    rng = np.random.default_rng(6)
    examples = [_example(rng, n, 2) for n in (1, 4, 6)]
    batch = _collator(task.length, max_prompt_length=8)(examples)
    outputs = np.asarray(jax.jit(task.predict)(params, batch))
    self.assertEqual(outputs.shape, (3, task.max_new_tokens))
    # Uncached reference: the full causal model over a padded buffer (later
    # slots cannot affect earlier ones), read at the last real position.
    full = jax.jit(lambda p, ids: task.model.apply({'params': p}, ids))
    for row in range(3):
      ids = list(batch['prompt'][row, : batch['prompt_length'][row]])
      expected = []
      for _ in range(task.max_new_tokens):
        buffer = np.zeros((1, task.length), np.int32)
        buffer[0, : len(ids)] = ids
        logits = full(params, buffer)
        token = int(jnp.argmax(logits[0, len(ids) - 1]))
        expected.append(token)
        ids.append(token)
        if token == EOS:
          break
      expected += [PAD] * (task.max_new_tokens - len(expected))
      np.testing.assert_array_equal(outputs[row], expected)

  def test_wrong_family_and_loss_on_are_user_errors(self):
    config = run_helpers.lm_tiny_config(
        run_helpers.make_data_dir(tempfile.mkdtemp())
    )
    config.model.family = 'encoder_decoder'
    with self.assertRaisesRegex(errors.UserInputError, 'model.family'):
      lm.check_config(config)
    config.model.family = 'decoder'
    config.task.loss_on = 'prompt'
    with self.assertRaisesRegex(errors.UserInputError, 'task.loss_on'):
      lm.check_config(config)


class LMTrainingTest(absltest.TestCase):

  def test_packed_training_lowers_the_loss_and_scores_continuations(self):
    data = run_helpers.make_data_dir(tempfile.mkdtemp())
    config = run_helpers.lm_tiny_config(data, train__steps=40)
    workdir = tempfile.mkdtemp()
    results = train.train_and_evaluate(config, workdir)
    losses = run_helpers.train_losses(workdir)
    self.assertLess(losses[40], losses[1] - 0.5)
    self.assertIn('bleu', results['test'])
    self.assertLess(results['test']['loss'], losses[1])


if __name__ == '__main__':
  absltest.main()
