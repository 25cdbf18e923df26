"""Causal-LM batches: token sequences -> padded or packed next-token rows.

A language-model example is one token sequence, `[bos] prompt separator
response [eos]` (`lm_sequence`), with a loss weight per token: every token, or
only the response and eos (`loss_on='target'`, the instruction-tuning
convention). `LMCollator` cuts sequences into rows of `length` input slots,

  inputs        int32   [batch, length]  sequence[:-1] of each document
  targets       int32   [batch, length]  sequence[1:], the next tokens
  target_mask   float32 [batch, length]  loss weight of each target
  segment_ids   int32   [batch, length]  1, 2, ... per document; 0 on padding
  positions     int32   [batch, length]  position inside the document
  example_mask  float32 [batch]          1 on rows holding a document

either one document per row (`pack_rows` unused) or several documents per row
(`pack_rows`), so that short documents do not waste the row. Segment ids keep
packed documents from attending to each other and positions restart at each
document, so a packed row computes exactly what its documents would alone.
`PackedIterator` is the resumable, per-host training iterator over packed
batches.
"""

import dataclasses
from typing import Callable

import numpy as np

from flaxllm.errors import UserInputError

LOSS_ON = ('all', 'target')


def lm_sequence(
    example: dict,
    *,
    bos_id: int | None,
    eos_id: int,
    separator_ids: list[int],
    loss_on: str,
) -> tuple[list[int], list[float]]:
  """One example's token sequence and the loss weight of each token.

  Args:
    example: a tokenized example with 'src_ids' (prompt, may be empty) and
      'tgt_ids' (response / document text).
    bos_id: the id opening every sequence, or None for none.
    eos_id: the id closing every sequence.
    separator_ids: ids between a non-empty prompt and the response.
    loss_on: 'all' (every token but bos is a target) or 'target' (only the
      response and eos are).

  Returns:
    (ids, weights): weights[i] is the loss weight of predicting ids[i].
  """
  prompt = list(example['src_ids'])
  if prompt:
    prompt += list(separator_ids)
  head = ([bos_id] if bos_id is not None else []) + prompt
  response = list(example['tgt_ids']) + [eos_id]
  prompt_weight = 1.0 if loss_on == 'all' else 0.0
  weights = [prompt_weight] * len(head) + [1.0] * len(response)
  return head + response, weights


def prompt_ids(
    example: dict, *, bos_id: int | None, separator_ids: list[int]
) -> list[int]:
  """The ids a model is given to continue: bos, prompt and separator."""
  ids = list(example['src_ids'])
  if ids:
    ids += list(separator_ids)
  return ([bos_id] if bos_id is not None else []) + ids


@dataclasses.dataclass(frozen=True)
class LMCollator:
  """Builds next-token batches from token sequences.

  Attributes:
    length: input slots per row; a document of n tokens takes n - 1.
    pad_id: the id of padding slots.
    sequence_fn: example -> (ids, weights), e.g. `lm_sequence` bound.
    overlong: 'truncate' cuts documents longer than a row; 'error' raises.
  """

  length: int
  pad_id: int
  sequence_fn: Callable[[dict], tuple[list[int], list[float]]]
  overlong: str = 'truncate'
  # With a prompt function, one-document batches also carry 'prompt' (int32
  # [batch, max_prompt_length], right-padded) and 'prompt_length' (int32
  # [batch]) for generation.
  prompt_fn: Callable[[dict], list[int]] | None = None
  max_prompt_length: int = 0

  def slots(self, example: dict) -> int:
    """Input slots the example takes in a row, once truncated."""
    return min(len(self.sequence_fn(example)[0]) - 1, self.length)

  def check_length(self, example: dict, index: int) -> None:
    """Raises on a document longer than a row when overlong='error'."""
    needed = len(self.sequence_fn(example)[0]) - 1
    if self.overlong != 'error' or needed <= self.length:
      return
    name = example.get('id', f'#{index}')
    raise UserInputError(
        f'example {name} needs {needed} tokens, over the row length'
        f' {self.length} (data.max_source_length + data.max_target_length);'
        " raise those or set data.overlong='truncate'"
    )

  def _empty(self, rows: int) -> dict[str, np.ndarray]:
    shape = (rows, self.length)
    return {
        'inputs': np.full(shape, self.pad_id, np.int32),
        'targets': np.full(shape, self.pad_id, np.int32),
        'target_mask': np.zeros(shape, np.float32),
        'segment_ids': np.zeros(shape, np.int32),
        'positions': np.zeros(shape, np.int32),
        'example_mask': np.zeros((rows,), np.float32),
    }

  def _place(self, batch, row: int, start: int, segment: int, example):
    """Writes one document into `row` from slot `start`; returns its slots."""
    ids, weights = self.sequence_fn(example)
    count = min(len(ids) - 1, self.length - start)
    span = slice(start, start + count)
    batch['inputs'][row, span] = ids[:count]
    batch['targets'][row, span] = ids[1 : count + 1]
    batch['target_mask'][row, span] = weights[1 : count + 1]
    batch['segment_ids'][row, span] = segment
    batch['positions'][row, span] = np.arange(count)
    batch['example_mask'][row] = 1.0
    return count

  def __call__(self, examples: list[dict]) -> dict[str, np.ndarray]:
    """One document per row (see the module docstring for the arrays)."""
    batch = self._empty(len(examples))
    for row, example in enumerate(examples):
      self.check_length(example, row)
      self._place(batch, row, 0, 1, example)
    if self.prompt_fn is not None:
      prompts = np.full(
          (len(examples), self.max_prompt_length), self.pad_id, np.int32
      )
      lengths = np.zeros((len(examples),), np.int32)
      for row, example in enumerate(examples):
        ids = self.prompt_fn(example)[: self.max_prompt_length]
        prompts[row, : len(ids)] = ids
        lengths[row] = len(ids)
      batch['prompt'], batch['prompt_length'] = prompts, lengths
    return batch

  def pack_rows(
      self, examples: list[dict], rows: int
  ) -> tuple[dict[str, np.ndarray], int]:
    """Packs documents in order into `rows` rows until the next does not fit.

    A document goes into the current row if it fits in the row's free slots,
    else it opens the next row; a document longer than a row is truncated to
    fill a row of its own.

    Args:
      examples: documents to pack, in order.
      rows: rows of the batch.

    Returns:
      (batch, used): the batch and how many leading examples it holds.
    """
    batch = self._empty(rows)
    row, filled, segment, used = 0, 0, 0, 0
    for index, example in enumerate(examples):
      self.check_length(example, index)
      need = self.slots(example)
      if filled + need > self.length:
        row, filled, segment = row + 1, 0, 0
        if row == rows:
          break
      segment += 1
      filled += self._place(batch, row, filled, segment, example)
      used += 1
    return batch, used


class PackedIterator:
  """Infinite, shuffled, resumable packed training batches for one process.

  Every epoch shuffles the examples with (seed, epoch); process p of P packs
  the examples p, p + P, ... of that order into its `global_batch_size / P`
  rows. The state is (epoch, position in the epoch), so a restored iterator
  continues with exactly the batches the original would have produced.
  """

  def __init__(
      self,
      examples: list[dict],
      collator: LMCollator,
      *,
      global_batch_size: int,
      seed: int,
      process_index: int = 0,
      process_count: int = 1,
  ):
    if global_batch_size % process_count:
      raise UserInputError(
          f'train.batch_size={global_batch_size} is not divisible by the'
          f' {process_count} processes; make it a multiple'
      )
    self._examples = examples
    self._collator = collator
    self._rows = global_batch_size // process_count
    self._seed = seed
    self._process_index = process_index
    self._process_count = process_count
    self._epoch = 0
    self._position = 0
    self._order = self._epoch_order(0)

  def _epoch_order(self, epoch: int) -> np.ndarray:
    rng = np.random.default_rng((self._seed, epoch))
    order = rng.permutation(len(self._examples))
    return order[self._process_index :: self._process_count]

  def __iter__(self) -> 'PackedIterator':
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._position >= len(self._order):
      self._epoch += 1
      self._position = 0
      self._order = self._epoch_order(self._epoch)
      if not len(self._order):
        raise UserInputError(
            'the train split has fewer examples than processes; add data'
        )
    # Enough examples to fill every row with one-slot documents.
    window = self._order[
        self._position : self._position + self._rows * self._collator.length
    ]
    batch, used = self._collator.pack_rows(
        [self._examples[i] for i in window], self._rows
    )
    self._position += max(used, 1)
    return batch

  def get_state(self) -> dict:
    return {'epoch': self._epoch, 'position': self._position}

  def set_state(self, state: dict) -> None:
    self._epoch = int(state['epoch'])
    self._position = int(state['position'])
    self._order = self._epoch_order(self._epoch)


class StagedIterator:
  """Batches of one iterator per training stage, switching at fixed steps.

  Stage i feeds the steps [ends[i-1], ends[i]); the last stage runs on for
  as long as it is asked. The state records the stage, the steps taken and
  the stage iterator's own state, so a run resumes inside either stage.
  """

  def __init__(self, iterators: list, ends: tuple[int, ...]):
    if len(ends) != len(iterators) - 1:
      raise ValueError(
          f'{len(iterators)} stages need {len(iterators) - 1} ends'
      )
    self._iterators = iterators
    self._ends = tuple(ends)
    self._step = 0

  @property
  def stage(self) -> int:
    return sum(self._step >= end for end in self._ends)

  def __iter__(self) -> 'StagedIterator':
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iterators[self.stage])
    self._step += 1
    return batch

  def get_state(self) -> dict:
    return {
        'step': self._step,
        'stages': [iterator.get_state() for iterator in self._iterators],
    }

  def set_state(self, state: dict) -> None:
    self._step = int(state['step'])
    for iterator, inner in zip(self._iterators, state['stages']):
      iterator.set_state(inner)
