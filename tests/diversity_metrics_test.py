"""Tests for flaxllm.eval.diversity (DiffuSeq-style BLEU, dist-1, MBR)."""

from absl.testing import absltest
from nltk.translate import bleu_score

from flaxllm.eval import diversity


class SentenceBleuTest(absltest.TestCase):

  def test_matches_nltk_sentence_bleu_with_smoothing_method4(self):
    hypothesis = 'how do i learn to play the guitar quickly'
    reference = 'how can i learn the guitar fast'
    expected = bleu_score.sentence_bleu(
        [reference.split()],
        hypothesis.split(),
        smoothing_function=bleu_score.SmoothingFunction().method4,
    )
    self.assertAlmostEqual(
        diversity.sentence_bleu(hypothesis, reference), expected, places=12
    )
    self.assertBetween(expected, 0.01, 0.99)

  def test_identical_sentences_score_one_and_empty_ones_zero(self):
    sentence = 'what is the best way to learn python'
    self.assertAlmostEqual(diversity.sentence_bleu(sentence, sentence), 1.0)
    self.assertEqual(diversity.sentence_bleu('', sentence), 0.0)
    self.assertEqual(diversity.sentence_bleu(sentence, '  '), 0.0)

  def test_mean_sentence_bleu_averages_pairs_and_checks_lengths(self):
    self.assertAlmostEqual(
        diversity.mean_sentence_bleu(['a b c d', 'x'], ['a b c d', 'y']), 0.5
    )
    with self.assertRaises(ValueError):
      diversity.mean_sentence_bleu(['a'], ['a', 'b'])


class DiversityTest(absltest.TestCase):

  def test_distinct_1_is_the_mean_unique_unigram_ratio(self):
    self.assertAlmostEqual(
        diversity.distinct_n(['a a b', 'c d e f', ''], 1), (2 / 3 + 1.0) / 3
    )
    self.assertAlmostEqual(diversity.distinct_n(['a b a b'], 2), 2 / 3)

  def test_self_bleu_is_one_for_copies_and_low_for_unrelated_samples(self):
    copies = ['why is the sky blue today'] * 3
    self.assertAlmostEqual(diversity.self_bleu(copies), 1.0)
    unrelated = ['why is the sky blue', 'dogs bark at night', 'eat more fruit']
    self.assertLess(diversity.self_bleu(unrelated), 0.1)
    self.assertEqual(diversity.self_bleu(['only one']), 0.0)

  def test_mbr_picks_the_consensus_candidate(self):
    candidates = [
        'dogs bark loudly at night',
        'the cat sat on the mat today',
        'the cat sat on the mat',
        'yesterday the cat sat on the mat',
    ]
    self.assertEqual(diversity.mbr_select(candidates), 2)
    self.assertEqual(diversity.mbr_select(['alone']), 0)
    with self.assertRaises(ValueError):
      diversity.mbr_select([])


if __name__ == '__main__':
  absltest.main()
