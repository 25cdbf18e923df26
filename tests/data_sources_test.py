"""Tests for loading examples from source specs, bad records included."""

import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from flaxllm.data import sources
from flaxllm.errors import UserInputError

_GOOD_ROWS = [
    {'src': 'fever and rash', 'tgt': 'Exanthem', 'id': 'a'},
    {'src': 'short stature', 'tgt': 'Short stature', 'id': 'b'},
    {'src': 'small head', 'tgt': 'Microcephaly', 'id': 'c'},
]
_EXPECTED = [dict(row) for row in _GOOD_ROWS]


class SourcesTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.enterContext(tempfile.TemporaryDirectory())

  def _write(self, name: str, text: str) -> str:
    path = os.path.join(self.directory, name)
    with open(path, 'w', encoding='utf-8') as f:
      f.write(text)
    return path

  def _write_jsonl(self, name: str, rows: list) -> str:
    return self._write(name, ''.join(json.dumps(row) + '\n' for row in rows))

  def _write_parquet(self, rows: list[dict]) -> str:
    path = os.path.join(self.directory, 'pairs.parquet')
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path

  @parameterized.parameters('{path}', 'jsonl:{path}')
  def test_jsonl(self, spec):
    path = self._write_jsonl('pairs.jsonl', _GOOD_ROWS)
    self.assertEqual(sources.load_examples(spec.format(path=path)), _EXPECTED)

  def test_json_extension_and_blank_lines(self):
    path = self._write('pairs.json', '\n' + json.dumps(_GOOD_ROWS[0]) + '\n\n')
    self.assertEqual(sources.load_examples(path), _EXPECTED[:1])

  def test_renamed_fields_no_id_and_extra_fields_carried(self):
    path = self._write_jsonl(
        'qa.jsonl', [{'question': 'q1', 'answer': 'a1', 'extra': 3}]
    )
    examples = sources.load_examples(
        path, source_field='question', target_field='answer'
    )
    self.assertEqual(examples, [{'src': 'q1', 'tgt': 'a1', 'extra': 3}])

  @parameterized.parameters('{path}', 'csv:{path}')
  def test_csv(self, spec):
    path = self._write(
        'pairs.csv',
        'id,src,tgt\n'
        + ''.join(f'{r["id"]},{r["src"]},{r["tgt"]}\n' for r in _GOOD_ROWS),
    )
    self.assertEqual(sources.load_examples(spec.format(path=path)), _EXPECTED)

  def test_csv_reports_line_of_bad_row_after_multiline_field(self):
    path = self._write('pairs.csv', 'src,tgt\n"two\nlines",ok\nthird line,\n')
    with self.assertRaisesRegex(
        UserInputError, r"pairs.csv:4: empty target field 'tgt'"
    ):
      sources.load_examples(path)

  def test_csv_without_the_column_names_the_columns(self):
    path = self._write('pairs.csv', 'question,answer\nq,a\n')
    with self.assertRaisesRegex(
        UserInputError, "no column 'src' .columns: question, answer"
    ):
      sources.load_examples(path)

  @parameterized.parameters('{path}', 'parquet:{path}')
  def test_parquet(self, spec):
    path = self._write_parquet(_GOOD_ROWS)
    self.assertEqual(sources.load_examples(spec.format(path=path)), _EXPECTED)

  def test_parquet_reports_row_index(self):
    rows = _GOOD_ROWS[:2] + [{'src': 'x', 'tgt': None, 'id': 'd'}]
    path = self._write_parquet(rows)
    with self.assertRaisesRegex(UserInputError, r'row 2: missing target'):
      sources.load_examples(path)

  def test_disk_dataset(self):
    path = os.path.join(self.directory, 'saved')
    datasets.Dataset.from_list(_GOOD_ROWS).save_to_disk(path)
    self.assertEqual(sources.load_examples(f'disk:{path}'), _EXPECTED)

  def test_disk_dataset_dict_split(self):
    path = os.path.join(self.directory, 'saved')
    datasets.DatasetDict({
        'train': datasets.Dataset.from_list(_GOOD_ROWS),
        'validation': datasets.Dataset.from_list(_GOOD_ROWS[:1]),
    }).save_to_disk(path)
    self.assertEqual(
        sources.load_examples(f'disk:{path}:validation'), _EXPECTED[:1]
    )
    with self.assertRaisesRegex(UserInputError, 'has: train, validation'):
      sources.load_examples(f'disk:{path}')
    with self.assertRaisesRegex(UserInputError, "no split 'test'"):
      sources.load_examples(f'disk:{path}:test')

  def test_hpo(self):
    examples = sources.load_examples('hpo:def2name:valid')
    self.assertGreater(len(examples), 1000)
    self.assertEqual(set(examples[0]), {'src', 'tgt', 'id'})
    synonyms = sources.load_examples('hpo:name2syn:test')
    self.assertGreater(len(synonyms), 1000)

  @parameterized.parameters('hpo:defs:train', 'hpo:def2name:dev')
  def test_bad_hpo_spec(self, spec):
    with self.assertRaises(UserInputError):
      sources.load_examples(spec)

  @parameterized.named_parameters(
      ('bad_json', '{"src": "a", "tgt": ', 'not valid JSON'),
      ('not_object', '["a", "b"]', 'record is a list, not an object'),
      ('missing', '{"src": "a"}', "missing target field 'tgt'"),
      ('not_text', '{"src": 3, "tgt": "b"}', "source field 'src' is a int"),
      ('empty', '{"src": "a", "tgt": "  "}', "empty target field 'tgt'"),
  )
  def test_bad_record_fails_with_file_and_line(self, bad_line, problem):
    good = json.dumps(_GOOD_ROWS[0])
    path = self._write('data.jsonl', f'{good}\n{good}\n{bad_line}\n{good}\n')
    with self.assertRaises(UserInputError) as raised:
      sources.load_examples(path)
    message = str(raised.exception)
    self.assertIn(f'{path}:3: {problem}', message)
    self.assertIn("data.on_bad_record='skip'", message)
    self.assertNotIn('\n', message)

  def test_invalid_utf8_is_a_bad_record(self):
    path = os.path.join(self.directory, 'data.jsonl')
    with open(path, 'wb') as f:
      f.write(json.dumps(_GOOD_ROWS[0]).encode() + b'\n\xff\xfe\n')
    with self.assertRaisesRegex(UserInputError, ':2: line is not valid UTF-8'):
      sources.load_examples(path)
    self.assertLen(sources.load_examples(path, on_bad_record='skip'), 1)

  def test_skip_drops_bad_records_and_warns_once(self):
    lines = [json.dumps(row) for row in _GOOD_ROWS]
    lines[1:1] = ['not json'] * 7  # Lines 2-8 are bad.
    path = self._write('data.jsonl', '\n'.join(lines) + '\n')
    with mock.patch.object(sources.logging, 'warning') as warning:
      examples = sources.load_examples(path, on_bad_record='skip')
    self.assertEqual(examples, _EXPECTED)
    warning.assert_called_once()
    message = warning.call_args.args[0] % warning.call_args.args[1:]
    self.assertIn('Skipped 7 bad records', message)
    self.assertIn(f'{path}:2, {path}:3, {path}:4, {path}:5, {path}:6', message)
    self.assertNotIn(f'{path}:7', message)

  def test_skip_with_nothing_left(self):
    path = self._write('data.jsonl', '{"src": "a"}\n')
    with self.assertRaisesRegex(UserInputError, 'no usable record'):
      sources.load_examples(path, on_bad_record='skip')

  def test_unknown_policy(self):
    path = self._write_jsonl('data.jsonl', _GOOD_ROWS)
    with self.assertRaisesRegex(UserInputError, 'on_bad_record=.ignore'):
      sources.load_examples(path, on_bad_record='ignore')

  @parameterized.parameters(
      'jsonl:/no/such/file.jsonl',
      '/no/such/file.csv',
      'parquet:/no/such/file.parquet',
      'disk:/no/such/file',
  )
  def test_missing_file_names_the_path(self, spec):
    with self.assertRaisesRegex(UserInputError, '/no/such/file'):
      sources.load_examples(spec)

  def test_unknown_spec(self):
    with self.assertRaisesRegex(UserInputError, 'unknown data source'):
      sources.load_examples('data/train.txt')

  def test_offline_environment(self):
    self.assertEqual(os.environ['HF_DATASETS_OFFLINE'], '1')
    self.assertEqual(os.environ['HF_HUB_OFFLINE'], '1')


class TfdsSourceTest(absltest.TestCase):
  """Builds a tiny array_record dataset with TFDS itself (no TensorFlow)."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

    class TinyPairs(tfds.core.GeneratorBasedBuilder):
      """Three (src, tgt) text pairs."""

      VERSION = tfds.core.Version('1.0.0')

      def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                'src': tfds.features.Text(),
                'tgt': tfds.features.Text(),
            }),
        )

      def _split_generators(self, dl_manager):
        del dl_manager  # Nothing is downloaded.
        return {
            'train': self._generate_examples(3),
            'test': self._generate_examples(1),
        }

      def _generate_examples(self, count):
        for index in range(count):
          yield index, {'src': f'source {index}', 'tgt': f'target {index}'}

    cls.data_dir = tempfile.mkdtemp()
    TinyPairs(
        data_dir=cls.data_dir, file_format='array_record'
    ).download_and_prepare()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.data_dir)
    super().tearDownClass()

  def test_reads_array_record_and_decodes_bytes(self):
    examples = sources.load_examples(f'tfds:tiny_pairs:train@{self.data_dir}')
    self.assertEqual(
        sorted(example['src'] for example in examples),
        ['source 0', 'source 1', 'source 2'],
    )
    self.assertIsInstance(examples[0]['tgt'], str)

  def test_versioned_name(self):
    examples = sources.load_examples(
        f'tfds:tiny_pairs:1.0.0:test@{self.data_dir}'
    )
    self.assertEqual(examples, [{'src': 'source 0', 'tgt': 'target 0'}])

  def test_unknown_split_or_dataset(self):
    with self.assertRaisesRegex(UserInputError, 'tfds:tiny_pairs:valid'):
      sources.load_examples(f'tfds:tiny_pairs:valid@{self.data_dir}')
    with self.assertRaisesRegex(UserInputError, 'tfds:no_such_data:train'):
      sources.load_examples(f'tfds:no_such_data:train@{self.data_dir}')

  def test_missing_tfds_says_how_to_install(self):
    with mock.patch.dict('sys.modules', {'tensorflow_datasets': None}):
      with self.assertRaisesRegex(UserInputError, r'flaxllm\[tfds\]'):
        sources.load_examples(f'tfds:tiny_pairs:train@{self.data_dir}')


if __name__ == '__main__':
  absltest.main()
