"""Tests for denoising pretraining: the documents bundle and the task."""

import json
import os
import tempfile

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import common
from flaxllm.data import documents
from flaxllm.errors import UserInputError
from flaxllm.tasks import denoise as denoise_task

SHARED_PUBMEDQA = '/work/shared/data/pubmedqa'
WORDS = (
    'the cat dog bird sat ran flew on under over a mat tree house quickly'
    ' slowly red green small big'
).split()


def _write_documents(path, count, seed):
  rng = np.random.default_rng(seed)
  with open(path, 'w', encoding='utf-8') as text_file:
    for _ in range(count):
      sentences = [
          ' '.join(rng.choice(WORDS, rng.integers(3, 7))).capitalize() + '.'
          for _ in range(rng.integers(1, 4))
      ]
      text_file.write(' '.join(sentences) + '\n')


def _config(folder, preset_fields=None):
  config = common.default_config()
  config.task = denoise_task.task_defaults()
  for key, value in (preset_fields or {}).items():
    config.task[key] = value
  config.model = common.encoder_decoder_model('tiny')
  config.model.d_model = 32
  config.model.num_heads = 2
  config.model.ffn_dim = 64
  config.model.encoder_layers = 1
  config.model.decoder_layers = 1
  config.model.max_positions = 48
  config.model.dropout_rate = 0.0
  for split, count in (('train', 48), ('eval', 6), ('test', 6)):
    path = os.path.join(folder, f'{split}.txt')
    _write_documents(path, count, seed=len(split))
    config.data[split] = f'text:{path}'
  config.data.max_source_length = 40
  config.data.max_target_length = 40
  config.tokenizer.vocab_size = 300
  return config


class DocumentSourcesTest(absltest.TestCase):

  def test_text_lines_skip_blank_lines(self):
    path = os.path.join(tempfile.mkdtemp(), 'docs.txt')
    with open(path, 'w') as f:
      f.write('first doc.\n\n  second doc.  \n')
    docs = documents.load_documents(f'text:{path}')
    self.assertEqual([d['text'] for d in docs], ['first doc.', 'second doc.'])

  def test_pubmedqa_abstracts_join_contexts_and_conclusion_and_split(self):
    folder = tempfile.mkdtemp()
    records = {
        str(pmid): {
            'CONTEXTS': [f'Background {pmid}.', f'Results {pmid}.'],
            'LONG_ANSWER': f'Conclusion {pmid}.',
        }
        for pmid in range(100, 160)
    }
    with open(os.path.join(folder, 'ori_pqal.json'), 'w') as f:
      json.dump(records, f)
    every = documents.load_documents(f'pubmedqa:{folder}')
    self.assertLen(every, 60)
    self.assertEqual(
        every[0]['text'], 'Background 100. Results 100. Conclusion 100.'
    )
    by_split = {
        split: documents.load_documents(f'pubmedqa:{folder}:{split}')
        for split in ('train', 'valid', 'test')
    }
    ids = [d['id'] for split in by_split.values() for d in split]
    self.assertCountEqual(ids, [d['id'] for d in every])
    self.assertGreater(len(by_split['train']), len(by_split['test']))

  def test_hpo_definitions_are_documents(self):
    docs = documents.load_documents('hpo:definitions:valid')
    self.assertGreater(len(docs), 1000)
    self.assertTrue(all(d['id'].startswith('HP:') for d in docs))

  def test_bad_sources_are_user_errors(self):
    with self.assertRaisesRegex(UserInputError, 'not a spec'):
      documents.load_documents('wiki:en')
    with self.assertRaisesRegex(UserInputError, 'not found'):
      documents.load_documents('text:/nonexistent/docs.txt')
    path = os.path.join(tempfile.mkdtemp(), 'ori_pqal.json')
    with open(path, 'w') as f:
      json.dump({'1': {'QUESTION': 'no contexts'}}, f)
    with self.assertRaisesRegex(UserInputError, 'record 1 has no CONTEXTS'):
      documents.load_documents(f'pubmedqa:{path}')

  def test_shared_pubmedqa_has_a_thousand_abstracts(self):
    if not os.path.isdir(SHARED_PUBMEDQA):
      self.skipTest(f'{SHARED_PUBMEDQA} is absent (shared data not mounted)')
    docs = documents.load_documents(f'pubmedqa:{SHARED_PUBMEDQA}')
    self.assertLen(docs, 1000)
    self.assertGreater(np.mean([len(d['text'].split()) for d in docs]), 150)


class DocumentsDataTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.folder = tempfile.mkdtemp()
    cls.config = _config(cls.folder)
    cls.data = documents.DocumentsData.from_config(cls.config, cls.folder)

  def _iterator(self, batch_size=8):
    return self.data.train_iterator(
        global_batch_size=batch_size, seed=0, process_index=0, process_count=1
    )

  def test_training_noise_is_fresh_each_epoch(self):
    iterator = self._iterator(batch_size=48)  # one batch per epoch

    def inputs_by_target(batch):
      return {
          tuple(target): tuple(source)
          for target, source in zip(batch['targets'], batch['inputs'])
      }

    first, second = inputs_by_target(next(iterator)), inputs_by_target(
        next(iterator)
    )
    self.assertEqual(set(first), set(second))
    changed = sum(first[target] != second[target] for target in first)
    self.assertGreater(changed, 24)

  def test_resuming_reproduces_the_batches(self):
    iterator = self._iterator()
    batches = [next(iterator) for _ in range(9)]  # crosses an epoch
    resumed = self._iterator()
    iterator = self._iterator()
    for _ in range(4):
      next(iterator)
    resumed.set_state(iterator.get_state())
    for expected in batches[4:]:
      got = next(resumed)
      for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])

  def test_eval_noise_is_fixed_and_examples_show_it(self):
    def eval_batches():
      return list(
          self.data.eval_batches(
              'eval', global_batch_size=4, process_index=0, process_count=1
          )
      )

    first, second = eval_batches(), eval_batches()
    self.assertLen(first, 2)
    np.testing.assert_array_equal(first[1]['example_mask'], [1, 1, 0, 0])
    for a, b in zip(first, second):
      np.testing.assert_array_equal(a['inputs'], b['inputs'])
    examples = self.data.examples('eval')
    self.assertLen(examples, 6)
    self.assertTrue(any('<mask>' in e['src'] for e in examples))
    tokenizer = self.data.tokenizer
    self.assertEqual(
        examples[0]['tgt'], tokenizer.decode(first[0]['targets'][0][1:])
    )


class DenoiseTaskTest(absltest.TestCase):

  def test_task_defaults_hold_every_noise_key(self):
    defaults = denoise_task.task_defaults()
    for key in (
        'mask_ratio',
        'poisson_lambda',
        'replace_length',
        'permute_sentences',
        'mask_random',
        'rotate_ratio',
        'insert_ratio',
        'full_stop_id',
    ):
      self.assertIn(key, defaults)
    self.assertEqual(defaults.name, 'denoise')

  def test_check_config_rejects_bad_noise_and_family(self):
    config = _config(tempfile.mkdtemp())
    denoise_task.check_config(config)
    config.task.replace_length = 3
    with self.assertRaisesRegex(UserInputError, 'task.replace_length'):
      denoise_task.check_config(config)
    config.task.replace_length = 1
    config.model.family = 'encoder'
    with self.assertRaisesRegex(UserInputError, 'encoder_decoder'):
      denoise_task.check_config(config)

  def test_loss_falls_and_predictions_are_scored(self):
    folder = tempfile.mkdtemp()
    config = _config(folder)
    task, data = denoise_task.build(
        config, folder, process_index=0, process_count=1
    )
    params = nn.unbox(
        jax.jit(task.init)(jax.random.key(0), task.dummy_batch(2))
    )
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, batch, rng):
      (loss, metrics), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
          params, batch, rng
      )
      updates, opt_state = optimizer.update(grads, opt_state)
      return optax.apply_updates(params, updates), opt_state, loss, metrics

    iterator = data.train_iterator(
        global_batch_size=16, seed=0, process_index=0, process_count=1
    )
    losses = []
    for step in range(40):
      batch = next(iterator)
      params, opt_state, loss, metrics = train_step(
          params, opt_state, batch, jax.random.key(step)
      )
      losses.append(float(loss))
      self.assertEqual(
          float(metrics['denominator']), float(batch['target_mask'].sum())
      )
    self.assertLess(np.mean(losses[-5:]), 0.6 * losses[0])

    batch = next(
        data.eval_batches(
            'test', global_batch_size=8, process_index=0, process_count=1
        )
    )
    predicted = jax.jit(task.predict)(params, batch)
    self.assertEqual(predicted.shape, (8, config.data.max_target_length))
    self.assertEqual(predicted.dtype, jnp.int32)
    rows = np.asarray(predicted)[batch['example_mask'] > 0]
    texts = data.tokenizer.decode_batch(rows.tolist())
    examples = data.examples('test')
    scores = task.evaluate(texts, examples)
    self.assertCountEqual(scores, ['bleu', 'rougeL', 'exact_match'])
    perfect = task.evaluate([e['tgt'] for e in examples], examples)
    self.assertEqual(perfect['exact_match'], 100.0)
    self.assertAlmostEqual(perfect['rougeL'], 100.0, places=4)


if __name__ == '__main__':
  absltest.main()
