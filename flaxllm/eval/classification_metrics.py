"""Classification and regression metrics, as GLUE reports them.

Accuracy, F1 (binary with positive class 1, or macro over classes), Matthews
correlation (CoLA), Pearson and Spearman correlation (STS-B). Each takes
predictions and references as sequences or arrays and returns a float in the
metric's natural range (accuracy and F1 in [0, 1], correlations in [-1, 1]).
A correlation that is undefined because one side is constant is 0.0, as
scikit-learn's Matthews correlation does, so logged metrics stay numbers.
"""

from typing import Sequence

import numpy as np
from scipy import stats

ArrayLike = Sequence[float] | np.ndarray


def _pair(predictions: ArrayLike, references: ArrayLike, dtype=None):
  """Both sides as 1-D arrays of one length; raises on a mismatch."""
  predictions = np.asarray(predictions, dtype).reshape(-1)
  references = np.asarray(references, dtype).reshape(-1)
  if predictions.shape != references.shape:
    raise ValueError(
        f'{predictions.size} predictions but {references.size} references'
    )
  if not predictions.size:
    raise ValueError('no predictions to score')
  return predictions, references


def accuracy(predictions: ArrayLike, references: ArrayLike) -> float:
  """The fraction of predictions equal to their reference."""
  predictions, references = _pair(predictions, references)
  return float(np.mean(predictions == references))


def _f1(predicted: np.ndarray, actual: np.ndarray) -> float:
  """F1 of boolean predictions of one class; 0.0 when it is undefined."""
  true_positives = float(np.sum(predicted & actual))
  denominator = float(np.sum(predicted) + np.sum(actual))
  return 2.0 * true_positives / denominator if denominator else 0.0


def f1_binary(
    predictions: ArrayLike, references: ArrayLike, positive: int = 1
) -> float:
  """F1 of the positive class (MRPC's F1).

  Args:
    predictions: predicted labels.
    references: true labels.
    positive: the positive class.

  Returns:
    2 TP / (2 TP + FP + FN); 0.0 when there are no positives on either side.
  """
  predictions, references = _pair(predictions, references)
  return _f1(predictions == positive, references == positive)


def f1_macro(predictions: ArrayLike, references: ArrayLike) -> float:
  """The unweighted mean of the per-class F1 over every class seen.

  Args:
    predictions: predicted labels.
    references: true labels.

  Returns:
    Macro F1 over the union of predicted and true classes.
  """
  predictions, references = _pair(predictions, references)
  classes = np.union1d(predictions, references)
  return float(
      np.mean([_f1(predictions == c, references == c) for c in classes])
  )


def matthews_correlation(
    predictions: ArrayLike, references: ArrayLike
) -> float:
  """Matthews correlation coefficient (multi-class R_K; CoLA's metric).

  Args:
    predictions: predicted labels.
    references: true labels.

  Returns:
    The coefficient in [-1, 1]; 0.0 when it is undefined (a constant side).
  """
  predictions, references = _pair(predictions, references)
  classes, encoded = np.unique(
      np.concatenate([predictions, references]), return_inverse=True
  )
  num_classes = len(classes)
  predicted = encoded[: predictions.size]
  actual = encoded[predictions.size :]
  confusion = np.zeros((num_classes, num_classes), np.float64)
  np.add.at(confusion, (actual, predicted), 1.0)  # [true, predicted]
  samples = confusion.sum()
  correct = np.trace(confusion)
  true_counts = confusion.sum(axis=1)  # [classes]
  predicted_counts = confusion.sum(axis=0)  # [classes]
  covariance = correct * samples - predicted_counts @ true_counts
  spread_predicted = samples**2 - predicted_counts @ predicted_counts
  spread_true = samples**2 - true_counts @ true_counts
  if spread_predicted == 0 or spread_true == 0:
    return 0.0
  return float(covariance / np.sqrt(spread_predicted * spread_true))


def _correlation(method, predictions: ArrayLike, references: ArrayLike):
  predictions, references = _pair(predictions, references, np.float64)
  if np.ptp(predictions) == 0 or np.ptp(references) == 0:
    return 0.0
  return float(method(predictions, references)[0])


def pearson(predictions: ArrayLike, references: ArrayLike) -> float:
  """Pearson correlation (STS-B); 0.0 when one side is constant."""
  return _correlation(stats.pearsonr, predictions, references)


def spearman(predictions: ArrayLike, references: ArrayLike) -> float:
  """Spearman rank correlation (STS-B); 0.0 when one side is constant."""
  return _correlation(stats.spearmanr, predictions, references)


METRICS = {
    'accuracy': accuracy,
    'f1': f1_binary,
    'f1_macro': f1_macro,
    'matthews': matthews_correlation,
    'pearson': pearson,
    'spearman': spearman,
}


def compute(
    names: Sequence[str], predictions: ArrayLike, references: ArrayLike
) -> dict[str, float]:
  """Several metrics by name (keys of METRICS).

  Args:
    names: e.g. ('accuracy', 'f1').
    predictions: predicted labels or values.
    references: true labels or values.

  Returns:
    {name: value} in the metrics' natural ranges.
  """
  unknown = [name for name in names if name not in METRICS]
  if unknown:
    raise ValueError(f'unknown metrics {unknown}; known: {sorted(METRICS)}')
  return {name: METRICS[name](predictions, references) for name in names}
