"""Synonyms-aware target choice for GenBioEL fine-tuning.

A gold concept has many names; the decoder is trained to emit the one most
like the mention, by the cosine between character 3-gram TF-IDF vectors
(scikit-learn's TfidfVectorizer with analyzer='char_wb', fitted on the KB's
names; GenBioEL loads a pre-fitted scispaCy-style vectorizer whose settings
it does not show, so 3-grams within word boundaries are assumed). The
paper's ablations pick a random name, one sampled in proportion to the
similarity, or the least similar one (`TARGET_STRATEGIES`).

`fine_tuning_pairs` turns linking examples (see `flaxllm.data.mentions`)
into (source, prompt, target) triples: the prompt is '<mention> is' and the
target one name of the gold concept(s).
"""

import random
from typing import Iterable, Sequence

import numpy as np
from sklearn.feature_extraction import text as sklearn_text

from flaxllm.data import kb as kb_lib
from flaxllm.errors import UserInputError

TARGET_STRATEGIES = ('most_similar', 'random', 'sampled', 'least_similar')
NGRAM_RANGE = (3, 3)


class SynonymSelector:
  """Character n-gram TF-IDF similarity between a mention and names."""

  def __init__(
      self,
      names: Iterable[str],
      ngram_range: tuple[int, int] = NGRAM_RANGE,
  ):
    """Fits the vectorizer.

    Args:
      names: the texts to fit the IDF weights on (all KB names).
      ngram_range: character n-gram sizes, (3, 3) by default.

    Raises:
      UserInputError: no names.
    """
    names = list(names)
    if not names:
      raise UserInputError('the synonym selector needs names to fit on')
    self.vectorizer = sklearn_text.TfidfVectorizer(
        analyzer='char_wb', ngram_range=tuple(ngram_range), dtype=np.float32
    )
    self.vectorizer.fit(names)

  def similarities(self, mention: str, names: Sequence[str]) -> np.ndarray:
    """Cosine similarities of a mention to each name.

    Args:
      mention: the mention text (lowercased by the vectorizer).
      names: candidate names.

    Returns:
      float32 [len(names)]; rows are L2-normalized, so the dot product is
      the cosine (0 when either side has no known n-gram).
    """
    name_vectors = self.vectorizer.transform(list(names))
    mention_vector = self.vectorizer.transform([mention])
    return np.asarray(
        (name_vectors @ mention_vector.T).todense(), np.float32
    ).reshape(-1)

  def choose(
      self,
      mention: str,
      names: Sequence[str],
      *,
      strategy: str = 'most_similar',
      rng: random.Random | None = None,
  ) -> str:
    """One name of the gold concept(s) as the training target.

    Args:
      mention: the mention text.
      names: the candidate names, in a fixed order (ties go to the first).
      strategy: one of `TARGET_STRATEGIES`.
      rng: the randomness of 'random' and 'sampled'.

    Returns:
      The chosen name.

    Raises:
      UserInputError: an unknown strategy or no names.
    """
    if strategy not in TARGET_STRATEGIES:
      raise UserInputError(
          f'unknown target strategy {strategy!r}; use one of'
          f' {", ".join(TARGET_STRATEGIES)}'
      )
    if not names:
      raise UserInputError(f'no names to choose a target for {mention!r}')
    if len(names) == 1:
      return names[0]
    rng = rng or random.Random(0)
    if strategy == 'random':
      return rng.choice(list(names))
    similarity = self.similarities(mention, names)
    if strategy == 'most_similar':
      return names[int(np.argmax(similarity))]
    if strategy == 'least_similar':
      return names[int(np.argmin(similarity))]
    if similarity.sum() <= 0:  # 'sampled' with nothing in common: uniform.
      return rng.choice(list(names))
    return rng.choices(list(names), weights=similarity.tolist())[0]


def fine_tuning_pairs(
    examples: Iterable[dict],
    kb: kb_lib.KnowledgeBase,
    selector: SynonymSelector,
    *,
    strategy: str = 'most_similar',
    seed: int = 0,
) -> tuple[list[dict], int]:
  """Adds GenBioEL's decoder prompt and target to linking examples.

  Args:
    examples: dicts with 'src', 'mention' and 'concept_ids' (as
      `mentions.linking_examples` makes them).
    kb: the target KB; the candidates are the normalized names of every
      gold concept it holds, gold order then name order.
    selector: the fitted similarity.
    strategy: one of `TARGET_STRATEGIES`.
    seed: the randomness of the random strategies.

  Returns:
    (pairs, skipped): copies of the examples with 'prefix' ('<mention> is')
    and 'tgt' (the chosen name) added, and the number of examples left out
    because no gold concept is in the KB.
  """
  rng = random.Random(seed)
  pairs = []
  skipped = 0
  for example in examples:
    names = [
        name
        for concept_id in example['concept_ids']
        if concept_id in kb
        for name in kb.names(concept_id)
    ]
    names = list(dict.fromkeys(names))
    if not names:
      skipped += 1
      continue
    target = selector.choose(
        example['mention'], names, strategy=strategy, rng=rng
    )
    pairs.append({
        **example,
        'prefix': f'{example["mention"]} is',
        'tgt': target,
    })
  return pairs, skipped
