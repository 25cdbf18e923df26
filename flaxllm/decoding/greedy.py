"""Greedy decoding: emit the most likely next token until eos or max_length.

Like every sampler of the project it only sees the model through
`tokens_to_logits(params, ids, cache) -> (logits, cache)`, where `ids`
int32 [batch, 1] is the last token and `logits` float32 [batch, vocab] scores
the next one. Params travel as an argument (not a closure) so that decoders
over two models (speculative, contrastive) pass both as plain values. The loop is a `lax.while_loop` over static shapes, so it jits.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

TokensToLogits = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]


def greedy_decode(
    tokens_to_logits: TokensToLogits,
    params: Any,
    cache: Any,
    start_ids: jax.Array,
    *,
    max_length: int,
    eos_id: int,
    pad_id: int,
) -> jax.Array:
  """Decodes greedily from `start_ids`.

  Args:
    tokens_to_logits: the model's step function (see the module docstring).
    params: passed through to `tokens_to_logits`.
    cache: the model state `tokens_to_logits` threads through (a KV cache, or
      anything else, or None).
    start_ids: int32 [batch], the first input token of each row (not part of
      the output).
    max_length: number of tokens to generate at most (static).
    eos_id: a row stops after emitting this token (which is kept).
    pad_id: fills each row after its eos.

  Returns:
    int32 [batch, max_length]: the generated tokens. The loop stops early once
    every row has emitted eos; the remaining positions hold `pad_id`.
  """
  batch_size = start_ids.shape[0]

  def not_done(state):
    step, _, _, _, finished = state
    return (step < max_length) & ~jnp.all(finished)

  def decode_step(state):
    step, last_ids, cache, output, finished = state
    logits, cache = tokens_to_logits(params, last_ids[:, None], cache)
    next_ids = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # [batch]
    next_ids = jnp.where(finished, pad_id, next_ids)
    output = output.at[:, step].set(next_ids)
    finished |= next_ids == eos_id
    return step + 1, next_ids, cache, output, finished

  initial_state = (
      jnp.zeros((), jnp.int32),
      start_ids.astype(jnp.int32),
      cache,
      jnp.full((batch_size, max_length), pad_id, jnp.int32),
      jnp.zeros((batch_size,), jnp.bool_),
  )
  _, _, _, output, _ = jax.lax.while_loop(not_done, decode_step, initial_state)
  return output
