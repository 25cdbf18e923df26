"""Speculative decoding: a small draft model proposes, the target verifies.

Each round (Leviathan et al. 2023; Chen et al. 2023), per row:

1. The draft proposes gamma tokens x_1..x_gamma, x_i ~ q_i (argmax when
   greedy), one draft call each.
2. One target call on [last token, x_1..x_gamma] scores every position:
   p_1..p_{gamma+1}.
3. Scanning left to right, x_i is accepted with probability
   min(1, p_i(x_i) / q_i(x_i)) (greedy: iff x_i = argmax p_i). At the first
   rejection k a token is drawn from norm(max(0, p_k - q_k)) (greedy: argmax
   p_k); if all gamma are accepted, a bonus token from p_{gamma+1}. A round
   emits 1..gamma+1 tokens, distributed exactly as the target samples them.

`verification_fn` replaces p by any distribution computed from both models'
logits at the same position: speculative contrastive decoding
(`contrastive.speculative_contrastive_decode`) verifies against the
contrastive distribution that way. Its bonus distribution needs the draft's
logits after x_gamma, so when a row accepts all its drafts the draft runs
once more on x_gamma before the bonus is drawn; that call is the one the
next round would make to catch the draft cache up, so it costs nothing
extra. Plain speculative decoding runs it for the same reason.

Rows are ragged: each accepts its own number of drafts, and both models'
KV caches are rolled back per row by their length pointers
(`cache.set_lengths`) to the accepted prefix. With `adaptive_gamma` each row
keeps its own draft length: +2 after a round that accepted every draft, -1
(at least 1) after a rejection (Hugging Face's "heuristic" schedule); the
draft loop runs to the longest active row's length and the target always
verifies `gamma` (the static maximum) positions, ignoring the excess.

Both models follow the samplers' contract (see `sampling`) and must return
logits for every input position ([batch, length, vocab]); their caches
need `cache_length >= prompt width + max_length + gamma + 1`.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.decoding import cache as cache_lib
from flaxllm.decoding import processors as processors_lib
from flaxllm.decoding import sampling

# (target logits [..., vocab], draft logits [..., vocab]) -> the logits the
# drafts are verified against (before temperature, top-k and top-p).
VerificationFn = Callable[[jax.Array, jax.Array], jax.Array]

# Below this mass the residual max(0, p - q) is treated as empty (then p).
_RESIDUAL_EPSILON = 1e-9


class SpeculativeOutput(NamedTuple):
  """Generated tokens and per-row counters.

  Attributes:
    tokens: int32 [batch, max_length], `pad_id` after each row's EOS.
    num_tokens: int32 [batch], generated tokens (EOS included), at most
      max_length.
    accepted: int32 [batch], draft tokens accepted and emitted.
    target_calls: int32 [batch], target calls (rounds) while the row ran.
    draft_calls: int32 [batch], draft calls while the row ran.
    gamma: int32 [batch], each row's draft length after the last round.
  """

  tokens: jax.Array
  num_tokens: jax.Array
  accepted: jax.Array
  target_calls: jax.Array
  draft_calls: jax.Array
  gamma: jax.Array


class _State(NamedTuple):
  output: jax.Array  # [batch, max_length + gamma + 1]
  num_generated: jax.Array  # [batch]
  last_ids: jax.Array  # [batch], generated but not yet cached
  finished: jax.Array  # [batch], emitted EOS
  gamma: jax.Array  # [batch], current draft lengths
  target_cache: Any
  draft_cache: Any
  accepted: jax.Array  # [batch]
  target_calls: jax.Array  # [batch]
  draft_calls: jax.Array  # [batch]
  rng: jax.Array


class _Drafts(NamedTuple):
  tokens: jax.Array  # [batch, gamma + 1]; slot i holds x_{i+1}
  logits: jax.Array  # [batch, gamma + 1, vocab]; slot i scores x_{i+1}
  cache: Any


def _check(
    gamma: int,
    initial_gamma: int,
    temperature: float,
    top_k: int,
    top_p: float,
    rng: jax.Array | None,
) -> None:
  """Raises UserInputError on unusable settings."""
  if gamma < 1:
    raise errors.UserInputError(f'gamma={gamma} must be >= 1 draft tokens')
  if not 1 <= initial_gamma <= gamma:
    raise errors.UserInputError(
        f'initial_gamma={initial_gamma} must be in [1, gamma={gamma}]'
    )
  processors_lib.check_sampling(temperature, top_k, top_p)
  if temperature > 0 and rng is None:
    raise errors.UserInputError(
        f'sampling at temperature={temperature} needs an rng; pass rng= or'
        ' set temperature=0 for greedy decoding'
    )


def _write_rows(buffer: jax.Array, rows: jax.Array, starts: jax.Array):
  """Writes rows[b] into buffer[b] at column starts[b]."""
  return jax.vmap(
      lambda row, new, start: jax.lax.dynamic_update_slice(row, new, (start,))
  )(buffer, rows, starts)


def speculative_decode(
    target_fn: sampling.TokensToLogits,
    target_params: Any,
    target_cache: Any,
    draft_fn: sampling.TokensToLogits,
    draft_params: Any,
    draft_cache: Any,
    start_ids: jax.Array,
    *,
    max_length: int,
    eos_id: int | None,
    pad_id: int,
    gamma: int,
    adaptive_gamma: bool = False,
    initial_gamma: int | None = None,
    rng: jax.Array | None = None,
    temperature: float = 1.0,
    draft_temperature: float | None = None,
    top_k: int = 0,
    top_p: float = 1.0,
    verification_fn: VerificationFn | None = None,
) -> SpeculativeOutput:
  """Generates up to `max_length` tokens per row by draft-and-verify rounds.

  Args:
    target_fn: the target's step function; logits for every input position.
    target_params: the target's params.
    target_cache: the target's cache holding everything before `start_ids`
      (e.g. from `model_steps.decoder_prefill`), with per-row length leaves.
    draft_fn: the draft's step function.
    draft_params: the draft's params.
    draft_cache: the draft's cache over the same tokens.
    start_ids: int32 [batch], each row's last input token.
    max_length: tokens to generate at most (static).
    eos_id: a row stops after emitting it (kept); None: no EOS.
    pad_id: fills each row after it stopped.
    gamma: draft tokens per round (static), the maximum when adaptive.
    adaptive_gamma: per-row draft length, +2 on full acceptance, -1 on a
      rejection, within [1, gamma].
    initial_gamma: the draft length of the first round (default `gamma`).
    rng: PRNG key; needed unless `temperature` is 0.
    temperature: 0 for greedy speculative decoding (output equals the
      target's greedy output); else the temperature of the verified
      distribution.
    draft_temperature: the drafts' sampling temperature (default
      `temperature`); the acceptance ratio uses exactly this distribution.
    top_k: applied to both the verified and the draft distribution.
    top_p: applied to both the verified and the draft distribution.
    verification_fn: the logits the drafts are verified against, from both
      models' logits at a position; default the target's own.

  Returns:
    `SpeculativeOutput`.

  Raises:
    UserInputError: on bad settings.
  """
  initial_gamma = gamma if initial_gamma is None else initial_gamma
  _check(gamma, initial_gamma, temperature, top_k, top_p, rng)
  greedy = temperature == 0
  if draft_temperature is None:
    draft_temperature = temperature
  if verification_fn is None:
    verification_fn = lambda target_logits, draft_logits: target_logits
  start_ids = jnp.asarray(start_ids, jnp.int32)
  batch_size = start_ids.shape[0]
  rows = jnp.arange(batch_size)
  # The vocabulary size, from the draft's output shape (no compute).
  vocab_size = jax.eval_shape(
      draft_fn, draft_params, start_ids[:, None], draft_cache
  )[0].shape[-1]
  target_start = cache_lib.get_lengths(target_cache)
  draft_start = cache_lib.get_lengths(draft_cache)

  def draft_distribution(draft_logits):
    return processors_lib.filter_logits(
        draft_logits, temperature=draft_temperature, top_k=top_k, top_p=top_p
    )

  def verified_distribution(target_logits, draft_logits):
    logits = verification_fn(target_logits, draft_logits)
    if greedy:  # Only the argmax matters.
      return logits
    return processors_lib.filter_logits(
        logits, temperature=temperature, top_k=top_k, top_p=top_p
    )

  def draft_step(index, drafts: _Drafts, last_ids, rng) -> _Drafts:
    """Feeds x_index (the last token for 0) and drafts x_{index+1}."""
    previous = jnp.where(
        index == 0, last_ids, drafts.tokens[:, jnp.maximum(index - 1, 0)]
    )
    logits, cache = draft_fn(draft_params, previous[:, None], drafts.cache)
    logits = sampling.logits_per_position(logits)[:, -1]  # [batch, vocab]
    if greedy:
      tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    else:
      tokens = jax.random.categorical(
          jax.random.fold_in(rng, index), draft_distribution(logits)
      ).astype(jnp.int32)
    return _Drafts(
        tokens=drafts.tokens.at[:, index].set(tokens),
        logits=drafts.logits.at[:, index].set(logits),
        cache=cache,
    )

  def round_(state: _State) -> _State:
    active = ~state.finished & (state.num_generated < max_length)
    draft_rng, accept_rng, final_rng, rng = jax.random.split(state.rng, 4)
    # The longest draft any active row wants this round.
    longest = jnp.max(jnp.where(active, state.gamma, 1))

    # 1. Draft.
    drafts = jax.lax.fori_loop(
        0,
        longest,
        lambda index, drafts: draft_step(
            index, drafts, state.last_ids, draft_rng
        ),
        _Drafts(
            tokens=jnp.full((batch_size, gamma + 1), pad_id, jnp.int32),
            logits=jnp.zeros((batch_size, gamma + 1, vocab_size), jnp.float32),
            cache=state.draft_cache,
        ),
    )

    # 2. Verify: one target call on [last, x_1 .. x_gamma].
    verify_ids = jnp.concatenate(
        [state.last_ids[:, None], drafts.tokens[:, :gamma]], axis=1
    )
    target_logits, target_cache = target_fn(
        target_params, verify_ids, state.target_cache
    )
    target_logits = sampling.logits_per_position(target_logits)

    # 3. Accept the longest prefix of drafts that passes.
    candidates = drafts.tokens[:, :gamma]  # [batch, gamma]
    verified = verified_distribution(
        target_logits[:, :gamma], drafts.logits[:, :gamma]
    )  # [batch, gamma, vocab]
    if greedy:
      passes = candidates == jnp.argmax(verified, axis=-1)
    else:
      pick = lambda logits: jnp.take_along_axis(
          jax.nn.softmax(logits, axis=-1), candidates[..., None], axis=-1
      )[..., 0]
      target_prob = pick(verified)
      draft_prob = pick(draft_distribution(drafts.logits[:, :gamma]))
      uniform = jax.random.uniform(accept_rng, candidates.shape)
      passes = uniform * draft_prob < target_prob
    passes &= jnp.arange(gamma) < state.gamma[:, None]
    passes = jnp.concatenate(
        [passes, jnp.zeros((batch_size, 1), jnp.bool_)], axis=1
    )
    num_accepted = jnp.argmax(~passes, axis=1).astype(jnp.int32)  # [batch]
    all_accepted = num_accepted == state.gamma

    # The draft's call on x_longest, for rows that accepted that many.
    extra_call = jnp.any(active & all_accepted & (state.gamma == longest))
    drafts = jax.lax.cond(
        extra_call,
        lambda drafts: draft_step(longest, drafts, state.last_ids, draft_rng),
        lambda drafts: drafts,
        drafts,
    )

    # 4. The token after the accepted drafts: residual or bonus.
    final_logits = verified_distribution(
        target_logits[rows, num_accepted], drafts.logits[rows, num_accepted]
    )  # [batch, vocab]
    if greedy:
      final_ids = jnp.argmax(final_logits, axis=-1).astype(jnp.int32)
    else:
      target_probs = jax.nn.softmax(final_logits, axis=-1)
      draft_probs = jax.nn.softmax(
          draft_distribution(drafts.logits[rows, num_accepted]), axis=-1
      )
      residual = jnp.maximum(target_probs - draft_probs, 0.0)
      mass = jnp.sum(residual, axis=-1, keepdims=True)
      use_residual = (~all_accepted)[:, None] & (mass > _RESIDUAL_EPSILON)
      final_probs = jnp.where(
          use_residual,
          residual / jnp.maximum(mass, _RESIDUAL_EPSILON),
          target_probs,
      )
      final_ids = jax.random.categorical(
          final_rng, jnp.log(final_probs)
      ).astype(jnp.int32)

    # 5. Emit drafts[:accepted] + final, cut after an EOS.
    slots = jnp.arange(gamma + 1)
    emitted = jnp.where(
        slots == num_accepted[:, None], final_ids[:, None], drafts.tokens
    )  # [batch, gamma + 1]
    num_emitted = num_accepted + 1
    if eos_id is not None:
      is_eos = (emitted == eos_id) & (slots <= num_accepted[:, None])
      hit_eos = jnp.any(is_eos, axis=1)
      num_emitted = jnp.where(
          hit_eos, jnp.argmax(is_eos, axis=1) + 1, num_emitted
      )
    else:
      hit_eos = jnp.zeros((batch_size,), jnp.bool_)
    num_emitted = jnp.where(active, num_emitted, 0)
    emitted = jnp.where(slots < num_emitted[:, None], emitted, pad_id)
    # Stopped rows write pads at or past max_length, into the slack.
    output = _write_rows(
        state.output,
        emitted,
        jnp.where(active, state.num_generated, max_length),
    )
    num_generated = state.num_generated + num_emitted
    last_ids = jnp.where(
        active,
        jnp.take_along_axis(
            emitted, jnp.maximum(num_emitted - 1, 0)[:, None], axis=1
        )[:, 0],
        state.last_ids,
    )

    # 6. Roll both caches back to the accepted prefix.
    target_cache = cache_lib.set_lengths(
        target_cache, target_start + num_generated
    )
    draft_cache = cache_lib.set_lengths(
        drafts.cache, draft_start + num_generated
    )

    if adaptive_gamma:
      next_gamma = jnp.where(
          all_accepted,
          jnp.minimum(state.gamma + 2, gamma),
          jnp.maximum(state.gamma - 1, 1),
      )
      next_gamma = jnp.where(active, next_gamma, state.gamma)
    else:
      next_gamma = state.gamma
    count = lambda value: jnp.where(active, value, 0).astype(jnp.int32)
    return _State(
        output=output,
        num_generated=num_generated,
        last_ids=last_ids,
        finished=state.finished | (active & hit_eos),
        gamma=next_gamma,
        target_cache=target_cache,
        draft_cache=draft_cache,
        accepted=state.accepted + count(jnp.minimum(num_accepted, num_emitted)),
        target_calls=state.target_calls + count(1),
        draft_calls=state.draft_calls + count(longest + extra_call),
        rng=rng,
    )

  def any_active(state: _State) -> jax.Array:
    return jnp.any(~state.finished & (state.num_generated < max_length))

  zeros = jnp.zeros((batch_size,), jnp.int32)
  initial = _State(
      output=jnp.full((batch_size, max_length + gamma + 1), pad_id, jnp.int32),
      num_generated=zeros,
      last_ids=start_ids,
      finished=jnp.zeros((batch_size,), jnp.bool_),
      gamma=jnp.full((batch_size,), initial_gamma, jnp.int32),
      target_cache=target_cache,
      draft_cache=draft_cache,
      accepted=zeros,
      target_calls=zeros,
      draft_calls=zeros,
      rng=jax.random.key(0) if rng is None else rng,
  )
  final = jax.lax.while_loop(any_active, round_, initial)
  return SpeculativeOutput(
      tokens=final.output[:, :max_length],
      num_tokens=jnp.minimum(final.num_generated, max_length),
      accepted=final.accepted,
      target_calls=final.target_calls,
      draft_calls=final.draft_calls,
      gamma=final.gamma,
  )
