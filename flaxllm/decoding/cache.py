"""Row-wise operations on decoding state: roll back, repeat, gather rows.

A sampler threads an opaque `cache` pytree through `tokens_to_logits`. For
the project's models it holds linen 'cache' collections, in which every
self-attention layer keeps `cache_index` and the decoder keeps
`position_index`, both int32 [batch]: the number of tokens of each row
already cached (see `flaxllm.models.layers.MultiHeadAttention`). Keys and
values at or past a row's index are masked out, so moving the index back
discards tokens (`set_lengths`): speculative decoding rolls its two models
back to the accepted prefix this way, and a ragged prompt batch is prefilled
at its padded width and then rolled back to each row's length.

Beam search needs whole rows copied (`repeat_rows`, `gather_rows`). The batch
axis of a leaf is 0, except under a scanned layer stack (a 'layers' key in
its path, see `flaxllm.models.decoder`) where the layer axis comes first.
Leaves without that batch axis (scalars, shared tables) are left alone.
"""

from typing import Any

import jax
import jax.numpy as jnp

# Leaves holding per-row cache lengths.
LENGTH_NAMES = ('cache_index', 'position_index')
# The key under which `nn.scan` stacks layers (and their caches).
SCANNED_LAYERS_NAME = 'layers'


def _key_names(path: tuple[Any, ...]) -> list[str]:
  return [
      str(getattr(entry, 'key', getattr(entry, 'name', ''))) for entry in path
  ]


def _is_length(path: tuple[Any, ...]) -> bool:
  names = _key_names(path)
  return bool(names) and names[-1] in LENGTH_NAMES


def _batch_axis(path: tuple[Any, ...]) -> int:
  """0, or 1 under a scanned layer stack (layers first)."""
  return 1 if SCANNED_LAYERS_NAME in _key_names(path) else 0


def set_lengths(cache: Any, lengths: jax.Array) -> Any:
  """Sets how many tokens of each row the cache holds (rollback).

  Args:
    cache: a decoding cache (see the module docstring).
    lengths: int [batch], the new number of cached tokens per row; at most
      what each row holds now to roll back (a larger value would expose
      stale or empty positions).

  Returns:
    The cache with every `cache_index` and `position_index` set to `lengths`.
    Keys and values are untouched: positions at or past the new length are
    masked out and overwritten by the row's next tokens.
  """
  lengths = jnp.asarray(lengths, jnp.int32)

  def visit(path, leaf):
    if _is_length(path):
      return jnp.broadcast_to(lengths, leaf.shape).astype(leaf.dtype)
    return leaf

  return jax.tree_util.tree_map_with_path(visit, cache)


def get_lengths(cache: Any) -> jax.Array:
  """The number of tokens each row holds, int32 [batch].

  Args:
    cache: a decoding cache with at least one `position_index` or
      `cache_index` leaf.

  Returns:
    The first such leaf's per-row lengths (all agree after `set_lengths`).

  Raises:
    ValueError: if the cache has no length leaf.
  """
  for path, leaf in jax.tree_util.tree_flatten_with_path(cache)[0]:
    if _is_length(path):
      return leaf[(0,) * (leaf.ndim - 1)]  # The first layer's, if stacked.
  raise ValueError('the cache has no cache_index or position_index leaf')


def _map_rows(cache: Any, batch_size: int, row_fn) -> Any:
  """Applies `row_fn(leaf, axis)` to every leaf with a batch axis."""

  def visit(path, leaf):
    axis = _batch_axis(path)
    if jnp.ndim(leaf) <= axis or jnp.shape(leaf)[axis] != batch_size:
      return leaf
    return row_fn(leaf, axis)

  return jax.tree_util.tree_map_with_path(visit, cache)


def repeat_rows(cache: Any, batch_size: int, repeats: int) -> Any:
  """Repeats each row `repeats` times in place: rows b*repeats .. + repeats-1.

  Args:
    cache: a decoding cache of `batch_size` rows.
    batch_size: the number of rows (identifies the batch axis).
    repeats: copies per row (e.g. beams).

  Returns:
    The cache with batch_size * repeats rows.
  """
  return _map_rows(
      cache,
      batch_size,
      lambda leaf, axis: jnp.repeat(leaf, repeats, axis=axis),
  )


def gather_rows(cache: Any, batch_size: int, indices: jax.Array) -> Any:
  """Takes rows `indices` of every batched leaf (beam reordering).

  Args:
    cache: a decoding cache of `batch_size` rows.
    batch_size: the number of rows (identifies the batch axis).
    indices: int [batch_size], the source row of each output row.

  Returns:
    The reordered cache.
  """
  return _map_rows(
      cache,
      batch_size,
      lambda leaf, axis: jnp.take(leaf, indices, axis=axis),
  )
