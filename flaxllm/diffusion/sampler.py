"""Sampling from the SeqDiffuSeq denoiser: DDPM, respaced DDPM, DDIM.

`sample` starts from x_T ~ N(0, I) and runs one `lax.scan` over the visited
steps, calling `denoise_fn` once per step (the encoder output is bound into
it, so the source is encoded once). Per step, with the x0-parameterised
network f and per-position tables:

  x̂0      = f(x_t, t, self_condition)
  ddpm:     x_{t-1} = c1_t x̂0 + c2_t x_t + [t > 0] σ_t ε,
            σ_t^2 the posterior variance ('sigma_small');
  ddim:     x_{t-1} = sqrt(ᾱ_{t-1}) x̂0 + sqrt(1 - ᾱ_{t-1} - s^2) ε̂ + s ε,
            ε̂ = (x_t - sqrt(ᾱ_t) x̂0) / sqrt(1 - ᾱ_t),
            s = eta sqrt((1 - ᾱ_{t-1}) / (1 - ᾱ_t)) sqrt(1 - ᾱ_t / ᾱ_{t-1}).

Self-conditioning feeds zeros at the first step and the previous step's raw
x̂0 afterwards. Respacing (K < T steps) keeps ᾱ at the visited steps of every
position and recomputes the coefficients of the merged steps
(`schedules.respace`); the network still sees the original time step.

`log_variance_quirk=True` reproduces the authors' code, whose log-variance
table is built with `np.append` on a [T, L] array and so is flattened: step t
reads flat element t for every position (posterior variance of step 1,
position t, for t < L; step 1 + (t - L) // L, position (t - L) % L after).

`round_to_ids` turns the final x̂0 into tokens by the argmax of the tied
rounding head, and `truncate_after_end` pads everything after the first
end-of-sequence (or pad) token, which sets the output length.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.diffusion import schedules

SAMPLERS = ('ddpm', 'ddim')

# (noisy [batch, length, dim], timesteps [batch], self_condition
# [batch, length, dim]) -> x̂0 [batch, length, dim]
DenoiseFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def flattened_log_variance(schedule: schedules.NoiseSchedule) -> jax.Array:
  """The authors' flattened log posterior variance, one value per step.

  Args:
    schedule: tables [steps, length].

  Returns:
    float [steps]: element t of log(append(var[1], var[1:])) flattened.
  """
  flat = jnp.concatenate([
      schedule.posterior_variance[1],
      schedule.posterior_variance[1:].reshape(-1),
  ])
  flat = flat[: schedule.num_steps]
  return jnp.log(jnp.maximum(flat, schedules.MIN_POSTERIOR_VARIANCE))


def check_sampler(name: str, eta: float) -> None:
  """Raises UserInputError on an unknown sampler or a negative eta."""
  if name not in SAMPLERS:
    raise errors.UserInputError(
        f'task.sampler={name!r} is unknown; use one of {SAMPLERS}'
    )
  if eta < 0:
    raise errors.UserInputError(f'task.ddim_eta={eta} must be >= 0')


def sample(
    denoise_fn: DenoiseFn,
    schedule: schedules.NoiseSchedule,
    shape: tuple[int, int, int],
    rng: jax.Array,
    *,
    timesteps: np.ndarray | jax.Array | None = None,
    sampler: str = 'ddpm',
    eta: float = 0.0,
    self_conditioning: bool = True,
    log_variance_quirk: bool = False,
) -> jax.Array:
  """Runs the reverse process from noise to x̂0 (jittable).

  Args:
    denoise_fn: the network's x0 prediction (encoder output bound).
    schedule: the full schedule, tables [T, length].
    shape: (batch, length, dim) of the latents.
    rng: PRNG key of x_T and the per-step noise; the same key gives the
      same samples.
    timesteps: increasing original steps to visit (K of them, see
      `schedules.spaced_timesteps`); None visits all T.
    sampler: 'ddpm' (ancestral) or 'ddim'.
    eta: DDIM's noise scale (0 is deterministic given x_T).
    self_conditioning: feed the previous step's x̂0 back into the network.
    log_variance_quirk: DDPM only; use `flattened_log_variance`.

  Returns:
    The final sample x_{-1}, float32 [batch, length, dim] (the network's last
    x̂0 for DDPM and DDIM alike, since ᾱ_{-1} = 1).
  """
  check_sampler(sampler, eta)
  if timesteps is None:
    model_steps = jnp.arange(schedule.num_steps, dtype=jnp.int32)
    table = schedule
  else:
    model_steps = jnp.asarray(timesteps, jnp.int32)
    table = schedules.respace(schedule, model_steps)
  num_steps = model_steps.shape[0]
  batch_size = shape[0]
  if log_variance_quirk:
    log_variance = flattened_log_variance(table)[:, None]  # [steps, 1]
  else:
    log_variance = table.posterior_log_variance_clipped  # [steps, length]

  start_rng, step_rng = jax.random.split(rng)
  x_end = jax.random.normal(start_rng, shape, jnp.float32)

  def step(carry, index):
    x, self_condition = carry
    time = jnp.full((batch_size,), model_steps[index], jnp.int32)
    x_start = denoise_fn(x, time, self_condition).astype(jnp.float32)
    noise = jax.random.normal(jax.random.fold_in(step_rng, index), shape)
    keep_noise = (index > 0).astype(jnp.float32)

    def column(values):  # [length] or [1] -> broadcastable [1, length, 1]
      return values[None, :, None]

    if sampler == 'ddpm':
      mean = (
          column(table.posterior_mean_coef1[index]) * x_start
          + column(table.posterior_mean_coef2[index]) * x
      )
      std = jnp.exp(0.5 * column(log_variance[index]))
      x = mean + keep_noise * std * noise
    else:
      alpha_bar = column(table.alphas_cumprod[index])
      alpha_bar_prev = column(table.alphas_cumprod_prev[index])
      eps = (x - jnp.sqrt(alpha_bar) * x_start) / jnp.sqrt(1.0 - alpha_bar)
      sigma = (
          eta
          * jnp.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar))
          * jnp.sqrt(1.0 - alpha_bar / alpha_bar_prev)
      )
      direction = jnp.sqrt(jnp.maximum(1.0 - alpha_bar_prev - sigma**2, 0.0))
      x = (
          jnp.sqrt(alpha_bar_prev) * x_start
          + direction * eps
          + keep_noise * sigma * noise
      )
    if self_conditioning:
      self_condition = x_start
    return (x, self_condition), None

  indices = jnp.arange(num_steps - 1, -1, -1, dtype=jnp.int32)
  (x, _), _ = jax.lax.scan(step, (x_end, jnp.zeros_like(x_end)), indices)
  return x


def round_to_ids(logits: jax.Array) -> jax.Array:
  """Rounds latents to tokens by the argmax of the rounding head.

  Args:
    logits: the head's logits of the final sample.  # [..., length, vocab]

  Returns:
    int32 [..., length].
  """
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def truncate_after_end(ids: jax.Array, eos_id: int, pad_id: int) -> jax.Array:
  """Pads every position after the first eos or pad token of each row.

  Args:
    ids: generated tokens.  # int32 [..., length]
    eos_id: end-of-sequence id (kept).
    pad_id: padding id (a generated pad also ends the row).

  Returns:
    int32 [..., length].
  """
  is_end = (ids == eos_id) | (ids == pad_id)
  ended_before = (jnp.cumsum(is_end, axis=-1) - is_end) > 0
  return jnp.where(ended_before, pad_id, ids).astype(jnp.int32)
