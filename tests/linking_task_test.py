"""Tests for flaxllm.tasks.linking (GenBioEL generation, partial-KB scores).

A toy KB, a byte-level BPE trained on its names and a tiny random
encoder-decoder: prediction must return KB names with their concept ids,
score each by its mean token log-probability, handle ragged prompts, and
`evaluate` must compute Recall@k and the partial-KB modes right.
"""

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import configuration
from flaxllm import errors
from flaxllm.data import kb as kb_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.tasks import linking

# id, name, synonyms, parents: D:1..D:4 sit under the root D:0 ('disease'),
# D:5..D:7 outside it.
_CONCEPTS = [
    ('D:0', 'Disease', ('disorder',), ()),
    ('D:1', 'Breast Cancer', ('breast carcinoma', 'mammary cancer'), ('D:0',)),
    ('D:2', 'Colon Cancer', ('colorectal carcinoma',), ('D:0',)),
    ('D:3', 'Malignancy', ('cancer', 'malignant neoplasm'), ('D:0',)),
    ('D:4', 'Cancer', ('tumor',), ('D:0',)),  # Shares 'cancer' with D:3.
    ('D:5', 'Fever', ('pyrexia', 'high temperature'), ()),
    ('D:6', 'Type 2 Diabetes', ('diabetes mellitus type 2',), ()),
    ('D:7', 'Cough', (), ()),
]
_MENTIONS = [  # mention, gold ids (ragged prompt lengths on purpose)
    ('breast tumour', ('D:1',)),
    ('fever', ('D:5',)),
    ('cancer of the large bowel colon', ('D:2',)),
]


def _kb() -> kb_lib.KnowledgeBase:
  return kb_lib.KnowledgeBase(
      kb_lib.KbConcept(concept_id, name, synonyms, parents=parents)
      for concept_id, name, synonyms, parents in _CONCEPTS
  )


def _config(**task) -> ml_collections.ConfigDict:
  config = configuration.default_config()
  config.task = ml_collections.ConfigDict({'name': 'linking', **task})
  config.model = ml_collections.ConfigDict({
      'family': 'encoder_decoder',
      'd_model': 32,
      'num_heads': 2,
      'ffn_dim': 64,
      'encoder_layers': 1,
      'decoder_layers': 1,
      'max_positions': 48,
      'dropout_rate': 0.0,
  })
  config.data.max_source_length = 24
  config.data.max_target_length = 32
  return config


class LinkingTaskTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.kb = _kb()
    texts = [f'{name} is {name}' for name in cls.kb.name_to_ids()] * 10
    texts += [f'START {m} END is {m}' for m, _ in _MENTIONS] * 10
    cls.tokenizer = tokenizer_lib.train_bpe(texts, vocab_size=320)
    # One task and one compiled search, shared by the tests that predict.
    cls.task = cls._task()
    cls.examples = cls._examples(cls.task)
    cls.batch = cls._collate(cls.task, cls.examples)
    cls.predict = staticmethod(jax.jit(cls.task.predict))

  @classmethod
  def _task(cls, **task) -> linking.LinkingTask:
    return linking.LinkingTask(
        _config(num_beams=4, max_prompt_length=10, **task),
        tokenizer=cls.tokenizer,
        kb=cls.kb,
    )

  @classmethod
  def _examples(cls, task) -> list[dict]:
    examples = [
        {
            'src': f'patient with START {mention} END today',
            'mention': mention,
            'prefix': f'{mention} is',
            'tgt': cls.kb.names(ids[0])[0],
            'concept_ids': ids,
        }
        for mention, ids in _MENTIONS
    ]
    config = _config(max_prompt_length=task.max_prompt_length)
    return linking.tokenize_examples(examples, cls.tokenizer, config)

  @staticmethod
  def _collate(task, examples):
    return linking.LinkingCollator(
        max_source_length=task.max_source_length,
        max_target_length=task.max_target_length,
        max_prompt_length=task.max_prompt_length,
        pad_id=task.pad_id,
        eos_id=task.eos_id,
    )(examples)

  def _params(self, task, seed=0):
    return nn.unbox(task.init(jax.random.key(seed), task.dummy_batch(1)))

  @parameterized.parameters(0, 1, 2)
  def test_predict_returns_kb_names_with_their_concept_ids(self, seed):
    task = self.task
    rows = self.predict(self._params(task, seed), self.batch)
    name_to_ids = self.kb.name_to_ids()
    for prediction in task.decode_outputs(np.asarray(rows)):
      self.assertLen(prediction['names'], task.num_beams)
      self.assertLen(set(prediction['names']), task.num_beams)
      for name, ids in zip(prediction['names'], prediction['concept_ids']):
        self.assertIn(name, name_to_ids)
        self.assertCountEqual(ids, name_to_ids[name])
      scores = prediction['scores']
      self.assertEqual(scores, sorted(scores, reverse=True))
      self.assertLessEqual(max(scores), 0.0)

  def test_ragged_prompts_give_each_row_its_own_search(self):
    task, examples = self.task, self.examples
    params = self._params(task)
    together = np.asarray(self.predict(params, self.batch))
    for row, example in enumerate(examples):
      # The same shape (so no new compile), every row this one example.
      alone = np.asarray(
          self.predict(params, self._collate(task, [example] * len(examples)))
      )
      np.testing.assert_array_equal(alone[0, :, 1:], together[row, :, 1:])
      np.testing.assert_allclose(alone[0, :, 0], together[row, :, 0], atol=1e-5)

  def test_beam_score_is_the_mean_token_log_prob_of_the_name(self):
    task, examples = self.task, self.examples
    params = self._params(task)
    rows = np.asarray(self.predict(params, self.batch))
    for row, example in zip(rows, examples):
      tokens = [int(t) for t in row[0, 1:]]
      name_ids = tokens[: tokens.index(task.eos_id) + 1]  # name + [eos]
      batch = self._collate(task, [{**example, 'name_ids': name_ids}])
      logits = task.model.apply(
          {'params': params},
          batch['inputs'],
          batch['input_mask'],
          batch['decoder_inputs'],
      )  # [1, tgt, vocab]
      log_probs = jax.nn.log_softmax(logits[0], axis=-1)
      picked = jnp.take_along_axis(
          log_probs, batch['targets'][0][:, None], axis=-1
      )[:, 0]
      mask = batch['target_mask'][0]
      expected = float(jnp.sum(picked * mask) / mask.sum())
      self.assertAlmostEqual(row[0, 0], expected, places=4)

  def test_loss_mask_covers_the_name_and_eos_only(self):
    task, examples, batch = self.task, self.examples, self.batch
    for row, example in enumerate(examples):
      mask = batch['target_mask'][row] > 0
      self.assertEqual(
          batch['targets'][row][mask].tolist(), example['name_ids']
      )
      prompt = len(example['prompt_ids'])
      self.assertFalse(mask[:prompt].any())
      self.assertEqual(
          batch['decoder_inputs'][row, : prompt + 1].tolist(),
          [task.eos_id, *example['prompt_ids']],
      )

  @parameterized.parameters('direct', 'post_pruning')
  def test_partial_kb_inference_searches_the_right_trie(self, inference):
    # The search itself is pinned by the tests above; here, which names.
    task = self._task(subkb='D:0', subkb_inference=inference)
    sub = self.kb.branch('D:0')
    searched = sub if inference == 'direct' else self.kb
    self.assertEqual(
        dict(task.inference_trie.name_to_ids), searched.name_to_ids()
    )
    self.assertCountEqual(task.subkb.ids(), ['D:0', 'D:1', 'D:2', 'D:3', 'D:4'])

  def test_recall_at_k_on_toy_predictions(self):
    task = self.task
    predictions = [
        {'concept_ids': [['D:1'], ['D:2']], 'scores': [-0.1, -0.2]},
        {'concept_ids': [['D:3', 'D:4'], ['D:5']], 'scores': [-0.1, -0.3]},
        {'concept_ids': [['D:6'], ['D:7'], ['D:5']], 'scores': [-1, -2, -3]},
        {'concept_ids': [], 'scores': []},
    ]
    examples = [
        {'concept_ids': ('D:1',)},  # hit at 1
        {'concept_ids': ('D:4',)},  # hit at 1 through a shared name
        {'concept_ids': ('D:5',)},  # hit at 3
        {'concept_ids': ('D:5',)},  # no candidates
    ]
    metrics = task.evaluate(predictions, examples)
    self.assertAlmostEqual(metrics['recall_at_1'], 2 / 4)
    self.assertAlmostEqual(metrics['recall_at_4'], 3 / 4)
    self.assertNotIn('direct_f1', metrics)

  def test_partial_kb_direct_and_thresholding_on_toy_predictions(self):
    task = self._task(subkb='D:0', subkb_inference='direct', threshold=-0.5)
    # Gold: two mentions inside the sub-KB, one NIL (D:5, outside).
    examples = [
        {'concept_ids': ('D:1',)},
        {'concept_ids': ('D:2',)},
        {'concept_ids': ('D:5',)},
    ]
    predictions = [  # direct inference links every mention inside E_p
        {'concept_ids': [['D:1']], 'scores': [-0.1]},  # right, confident
        {'concept_ids': [['D:3']], 'scores': [-0.9]},  # wrong, unsure
        {'concept_ids': [['D:4']], 'scores': [-1.2]},  # NIL linked, unsure
    ]
    metrics = task.evaluate(predictions, examples)
    self.assertAlmostEqual(metrics['direct_precision'], 1 / 3)
    self.assertAlmostEqual(metrics['direct_recall'], 1 / 2)
    self.assertAlmostEqual(metrics['direct_f1'], 0.4)
    self.assertAlmostEqual(metrics['threshold_precision'], 1.0)
    self.assertAlmostEqual(metrics['threshold_recall'], 1 / 2)
    self.assertAlmostEqual(metrics['threshold_f1'], 2 / 3)

  def test_partial_kb_post_pruning_on_toy_predictions(self):
    task = self._task(subkb='D:0', subkb_inference='post_pruning')
    examples = [
        {'concept_ids': ('D:1',)},
        {'concept_ids': ('D:5',)},  # NIL for the sub-KB
        {'concept_ids': ('D:6',)},  # NIL for the sub-KB
    ]
    predictions = [  # full-KB linking
        {'concept_ids': [['D:1']], 'scores': [-0.1]},
        {'concept_ids': [['D:5']], 'scores': [-0.1]},  # pruned away
        {'concept_ids': [['D:2']], 'scores': [-0.1]},  # inside: a false link
    ]
    metrics = task.evaluate(predictions, examples)
    self.assertAlmostEqual(metrics['full_kb_precision'], 1 / 3)
    self.assertAlmostEqual(metrics['post_pruning_precision'], 1 / 2)
    self.assertAlmostEqual(metrics['post_pruning_recall'], 1.0)

  def test_overlong_prompt_keeps_the_root_token(self):
    task = self.task
    example = {
        'src': 'START a b c d e f g h i j k l m n o END',
        'mention': 'a b c d e f g h i j k l m n o',
        'tgt': 'fever',
        'concept_ids': ('D:5',),
    }
    config = _config(max_prompt_length=6)
    (tokenized,) = linking.tokenize_examples([example], self.tokenizer, config)
    self.assertLen(tokenized['prompt_ids'], 5)
    self.assertEqual(tokenized['prompt_ids'][-1], task.full_trie.root_id)
    config.data.overlong = 'error'
    with self.assertRaisesRegex(errors.UserInputError, 'max_prompt_length'):
      linking.tokenize_examples([example], self.tokenizer, config)

  @parameterized.named_parameters(
      ('unknown_spec', {'data.train': 'hpo:nothing'}, 'data.train'),
      ('missing_dir', {'data.train': 'ncbi_disease:/no/such:train'}, 'folder'),
      ('pretraining_eval', {'data.eval': 'hpo:kb_pretraining'}, 'data.eval'),
      ('bad_inference', {'task.subkb_inference': 'both'}, 'subkb_inference'),
      ('no_beams', {'task.num_beams': 0}, 'num_beams'),
      ('bad_strategy', {'task.target_strategy': 'best'}, 'target_strategy'),
  )
  def test_bad_config_raises_one_line_error(self, overrides, expected):
    config = _config()
    config.data.train = 'hpo:mentions:train'
    config.data.eval = 'hpo:mentions:valid'
    config.data.test = ''
    for key, value in overrides.items():
      section, name = key.split('.')
      config[section][name] = value
    with self.assertRaisesRegex(errors.UserInputError, expected) as caught:
      configuration.validate(config, num_devices=1)
    self.assertNotIn('\n', str(caught.exception))

  def test_unknown_subkb_root_raises(self):
    with self.assertRaisesRegex(errors.UserInputError, 'D:99'):
      self._task(subkb='D:99')

  def test_parse_spec_reads_both_datasets(self):
    self.assertEqual(
        linking.parse_spec('hpo:mentions:valid'), ('hpo', '', 'valid')
    )
    self.assertEqual(
        linking.parse_spec('ncbi_disease:/a:b/c:devel'),
        ('ncbi_disease', '/a:b/c', 'devel'),
    )
    self.assertEqual(
        linking.parse_spec('hpo:kb_pretraining'),
        ('hpo', '', 'kb_pretraining'),
    )


if __name__ == '__main__':
  absltest.main()
