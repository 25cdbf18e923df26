"""Greedy decoding: emit the most likely next token until eos or max_length.

The model is seen only through `tokens_to_logits(params, ids, cache) ->
(logits, cache)` (see `sampling`); greedy decoding is `sampling.sample_decode`
at temperature 0, kept under its own name for its callers.
"""

from typing import Any

import jax

from flaxllm.decoding import sampling

TokensToLogits = sampling.TokensToLogits


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
    tokens_to_logits: the model's step function (see `sampling`).
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
  return sampling.sample_decode(
      tokens_to_logits,
      params,
      cache,
      start_ids,
      max_length=max_length,
      eos_id=eos_id,
      pad_id=pad_id,
      temperature=0.0,
  )
