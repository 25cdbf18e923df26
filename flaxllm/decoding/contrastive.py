"""Contrastive decoding (CD) and speculative contrastive decoding (SCD).

CD scores the next token by how much more an expert model likes it than a
small amateur does, within the expert's plausible set
V_head = {v : p_e(v) >= alpha * max p_e}:

  'original' (Li et al. 2022):          log p_e - log p_a
  'improved' (O'Brien & Lewis 2023):    (1 + beta) log p_e - beta log p_a

and -inf off V_head. The amateur's log-probabilities may be taken at a
temperature (`amateur_temperature`). As a distribution,
p_c = softmax(score / temperature); temperature 0 is greedy CD.

SCD (Yuan et al. 2023) uses the amateur as the draft model of speculative
decoding and verifies its drafts against p_c instead of p_e: the same draft
call yields both the drafting distribution q_i and the amateur's contrast
log-probabilities at position i, so the expert verifies a round in one call.
It is `speculative.speculative_decode` with the contrastive score as its
verification function, and emits tokens distributed exactly as CD samples
them (greedy SCD equals greedy CD). The acceptance ratio uses the
distribution the drafts were sampled from (`draft_temperature`), which may
differ from the contrast's `amateur_temperature`.
"""

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.decoding import processors as processors_lib
from flaxllm.decoding import sampling
from flaxllm.decoding import speculative

FORMS = ('original', 'improved')


def check_contrast(
    alpha: float, beta: float, form: str, amateur_temperature: float
) -> None:
  """Raises UserInputError on unusable contrastive-decoding settings."""
  if form not in FORMS:
    raise errors.UserInputError(
        f'contrastive form {form!r} is unknown; choose one of {list(FORMS)}'
    )
  if not 0.0 <= alpha <= 1.0:
    raise errors.UserInputError(
        f'contrastive alpha={alpha} (plausibility threshold) must be in [0, 1]'
    )
  if beta < 0:
    raise errors.UserInputError(
        f'contrastive beta={beta} (contrast strength) must be >= 0'
    )
  if amateur_temperature <= 0:
    raise errors.UserInputError(
        f'amateur_temperature={amateur_temperature} must be > 0'
    )


def contrastive_scores(
    expert_logits: jax.Array,
    amateur_logits: jax.Array,
    *,
    alpha: float,
    beta: float,
    form: str = 'improved',
    amateur_temperature: float = 1.0,
) -> jax.Array:
  """The contrastive score of every token, -inf off the plausible set.

  Args:
    expert_logits: float [..., vocab].
    amateur_logits: float [..., vocab], at the same positions.
    alpha: plausibility threshold in [0, 1]; 0 keeps every token.
    beta: contrast strength of the 'improved' form (unused by 'original').
    form: 'original' or 'improved' (see the module docstring).
    amateur_temperature: divides the amateur's logits before its
      log-softmax.

  Returns:
    float32 [..., vocab]; softmax of it (over a temperature) is p_c. With
    alpha = beta = 0 ('improved') it is log p_e, so p_c = p_e.
  """
  expert = jax.nn.log_softmax(expert_logits.astype(jnp.float32), axis=-1)
  amateur = jax.nn.log_softmax(
      amateur_logits.astype(jnp.float32) / amateur_temperature, axis=-1
  )
  if form == 'original':
    score = expert - amateur
  else:
    score = (1.0 + beta) * expert - beta * amateur
  log_alpha = math.log(alpha) if alpha > 0 else -jnp.inf
  plausible = expert >= log_alpha + jnp.max(expert, axis=-1, keepdims=True)
  return jnp.where(plausible, score, -jnp.inf)


def contrastive_tokens_to_logits(
    expert_fn: sampling.TokensToLogits,
    amateur_fn: sampling.TokensToLogits,
    *,
    alpha: float,
    beta: float,
    form: str = 'improved',
    amateur_temperature: float = 1.0,
) -> sampling.TokensToLogits:
  """Both models as one step function whose logits are contrastive scores.

  Args:
    expert_fn: the expert's step function.
    amateur_fn: the amateur's step function.
    alpha: see `contrastive_scores`.
    beta: see `contrastive_scores`.
    form: see `contrastive_scores`.
    amateur_temperature: see `contrastive_scores`.

  Returns:
    tokens_to_logits((expert_params, amateur_params), ids, (expert_cache,
    amateur_cache)) -> (scores [batch, length, vocab], caches).
  """
  check_contrast(alpha, beta, form, amateur_temperature)

  def tokens_to_logits(params, ids, caches):
    expert_logits, expert_cache = expert_fn(params[0], ids, caches[0])
    amateur_logits, amateur_cache = amateur_fn(params[1], ids, caches[1])
    scores = contrastive_scores(
        sampling.logits_per_position(expert_logits),
        sampling.logits_per_position(amateur_logits),
        alpha=alpha,
        beta=beta,
        form=form,
        amateur_temperature=amateur_temperature,
    )
    return scores, (expert_cache, amateur_cache)

  return tokens_to_logits


def contrastive_decode(
    expert_fn: sampling.TokensToLogits,
    expert_params: Any,
    expert_cache: Any,
    amateur_fn: sampling.TokensToLogits,
    amateur_params: Any,
    amateur_cache: Any,
    start_ids: jax.Array,
    *,
    max_length: int,
    eos_id: int | None,
    pad_id: int,
    alpha: float = 0.1,
    beta: float = 0.5,
    form: str = 'improved',
    amateur_temperature: float = 1.0,
    temperature: float = 1.0,
    rng: jax.Array | None = None,
    top_k: int = 0,
    top_p: float = 1.0,
    processors: Sequence[processors_lib.LogitsProcessor] = (),
    stop_sequences: jax.Array | None = None,
) -> jax.Array:
  """Contrastive decoding, one call of each model per token.

  Args:
    expert_fn: the expert's step function.
    expert_params: the expert's params.
    expert_cache: the expert's cache before `start_ids`.
    amateur_fn: the amateur's step function.
    amateur_params: the amateur's params.
    amateur_cache: the amateur's cache over the same tokens.
    start_ids: int32 [batch], each row's last input token.
    max_length: tokens to generate at most (static).
    eos_id: a row stops after emitting it; None: no EOS.
    pad_id: fills each row after it stopped.
    alpha: plausibility threshold (see `contrastive_scores`).
    beta: contrast strength of the 'improved' form.
    form: 'original' or 'improved'.
    amateur_temperature: temperature of the amateur's log-probabilities.
    temperature: 0 for greedy CD (searching the objective); else samples
      from softmax(score / temperature).
    rng: PRNG key; needed unless `temperature` is 0.
    top_k: see `sampling.sample_decode`.
    top_p: see `sampling.sample_decode`.
    processors: see `sampling.sample_decode`.
    stop_sequences: see `sampling.sample_decode`.

  Returns:
    int32 [batch, max_length], `pad_id` after each row's stop.
  """
  return sampling.sample_decode(
      contrastive_tokens_to_logits(
          expert_fn,
          amateur_fn,
          alpha=alpha,
          beta=beta,
          form=form,
          amateur_temperature=amateur_temperature,
      ),
      (expert_params, amateur_params),
      (expert_cache, amateur_cache),
      start_ids,
      max_length=max_length,
      eos_id=eos_id,
      pad_id=pad_id,
      rng=rng,
      temperature=temperature,
      top_k=top_k,
      top_p=top_p,
      processors=processors,
      stop_sequences=stop_sequences,
  )


def speculative_contrastive_decode(
    expert_fn: sampling.TokensToLogits,
    expert_params: Any,
    expert_cache: Any,
    amateur_fn: sampling.TokensToLogits,
    amateur_params: Any,
    amateur_cache: Any,
    start_ids: jax.Array,
    *,
    max_length: int,
    eos_id: int | None,
    pad_id: int,
    gamma: int,
    alpha: float = 0.1,
    beta: float = 0.5,
    form: str = 'improved',
    amateur_temperature: float = 1.0,
    temperature: float = 1.0,
    draft_temperature: float | None = None,
    rng: jax.Array | None = None,
    adaptive_gamma: bool = False,
    initial_gamma: int | None = None,
    top_k: int = 0,
    top_p: float = 1.0,
) -> speculative.SpeculativeOutput:
  """SCD: the amateur drafts, the expert verifies against p_c.

  Args:
    expert_fn: the expert's step function (logits for every input).
    expert_params: the expert's params.
    expert_cache: the expert's cache before `start_ids`.
    amateur_fn: the amateur's step function (drafter and contrast).
    amateur_params: the amateur's params.
    amateur_cache: the amateur's cache over the same tokens.
    start_ids: int32 [batch], each row's last input token.
    max_length: tokens to generate at most (static).
    eos_id: a row stops after emitting it; None: no EOS.
    pad_id: fills each row after it stopped.
    gamma: draft tokens per round (the maximum when adaptive).
    alpha: plausibility threshold (see `contrastive_scores`).
    beta: contrast strength of the 'improved' form.
    form: 'original' or 'improved'.
    amateur_temperature: temperature of the amateur's contrast
      log-probabilities.
    temperature: 0 for greedy SCD (equals greedy CD); else the temperature
      of p_c = softmax(score / temperature).
    draft_temperature: the amateur's drafting temperature (default
      `temperature`).
    rng: PRNG key; needed unless `temperature` is 0.
    adaptive_gamma: see `speculative.speculative_decode`.
    initial_gamma: see `speculative.speculative_decode`.
    top_k: applied to p_c and to the drafting distribution.
    top_p: applied to p_c and to the drafting distribution.

  Returns:
    `speculative.SpeculativeOutput` (draft calls are amateur calls, target
    calls expert calls).
  """
  check_contrast(alpha, beta, form, amateur_temperature)

  def verification_fn(expert_logits, amateur_logits):
    return contrastive_scores(
        expert_logits,
        amateur_logits,
        alpha=alpha,
        beta=beta,
        form=form,
        amateur_temperature=amateur_temperature,
    )

  return speculative.speculative_decode(
      expert_fn,
      expert_params,
      expert_cache,
      amateur_fn,
      amateur_params,
      amateur_cache,
      start_ids,
      max_length=max_length,
      eos_id=eos_id,
      pad_id=pad_id,
      gamma=gamma,
      adaptive_gamma=adaptive_gamma,
      initial_gamma=initial_gamma,
      rng=rng,
      temperature=temperature,
      draft_temperature=draft_temperature,
      top_k=top_k,
      top_p=top_p,
      verification_fn=verification_fn,
  )
