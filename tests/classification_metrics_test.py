"""Tests for flaxllm.eval.classification_metrics against sklearn and scipy."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from scipy import stats
from sklearn import metrics as sk_metrics

from flaxllm.eval import classification_metrics as cm


def _labels(seed, size=200, classes=2):
  rng = np.random.default_rng(seed)
  references = rng.integers(0, classes, size)
  # Right 70% of the time, so the metrics sit away from their bounds.
  predictions = np.where(
      rng.random(size) < 0.7, references, rng.integers(0, classes, size)
  )
  return predictions, references


class HandComputedTest(absltest.TestCase):

  def test_small_confusion_matrix(self):
    # TP=2, FP=1, FN=1, TN=2.
    predictions = [1, 1, 1, 0, 0, 0]
    references = [1, 1, 0, 1, 0, 0]
    self.assertAlmostEqual(cm.accuracy(predictions, references), 4 / 6)
    self.assertAlmostEqual(cm.f1_binary(predictions, references), 2 / 3)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 3 / 9.
    self.assertAlmostEqual(
        cm.matthews_correlation(predictions, references), 1 / 3
    )

  def test_correlations_of_a_linear_and_a_monotone_relation(self):
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    self.assertAlmostEqual(cm.pearson(2 * x + 1, x), 1.0)
    self.assertAlmostEqual(cm.pearson(-x, x), -1.0)
    self.assertAlmostEqual(cm.spearman(np.exp(x), x), 1.0)
    self.assertLess(cm.pearson(np.exp(x), x), 0.95)

  def test_undefined_values_are_zero(self):
    self.assertEqual(cm.matthews_correlation([1, 1, 1], [0, 1, 0]), 0.0)
    self.assertEqual(cm.pearson([2.0, 2.0, 2.0], [0.0, 1.0, 2.0]), 0.0)
    self.assertEqual(cm.spearman([0.0, 1.0, 2.0], [3.0, 3.0, 3.0]), 0.0)
    self.assertEqual(cm.f1_binary([0, 0], [0, 0]), 0.0)

  def test_mismatched_or_empty_inputs_raise(self):
    with self.assertRaisesRegex(ValueError, '2 predictions but 3'):
      cm.accuracy([0, 1], [0, 1, 1])
    with self.assertRaisesRegex(ValueError, 'no predictions'):
      cm.accuracy([], [])
    with self.assertRaisesRegex(ValueError, 'unknown metrics'):
      cm.compute(('bleu',), [0], [0])


class ReferenceImplementationTest(parameterized.TestCase):

  @parameterized.parameters(0, 1, 2)
  def test_binary_metrics_match_sklearn(self, seed):
    predictions, references = _labels(seed)
    self.assertAlmostEqual(
        cm.accuracy(predictions, references),
        sk_metrics.accuracy_score(references, predictions),
    )
    self.assertAlmostEqual(
        cm.f1_binary(predictions, references),
        sk_metrics.f1_score(references, predictions),
    )
    self.assertAlmostEqual(
        cm.matthews_correlation(predictions, references),
        sk_metrics.matthews_corrcoef(references, predictions),
    )

  @parameterized.parameters(3, 4)
  def test_multiclass_metrics_match_sklearn(self, seed):
    predictions, references = _labels(seed, classes=5)
    self.assertAlmostEqual(
        cm.f1_macro(predictions, references),
        sk_metrics.f1_score(references, predictions, average='macro'),
    )
    self.assertAlmostEqual(
        cm.matthews_correlation(predictions, references),
        sk_metrics.matthews_corrcoef(references, predictions),
    )

  def test_correlations_match_scipy(self):
    rng = np.random.default_rng(5)
    references = rng.uniform(0, 5, 300)
    predictions = references + rng.normal(0, 1.5, 300)
    self.assertAlmostEqual(
        cm.pearson(predictions, references),
        stats.pearsonr(predictions, references)[0],
    )
    self.assertAlmostEqual(
        cm.spearman(predictions, references),
        stats.spearmanr(predictions, references)[0],
    )
    self.assertBetween(cm.pearson(predictions, references), 0.5, 0.95)

  def test_compute_returns_the_named_metrics(self):
    predictions, references = _labels(6)
    scores = cm.compute(('accuracy', 'f1'), predictions, references)
    self.assertEqual(list(scores), ['accuracy', 'f1'])
    self.assertAlmostEqual(
        scores['f1'], sk_metrics.f1_score(references, predictions)
    )


if __name__ == '__main__':
  absltest.main()
