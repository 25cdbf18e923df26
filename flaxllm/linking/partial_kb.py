"""Partial-KB evaluation of entity linking (Yuan, Lu, Yuan; BioNLP 2023).

A linker trained on a full KB E is asked to link against a partial KB
E_p subset of E, without retraining. Gold mentions of concepts outside E_p
are NIL: `partial_gold` drops them, so linking them costs precision.

  * Direct inference restricts the search to E_p: build the trie from
    `kb.subset(partial_ids).name_to_ids()` for generation, or keep only
    E_p's candidates of a ranking (`restrict_ranking`) for retrieval.
  * Thresholding drops a prediction whose score is <= tau (`apply_threshold`):
    the mean token log-probability of the generated name for generation
    (what `beam_search` with length_penalty=1 returns), the cosine to the
    nearest concept for retrieval. The paper's code sweeps tau over
    `GENERATION_THRESHOLDS` without a selection rule; `choose_threshold`
    picks tau on dev by F1.
  * Post-pruning links against the full KB and drops predictions outside
    E_p (`post_prune`).

Annotations are keyed by anything hashable, e.g. (doc_id, start, end). A
gold annotation holds a set of acceptable ids (a composite or ambiguous
mention lists several), a prediction the ids of its predicted name (one name
may belong to several concepts); it is correct when its key is gold and the
id sets meet. `micro_prf` is then the strict micro P/R/F1 over
(doc, start, end, concept). `recall_at_k` scores ranked candidate lists.
"""

import dataclasses
from typing import Collection, Hashable, Iterable, Mapping, Sequence

import numpy as np

from flaxllm.errors import UserInputError

# The thresholds the paper's GENRE evaluation sweeps: 0, -0.05, ..., -0.45.
GENERATION_THRESHOLDS = tuple(round(-0.05 * index, 2) for index in range(10))


@dataclasses.dataclass(frozen=True)
class Prediction:
  """One predicted link.

  Attributes:
    key: the mention, e.g. (doc_id, start, end).
    concept_ids: the ids of the predicted name.
    score: the confidence (mean token log-prob, or cosine).
  """

  key: Hashable
  concept_ids: tuple[str, ...]
  score: float = 0.0


@dataclasses.dataclass(frozen=True)
class Scores:
  """Micro precision, recall and F1 with their counts."""

  precision: float
  recall: float
  f1: float
  true_positives: int
  num_predicted: int
  num_gold: int

  def as_dict(self) -> dict[str, float]:
    return {'precision': self.precision, 'recall': self.recall, 'f1': self.f1}


def _scores(true_positives: int, num_predicted: int, num_gold: int) -> Scores:
  precision = true_positives / num_predicted if num_predicted else 0.0
  recall = true_positives / num_gold if num_gold else 0.0
  total = precision + recall
  f1 = 2 * precision * recall / total if total else 0.0
  return Scores(precision, recall, f1, true_positives, num_predicted, num_gold)


def partial_gold(
    gold: Mapping[Hashable, Iterable[str]], partial_ids: Collection[str]
) -> dict[Hashable, frozenset[str]]:
  """The gold annotations that remain when only E_p counts.

  Args:
    gold: key -> acceptable concept ids over the full KB.
    partial_ids: the ids of E_p.

  Returns:
    key -> the acceptable ids inside E_p; annotations left with none (NIL
    mentions) are dropped.
  """
  kept = {}
  for key, ids in gold.items():
    inside = frozenset(
        concept_id for concept_id in ids if concept_id in partial_ids
    )
    if inside:
      kept[key] = inside
  return kept


def post_prune(
    predictions: Iterable[Prediction], partial_ids: Collection[str]
) -> list[Prediction]:
  """Predictions against the full KB, kept only where they fall in E_p.

  Args:
    predictions: full-KB predictions.
    partial_ids: the ids of E_p.

  Returns:
    The predictions with an id in E_p, their ids restricted to E_p.
  """
  pruned = []
  for prediction in predictions:
    inside = tuple(
        concept_id
        for concept_id in prediction.concept_ids
        if concept_id in partial_ids
    )
    if inside:
      pruned.append(dataclasses.replace(prediction, concept_ids=inside))
  return pruned


def apply_threshold(
    predictions: Iterable[Prediction], threshold: float
) -> list[Prediction]:
  """The predictions whose score is above `threshold` (<= tau is dropped)."""
  return [
      prediction for prediction in predictions if prediction.score > threshold
  ]


def micro_prf(
    predictions: Iterable[Prediction],
    gold: Mapping[Hashable, Iterable[str]],
) -> Scores:
  """Strict micro P/R/F1 of links.

  Args:
    predictions: at most one per key is expected; each counts once.
    gold: key -> acceptable ids.

  Returns:
    A prediction is a true positive when its key is gold and its ids meet
    the gold ids.
  """
  predictions = list(predictions)
  true_positives = sum(
      1
      for prediction in predictions
      if prediction.key in gold
      and not set(gold[prediction.key]).isdisjoint(prediction.concept_ids)
  )
  return _scores(true_positives, len(predictions), len(gold))


def span_prf(
    predictions: Iterable[Prediction], gold: Mapping[Hashable, Iterable[str]]
) -> Scores:
  """NER-style micro P/R/F1: a prediction is right when its key is gold."""
  predicted_keys = {prediction.key for prediction in predictions}
  return _scores(
      len(predicted_keys & set(gold)), len(predicted_keys), len(gold)
  )


def accuracy_on_detected(
    predictions: Iterable[Prediction], gold: Mapping[Hashable, Iterable[str]]
) -> float:
  """Linking accuracy over the predictions whose key is gold (NED part)."""
  detected = [
      prediction for prediction in predictions if prediction.key in gold
  ]
  if not detected:
    return 0.0
  return micro_prf(detected, gold).true_positives / len(detected)


def choose_threshold(
    predictions: Sequence[Prediction],
    gold: Mapping[Hashable, Iterable[str]],
    candidates: Iterable[float] | None = None,
) -> tuple[float, Scores]:
  """The threshold with the best F1 (choose it on dev, apply it on test).

  Args:
    predictions: scored predictions (dev).
    gold: the (partial) gold annotations (dev).
    candidates: thresholds to try; None tries -inf and every distinct
      score, which finds the best F1 any threshold can reach.

  Returns:
    (tau, scores at tau); ties go to the lowest tau (the most predictions).

  Raises:
    UserInputError: no candidate thresholds.
  """
  if candidates is None:
    candidates = [-np.inf, *{prediction.score for prediction in predictions}]
  candidates = sorted(candidates)
  if not candidates:
    raise UserInputError('choose_threshold needs at least one candidate tau')
  best = None
  for threshold in candidates:
    scores = micro_prf(apply_threshold(predictions, threshold), gold)
    if best is None or scores.f1 > best[1].f1:
      best = (threshold, scores)
  return best


def restrict_ranking(
    ranking: Sequence[Sequence[str]],
    partial_ids: Collection[str],
    scores: Sequence[float] | None = None,
) -> tuple[list[tuple[str, ...]], list[float]]:
  """Direct partial-KB retrieval: keep only E_p's candidates of a ranking.

  Args:
    ranking: candidates best first; each a sequence of concept ids (one
      name may stand for several concepts).
    partial_ids: the ids of E_p.
    scores: the candidates' scores, or None.

  Returns:
    (ranking, scores) with ids outside E_p removed and emptied candidates
    dropped; the scores of the kept candidates ([] when none were given).
  """
  restricted, kept_scores = [], []
  for index, candidate in enumerate(ranking):
    inside = tuple(
        concept_id for concept_id in candidate if concept_id in partial_ids
    )
    if inside:
      restricted.append(inside)
      if scores is not None:
        kept_scores.append(float(scores[index]))
  return restricted, kept_scores


def recall_at_k(
    rankings: Sequence[Sequence[Sequence[str]]],
    gold: Sequence[Iterable[str]],
    k: int,
) -> float:
  """The fraction of mentions with a gold id among their first k candidates.

  Args:
    rankings: per mention, candidates best first, each a sequence of ids.
    gold: per mention, the acceptable ids.
    k: how many candidates count (1 gives accuracy).

  Returns:
    Recall@k in [0, 1]; 0 for no mentions.

  Raises:
    UserInputError: k < 1 or different numbers of rankings and golds.
  """
  if k < 1:
    raise UserInputError(f'recall@k needs k >= 1, got {k}')
  if len(rankings) != len(gold):
    raise UserInputError(
        f'{len(rankings)} rankings but {len(gold)} gold sets; pass one per'
        ' mention'
    )
  if not rankings:
    return 0.0
  hits = 0
  for ranking, gold_ids in zip(rankings, gold):
    gold_ids = set(gold_ids)
    hits += any(not gold_ids.isdisjoint(candidate) for candidate in ranking[:k])
  return hits / len(rankings)


def top_predictions(
    keys: Sequence[Hashable],
    rankings: Sequence[Sequence[Sequence[str]]],
    scores: Sequence[Sequence[float]],
) -> list[Prediction]:
  """The first candidate of each ranking as a prediction.

  Args:
    keys: per mention, its key.
    rankings: per mention, candidates best first (e.g. decoded beams).
    scores: per mention, the score of each candidate.

  Returns:
    One Prediction per mention with a non-empty ranking.
  """
  return [
      Prediction(key, tuple(ranking[0]), float(row_scores[0]))
      for key, ranking, row_scores in zip(keys, rankings, scores)
      if ranking
  ]
