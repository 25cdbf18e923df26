"""Sentence-level BLEU, diversity metrics and MBR selection, DiffuSeq style.

DiffuSeq's evaluation script (which SeqDiffuSeq's authors recommend for
non-translation tasks) scores whitespace-split sentences with NLTK's
`sentence_bleu` (4-gram, smoothing method4). On that scorer:

  sentence_bleu     one hypothesis against one reference, in [0, 1];
  distinct_n        unique n-grams / n-grams within each sentence, averaged
                    (dist-1 for n = 1);
  self_bleu         mean sentence BLEU over the pairs of a set of samples
                    (lower means more diverse);
  mbr_select        minimum Bayes risk: the candidate whose summed sentence
                    BLEU against the other candidates is highest.

Scores here are in [0, 1]; callers multiply by 100 to report.
"""

from typing import Sequence
import warnings

import numpy as np


def sentence_bleu(hypothesis: str, reference: str) -> float:
  """NLTK sentence BLEU-4 with smoothing method4 on whitespace tokens.

  Args:
    hypothesis: the generated sentence.
    reference: the reference sentence.

  Returns:
    BLEU in [0, 1]; 0 when either sentence is empty.
  """
  from nltk.translate import bleu_score  # pylint: disable=g-import-not-at-top

  hypothesis_tokens = hypothesis.split()
  reference_tokens = reference.split()
  if not hypothesis_tokens or not reference_tokens:
    return 0.0
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # NLTK warns on zero n-gram counts.
    return float(
        bleu_score.sentence_bleu(
            [reference_tokens],
            hypothesis_tokens,
            smoothing_function=bleu_score.SmoothingFunction().method4,
        )
    )


def mean_sentence_bleu(
    hypotheses: Sequence[str], references: Sequence[str]
) -> float:
  """Average `sentence_bleu` over aligned (hypothesis, reference) pairs.

  Raises:
    ValueError: if the lists differ in length or are empty.
  """
  if len(hypotheses) != len(references) or not hypotheses:
    raise ValueError(
        f'need as many hypotheses ({len(hypotheses)}) as references'
        f' ({len(references)}), at least one'
    )
  return float(
      np.mean([sentence_bleu(h, r) for h, r in zip(hypotheses, references)])
  )


def distinct_n(sentences: Sequence[str], n: int = 1) -> float:
  """Within-sentence distinct n-gram ratio, averaged over sentences.

  Args:
    sentences: whitespace-tokenized texts.
    n: n-gram order (1 gives dist-1).

  Returns:
    Mean of unique / total n-grams per sentence, in [0, 1]; a sentence with
    no n-gram counts 0.
  """
  if not sentences:
    raise ValueError('no sentences to score')
  ratios = []
  for sentence in sentences:
    tokens = sentence.split()
    ngrams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    ratios.append(len(set(ngrams)) / len(ngrams) if ngrams else 0.0)
  return float(np.mean(ratios))


def self_bleu(samples: Sequence[str]) -> float:
  """Mean sentence BLEU over the unordered pairs (i < j) of a sample set.

  Args:
    samples: several outputs for the same input.

  Returns:
    In [0, 1]; 0 with fewer than two samples.
  """
  scores = [
      sentence_bleu(samples[i], samples[j])
      for i in range(len(samples))
      for j in range(i + 1, len(samples))
  ]
  return float(np.mean(scores)) if scores else 0.0


def mbr_select(candidates: Sequence[str]) -> int:
  """Minimum-Bayes-risk choice by sentence BLEU among the candidates.

  Args:
    candidates: outputs for the same input (e.g. from different seeds).

  Returns:
    The index of the candidate with the highest sum of
    sentence_bleu(candidate, other) over the other candidates (the first
    one on ties).
  """
  if not candidates:
    raise ValueError('mbr_select needs at least one candidate')
  totals = [
      sum(
          sentence_bleu(candidate, other)
          for j, other in enumerate(candidates)
          if j != i
      )
      for i, candidate in enumerate(candidates)
  ]
  return int(np.argmax(totals))
