"""Tests for flaxllm.data.denoise: BART noise semantics and batch format."""

import dataclasses
import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from flaxllm.data import denoise
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError

BOS, PAD, EOS, UNK, MASK, STOP = 0, 1, 2, 3, 4, 5
VOCAB = 64
FIRST_START, FIRST_CONTINUATION = 6, 35  # 6..34 start words, 35..63 continue
SPECIALS = (BOS, PAD, EOS, UNK, MASK)
IS_WORD_START = np.zeros((VOCAB,), bool)
IS_WORD_START[FIRST_START:FIRST_CONTINUATION] = True


def _document(rng, num_words, sentence_words=8, specials=False):
  """Token ids of words (a start and 0-2 continuations) in sentences."""
  ids = []
  for word in range(num_words):
    ids.append(int(rng.integers(FIRST_START, FIRST_CONTINUATION)))
    continuations = rng.integers(FIRST_CONTINUATION, VOCAB, rng.integers(3))
    ids.extend(int(c) for c in continuations)
    if specials and word % 5 == 2:
      ids.append(UNK)
    if word % sentence_words == sentence_words - 1 or word == num_words - 1:
      ids.append(STOP)
  return ids


def _collator(noise=None, max_length=1024, word_starts=IS_WORD_START, **kw):
  noise = noise or denoise.NoiseConfig(permute_sentences=0.0)
  return denoise.DenoisingCollator(
      dataclasses.replace(noise, **kw),
      max_source_length=max_length,
      max_target_length=max_length,
      vocab_size=VOCAB,
      bos_id=BOS,
      eos_id=EOS,
      pad_id=PAD,
      mask_id=MASK,
      special_ids=(UNK,),
      is_word_start=word_starts,
      full_stop_id=STOP,
  )


def _noised(collator, num_docs=200, words=(80, 140), seed=0, **doc_kw):
  """(target, source) pairs of random documents."""
  rng = np.random.default_rng(seed)
  pairs = []
  for index in range(num_docs):
    ids = _document(rng, int(rng.integers(*words)), **doc_kw)
    target = collator.document_tokens(ids)
    source = collator.noise_document(
        target, denoise.document_rng(seed, 0, index)
    )
    pairs.append((target, source))
  return pairs


def _sentences(content):
  ends = np.nonzero(content == STOP)[0] + 1
  return sorted(tuple(piece) for piece in np.split(content, ends) if len(piece))


class SpanLengthTest(absltest.TestCase):

  def test_span_lengths_sum_to_the_budget_and_follow_the_poisson_mean(self):
    rng = np.random.default_rng(0)
    drawn = []
    for budget in rng.integers(50, 200, 300):
      lengths = denoise.sample_span_lengths(rng, int(budget), 3.0)
      self.assertEqual(int(lengths.sum()), budget)
      drawn.extend(lengths[:-1])  # the last one is cut to the budget
    drawn = np.asarray(drawn)
    self.assertAlmostEqual(drawn.mean(), 3.0, delta=0.05)
    self.assertAlmostEqual(drawn.var(), 3.0, delta=0.15)
    self.assertAlmostEqual(np.mean(drawn == 0), math.exp(-3.0), delta=0.01)

  def test_masks_per_span_match_the_poisson_mean_in_noised_documents(self):
    # Every token is a unit and each span (zero-length ones included, which
    # become inserted masks) leaves exactly one <mask>.
    collator = _collator(word_starts=None)
    spans = masked = 0
    for target, source in _noised(collator, num_docs=100, words=(150, 200)):
      budget = math.ceil(0.3 * (len(target) - 2))
      spans += int(np.sum(source == MASK))
      masked += budget
    self.assertAlmostEqual(masked / spans, 3.0, delta=0.15)


class MaskingTest(parameterized.TestCase):

  def test_masked_fraction_of_words_is_the_ratio(self):
    collator = _collator(mask_length='word', replace_length=-1)
    masked_words = total_words = 0
    for target, source in _noised(collator):
      self.assertEqual(len(source), len(target))
      starts = IS_WORD_START[target]
      total_words += int(starts.sum())
      masked_words += int(np.sum(starts & (source == MASK)))
      # Whole words: a masked word start masks its continuations.
      for position in np.nonzero(starts & (source == MASK))[0]:
        end = position + 1
        while (
            end < len(target) - 1
            and not IS_WORD_START[target[end]]
            and (target[end] != STOP)
        ):
          self.assertEqual(source[end], MASK)
          end += 1
    self.assertAlmostEqual(masked_words / total_words, 0.3, delta=0.01)

  def test_span_budget_is_exact_per_document(self):
    collator = _collator(word_starts=None, replace_length=-1)
    total = masked = 0
    for target, source in _noised(collator):
      inserted = len(source) - len(target)
      content = len(target) - 2
      self.assertEqual(
          int(np.sum(source == MASK)) - inserted, math.ceil(0.3 * content)
      )
      masked += int(np.sum(source == MASK)) - inserted
      total += content
    self.assertAlmostEqual(masked / total, 0.3, delta=0.01)

  def test_fairseq_overlapping_spans_mask_less_than_the_budget(self):
    exact = _collator(word_starts=None, replace_length=-1)
    overlapping = _collator(
        word_starts=None, replace_length=-1, overlapping_spans=True
    )

    def fraction(collator):
      pairs = _noised(collator, num_docs=100)
      masked = sum(int(np.sum(s == MASK)) - (len(s) - len(t)) for t, s in pairs)
      return masked / sum(len(t) - 2 for t, _ in pairs)

    self.assertLess(fraction(overlapping), fraction(exact) - 0.02)

  @parameterized.parameters('bart', 'bart_fairseq', 'biobart_released')
  def test_specials_are_never_masked_or_drawn(self, preset):
    noise = dataclasses.replace(
        denoise.preset(preset), mask_random=0.5, insert_ratio=0.1
    )
    collator = _collator(
        noise,
        mask_ratio=0.9 if preset != 'biobart_released' else 0.3,
        rotate_ratio=0.5,
    )
    for target, source in _noised(collator, num_docs=50, specials=True):
      self.assertEqual(source[0], BOS)
      self.assertEqual(source[-1], EOS)
      self.assertEqual(np.sum(source == UNK), np.sum(target == UNK))
      self.assertEqual(np.sum(np.isin(source[1:-1], (BOS, EOS, PAD))), 0)

  def test_everything_but_specials_can_be_deleted(self):
    collator = _collator(mask_ratio=1.0, mask_length='word', replace_length=0)
    for target, source in _noised(collator, num_docs=20, specials=True):
      expected = [BOS] + [UNK] * int(np.sum(target == UNK)) + [EOS]
      self.assertEqual(source.tolist(), expected)

  def test_replace_length_zero_deletes_the_masked_words(self):
    collator = _collator(mask_length='word', replace_length=0)
    for target, source in _noised(collator, num_docs=30):
      self.assertNotIn(MASK, source)
      words = int(IS_WORD_START[target].sum())
      self.assertEqual(
          int(IS_WORD_START[source].sum()), words - math.ceil(0.3 * words)
      )
      self.assertTrue(_is_subsequence(source, target))

  def test_replace_length_one_leaves_one_mask_per_word(self):
    collator = _collator(mask_length='word', replace_length=1)
    for target, source in _noised(collator, num_docs=30):
      words = int(IS_WORD_START[target].sum())
      budget = math.ceil(0.3 * words)
      self.assertEqual(int(np.sum(source == MASK)), budget)
      self.assertTrue(_is_subsequence(source[source != MASK], target))
      # No two masks in a row come from one word: each stands for a word.
      self.assertEqual(int(IS_WORD_START[source].sum()) + budget, words)

  def test_replace_length_minus_one_masks_every_token(self):
    collator = _collator(mask_length='word', replace_length=-1)
    for target, source in _noised(collator, num_docs=30):
      self.assertEqual(len(source), len(target))
      kept = source != MASK
      np.testing.assert_array_equal(source[kept], target[kept])
      self.assertGreater(int(np.sum(~kept)), 0)

  def test_span_with_replace_length_one_shortens_by_span_lengths(self):
    collator = _collator(word_starts=None, replace_length=1)
    for target, source in _noised(collator, num_docs=30):
      budget = math.ceil(0.3 * (len(target) - 2))
      spans = int(np.sum(source == MASK))
      self.assertEqual(len(source), len(target) - budget + spans)

  def test_mask_random_replaces_masks_with_regular_tokens(self):
    collator = _collator(mask_length='word', replace_length=-1, mask_random=1.0)
    changed = 0
    for target, source in _noised(collator, num_docs=30):
      self.assertNotIn(MASK, source)
      self.assertTrue(np.all(~np.isin(source[1:-1], SPECIALS)))
      changed += int(np.sum(source != target))
    self.assertGreater(changed, 0)


class OtherNoiseTest(absltest.TestCase):

  def test_permutation_preserves_the_multiset_of_sentences(self):
    collator = _collator(denoise.NoiseConfig(), mask_ratio=0.0)
    reordered = 0
    for target, source in _noised(collator, num_docs=50):
      self.assertEqual(_sentences(source[1:-1]), _sentences(target[1:-1]))
      reordered += not np.array_equal(source, target)
    self.assertGreater(reordered, 40)

  def test_insertion_adds_masks_and_keeps_the_document(self):
    collator = _collator(mask_ratio=0.0, insert_ratio=0.2)
    for target, source in _noised(collator, num_docs=30):
      self.assertEqual(len(source), len(target) + math.ceil(0.2 * len(target)))
      np.testing.assert_array_equal(source[source != MASK], target)

  def test_rotation_rolls_the_content(self):
    collator = _collator(mask_ratio=0.0, rotate_ratio=1.0)
    for target, source in _noised(collator, num_docs=20):
      content, rotated = target[1:-1], source[1:-1]
      self.assertFalse(np.array_equal(content, rotated))
      doubled = np.concatenate([content, content])
      self.assertTrue(
          any(
              np.array_equal(doubled[k : k + len(content)], rotated)
              for k in range(len(content))
          )
      )

  def test_biobart_walk_masks_about_a_quarter_of_tokens(self):
    collator = _collator(denoise.preset('biobart_released'))
    masked = total = 0
    # One long sentence, so clipping at sentence ends hardly matters.
    for target, source in _noised(collator, num_docs=60, sentence_words=1000):
      self.assertTrue(_is_subsequence(source[source != MASK], target))
      masked += len(target) - int(np.sum(source != MASK))
      total += len(target) - 2
    # 0.1 * E[k] / (0.9 + 0.1 * (e^-3 + E[k])) = 0.3 / 1.205.
    self.assertAlmostEqual(masked / total, 0.3 / 1.205, delta=0.02)


class BatchTest(absltest.TestCase):

  def _examples(self, count=6, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {'text_ids': _document(rng, int(rng.integers(3, 12))), 'index': i}
        for i in range(count)
    ]

  def test_batch_is_in_the_seq2seq_format(self):
    collator = _collator(denoise.preset('bart'), max_length=48)
    examples = self._examples()
    batch = collator(examples, seed=3, epoch=1)
    for key in ('inputs', 'input_mask', 'decoder_inputs', 'targets'):
      self.assertEqual(batch[key].dtype, np.int32)
    self.assertEqual(batch['target_mask'].dtype, np.float32)
    self.assertEqual(batch['inputs'].shape, (6, 48))
    np.testing.assert_array_equal(batch['example_mask'], np.ones(6))
    for row, example in enumerate(examples):
      length = len(example['text_ids']) + 2
      self.assertEqual(
          batch['targets'][row, :length].tolist(),
          [BOS, *example['text_ids'], EOS],
      )
      self.assertEqual(batch['target_mask'][row].sum(), length)
      self.assertEqual(
          batch['decoder_inputs'][row, :length].tolist(),
          [EOS, BOS, *example['text_ids']],
      )
      source_length = int(batch['input_mask'][row].sum())
      self.assertEqual(batch['inputs'][row, source_length - 1], EOS)
      self.assertTrue(np.all(batch['inputs'][row, source_length:] == PAD))

  def test_long_documents_are_truncated_keeping_eos(self):
    collator = _collator(max_length=10, mask_ratio=0.0, insert_ratio=0.5)
    batch = collator([{'text_ids': list(range(6, 30)), 'index': 0}])
    self.assertEqual(batch['targets'][0].tolist(), [BOS, *range(6, 14), EOS])
    self.assertEqual(batch['inputs'][0, -1], EOS)

  def test_noise_is_a_function_of_seed_epoch_and_index(self):
    collator = _collator(denoise.preset('bart'), max_length=48)
    examples = self._examples()
    first = collator(examples, seed=3, epoch=1)
    again = collator(examples, seed=3, epoch=1)
    for key in first:
      np.testing.assert_array_equal(first[key], again[key])
    # A row's noise does not depend on its neighbours in the batch.
    alone = collator(examples[2:3], seed=3, epoch=1)
    np.testing.assert_array_equal(alone['inputs'][0], first['inputs'][2])
    for changed in (dict(seed=4, epoch=1), dict(seed=3, epoch=2)):
      other = collator(examples, **changed)
      self.assertFalse(np.array_equal(other['inputs'], first['inputs']))
      np.testing.assert_array_equal(other['targets'], first['targets'])

  def test_bucket_bound_holds_the_noised_source(self):
    noise = dataclasses.replace(denoise.preset('bart'), insert_ratio=0.3)
    collator = _collator(noise)
    for example in self._examples(count=50):
      bound, target = collator.lengths(example)
      batch = collator([example], bound, target)
      self.assertEqual(batch['inputs'].shape[1], bound)
      self.assertEqual(
          batch['inputs'][0, batch['input_mask'][0].sum() - 1], EOS
      )


class SetupTest(absltest.TestCase):

  def test_word_starts_come_from_the_byte_level_space_marker(self):
    tokenizer = tokenizer_lib.train_bpe(
        ['the cat sat on the mat', 'the dog sat'] * 20, vocab_size=300
    )
    table = denoise.word_start_table(tokenizer)
    self.assertEqual(table.shape, (tokenizer.vocab_size,))
    cat = tokenizer.encode(' cat')
    self.assertTrue(table[cat[0]])
    self.assertFalse(table[tokenizer.encode('t')[0]])
    self.assertFalse(table[tokenizer.mask_id])

  def test_bad_settings_are_user_errors(self):
    with self.assertRaisesRegex(UserInputError, 'task.mask_length'):
      _collator(mask_length='sentence')
    with self.assertRaisesRegex(UserInputError, 'task.replace_length'):
      _collator(replace_length=2)
    with self.assertRaisesRegex(UserInputError, 'task.mask_ratio'):
      _collator(mask_ratio=1.5)
    with self.assertRaisesRegex(UserInputError, 'full-stop'):
      denoise.DenoisingCollator(
          denoise.preset('bart'),
          max_source_length=8,
          max_target_length=8,
          vocab_size=VOCAB,
          bos_id=BOS,
          eos_id=EOS,
          pad_id=PAD,
          mask_id=MASK,
      )
    with self.assertRaisesRegex(UserInputError, 'unknown'):
      denoise.preset('t5')

  def test_presets_follow_the_spec(self):
    bart = denoise.preset('bart')
    self.assertEqual(
        (bart.mask_ratio, bart.poisson_lambda, bart.replace_length),
        (0.3, 3.0, 1),
    )
    self.assertEqual(bart.permute_sentences, 1.0)
    biobart = denoise.preset('biobart')
    self.assertEqual(biobart.permute_sentences, 0.0)
    self.assertEqual(biobart.mask_ratio, 0.3)
    self.assertEqual(biobart.rotate_ratio + biobart.insert_ratio, 0.0)


def _is_subsequence(short, long):
  iterator = iter(long.tolist())
  return all(token in iterator for token in short.tolist())


if __name__ == '__main__':
  absltest.main()
