"""Autoregressive sampling: greedy, temperature, top-k and top-p.

Every sampler of the project sees a model only through

    tokens_to_logits(params, ids, cache) -> (logits, cache)

where `ids` int32 [batch, length] are the next input tokens (one per row
here), `cache` is whatever state the model threads (a KV cache, or None) and
`logits` float32 [batch, length, vocab] score the token after each input
([batch, vocab] is accepted for length 1). Params travel as an argument, not
in a closure, so that two-model decoders (speculative, contrastive) pass
both as plain values. `model_steps` builds these functions (and the prefill
that produces `cache` and the first input token) for the model families.

`sample_decode` is the one token-by-token loop: a `lax.while_loop` over
static shapes, so it jits, that stops once every row has finished (EOS or a
stop sequence, both kept in the output) and fills the rest with `pad_id`.
"""

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.decoding import processors as processors_lib

TokensToLogits = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]


def logits_per_position(logits: jax.Array) -> jax.Array:
  """A `tokens_to_logits` output as [batch, length, vocab].

  Args:
    logits: float [batch, length, vocab], or [batch, vocab] for one token.

  Returns:
    float32 [batch, length, vocab].
  """
  logits = jnp.asarray(logits, jnp.float32)
  return logits[:, None, :] if logits.ndim == 2 else logits


def select_tokens(
    logits: jax.Array,
    rng: jax.Array | None,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
) -> jax.Array:
  """Greedy choice (temperature 0) or a sample from the filtered logits.

  Args:
    logits: float [..., vocab].
    rng: PRNG key; unused when greedy.
    temperature: 0 for argmax, else the sampling temperature.
    top_k: keep the k best before sampling (0: all).
    top_p: keep the nucleus of mass p before sampling (1: all).

  Returns:
    int32 [...].
  """
  if temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  filtered = processors_lib.filter_logits(
      logits, temperature=temperature, top_k=top_k, top_p=top_p
  )
  return jax.random.categorical(rng, filtered, axis=-1).astype(jnp.int32)


def sample_decode(
    tokens_to_logits: TokensToLogits,
    params: Any,
    cache: Any,
    start_ids: jax.Array,
    *,
    max_length: int,
    eos_id: int | None,
    pad_id: int,
    rng: jax.Array | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    processors: Sequence[processors_lib.LogitsProcessor] = (),
    stop_sequences: jax.Array | None = None,
) -> jax.Array:
  """Generates up to `max_length` tokens per row, one model call per token.

  Args:
    tokens_to_logits: the model's step function (see the module docstring).
    params: passed through to `tokens_to_logits`.
    cache: the state `tokens_to_logits` threads (holding everything before
      `start_ids`), or None.
    start_ids: int32 [batch], each row's last input token (the last prompt
      token, or the decoder start token); not part of the output.
    max_length: number of tokens to generate at most (static).
    eos_id: a row stops after emitting this token (kept); None: no EOS.
    pad_id: fills each row after it stopped.
    rng: PRNG key; needed unless `temperature` is 0.
    temperature: 0 decodes greedily; otherwise divides the logits.
    top_k: sample among the k best tokens (0: all).
    top_p: sample from the nucleus of mass p (1: all).
    processors: logits processors applied first, in order (constraints,
      min_length, repetition penalty; see `processors`).
    stop_sequences: int32 [num_stops, stop_length] or [batch, num_stops,
      stop_length] left-padded with -1 (`processors.stop_sequences_array`);
      a row stops once its output ends with one of them (kept).

  Returns:
    int32 [batch, max_length]: the generated tokens, `pad_id` after each
    row's stop. The loop ends as soon as every row has stopped.

  Raises:
    UserInputError: on bad sampling settings or a missing rng.
  """
  processors_lib.check_sampling(temperature, top_k, top_p)
  if temperature > 0 and rng is None:
    raise errors.UserInputError(
        f'sampling at temperature={temperature} needs an rng; pass rng= or'
        ' set temperature=0 for greedy decoding'
    )
  batch_size = start_ids.shape[0]
  if rng is None:
    rng = jax.random.key(0)  # Unused: greedy.

  def not_done(state):
    step, _, _, _, finished, _ = state
    return (step < max_length) & ~jnp.all(finished)

  def decode_step(state):
    step, last_ids, cache, output, finished, rng = state
    logits, cache = tokens_to_logits(params, last_ids[:, None], cache)
    logits = logits_per_position(logits)[:, -1]  # [batch, vocab]
    logits = processors_lib.apply_processors(processors, logits, output, step)
    rng, step_rng = jax.random.split(rng)
    next_ids = select_tokens(
        logits, step_rng, temperature=temperature, top_k=top_k, top_p=top_p
    )  # [batch]
    next_ids = jnp.where(finished, pad_id, next_ids)
    output = output.at[:, step].set(next_ids)
    if eos_id is not None:
      finished |= next_ids == eos_id
    if stop_sequences is not None:
      finished |= processors_lib.stop_sequence_hit(
          output, step + 1, stop_sequences
      )
    return step + 1, next_ids, cache, output, finished, rng

  initial_state = (
      jnp.zeros((), jnp.int32),
      jnp.asarray(start_ids, jnp.int32),
      cache,
      jnp.full((batch_size, max_length), pad_id, jnp.int32),
      jnp.zeros((batch_size,), jnp.bool_),
      rng,
  )
  output = jax.lax.while_loop(not_done, decode_step, initial_state)[3]
  return output
