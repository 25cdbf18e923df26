"""Batched beam search with a length penalty.

Each row keeps `num_beams` alive hypotheses and the `num_beams` best finished
ones. At every step the alive beams are extended by every token; of the
2 * num_beams best extensions (by summed log-probability), those ending in
EOS (or reaching `max_length`) compete for the finished set with score

    log p(y) / len(y) ** length_penalty

(len counts the generated tokens, EOS included), and the best non-EOS ones
become the new alive beams, their caches gathered along. The loop stops when
no alive beam can still beat the worst kept finished one (the bound of
`_row_done`), which never changes the result; otherwise at `max_length`.

Logits processors see log-probabilities (as in Hugging Face), so a
constraint's allowed tokens keep their unnormalised scores.
"""

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.decoding import cache as cache_lib
from flaxllm.decoding import processors as processors_lib
from flaxllm.decoding import sampling


class BeamSearchOutput(NamedTuple):
  """Finished hypotheses, best first.

  Attributes:
    sequences: int32 [batch, num_beams, max_length], `pad_id` after EOS.
    scores: float32 [batch, num_beams], length-penalised log-probabilities
      (-inf for slots no hypothesis filled).
  """

  sequences: jax.Array
  scores: jax.Array


class _State(NamedTuple):
  step: jax.Array  # int32 scalar: tokens generated so far
  alive_sequences: jax.Array  # [batch, beams, max_length]
  alive_log_probs: jax.Array  # [batch, beams]
  last_ids: jax.Array  # [batch, beams]
  cache: Any  # batch * beams rows
  finished_sequences: jax.Array  # [batch, beams, max_length]
  finished_scores: jax.Array  # [batch, beams]


def _row_done(
    state: _State, max_length: int, length_penalty: float
) -> jax.Array:
  """Rows whose finished set no alive beam can improve, bool [batch].

  Log-probabilities only fall as a hypothesis grows, so an alive beam of
  log-probability l <= 0 ends with a score of at most l / max(len ** alpha)
  over the lengths still possible.
  """
  shortest = (state.step + 1).astype(jnp.float32)
  largest_penalty = jnp.maximum(
      shortest**length_penalty, float(max_length) ** length_penalty
  )
  best_alive = jnp.max(state.alive_log_probs, axis=1) / largest_penalty
  return jnp.min(state.finished_scores, axis=1) >= best_alive


def beam_search(
    tokens_to_logits: sampling.TokensToLogits,
    params: Any,
    cache: Any,
    start_ids: jax.Array,
    *,
    num_beams: int,
    max_length: int,
    eos_id: int,
    pad_id: int,
    length_penalty: float = 1.0,
    processors: Sequence[processors_lib.LogitsProcessor] = (),
) -> BeamSearchOutput:
  """Beam search from `start_ids`.

  Args:
    tokens_to_logits: the model's step function (see `sampling`).
    params: passed through to `tokens_to_logits`.
    cache: the state for `batch` rows (as a prefill returns it); each row is
      repeated num_beams times inside.
    start_ids: int32 [batch], each row's last input token.
    num_beams: hypotheses kept per row (static).
    max_length: tokens to generate at most (static).
    eos_id: ends a hypothesis (kept in it).
    pad_id: fills hypotheses after EOS.
    length_penalty: alpha of score = log p / len ** alpha (a float or a
      traced scalar); 0 ranks by plain log-probability, larger values
      favour longer hypotheses.
    processors: applied to the log-probabilities of every alive beam; they
      may lower scores (masks, penalties) but not raise them above 0.

  Returns:
    The finished hypotheses (`BeamSearchOutput`); hypotheses still alive at
    `max_length` finish there.

  Raises:
    UserInputError: for num_beams < 1.
  """
  if num_beams < 1:
    raise errors.UserInputError(f'num_beams={num_beams} must be >= 1')
  batch_size = start_ids.shape[0]
  flat_size = batch_size * num_beams
  empty = jnp.full((batch_size, num_beams, max_length), pad_id, jnp.int32)
  initial = _State(
      step=jnp.zeros((), jnp.int32),
      alive_sequences=empty,
      # One live beam per row at first, so the others do not duplicate it.
      alive_log_probs=jnp.where(jnp.arange(num_beams) == 0, 0.0, -jnp.inf)
      * jnp.ones((batch_size, 1)),
      last_ids=jnp.repeat(
          jnp.asarray(start_ids, jnp.int32)[:, None], num_beams, axis=1
      ),
      cache=cache_lib.repeat_rows(cache, batch_size, num_beams),
      finished_sequences=empty,
      finished_scores=jnp.full((batch_size, num_beams), -jnp.inf),
  )

  def not_done(state: _State) -> jax.Array:
    return (state.step < max_length) & ~jnp.all(
        _row_done(state, max_length, length_penalty)
    )

  def extend(state: _State) -> _State:
    step = state.step
    logits, cache = tokens_to_logits(
        params, state.last_ids.reshape(flat_size, 1), state.cache
    )
    log_probs = jax.nn.log_softmax(
        sampling.logits_per_position(logits)[:, -1], axis=-1
    )  # [batch * beams, vocab]
    log_probs = processors_lib.apply_processors(
        processors,
        log_probs,
        state.alive_sequences.reshape(flat_size, max_length),
        step,
    )
    vocab = log_probs.shape[-1]
    candidates = (
        state.alive_log_probs[:, :, None]
        + log_probs.reshape(batch_size, num_beams, vocab)
    ).reshape(batch_size, num_beams * vocab)
    candidate_log_probs, flat_index = jax.lax.top_k(
        candidates, min(2 * num_beams, num_beams * vocab)
    )  # [batch, candidates]
    source_beam = flat_index // vocab
    tokens = (flat_index % vocab).astype(jnp.int32)
    sequences = (
        jnp.take_along_axis(
            state.alive_sequences, source_beam[:, :, None], axis=1
        )
        .at[:, :, step]
        .set(tokens)
    )  # [batch, candidates, max_length]
    ends = (tokens == eos_id) | (step == max_length - 1)

    # Finished: merge the ending candidates into the kept set.
    penalty = (step + 1).astype(jnp.float32) ** length_penalty
    scores = jnp.where(ends, candidate_log_probs / penalty, -jnp.inf)
    merged_scores = jnp.concatenate([state.finished_scores, scores], axis=1)
    merged_sequences = jnp.concatenate(
        [state.finished_sequences, sequences], axis=1
    )
    finished_scores, keep = jax.lax.top_k(merged_scores, num_beams)
    finished_sequences = jnp.take_along_axis(
        merged_sequences, keep[:, :, None], axis=1
    )

    # Alive: the best candidates that did not end.
    alive_log_probs, keep = jax.lax.top_k(
        jnp.where(ends, -jnp.inf, candidate_log_probs), num_beams
    )  # [batch, beams]
    rows = (
        jnp.arange(batch_size)[:, None] * num_beams
        + jnp.take_along_axis(source_beam, keep, axis=1)
    ).reshape(flat_size)
    return _State(
        step=step + 1,
        alive_sequences=jnp.take_along_axis(
            sequences, keep[:, :, None], axis=1
        ),
        alive_log_probs=alive_log_probs,
        last_ids=jnp.take_along_axis(tokens, keep, axis=1),
        cache=cache_lib.gather_rows(cache, flat_size, rows),
        finished_sequences=finished_sequences,
        finished_scores=finished_scores,
    )

  final = jax.lax.while_loop(not_done, extend, initial)
  return BeamSearchOutput(final.finished_sequences, final.finished_scores)
