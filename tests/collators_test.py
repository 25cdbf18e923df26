"""Tests for the seq2seq collator, tokenize_pairs and pad_rows."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from flaxllm.data import collators
from flaxllm.errors import UserInputError

_PAD, _EOS, _START = 1, 2, 2


def _collator(**overrides) -> collators.Seq2SeqCollator:
  settings = dict(
      max_source_length=6,
      max_target_length=5,
      pad_id=_PAD,
      eos_id=_EOS,
      decoder_start_id=_START,
  )
  settings.update(overrides)
  return collators.Seq2SeqCollator(**settings)


class _CharTokenizer:
  """Maps each character to its code point: enough for tokenize_pairs."""

  def encode_batch(self, texts):
    return [[ord(char) for char in text] for text in texts]


class CollatorsTest(parameterized.TestCase):

  def test_tokenize_pairs_adds_ids_and_keeps_fields(self):
    examples = [{'src': 'ab', 'tgt': 'c', 'id': 'x'}]
    tokenized = collators.tokenize_pairs(examples, _CharTokenizer())
    self.assertEqual(
        tokenized,
        [{
            'src': 'ab',
            'tgt': 'c',
            'id': 'x',
            'src_ids': [97, 98],
            'tgt_ids': [99],
        }],
    )
    self.assertNotIn('src_ids', examples[0])

  def test_layout(self):
    examples = [
        {'src_ids': [10, 11, 12], 'tgt_ids': [20, 21]},
        {'src_ids': [13], 'tgt_ids': [22, 23, 24, 25]},
    ]
    batch = _collator()(examples)
    np.testing.assert_array_equal(
        batch['inputs'], [[10, 11, 12, 2, 1, 1], [13, 2, 1, 1, 1, 1]]
    )
    np.testing.assert_array_equal(
        batch['input_mask'], [[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(
        batch['decoder_inputs'], [[2, 20, 21, 1, 1], [2, 22, 23, 24, 25]]
    )
    np.testing.assert_array_equal(
        batch['targets'], [[20, 21, 2, 1, 1], [22, 23, 24, 25, 2]]
    )
    np.testing.assert_array_equal(
        batch['target_mask'], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    )
    np.testing.assert_array_equal(batch['example_mask'], [1, 1])
    expected_dtypes = {
        'inputs': np.int32,
        'input_mask': np.int32,
        'decoder_inputs': np.int32,
        'targets': np.int32,
        'target_mask': np.float32,
        'example_mask': np.float32,
    }
    self.assertEqual({k: v.dtype for k, v in batch.items()}, expected_dtypes)

  def test_decoder_inputs_are_targets_shifted_right(self):
    examples = [{'src_ids': [5], 'tgt_ids': [7, 8, 9]}]
    batch = _collator(decoder_start_id=0)(examples)
    real = batch['target_mask'][0] == 1  # [target_length]
    np.testing.assert_array_equal(
        batch['decoder_inputs'][0][real][1:], batch['targets'][0][real][:-1]
    )
    self.assertEqual(batch['decoder_inputs'][0, 0], 0)

  def test_truncation_keeps_eos(self):
    collate = _collator()
    example = {'src_ids': list(range(10, 20)), 'tgt_ids': list(range(30, 40))}
    self.assertEqual(collate.lengths(example), (6, 5))
    batch = collate([example])
    np.testing.assert_array_equal(batch['inputs'][0], [10, 11, 12, 13, 14, 2])
    np.testing.assert_array_equal(batch['targets'][0], [30, 31, 32, 33, 2])
    np.testing.assert_array_equal(
        batch['decoder_inputs'][0], [2, 30, 31, 32, 33]
    )
    self.assertEqual(batch['target_mask'].sum(), 5)

  def test_lengths_count_eos(self):
    self.assertEqual(
        _collator().lengths({'src_ids': [1, 2], 'tgt_ids': [3]}), (3, 2)
    )

  @parameterized.named_parameters(
      ('source', [0] * 6, [0], 'source'),
      ('target', [0], [0] * 5, 'target'),
  )
  def test_overlong_error_names_example_and_fixes(self, source, target, side):
    del side  # Both fixes are named whichever side is too long.
    collate = _collator(overlong='error')
    fits = {'src_ids': [0] * 5, 'tgt_ids': [0] * 4}
    collate([fits])
    with self.assertRaises(UserInputError) as raised:
      collate([fits, {'src_ids': source, 'tgt_ids': target, 'id': 'HP:7'}])
    message = str(raised.exception)
    for expected in (
        'HP:7',
        'data.max_source_length',
        'data.max_target_length',
        "data.overlong='truncate'",
    ):
      self.assertIn(expected, message)
    with self.assertRaisesRegex(UserInputError, 'example #1 '):
      collate([fits, {'src_ids': source, 'tgt_ids': target}])

  def test_explicit_lengths_and_cap(self):
    examples = [{'src_ids': [4, 5], 'tgt_ids': [6]}]
    batch = _collator()(examples, source_length=4, target_length=2)
    self.assertEqual(batch['inputs'].shape, (1, 4))
    self.assertEqual(batch['targets'].shape, (1, 2))
    capped = _collator()(examples, source_length=64, target_length=64)
    self.assertEqual(capped['inputs'].shape, (1, 6))
    self.assertEqual(capped['targets'].shape, (1, 5))
    with self.assertRaises(ValueError):
      _collator()(examples, source_length=2)

  def test_empty_batch_has_static_width(self):
    batch = _collator()([])
    self.assertEqual(batch['inputs'].shape, (0, 6))
    self.assertEqual(batch['example_mask'].shape, (0,))

  def test_pad_rows(self):
    batch = _collator()([{'src_ids': [4], 'tgt_ids': [6]}])
    padded = collators.pad_rows(batch, 3)
    for key, array in padded.items():
      self.assertEqual(array.shape[0], 3)
      self.assertEqual(array.dtype, batch[key].dtype)
      np.testing.assert_array_equal(array[:1], batch[key])
    np.testing.assert_array_equal(padded['example_mask'], [1, 0, 0])
    self.assertEqual(padded['input_mask'][1:].sum(), 0)
    self.assertEqual(padded['target_mask'][1:].sum(), 0)
    self.assertLen(collators.pad_rows(batch, 1)['inputs'], 1)
    with self.assertRaises(ValueError):
      collators.pad_rows(padded, 2)

  @parameterized.parameters(
      dict(overlong='drop'),
      dict(max_source_length=1),
  )
  def test_bad_settings(self, **overrides):
    with self.assertRaises(UserInputError):
      _collator(**overrides)


if __name__ == '__main__':
  absltest.main()
