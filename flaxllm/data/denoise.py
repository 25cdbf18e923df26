"""BART denoising noise in numpy: span infilling, permutation, rotation.

`DenoisingCollator` corrupts whole documents the way fairseq's
`DenoisingDataset` does and pads them into the seq2seq batch format of
`flaxllm.tasks.seq2seq` (inputs, input_mask, decoder_inputs, targets,
target_mask, example_mask). A document is `<s> tokens </s>`; the target is the
whole original document, the source its noised copy. Noise steps, in fairseq's
order:

  1. permute_sentences: that fraction of the sentences (each ends after a run
     of full-stop tokens) swap places among themselves.
  2. masking: `ceil(mask_ratio * units)` units are masked, a unit being a
     word (a token the tokenizer marks as a word start, with the tokens that
     follow it) or, for mask_length='subword' / whole_words=False, a token.
     With 'span-poisson' the masked units come in spans whose lengths are
     drawn from a Poisson(poisson_lambda) truncated where its tail falls
     below 1e-7; the last length is cut so the lengths sum to the budget
     exactly, and zero-length spans become inserted masks. A span becomes
     one `<mask>` (replace_length=1), one `<mask>` per token (-1), or
     nothing (0). `mask_random` of the spans get random tokens instead.
  3. insert_ratio: `ceil(insert_ratio * length)` extra `<mask>` (or, for the
     mask_random fraction, random) tokens at random inner positions.
  4. rotate_ratio: with that probability the document's tokens roll by a
     random offset (bos and eos stay in place).

The masking budget is per document, never per batch, and bos, eos and every
special id are never masked or replaced. Spans are placed without overlap, so
exactly the budget is masked (the BART paper's "30% of tokens");
`overlapping_spans=True` instead draws span starts independently, as fairseq
does, which masks somewhat less because spans can overlap.
`biobart_walk=True` swaps step 2 for the noiser of the released BioBART code:
each sentence is walked token by token and, with probability
`walk_token_prob`, k ~ Poisson(lambda) is drawn: k > 0 emits one `<mask>` and
skips k tokens (clipped at the sentence end), k = 0 keeps the token and
inserts a `<mask>` after it (about 25% of tokens masked at the defaults).

Noise is a pure function of (seed, epoch, example index), so a resumed run
sees exactly the noise it would have seen, whatever the batch layout.
"""

import dataclasses
import functools
import math
from typing import Any, Sequence

import numpy as np

from flaxllm.errors import UserInputError

MASK_LENGTHS = ('subword', 'word', 'span-poisson')
REPLACE_LENGTHS = (-1, 0, 1)
TRAIN_STREAM, EVAL_STREAM = 0, 1  # Seed streams of training and eval noise.
_POISSON_TAIL = 1e-7  # fairseq stops the Poisson table below this mass.
_POISSON_MAX_K = 128


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
  """How documents are corrupted (see the module docstring for each step).

  Attributes:
    mask_ratio: fraction of units (words or tokens) to mask.
    mask_random: fraction of masked spans (and inserted tokens) that get
      random tokens instead of `<mask>`.
    insert_ratio: extra noise tokens, as a fraction of the document length.
    rotate_ratio: probability of rolling the document.
    permute_sentences: fraction of sentences to shuffle.
    mask_length: 'subword' (single tokens), 'word' (single words) or
      'span-poisson' (Poisson-length spans of words).
    poisson_lambda: mean span length for 'span-poisson'.
    replace_length: 1 (a span becomes one `<mask>`), -1 (one per token) or
      0 (the span is deleted).
    whole_words: False makes every token a unit for 'word' and
      'span-poisson'.
    overlapping_spans: fairseq's placement (independent span starts, spans
      may overlap) instead of the exact non-overlapping budget.
    biobart_walk: the released BioBART noiser instead of span masking.
    walk_token_prob: its per-token probability of starting a span.
  """

  mask_ratio: float = 0.3
  mask_random: float = 0.0
  insert_ratio: float = 0.0
  rotate_ratio: float = 0.0
  permute_sentences: float = 1.0
  mask_length: str = 'span-poisson'
  poisson_lambda: float = 3.0
  replace_length: int = 1
  whole_words: bool = True
  overlapping_spans: bool = False
  biobart_walk: bool = False
  walk_token_prob: float = 0.1

  def validate(self) -> None:
    """Raises UserInputError (naming the config.task key) on bad values."""
    for name in (
        'mask_ratio',
        'mask_random',
        'insert_ratio',
        'rotate_ratio',
        'permute_sentences',
        'walk_token_prob',
    ):
      value = getattr(self, name)
      if not 0.0 <= value <= 1.0:
        raise UserInputError(
            f'config key task.{name}={value} must be in [0, 1]'
        )
    if self.mask_length not in MASK_LENGTHS:
      raise UserInputError(
          f'config key task.mask_length={self.mask_length!r} is not one of'
          f' {list(MASK_LENGTHS)}'
      )
    if self.replace_length not in REPLACE_LENGTHS:
      raise UserInputError(
          f'config key task.replace_length={self.replace_length} is not one'
          f' of {list(REPLACE_LENGTHS)}'
      )
    if not 0.0 < self.poisson_lambda <= 64.0:
      raise UserInputError(
          f'config key task.poisson_lambda={self.poisson_lambda} must be in'
          ' (0, 64]'
      )

  @property
  def uses_sentences(self) -> bool:
    return self.permute_sentences > 0 or self.biobart_walk


PRESETS = {
    # The BART paper: 30% of words masked in Poisson(3) spans, each span one
    # <mask>, every sentence permuted; no rotation, insertion or random
    # tokens.
    'bart': NoiseConfig(),
    # The command attributed to the BART author in fairseq#1899:
    # lambda 3.5, 10% random tokens, fairseq's overlapping span placement.
    'bart_fairseq': NoiseConfig(
        poisson_lambda=3.5, mask_random=0.1, overlapping_spans=True
    ),
    # BioBART as published: BART's infilling without sentence permutation
    # (the paper finds permutation hurts; the released pipeline leaves it
    # out).
    'biobart': NoiseConfig(permute_sentences=0.0),
    # The noiser of the released BioBART code (token walk, see above).
    'biobart_released': NoiseConfig(permute_sentences=0.0, biobart_walk=True),
}


def preset(name: str) -> NoiseConfig:
  """Returns a named NoiseConfig ('bart', 'bart_fairseq', 'biobart', ...)."""
  if name not in PRESETS:
    raise UserInputError(
        f'noise preset {name!r} is unknown; use one of {sorted(PRESETS)}'
    )
  return PRESETS[name]


def noise_config_from_dict(values: dict[str, Any]) -> NoiseConfig:
  """Builds and validates a NoiseConfig from the matching keys of `values`.

  Args:
    values: e.g. `config.task.to_dict()`; keys that are not NoiseConfig fields
      are ignored.

  Returns:
    The validated NoiseConfig.
  """
  fields = {field.name for field in dataclasses.fields(NoiseConfig)}
  noise = NoiseConfig(**{k: v for k, v in values.items() if k in fields})
  noise.validate()
  return noise


@functools.lru_cache(maxsize=16)
def _poisson_cdf(poisson_lambda: float) -> np.ndarray:
  """The CDF of a Poisson truncated where its upper tail drops below 1e-7."""
  ks = np.arange(_POISSON_MAX_K)
  log_pmf = (
      -poisson_lambda
      + ks * math.log(poisson_lambda)
      - np.array([math.lgamma(k + 1) for k in ks])
  )
  pmf = np.exp(log_pmf)
  mode = int(poisson_lambda)
  keep = (pmf >= _POISSON_TAIL) | (ks <= mode)
  last = int(np.nonzero(keep)[0].max())
  pmf = pmf[: last + 1]
  return np.cumsum(pmf) / pmf.sum()


def sample_span_lengths(
    rng: np.random.Generator, budget: int, poisson_lambda: float
) -> np.ndarray:
  """Poisson span lengths that add up to exactly `budget`.

  Lengths are drawn in rounds of `budget` until their sum reaches the budget;
  the first length that crosses it is cut to the remainder and the rest are
  dropped (fairseq's procedure). Zero lengths are kept: they are insertions.

  Args:
    rng: the document's generator.
    budget: the number of units to mask, >= 1.
    poisson_lambda: the Poisson mean.

  Returns:
    int64 lengths, the last possibly cut, summing to `budget`.  # [spans]
  """
  cdf = _poisson_cdf(poisson_lambda)
  lengths = np.zeros((0,), np.int64)
  while lengths.sum() < budget:
    draws = np.searchsorted(cdf, rng.random(budget), side='right')
    lengths = np.concatenate([lengths, draws.astype(np.int64)])
  cumulative = np.cumsum(lengths)
  last = int(np.searchsorted(cumulative, budget))  # first cum >= budget
  lengths = lengths[: last + 1].copy()
  lengths[last] = budget - (cumulative[last - 1] if last else 0)
  return lengths


def word_start_table(tokenizer: Any) -> np.ndarray:
  """Which ids begin a word in a byte-level BPE vocabulary.

  A byte-level BPE marks a token that follows a space with 'Ġ', which decodes
  to a leading space; special tokens decode to nothing and are not starts.

  Args:
    tokenizer: a `flaxllm.data.tokenizer.Tokenizer` (anything with
      `vocab_size` and `decode`).

  Returns:
    bool [vocab_size].
  """
  return np.array([
      tokenizer.decode([i]).startswith(' ') for i in range(tokenizer.vocab_size)
  ])


def document_rng(
    seed: int, epoch: int, index: int, stream: int = TRAIN_STREAM
) -> np.random.Generator:
  """The generator of one document's noise: a function of its coordinates.

  Args:
    seed: the run's data seed.
    epoch: the training epoch (0 for evaluation).
    index: the document's index in its split.
    stream: TRAIN_STREAM or EVAL_STREAM, so eval noise never repeats training
      noise.

  Returns:
    A fresh numpy Generator.
  """
  return np.random.default_rng([stream, seed, epoch, index])


def _sentence_bounds(content: np.ndarray, full_stop_id: int) -> np.ndarray:
  """End offsets (exclusive) of the sentences of `content`.

  A sentence ends after a run of full stops; text after the last one is a
  final sentence.

  Args:
    content: token ids without bos and eos.  # [length]
    full_stop_id: the id that ends a sentence.

  Returns:
    Increasing ends, the last equal to len(content).  # [sentences]
  """
  is_stop = content == full_stop_id
  next_is_stop = np.concatenate([is_stop[1:], [False]])
  ends = np.nonzero(is_stop & ~next_is_stop)[0] + 1
  if not ends.size or ends[-1] != len(content):
    ends = np.concatenate([ends, [len(content)]])
  return ends


class DenoisingCollator:
  """Noises tokenized documents and pads them into seq2seq batches.

  Examples are dicts with 'text_ids' (the document's token ids, no specials) and
  'index' (its position in its split, which seeds its noise).
  """

  def __init__(
      self,
      noise: NoiseConfig,
      *,
      max_source_length: int,
      max_target_length: int,
      vocab_size: int,
      bos_id: int,
      eos_id: int,
      pad_id: int,
      mask_id: int,
      decoder_start_id: int | None = None,
      special_ids: Sequence[int] = (),
      is_word_start: np.ndarray | None = None,
      full_stop_id: int | None = None,
  ):
    """Checks the settings and precomputes lookup tables.

    Args:
      noise: the noise settings.
      max_source_length: longest noised input, bos and eos included; longer
        ones (only possible with insertions) are cut, keeping eos.
      max_target_length: longest document, bos and eos included; longer
        documents are truncated before noising.
      vocab_size: the vocabulary size (random tokens come from it).
      bos_id: beginning of document.
      eos_id: end of document.
      pad_id: padding.
      mask_id: the `<mask>` id.
      decoder_start_id: first decoder input; default eos, as in BART.
      special_ids: other ids never to mask or draw as random tokens.
      is_word_start: bool [vocab_size] (see `word_start_table`); None makes
        every token a word start.
      full_stop_id: the id that ends a sentence; needed for sentence
        permutation and the BioBART walk.

    Raises:
      UserInputError: invalid noise settings or lengths.
    """
    noise.validate()
    if max_source_length < 2 or max_target_length < 3:
      raise UserInputError(
          'data.max_source_length must be >= 2 and data.max_target_length'
          ' >= 3 (bos, one token, eos)'
      )
    if noise.uses_sentences and full_stop_id is None:
      raise UserInputError(
          'sentence permutation and the BioBART walk need a full-stop id;'
          ' set task.full_stop_id or use a tokenizer that encodes "." as one'
          ' token'
      )
    self.noise = noise
    self.max_source_length = max_source_length
    self.max_target_length = max_target_length
    self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
    self.mask_id = mask_id
    self.decoder_start_id = (
        eos_id if decoder_start_id is None else (decoder_start_id)
    )
    self.full_stop_id = full_stop_id
    specials = {bos_id, eos_id, pad_id, mask_id, *special_ids}
    self._is_special = np.zeros((vocab_size,), bool)
    self._is_special[list(specials)] = True
    self._regular_ids = np.nonzero(~self._is_special)[0]
    if is_word_start is None:
      is_word_start = np.ones((vocab_size,), bool)
    is_word_start = np.asarray(is_word_start, bool)
    if is_word_start.shape != (vocab_size,):
      raise ValueError(
          f'is_word_start has shape {is_word_start.shape}, not ({vocab_size},)'
      )
    self._is_word_start = is_word_start

  # ---------------------------------------------------------------------------
  # One document.
  # ---------------------------------------------------------------------------

  def document_tokens(self, ids: Sequence[int]) -> np.ndarray:
    """bos + ids (truncated to fit max_target_length) + eos.

    Args:
      ids: the document's token ids, without specials.

    Returns:
      int32 [min(len(ids) + 2, max_target_length)].
    """
    body = np.asarray(ids[: self.max_target_length - 2], np.int32)
    return np.concatenate([[self.bos_id], body, [self.eos_id]]).astype(np.int32)

  def noise_document(
      self, tokens: np.ndarray, rng: np.random.Generator
  ) -> np.ndarray:
    """Applies every noise step to one document.

    Args:
      tokens: bos + content + eos.  # int32 [length]
      rng: the document's generator (see `document_rng`).

    Returns:
      The noised document, still starting with bos and ending with eos.
      # int32 [noised_length]
    """
    noise = self.noise
    source = np.asarray(tokens, np.int32)
    if noise.permute_sentences > 0:
      source = self._permute_sentences(source, rng)
    num_inserts = 0
    if noise.biobart_walk:
      source = self._biobart_walk(source, rng)
    elif noise.mask_ratio > 0:
      source, num_inserts = self._mask(source, rng)
    if num_inserts:
      source = self._insert(source, num_inserts, rng)
    if noise.insert_ratio > 0:
      source = self._insert(
          source, math.ceil(noise.insert_ratio * len(source)), rng
      )
    if noise.rotate_ratio > 0 and rng.random() < noise.rotate_ratio:
      source = self._rotate(source, rng)
    return source

  def _random_ids(self, rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random non-special ids."""
    return self._regular_ids[rng.integers(len(self._regular_ids), size=count)]

  def _permute_sentences(
      self, source: np.ndarray, rng: np.random.Generator
  ) -> np.ndarray:
    """Shuffles ceil(ratio * sentences) sentences among their places."""
    content = source[1:-1]
    ends = _sentence_bounds(content, self.full_stop_id)
    num_sentences = len(ends)
    num_moved = math.ceil(num_sentences * self.noise.permute_sentences)
    if num_sentences < 2 or num_moved < 2:
      return source
    moved = rng.permutation(num_sentences)[:num_moved]
    order = np.arange(num_sentences)
    order[moved] = moved[rng.permutation(num_moved)]
    starts = np.concatenate([[0], ends[:-1]])
    pieces = [content[starts[i] : ends[i]] for i in order]
    return np.concatenate([source[:1], *pieces, source[-1:]])

  def _mask(
      self, source: np.ndarray, rng: np.random.Generator
  ) -> tuple[np.ndarray, int]:
    """Masks ceil(mask_ratio * units) units of the document.

    Args:
      source: bos + content + eos.  # [length]
      rng: the document's generator.

    Returns:
      (the masked document, number of zero-length spans still to insert).
    """
    noise = self.noise
    content = source[1:-1]
    if not len(content):
      return source, 0
    maskable = ~self._is_special[content]  # [content]
    if noise.mask_length == 'subword' or not noise.whole_words:
      starts_word = maskable
    else:
      starts_word = self._is_word_start[content] & maskable
    # The first maskable token after a special (or at the start) opens a
    # unit, so no unit spans a special token.
    after_special = np.concatenate([[True], ~maskable[:-1]])
    unit_start = maskable & (starts_word | after_special)  # [content]
    num_units = int(unit_start.sum())
    budget = math.ceil(noise.mask_ratio * num_units)
    if budget == 0:
      return source, 0
    num_inserts = 0
    if noise.mask_length == 'span-poisson':
      lengths = sample_span_lengths(rng, budget, noise.poisson_lambda)
      num_inserts = int(np.sum(lengths == 0))
      lengths = lengths[lengths > 0]
    else:
      lengths = np.ones((budget,), np.int64)
    num_spans = len(lengths)
    if num_spans == 0:
      return source, num_inserts

    if noise.overlapping_spans:
      span_starts = rng.choice(num_units, num_spans, replace=False)
      by_start = np.argsort(span_starts)
      span_starts, lengths = span_starts[by_start], lengths[by_start]
    else:
      # Stars and bars: the spans and the num_units - budget free units in a
      # uniformly random order, so spans never overlap and exactly `budget`
      # units are masked.
      lengths = rng.permutation(lengths)
      slots = np.sort(
          rng.choice(num_units - budget + num_spans, num_spans, replace=False)
      )
      offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
      span_starts = slots - np.arange(num_spans) + offsets
    # From here on the spans are sorted by their (distinct) starts.
    span_ends = np.minimum(span_starts + lengths, num_units)  # [spans]
    span_random = rng.random(num_spans) < noise.mask_random  # [spans]
    starts_here = np.bincount(span_starts, minlength=num_units + 1)
    ends_here = np.bincount(span_ends, minlength=num_units + 1)
    unit_masked = np.cumsum(starts_here - ends_here)[:num_units] > 0
    # A span opens (gets the <mask>) unless an earlier span still runs there.
    earlier_end = np.concatenate([[0], np.maximum.accumulate(span_ends)[:-1]])
    unit_opens = np.zeros((num_units,), bool)
    unit_opens[span_starts[span_starts >= earlier_end]] = True
    # Each unit takes the random flag of the latest span started at or
    # before it.
    latest_span = np.maximum(np.cumsum(starts_here[:num_units]) - 1, 0)
    unit_random = unit_masked & span_random[latest_span]  # [units]

    unit_of_token = np.maximum(np.cumsum(unit_start) - 1, 0)  # [content]
    masked = maskable & unit_masked[unit_of_token]  # [content]
    previous_masked = np.concatenate([[False], masked[:-1]])
    opens = masked & (
        (unit_start & unit_opens[unit_of_token]) | ~previous_masked
    )
    randomized = masked & unit_random[unit_of_token]

    if noise.replace_length == 0:
      noised = content[~masked]
    elif noise.replace_length == 1:
      noised = content.copy()
      noised[opens] = self.mask_id
      random_opens = opens & randomized
      noised[random_opens] = self._random_ids(rng, int(random_opens.sum()))
      noised = noised[~masked | opens]
    else:
      noised = content.copy()
      noised[masked] = self.mask_id
      noised[randomized] = self._random_ids(rng, int(randomized.sum()))
    return (
        np.concatenate([source[:1], noised, source[-1:]]).astype(np.int32),
        num_inserts,
    )

  def _insert(
      self, source: np.ndarray, count: int, rng: np.random.Generator
  ) -> np.ndarray:
    """Inserts `count` noise tokens at random positions between bos and eos.

    ceil(count * mask_random) of them are random tokens, the rest `<mask>`.
    """
    total = len(source) + count
    positions = rng.choice(total - 2, count, replace=False) + 1
    num_random = math.ceil(count * self.noise.mask_random)
    values = np.full((count,), self.mask_id, np.int32)
    values[:num_random] = self._random_ids(rng, num_random)
    is_noise = np.zeros((total,), bool)
    is_noise[positions] = True
    result = np.empty((total,), np.int32)
    result[positions] = values
    result[~is_noise] = source
    return result

  def _rotate(self, source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rolls the content by a random offset in [1, length - 1]."""
    content = source[1:-1]
    if len(content) < 2:
      return source
    offset = int(rng.integers(1, len(content)))
    return np.concatenate(
        [source[:1], content[offset:], content[:offset], source[-1:]]
    )

  def _biobart_walk(
      self, source: np.ndarray, rng: np.random.Generator
  ) -> np.ndarray:
    """The released BioBART noiser: a token walk within each sentence."""
    content = source[1:-1]
    num_tokens = len(content)
    starts_span = rng.random(num_tokens) < self.noise.walk_token_prob
    span_lengths = rng.poisson(self.noise.poisson_lambda, num_tokens)
    ends = _sentence_bounds(content, self.full_stop_id)
    sentence_end = ends[np.searchsorted(ends, np.arange(num_tokens), 'right')]
    is_special = self._is_special[content]
    output = [source[0]]
    position = 0
    while position < num_tokens:
      token = content[position]
      if not starts_span[position] or is_special[position]:
        output.append(token)
        position += 1
      elif span_lengths[position] > 0:
        output.append(self.mask_id)
        stop = min(position + span_lengths[position], sentence_end[position])
        # Specials inside the skipped stretch survive.
        output.extend(content[position:stop][is_special[position:stop]])
        position = stop
      else:
        output.extend((token, self.mask_id))
        position += 1
    output.append(source[-1])
    return np.asarray(output, np.int32)

  # ---------------------------------------------------------------------------
  # Batches.
  # ---------------------------------------------------------------------------

  def max_noised_length(self, document_length: int) -> int:
    """An upper bound on a noised document's length, bos and eos included.

    Args:
      document_length: bos + content + eos length.

    Returns:
      The bound (before the max_source_length cut).
    """
    noise = self.noise
    content = document_length - 2
    extra = 0
    if noise.biobart_walk:
      extra = content
    elif noise.mask_length == 'span-poisson' and noise.mask_ratio > 0:
      extra = math.ceil(noise.mask_ratio * content)
    if noise.insert_ratio > 0:
      extra += math.ceil(noise.insert_ratio * (document_length + extra))
    return document_length + extra

  def lengths(self, example: dict) -> tuple[int, int]:
    """(source bound, target length) of an example, for length bucketing."""
    target = min(len(example['text_ids']) + 2, self.max_target_length)
    return min(self.max_noised_length(target), self.max_source_length), target

  def __call__(
      self,
      examples: list[dict],
      source_length: int | None = None,
      target_length: int | None = None,
      *,
      seed: int = 0,
      epoch: int = 0,
      stream: int = TRAIN_STREAM,
  ) -> dict[str, np.ndarray]:
    """Noises and pads a batch of documents.

    Args:
      examples: dicts with 'text_ids' and 'index'.
      source_length: padded source length; default (and cap) the maximum.
      target_length: padded target length; default (and cap) the maximum.
      seed: the data seed.
      epoch: the epoch whose noise to draw (fresh noise every epoch).
      stream: TRAIN_STREAM or EVAL_STREAM.

    Returns:
      inputs: the noised documents.  # int32 [batch, source_length]
      input_mask: 1 on real input tokens.  # int32 [batch, source_length]
      decoder_inputs: decoder_start + targets[:-1].  # int32 [batch, tgt]
      targets: the original documents, bos and eos included.  # int32
      target_mask: 1 on real target tokens.  # float32 [batch, tgt]
      example_mask: 1 for every row.  # float32 [batch]
    """
    source_length = min(
        source_length or self.max_source_length, self.max_source_length
    )
    target_length = min(
        target_length or self.max_target_length, self.max_target_length
    )
    batch_size = len(examples)
    inputs = np.full((batch_size, source_length), self.pad_id, np.int32)
    input_mask = np.zeros((batch_size, source_length), np.int32)
    decoder_inputs = np.full((batch_size, target_length), self.pad_id, np.int32)
    targets = np.full((batch_size, target_length), self.pad_id, np.int32)
    target_mask = np.zeros((batch_size, target_length), np.float32)
    for row, example in enumerate(examples):
      target = self.document_tokens(example['text_ids'])
      if len(target) > target_length:
        raise ValueError(
            f'row {row} has {len(target)} target tokens but the batch was'
            f' asked for {target_length}'
        )
      rng = document_rng(seed, epoch, int(example['index']), stream)
      source = self.noise_document(target, rng)
      if len(source) > source_length:
        source = np.concatenate([source[: source_length - 1], [self.eos_id]])
      inputs[row, : len(source)] = source
      input_mask[row, : len(source)] = 1
      targets[row, : len(target)] = target
      decoder_inputs[row, 0] = self.decoder_start_id
      decoder_inputs[row, 1 : len(target)] = target[:-1]
      target_mask[row, : len(target)] = 1.0
    return {
        'inputs': inputs,
        'input_mask': input_mask,
        'decoder_inputs': decoder_inputs,
        'targets': targets,
        'target_mask': target_mask,
        'example_mask': np.ones((batch_size,), np.float32),
    }
