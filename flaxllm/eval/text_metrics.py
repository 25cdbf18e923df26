"""Corpus-level text metrics: sacreBLEU BLEU and ROUGE-1/2/L, on a 0-100 scale.

One reference per prediction. BLEU uses sacreBLEU's defaults (13a tokenizer,
exponential smoothing), so scores compare with published sacreBLEU numbers.
The scorers are imported when first used, so code that only trains (and the
lean GPU benchmark images) does not need them installed.
"""

from typing import Sequence


def _check_pairs(predictions: Sequence[str], references: Sequence[str]):
  if len(predictions) != len(references):
    raise ValueError(
        f'{len(predictions)} predictions but {len(references)} references'
    )
  if not predictions:
    raise ValueError('no predictions to score')


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
  """sacreBLEU corpus BLEU.

  Args:
    predictions: one detokenized string per example.
    references: the reference string of each example.

  Returns:
    BLEU in [0, 100].

  Raises:
    ValueError: if the lists differ in length or are empty.
  """
  import sacrebleu  # pylint: disable=g-import-not-at-top

  _check_pairs(predictions, references)
  return float(
      sacrebleu.corpus_bleu(list(predictions), [list(references)]).score
  )


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
  """Mean ROUGE-L F1 over examples.

  Args:
    predictions: one string per example.
    references: the reference string of each example.

  Returns:
    The mean F1 times 100, in [0, 100].

  Raises:
    ValueError: if the lists differ in length or are empty.
  """
  return rouge(predictions, references, ('rougeL',))['rougeL']


def rouge(
    predictions: Sequence[str],
    references: Sequence[str],
    kinds: Sequence[str] = ('rouge1', 'rouge2', 'rougeL'),
) -> dict[str, float]:
  """Mean ROUGE F1 over examples, one score per kind.

  `rouge_score`'s defaults: lowercased word tokens, no stemming; ROUGE-N is
  n-gram overlap, ROUGE-L the longest common subsequence.

  Args:
    predictions: one string per example.
    references: the reference string of each example.
    kinds: rouge_score names, e.g. 'rouge1', 'rouge2', 'rougeL'.

  Returns:
    {kind: mean F1 times 100, in [0, 100]}.

  Raises:
    ValueError: if the lists differ in length or are empty.
  """
  from rouge_score import rouge_scorer  # pylint: disable=g-import-not-at-top

  _check_pairs(predictions, references)
  scorer = rouge_scorer.RougeScorer(list(kinds))
  totals = dict.fromkeys(kinds, 0.0)
  for prediction, reference in zip(predictions, references):
    scores = scorer.score(reference, prediction)
    for kind in kinds:
      totals[kind] += scores[kind].fmeasure
  return {kind: 100.0 * total / len(predictions) for kind, total in totals.items()}
