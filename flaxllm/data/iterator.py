"""Deterministic, resumable, per-host sharded batch iteration.

Training order is a pure function of (seed, epoch): epoch e permutes the
examples with `np.random.default_rng([seed, e])` and cuts the permutation
into global batches (the remainder is dropped). Global batch b of epoch e is
the same set of examples whatever the number of processes; process p yields
rows [p * local, (p + 1) * local) of it. The iterator state is therefore just
(epoch, batch in epoch), and a run can resume on a different number of hosts
and still see exactly the data order it would have seen (elastic resume).

Optional length bucketing groups examples of similar length: windows of
`bucket_window` global batches of the permuted order are sorted by length and
cut into batches, whose order is then shuffled with the same epoch rng (unless
shuffle is off). Each global batch is padded to the smallest bucket boundary
that holds its longest example, so every host builds the same shape and XLA
compiles one step per boundary pair.

`eval_batches` is the finite, in-order counterpart for evaluation: its last
batch is topped up with empty rows so shapes never change.
"""

import bisect
from typing import Callable, Iterator, Sequence

import numpy as np

from flaxllm.data.collators import pad_rows
from flaxllm.errors import UserInputError


def _local_batch_size(
    global_batch_size: int, process_index: int, process_count: int
) -> int:
  """Checks the sharding arguments; returns the rows per process."""
  if global_batch_size <= 0:
    raise UserInputError(
        f'global batch size must be positive, got {global_batch_size}'
    )
  if not 0 <= process_index < process_count:
    raise ValueError(f'process {process_index} of {process_count} is invalid')
  if global_batch_size % process_count:
    raise UserInputError(
        f'global batch size {global_batch_size} does not split over'
        f' {process_count} processes; make it a multiple of {process_count}'
    )
  return global_batch_size // process_count


class BatchIterator:
  """Infinite training batches over epochs; see the module docstring.

  Attributes:
    steps_per_epoch: global batches per epoch (the remainder is dropped).
  """

  def __init__(
      self,
      examples: Sequence[dict],
      *,
      global_batch_size: int,
      collate: Callable[..., dict[str, np.ndarray]],
      seed: int,
      shuffle: bool = True,
      process_index: int = 0,
      process_count: int = 1,
      bucket_boundaries: Sequence[int] | None = None,
      length_fn: Callable[[dict], tuple[int, int]] | None = None,
      bucket_window: int = 64,
  ):
    """Sets up the iteration; no batch is built yet.

    Args:
      examples: the training examples, as `collate` takes them.
      global_batch_size: examples per step over all processes.
      collate: builds a batch from a list of examples; with bucketing it is
        called as collate(examples, source_length, target_length).
      seed: a non-negative integer fixing the order of every epoch.
      shuffle: False keeps the file order in every epoch.
      process_index: this process.
      process_count: the number of processes.
      bucket_boundaries: padded lengths to choose from, enabling bucketing.
      length_fn: (source length, target length) of an example; required
        with bucket_boundaries.
      bucket_window: how many global batches are sorted by length together.

    Raises:
      UserInputError: the dataset holds less than one global batch, or the
        batch does not split over the processes.
    """
    self._local_batch_size = _local_batch_size(
        global_batch_size, process_index, process_count
    )
    if not isinstance(seed, (int, np.integer)) or seed < 0:
      raise UserInputError(f'data seed must be a non-negative int, got {seed}')
    self.steps_per_epoch = len(examples) // global_batch_size
    if self.steps_per_epoch == 0:
      raise UserInputError(
          f'the dataset has {len(examples)} examples, fewer than one global'
          f' batch of {global_batch_size}; lower the batch size or add data'
      )
    if bucket_boundaries is not None and length_fn is None:
      raise ValueError('bucket_boundaries needs a length_fn')
    if bucket_window <= 0:
      raise ValueError(f'bucket_window must be positive, got {bucket_window}')
    self._examples = examples
    self._global_batch_size = global_batch_size
    self._collate = collate
    self._seed = int(seed)
    self._shuffle = shuffle
    self._process_index = process_index
    self._boundaries = sorted(bucket_boundaries or ())
    self._bucket_window = bucket_window
    self._lengths = None  # [examples, 2]: (source, target) lengths.
    if bucket_boundaries is not None:
      self._lengths = np.array([length_fn(e) for e in examples], np.int64)
    self._epoch = 0
    self._batch_in_epoch = 0
    self._plan_epoch = None  # The epoch whose batches _plan holds.
    self._plan = None  # [steps_per_epoch, global_batch_size] example indices.

  def _epoch_batches(self, epoch: int) -> np.ndarray:
    """The example indices of every global batch of an epoch.

    Args:
      epoch: the epoch.

    Returns:
      Example indices.  # [steps_per_epoch, global_batch_size]
    """
    rng = np.random.default_rng([self._seed, epoch])
    num_examples = len(self._examples)
    if self._shuffle:
      order = rng.permutation(num_examples)
    else:
      order = np.arange(num_examples)
    used = self.steps_per_epoch * self._global_batch_size
    batches = order[:used].reshape(self.steps_per_epoch, -1)
    if self._lengths is None:
      return batches
    window_size = self._bucket_window * self._global_batch_size
    sorted_order = []
    for start in range(0, used, window_size):
      window = order[start : min(start + window_size, used)]
      source_lengths, target_lengths = self._lengths[window].T
      # lexsort sorts by the last key first: source length, then target.
      sorted_order.append(window[np.lexsort((target_lengths, source_lengths))])
    batches = np.concatenate(sorted_order).reshape(self.steps_per_epoch, -1)
    if self._shuffle:
      batches = batches[rng.permutation(self.steps_per_epoch)]
    return batches

  def _padded_lengths(self, indices: np.ndarray) -> tuple[int | None, ...]:
    """The (source, target) lengths to pad a global batch to.

    Args:
      indices: the global batch's example indices.  # [global_batch_size]

    Returns:
      For each side the smallest boundary holding the batch's longest
      example, or None (the collator's maximum) when no boundary does.
    """
    padded = []
    for longest in self._lengths[indices].max(axis=0):
      position = bisect.bisect_left(self._boundaries, longest)
      fits = position < len(self._boundaries)
      padded.append(self._boundaries[position] if fits else None)
    return tuple(padded)

  def __iter__(self) -> 'BatchIterator':
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    """Returns this process's rows of the next global batch."""
    if self._plan_epoch != self._epoch:
      self._plan = self._epoch_batches(self._epoch)
      self._plan_epoch = self._epoch
    global_indices = self._plan[self._batch_in_epoch]
    start = self._process_index * self._local_batch_size
    local_indices = global_indices[start : start + self._local_batch_size]
    local_examples = [self._examples[index] for index in local_indices]
    if self._lengths is None:
      batch = self._collate(local_examples)
    else:
      batch = self._collate(
          local_examples, *self._padded_lengths(global_indices)
      )
    self._batch_in_epoch += 1
    if self._batch_in_epoch == self.steps_per_epoch:
      self._epoch += 1
      self._batch_in_epoch = 0
    return batch

  def get_state(self) -> dict:
    """Returns the position as a JSON-serialisable dict.

    The state does not depend on the process index or count, so any process
    layout can resume from it.
    """
    return {
        'epoch': self._epoch,
        'batch_in_epoch': self._batch_in_epoch,
        'seed': self._seed,
        'num_examples': len(self._examples),
        'global_batch_size': self._global_batch_size,
    }

  def set_state(self, state: dict) -> None:
    """Moves to a position saved by `get_state`.

    Args:
      state: a dict from `get_state`, possibly of another process layout.

    Raises:
      UserInputError: the state belongs to another seed, dataset or global
        batch size, so the saved order cannot be continued.
    """
    for key, current in (
        ('seed', self._seed),
        ('num_examples', len(self._examples)),
        ('global_batch_size', self._global_batch_size),
    ):
      if key in state and state[key] != current:
        raise UserInputError(
            f'the data iterator was saved with {key}={state[key]} but this'
            f' run has {key}={current}; restore it or start a new workdir'
        )
    batch_in_epoch = int(state['batch_in_epoch'])
    if not 0 <= batch_in_epoch < self.steps_per_epoch:
      raise ValueError(f'batch_in_epoch {batch_in_epoch} is out of range')
    self._epoch = int(state['epoch'])
    self._batch_in_epoch = batch_in_epoch


def eval_batches(
    examples: Sequence[dict],
    *,
    global_batch_size: int,
    collate: Callable[..., dict[str, np.ndarray]],
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """One in-order pass over `examples`, in batches of a fixed shape.

  Global batch b holds examples [b * global, (b + 1) * global); process p
  gets rows [p * local, (p + 1) * local) of it. The last batch is topped up
  with `pad_rows`, and `example_mask` is 0 on the padding rows.

  Args:
    examples: the evaluation examples.
    global_batch_size: examples per step over all processes.
    collate: builds a batch from a list of examples (an empty list
      included).
    process_index: this process.
    process_count: the number of processes.

  Yields:
    This process's rows of each global batch, local_batch_size rows each.
  """
  local_batch_size = _local_batch_size(
      global_batch_size, process_index, process_count
  )
  for batch_start in range(0, len(examples), global_batch_size):
    start = batch_start + process_index * local_batch_size
    local_examples = examples[start : start + local_batch_size]
    yield pad_rows(collate(list(local_examples)), local_batch_size)
