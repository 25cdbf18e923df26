"""Collators: token id lists -> static-shape numpy batches.

`tokenize_pairs` adds token ids to (src, tgt) examples; `Seq2SeqCollator`
turns a list of tokenized examples into padded int32/float32 arrays for an
encoder-decoder; `pad_rows` tops a short batch up with empty rows so that the
last evaluation batch keeps the shape the step was compiled for. Every batch
carries `example_mask` (1 for a real row, 0 for padding), so metrics can
ignore the padding rows.
"""

import dataclasses
from typing import Any

import numpy as np

from flaxllm.errors import UserInputError

OVERLONG_POLICIES = ('truncate', 'error')


def tokenize_pairs(examples: list[dict], tokenizer: Any) -> list[dict]:
  """Adds token ids to (src, tgt) examples.

  Args:
    examples: dicts with 'src' and 'tgt' texts.
    tokenizer: anything with `encode_batch(texts) -> list[list[int]]`.

  Returns:
    Copies of the examples with 'src_ids' and 'tgt_ids' (lists of int, no
    special tokens) added.
  """
  source_ids = tokenizer.encode_batch([example['src'] for example in examples])
  target_ids = tokenizer.encode_batch([example['tgt'] for example in examples])
  return [
      {**example, 'src_ids': list(src_ids), 'tgt_ids': list(tgt_ids)}
      for example, src_ids, tgt_ids in zip(examples, source_ids, target_ids)
  ]


def pad_rows(batch: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
  """Appends empty rows to a batch until it has `rows` rows.

  The new rows are all zeros: every mask (and `example_mask`) is 0 there, so
  they carry no tokens and no loss; their id values are never read.

  Args:
    batch: arrays sharing a leading batch dimension.  # [batch, ...]
    rows: the number of rows wanted, at least the current batch size.

  Returns:
    The batch with `rows` rows.  # [rows, ...]
  """
  current = len(batch['example_mask'])
  if current > rows:
    raise ValueError(f'batch has {current} rows, more than {rows}')
  return {
      key: np.concatenate(
          [array, np.zeros((rows - current, *array.shape[1:]), array.dtype)]
      )
      for key, array in batch.items()
  }


@dataclasses.dataclass(frozen=True)
class Seq2SeqCollator:
  """Pads tokenized (src_ids, tgt_ids) examples for an encoder-decoder.

  Attributes:
    max_source_length: the longest source, eos included.
    max_target_length: the longest target, eos included.
    pad_id: the padding id.
    eos_id: the id that ends sources and targets.
    decoder_start_id: the first decoder input (BART uses eos).
    overlong: 'truncate' cuts over-long examples (keeping eos); 'error'
      raises on them.
  """

  max_source_length: int
  max_target_length: int
  pad_id: int
  eos_id: int
  decoder_start_id: int
  overlong: str = 'truncate'

  def __post_init__(self):
    if self.overlong not in OVERLONG_POLICIES:
      raise UserInputError(
          f'data.overlong={self.overlong!r} is not a policy; use'
          " 'truncate' or 'error'"
      )
    if self.max_source_length < 2 or self.max_target_length < 2:
      raise UserInputError(
          'data.max_source_length and data.max_target_length must be at'
          ' least 2 (one token plus eos)'
      )

  def lengths(self, example: dict) -> tuple[int, int]:
    """Returns (source length, target length), eos included, once truncated."""
    return (
        min(len(example['src_ids']) + 1, self.max_source_length),
        min(len(example['tgt_ids']) + 1, self.max_target_length),
    )

  def check_length(self, example: dict, index: int) -> None:
    """Raises on an over-long example when overlong='error'."""
    source_length = len(example['src_ids']) + 1
    target_length = len(example['tgt_ids']) + 1
    if (
        source_length <= self.max_source_length
        and target_length <= self.max_target_length
    ):
      return
    name = example.get('id', f'#{index}')
    raise UserInputError(
        f'example {name} has {source_length} source and {target_length}'
        ' target tokens (eos included), over data.max_source_length='
        f'{self.max_source_length} / data.max_target_length='
        f'{self.max_target_length}; raise those or set'
        " data.overlong='truncate'"
    )

  def __call__(
      self,
      examples: list[dict],
      source_length: int | None = None,
      target_length: int | None = None,
  ) -> dict[str, np.ndarray]:
    """Builds one batch.

    Args:
      examples: dicts with 'src_ids' and 'tgt_ids' (and optionally 'id').
      source_length: the padded source length; default (and cap) the max.
      target_length: the padded target length; default (and cap) the max.

    Returns:
      inputs: src_ids + [eos], padded.  # int32 [batch, source_length]
      input_mask: 1 on real source tokens.  # int32 [batch, source_length]
      decoder_inputs: [decoder_start] + tgt_ids.  # int32 [batch, target_len]
      targets: tgt_ids + [eos].  # int32 [batch, target_length]
      target_mask: 1 on real target tokens.  # float32 [batch, target_length]
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
    decoder_inputs = np.full((batch_size, target_length), self.pad_id, np.int32)
    targets = np.full((batch_size, target_length), self.pad_id, np.int32)
    input_mask = np.zeros((batch_size, source_length), np.int32)
    target_mask = np.zeros((batch_size, target_length), np.float32)
    for row, example in enumerate(examples):
      if self.overlong == 'error':
        self.check_length(example, row)
      real_source, real_target = self.lengths(example)
      if real_source > source_length or real_target > target_length:
        raise ValueError(
            f'row {row} needs lengths ({real_source}, {real_target}) but the'
            f' batch was asked for ({source_length}, {target_length})'
        )
      source_ids = list(example['src_ids'][: real_source - 1])
      target_ids = list(example['tgt_ids'][: real_target - 1])
      inputs[row, :real_source] = source_ids + [self.eos_id]
      input_mask[row, :real_source] = 1
      decoder_inputs[row, :real_target] = [self.decoder_start_id] + target_ids
      targets[row, :real_target] = target_ids + [self.eos_id]
      target_mask[row, :real_target] = 1.0
    return {
        'inputs': inputs,
        'input_mask': input_mask,
        'decoder_inputs': decoder_inputs,
        'targets': targets,
        'target_mask': target_mask,
        'example_mask': np.ones((batch_size,), np.float32),
    }
