"""Logits processors, sampling masks and stop sequences.

A logits processor rewrites next-token scores from what was generated so
far: `processor(logits, tokens, step) -> logits`, with logits float32
[batch, vocab], `tokens` int32 [batch, max_length] (the generated tokens,
`pad_id` where none yet) and `step` the number generated so far (a traced
int32 scalar). Constraints are processors that set forbidden tokens to -inf:
`allowed_tokens` turns any mask function into one (a prefix trie over a
knowledge base's names is such a function), `min_length` forbids EOS early.

The sampling transforms (`top_k_mask`, `top_p_mask`, `filter_logits`) depend
on the logits alone, so speculative and contrastive decoding can apply them
at every drafted position too.

Stop sequences are token id arrays [num_stops, stop_length] or, per row,
[batch, num_stops, stop_length], left-padded with `STOP_PAD` (-1);
`stop_sequence_hit` reports the rows whose output ends with one of theirs.
"""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors

LogitsProcessor = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
# Left padding of stop sequences; matches no token.
STOP_PAD = -1


def apply_processors(
    processors: Sequence[LogitsProcessor],
    logits: jax.Array,
    tokens: jax.Array,
    step: jax.Array,
) -> jax.Array:
  """Applies `processors` in order.

  Args:
    processors: logits processors (see the module docstring).
    logits: float32 [batch, vocab].
    tokens: int32 [batch, max_length], generated so far.
    step: int32 scalar, the number of tokens generated so far.

  Returns:
    float32 [batch, vocab].
  """
  for processor in processors:
    logits = processor(logits, tokens, step)
  return logits


def allowed_tokens(
    allowed_fn: Callable[[jax.Array, jax.Array], jax.Array],
) -> LogitsProcessor:
  """A processor that keeps only the tokens `allowed_fn` allows.

  Args:
    allowed_fn: (tokens int32 [batch, max_length], step int32 scalar) ->
      bool [batch, vocab], True where the next token may be emitted. Each row
      must allow at least one token (e.g. EOS at the end of a constraint).

  Returns:
    The processor; forbidden tokens get -inf.
  """

  def processor(logits, tokens, step):
    return jnp.where(allowed_fn(tokens, step), logits, -jnp.inf)

  return processor


def min_length(eos_id: int, length: int) -> LogitsProcessor:
  """A processor that forbids EOS among the first `length` tokens.

  Args:
    eos_id: the end-of-sequence token.
    length: the fewest tokens a row generates before its EOS.

  Returns:
    The processor.
  """

  def processor(logits, tokens, step):
    del tokens
    is_eos = jnp.arange(logits.shape[-1]) == eos_id
    return jnp.where(is_eos & (step < length), -jnp.inf, logits)

  return processor


def repetition_penalty(penalty: float) -> LogitsProcessor:
  """CTRL's repetition penalty over the generated tokens.

  Scores of tokens already generated are divided by `penalty` when positive
  and multiplied by it when negative (the prompt is not seen).

  Args:
    penalty: > 0; above 1 discourages repeats.

  Returns:
    The processor.

  Raises:
    UserInputError: for a penalty <= 0.
  """
  if penalty <= 0:
    raise errors.UserInputError(
        f'repetition_penalty={penalty} must be positive (1 disables it)'
    )

  def processor(logits, tokens, step):
    batch, vocab = logits.shape
    written = jnp.arange(tokens.shape[1]) < step  # [max_length]
    # Unwritten positions point past the vocabulary and are dropped.
    indices = jnp.where(written, tokens, vocab)  # [batch, max_length]
    seen = (
        jnp.zeros((batch, vocab), jnp.bool_)
        .at[jnp.arange(batch)[:, None], indices]
        .set(True, mode='drop')
    )  # [batch, vocab]
    penalised = jnp.where(logits > 0, logits / penalty, logits * penalty)
    return jnp.where(seen, penalised, logits)

  return processor


def top_k_mask(logits: jax.Array, k: int) -> jax.Array:
  """The tokens whose score is among the `k` highest (ties kept).

  Args:
    logits: float [..., vocab].
    k: how many to keep (static); 0 keeps everything.

  Returns:
    bool [..., vocab].
  """
  if k <= 0 or k >= logits.shape[-1]:
    return jnp.ones(logits.shape, jnp.bool_)
  kth_largest = jax.lax.top_k(logits, k)[0][..., -1:]  # [..., 1]
  return logits >= kth_largest


def top_p_mask(logits: jax.Array, p: float) -> jax.Array:
  """The nucleus: the fewest most likely tokens whose mass reaches `p`.

  A token is kept when the probability mass of the tokens strictly more
  likely than it is below `p`, so the most likely token is always kept
  (ties at the boundary are kept together).

  Args:
    logits: float [..., vocab].
    p: the mass to cover, in (0, 1]; 1 keeps everything.

  Returns:
    bool [..., vocab].
  """
  if p >= 1.0:
    return jnp.ones(logits.shape, jnp.bool_)
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  sorted_probs = -jnp.sort(-probs, axis=-1)  # [..., vocab], descending
  mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
  kept = mass_before < p  # A prefix of the sorted order.
  smallest_kept = jnp.min(
      jnp.where(kept, sorted_probs, jnp.inf), axis=-1, keepdims=True
  )  # [..., 1]
  return probs >= smallest_kept


def filter_logits(
    logits: jax.Array,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
  """Temperature, then top-k, then top-p (as Hugging Face orders them).

  Args:
    logits: float [..., vocab].
    temperature: > 0, divides the logits.
    top_k: keep the k best (0: all).
    top_p: keep the nucleus of mass p (1: all).

  Returns:
    float32 [..., vocab], -inf outside the kept tokens.
  """
  logits = logits.astype(jnp.float32) / temperature
  logits = jnp.where(top_k_mask(logits, top_k), logits, -jnp.inf)
  return jnp.where(top_p_mask(logits, top_p), logits, -jnp.inf)


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
  """Raises UserInputError for an unusable temperature, top_k or top_p."""
  if temperature < 0:
    raise errors.UserInputError(
        f'temperature={temperature} must be >= 0 (0 means greedy)'
    )
  if top_k < 0:
    raise errors.UserInputError(f'top_k={top_k} must be >= 0 (0 disables it)')
  if not 0.0 < top_p <= 1.0:
    raise errors.UserInputError(
        f'top_p={top_p} must be in (0, 1] (1 disables it)'
    )


def stop_sequences_array(
    stop_sequences: Sequence[Sequence[int]] | Sequence[Sequence[Sequence[int]]],
) -> np.ndarray:
  """Packs token-id stop sequences into the left-padded array form.

  Args:
    stop_sequences: a list of stop sequences shared by all rows, or one such
      list per row (rows may have different numbers of stops).

  Returns:
    int32 [num_stops, stop_length] or [batch, num_stops, stop_length],
    left-padded with STOP_PAD.

  Raises:
    UserInputError: on an empty stop sequence or a negative token id.
  """
  per_row = (
      bool(stop_sequences)
      and bool(stop_sequences[0])
      and not isinstance(stop_sequences[0][0], (int, np.integer))
  )
  rows = stop_sequences if per_row else [stop_sequences]
  for row in rows:
    for stop in row:
      if not stop or min(stop) < 0:
        raise errors.UserInputError(
            f'stop sequence {list(stop)} must be non-empty token ids >= 0'
        )
  num_stops = max(1, max(len(row) for row in rows))
  stop_length = max([len(stop) for row in rows for stop in row] or [1])
  packed = np.full((len(rows), num_stops, stop_length), STOP_PAD, np.int32)
  for r, row in enumerate(rows):
    for s, stop in enumerate(row):
      packed[r, s, stop_length - len(stop) :] = stop
  return packed if per_row else packed[0]


def stop_sequence_hit(
    tokens: jax.Array, end: jax.Array, stop_sequences: jax.Array
) -> jax.Array:
  """Whether each row's tokens [.., end) end with one of its stop sequences.

  Args:
    tokens: int32 [batch, max_length].
    end: int32 scalar or [batch], one past the last token to look at.
    stop_sequences: int32 [num_stops, stop_length] or [batch, num_stops,
      stop_length], left-padded with STOP_PAD (see `stop_sequences_array`).

  Returns:
    bool [batch].
  """
  batch = tokens.shape[0]
  stops = jnp.broadcast_to(
      stop_sequences, (batch,) + stop_sequences.shape[-2:]
  )  # [batch, num_stops, stop_length]
  stop_length = stops.shape[-1]
  positions = (
      jnp.reshape(end, (-1, 1)) - stop_length + jnp.arange(stop_length)
  )  # [batch or 1, stop_length]
  positions = jnp.broadcast_to(positions, (batch, stop_length))
  window = jnp.take_along_axis(tokens, jnp.maximum(positions, 0), axis=1)
  # Before the first token nothing matches (a real stop token is >= 0).
  window = jnp.where(positions >= 0, window, STOP_PAD - 1)  # [batch, stop_len]
  matches = (stops == STOP_PAD) | (stops == window[:, None, :])
  is_real = jnp.any(stops != STOP_PAD, axis=-1)  # [batch, num_stops]
  return jnp.any(jnp.all(matches, axis=-1) & is_real, axis=-1)
