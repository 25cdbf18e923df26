"""Tests for flaxllm.eval.text_metrics."""

from absl.testing import absltest
from absl.testing import parameterized

from flaxllm.eval import text_metrics

SENTENCES = ['the cat sat on the mat', 'a quick brown fox jumps over it']


class TextMetricsTest(parameterized.TestCase):

  @parameterized.parameters(text_metrics.corpus_bleu, text_metrics.rouge_l)
  def test_identical_strings_score_100(self, metric):
    self.assertAlmostEqual(metric(SENTENCES, SENTENCES), 100.0, places=4)

  @parameterized.parameters(text_metrics.corpus_bleu, text_metrics.rouge_l)
  def test_disjoint_strings_score_0(self, metric):
    self.assertEqual(
        metric(['one two three four'], ['five six seven eight']), 0
    )

  @parameterized.parameters(text_metrics.corpus_bleu, text_metrics.rouge_l)
  def test_length_mismatch_raises(self, metric):
    with self.assertRaisesRegex(ValueError, '2 predictions but 1 references'):
      metric(SENTENCES, SENTENCES[:1])

  def test_rouge_l_is_the_mean_f1_times_100(self):
    # LCS 3 of 3 and 4 tokens: P = 1, R = 0.75, F1 = 6/7; second pair exact.
    score = text_metrics.rouge_l(
        ['the cat sat', 'a b'], ['the cat sat down', 'a b']
    )
    self.assertAlmostEqual(score, 100 * (6 / 7 + 1) / 2, places=4)

  def test_bleu_uses_the_13a_tokenizer(self):
    # 13a splits the final period off, so these match exactly.
    self.assertAlmostEqual(
        text_metrics.corpus_bleu(
            ['the cat sat on the mat.'], ['the cat sat on the mat .']
        ),
        100.0,
        places=4,
    )


if __name__ == '__main__':
  absltest.main()
