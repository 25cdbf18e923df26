"""Noise schedules of SeqDiffuSeq: per-position tables and the adaptive update.

Every table is [steps, length]: row t holds time step t (0 .. T-1), column i
target position i, so each position can follow its own schedule. A schedule
is fixed by its cumulative products ᾱ; `from_alphas_cumprod` derives every
other coefficient (ᾱ_{t-1}, β_t, the square roots of q(x_t | x_0) and the
mean and variance of the posterior q(x_{t-1} | x_t, x_0)) in jnp, so a table
kept in the train state can be turned into a schedule inside a jitted step.

Base schedules (`make_schedule`): 'sqrt' (SeqDiffuSeq's default, ᾱ(s) = 1 -
sqrt(s + 1e-4)), 'linear' (DDPM's betas, rescaled to T steps) and 'cosine'
(improved DDPM), the same for every position.

The adaptive schedule (SeqDiffuSeq §3.3, Eq. 7) keeps per-(time bin,
position) sums H and counts N of the denoising loss. Every S steps from 3S on,
`adaptive_alphas_cumprod` maps each position's loss back to ᾱ so that the
loss becomes linear in t, and the statistics start again from their prior.
"""

import math
import os

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors

SCHEDULE_NAMES = ('sqrt', 'linear', 'cosine')
MAX_BETA = 0.999
# Keeps the log of a zero posterior variance finite.
MIN_POSTERIOR_VARIANCE = 1e-20
# The adaptive update's monotone step and range margin (the authors' 1e-5).
LOSS_EPSILON = 1e-5


@flax.struct.dataclass
class NoiseSchedule:
  """Coefficients of a per-position diffusion schedule, each [steps, length].

  Attributes:
    alphas_cumprod: ᾱ_t, the signal fraction of q(x_t | x_0).
    alphas_cumprod_prev: ᾱ_{t-1}, with ᾱ_{-1} = 1.
    betas: β_t = 1 - ᾱ_t / ᾱ_{t-1}.
    sqrt_alphas_cumprod: sqrt(ᾱ_t), the mean scale of q(x_t | x_0).
    sqrt_one_minus_alphas_cumprod: sqrt(1 - ᾱ_t), its standard deviation.
    posterior_mean_coef1: c1, the weight of x_0 in the posterior mean.
    posterior_mean_coef2: c2, the weight of x_t in the posterior mean.
    posterior_variance: β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t), zero at t = 0.
    posterior_log_variance_clipped: its log, with step 0 taking step 1's
      value (the variance at t = 0 is zero).
  """

  alphas_cumprod: jax.Array
  alphas_cumprod_prev: jax.Array
  betas: jax.Array
  sqrt_alphas_cumprod: jax.Array
  sqrt_one_minus_alphas_cumprod: jax.Array
  posterior_mean_coef1: jax.Array
  posterior_mean_coef2: jax.Array
  posterior_variance: jax.Array
  posterior_log_variance_clipped: jax.Array

  @property
  def num_steps(self) -> int:
    return self.alphas_cumprod.shape[0]

  @property
  def length(self) -> int:
    return self.alphas_cumprod.shape[1]


def from_alphas_cumprod(alphas_cumprod: jax.Array) -> NoiseSchedule:
  """Derives every coefficient from a table of ᾱ (jittable).

  Args:
    alphas_cumprod: ᾱ, decreasing in t and in (0, 1].  # [steps, length]

  Returns:
    The schedule, in the dtype of `alphas_cumprod`.
  """
  alphas_cumprod = jnp.asarray(alphas_cumprod)
  if alphas_cumprod.ndim != 2:
    raise errors.UserInputError(
        'a noise schedule needs a [steps, length] table of alphas_cumprod,'
        f' got shape {alphas_cumprod.shape}'
    )
  ones = jnp.ones_like(alphas_cumprod[:1])
  alphas_cumprod_prev = jnp.concatenate([ones, alphas_cumprod[:-1]], axis=0)
  alphas = alphas_cumprod / alphas_cumprod_prev  # [steps, length]
  betas = 1.0 - alphas
  one_minus = 1.0 - alphas_cumprod
  posterior_variance = betas * (1.0 - alphas_cumprod_prev) / one_minus
  clipped_variance = jnp.concatenate(
      [posterior_variance[1:2], posterior_variance[1:]], axis=0
  )
  return NoiseSchedule(
      alphas_cumprod=alphas_cumprod,
      alphas_cumprod_prev=alphas_cumprod_prev,
      betas=betas,
      sqrt_alphas_cumprod=jnp.sqrt(alphas_cumprod),
      sqrt_one_minus_alphas_cumprod=jnp.sqrt(one_minus),
      posterior_mean_coef1=betas * jnp.sqrt(alphas_cumprod_prev) / one_minus,
      posterior_mean_coef2=(1.0 - alphas_cumprod_prev)
      * jnp.sqrt(alphas)
      / one_minus,
      posterior_variance=posterior_variance,
      posterior_log_variance_clipped=jnp.log(
          jnp.maximum(clipped_variance, MIN_POSTERIOR_VARIANCE)
      ),
  )


def _betas_from_alpha_bar(num_steps: int, alpha_bar) -> np.ndarray:
  """β_t = min(1 - ᾱ((t+1)/T) / ᾱ(t/T), MAX_BETA) for a continuous ᾱ(s)."""
  s = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  values = alpha_bar(s)  # [steps + 1]
  return np.minimum(1.0 - values[1:] / values[:-1], MAX_BETA)


def base_betas(name: str, num_steps: int) -> np.ndarray:
  """The betas of a named schedule, shared by every position.

  Args:
    name: 'sqrt', 'linear' or 'cosine'.
    num_steps: T.

  Returns:
    float64 [num_steps].

  Raises:
    UserInputError: on an unknown name or num_steps < 1.
  """
  if num_steps < 1:
    raise errors.UserInputError(
        f'task.diffusion_steps={num_steps} must be at least 1'
    )
  if name == 'sqrt':
    return _betas_from_alpha_bar(num_steps, lambda s: 1.0 - np.sqrt(s + 1e-4))
  if name == 'cosine':
    return _betas_from_alpha_bar(
        num_steps, lambda s: np.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    )
  if name == 'linear':
    # DDPM's 1e-4 .. 0.02 over 1000 steps, rescaled to keep its shape.
    scale = 1000.0 / num_steps
    return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
  raise errors.UserInputError(
      f'task.schedule={name!r} is unknown; use one of {SCHEDULE_NAMES}'
  )


def base_alphas_cumprod(name: str, num_steps: int, length: int) -> np.ndarray:
  """ᾱ of a named schedule, tiled over positions.

  Args:
    name: 'sqrt', 'linear' or 'cosine'.
    num_steps: T.
    length: number of target positions L.

  Returns:
    float64 [num_steps, length].
  """
  alphas_cumprod = np.cumprod(1.0 - base_betas(name, num_steps))  # [steps]
  return np.tile(alphas_cumprod[:, None], (1, length))


def make_schedule(
    name: str, num_steps: int, length: int, dtype=jnp.float32
) -> NoiseSchedule:
  """A named base schedule (the same for every position).

  Args:
    name: 'sqrt', 'linear' or 'cosine'.
    num_steps: T.
    length: number of target positions L.
    dtype: dtype of the tables.

  Returns:
    The schedule, tables [num_steps, length].
  """
  table = base_alphas_cumprod(name, num_steps, length)
  return from_alphas_cumprod(jnp.asarray(table, dtype))


def q_sample(
    schedule: NoiseSchedule,
    x_start: jax.Array,
    timesteps: jax.Array,
    noise: jax.Array,
) -> jax.Array:
  """Draws x_t ~ q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I) per position.

  Args:
    schedule: the schedule.
    x_start: x_0.  # [batch, length, embed]
    timesteps: t of each row, int in [0, steps).  # [batch]
    noise: standard normal noise.  # [batch, length, embed]

  Returns:
    x_t.  # [batch, length, embed]
  """
  mean_scale = schedule.sqrt_alphas_cumprod[timesteps]  # [batch, length]
  std = schedule.sqrt_one_minus_alphas_cumprod[timesteps]  # [batch, length]
  return mean_scale[..., None] * x_start + std[..., None] * noise


# -----------------------------------------------------------------------------
# Respacing: sampling over K of the T steps.
# -----------------------------------------------------------------------------


def spaced_timesteps(num_steps: int, count: int) -> np.ndarray:
  """`count` time steps spread evenly over [0, num_steps), both ends kept.

  Args:
    num_steps: T.
    count: K, 1 <= K <= T.

  Returns:
    int32 [count], increasing; all of 0 .. T-1 when count == T.
  """
  if not 1 <= count <= num_steps:
    raise errors.UserInputError(
        f'task.sampling_steps={count} must be in [1, task.diffusion_steps='
        f'{num_steps}]'
    )
  if count == 1:
    return np.array([num_steps - 1], np.int32)
  steps = np.round(np.linspace(0, num_steps - 1, count)).astype(np.int32)
  return steps


def respace(schedule: NoiseSchedule, timesteps: jax.Array) -> NoiseSchedule:
  """The schedule of the sub-chain that visits only `timesteps`.

  Keeps ᾱ at the kept steps, per position, and recomputes every other
  coefficient from them, so a skipped stretch becomes one step with
  β'_k = 1 - ᾱ_{t_k} / ᾱ_{t_{k-1}} (jittable).

  Args:
    schedule: the full schedule.
    timesteps: increasing kept steps.  # int [count]

  Returns:
    The respaced schedule, tables [count, length]; its step k stands for
    original step timesteps[k].
  """
  return from_alphas_cumprod(schedule.alphas_cumprod[jnp.asarray(timesteps)])


# -----------------------------------------------------------------------------
# Adaptive schedule: loss statistics per (time bin, position) and the update.
# -----------------------------------------------------------------------------


def check_adaptive_shapes(num_steps: int, bin_steps: int) -> int:
  """Returns the number of time bins, T / bin_steps, after checking it.

  Raises:
    UserInputError: unless bin_steps divides T into at least two bins.
  """
  if bin_steps < 1 or num_steps % bin_steps or num_steps // bin_steps < 2:
    raise errors.UserInputError(
        f'task.bin_steps={bin_steps} must divide task.diffusion_steps='
        f'{num_steps} into at least 2 bins'
    )
  return num_steps // bin_steps


def prior_statistics(num_bins: int, length: int) -> dict[str, jax.Array]:
  """The statistics' starting point: H[b, i] = 0.5 b / (bins - 1), N = 1.

  Args:
    num_bins: number of time bins.
    length: number of target positions.

  Returns:
    {'loss_sums': H, 'loss_counts': N}, float32 [num_bins, length] each.
  """
  ramp = jnp.linspace(0.0, 0.5, num_bins, dtype=jnp.float32)
  return {
      'loss_sums': jnp.tile(ramp[:, None], (1, length)),
      'loss_counts': jnp.ones((num_bins, length), jnp.float32),
  }


def loss_statistics(
    per_token_loss: jax.Array,
    token_mask: jax.Array,
    timesteps: jax.Array,
    *,
    num_bins: int,
    bin_steps: int,
) -> dict[str, jax.Array]:
  """Sums one batch's per-token losses into (time bin, position) cells.

  Args:
    per_token_loss: loss of each token.  # [batch, length]
    token_mask: 1 on tokens that count (pad tokens and padding rows 0).
      # [batch, length]
    timesteps: t of each row.  # int [batch]
    num_bins: number of time bins.
    bin_steps: time steps per bin.

  Returns:
    {'loss_sums', 'loss_counts'}, float32 [num_bins, length] each.
  """
  token_mask = jnp.asarray(token_mask, jnp.float32)
  bins = jax.nn.one_hot(timesteps // bin_steps, num_bins)  # [batch, bins]
  masked_loss = jnp.where(token_mask > 0, per_token_loss * token_mask, 0.0)
  return {
      'loss_sums': jnp.einsum('bn,bl->nl', bins, masked_loss),
      'loss_counts': jnp.einsum('bn,bl->nl', bins, token_mask),
  }


def accumulate(
    statistics: dict[str, jax.Array],
    per_token_loss: jax.Array,
    token_mask: jax.Array,
    timesteps: jax.Array,
    *,
    bin_steps: int,
) -> dict[str, jax.Array]:
  """Adds one batch's losses to the statistics (H[t // K, i] += loss).

  Args:
    statistics: {'loss_sums', 'loss_counts'}, [bins, length] each.
    per_token_loss: loss of each token.  # [batch, length]
    token_mask: 1 on tokens that count.  # [batch, length]
    timesteps: t of each row.  # int [batch]
    bin_steps: time steps per bin (K).

  Returns:
    The updated statistics.
  """
  batch_sums = loss_statistics(
      per_token_loss,
      token_mask,
      timesteps,
      num_bins=statistics['loss_sums'].shape[0],
      bin_steps=bin_steps,
  )
  return jax.tree.map(jnp.add, statistics, batch_sums)


def _make_monotone(mean_loss: jax.Array) -> jax.Array:
  """D[b] = max(D[b], D[b-1] + eps) down the bins, in closed form.

  Unrolled, D'[b] = max over k <= b of D[k] + (b - k) eps, a cumulative max
  of D[k] - k eps shifted back by b eps.
  """
  offsets = LOSS_EPSILON * jnp.arange(mean_loss.shape[0], dtype=jnp.float32)
  offsets = offsets[:, None]  # [bins, 1]
  return jax.lax.cummax(mean_loss - offsets, axis=0) + offsets


def adaptive_alphas_cumprod(
    alphas_cumprod: jax.Array,
    statistics: dict[str, jax.Array],
    *,
    bin_steps: int,
) -> jax.Array:
  """The adaptive update: a new ᾱ under which loss is linear in t (jittable).

  For each position i >= 1:
    1. D = H / N per bin, made increasing (D[b] >= D[b-1] + 1e-5);
    2. padded by half a step at each end (bins + 2 rows);
    3. anchors: the table's global max of ᾱ, the per-bin means of ᾱ[:, i],
       its global min, so anchor b is the ᾱ at which loss D[b] was seen;
    4. loss targets ℓ*_t = linspace(min D - 1e-5, max D + 1e-5, T);
    5. ᾱ_new[t, i] = interp(ℓ*_t; D -> anchors), the inverse of the
       loss-versus-ᾱ map evaluated on a line.
  Position 0 (BOS) keeps its schedule.

  Args:
    alphas_cumprod: the current ᾱ.  # [steps, length]
    statistics: {'loss_sums', 'loss_counts'}, [steps / bin_steps, length].
    bin_steps: time steps per bin.

  Returns:
    The new ᾱ.  # [steps, length]
  """
  num_steps, length = alphas_cumprod.shape
  num_bins = num_steps // bin_steps
  mean_loss = statistics['loss_sums'] / statistics['loss_counts']
  mean_loss = _make_monotone(mean_loss)  # [bins, length]
  padded_loss = jnp.concatenate(
      [
          mean_loss[:1] - (mean_loss[1:2] - mean_loss[:1]) / 2,
          mean_loss,
          mean_loss[-1:] + (mean_loss[-1:] - mean_loss[-2:-1]) / 2,
      ],
      axis=0,
  )  # [bins + 2, length]
  bin_means = alphas_cumprod.reshape(num_bins, bin_steps, length).mean(axis=1)
  anchors = jnp.concatenate(
      [
          jnp.full((1, length), jnp.max(alphas_cumprod)),
          bin_means,
          jnp.full((1, length), jnp.min(alphas_cumprod)),
      ],
      axis=0,
  )  # [bins + 2, length]
  loss_targets = jnp.linspace(
      padded_loss.min(axis=0) - LOSS_EPSILON,
      padded_loss.max(axis=0) + LOSS_EPSILON,
      num_steps,
  )  # [steps, length]
  interp_columns = jax.vmap(jnp.interp, in_axes=1, out_axes=1)
  updated = interp_columns(loss_targets, padded_loss, anchors)
  updated = updated.astype(alphas_cumprod.dtype)  # [steps, length]
  return updated.at[:, 0].set(alphas_cumprod[:, 0])


def should_update(step: jax.Array, every: int) -> jax.Array:
  """True at steps 3S, 4S, ... (the authors' trigger), S = `every`."""
  return (step >= 3 * every) & (step % every == 0)


def maybe_update(
    alphas_cumprod: jax.Array,
    statistics: dict[str, jax.Array],
    step: jax.Array,
    *,
    every: int,
    bin_steps: int,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Applies the adaptive update when `should_update`, resetting H and N.

  Jittable and branch-free: the candidate table is computed every step (a
  [steps, length] interpolation, cheap beside the network) and selected by
  the traced step. A `lax.cond` would skip that work but, on GPUs, makes
  each step wait for its predicate on the host: on an H200 it made the
  runlocal step 2.5x slower than without the adaptive schedule, against
  1.4x for this form (experiments/results/bench_diffusion_train_step.md).

  Args:
    alphas_cumprod: the current ᾱ.  # [steps, length]
    statistics: the accumulated {'loss_sums', 'loss_counts'}.
    step: the optimizer step just completed.  # int scalar
    every: S, the update interval in steps.
    bin_steps: time steps per bin.

  Returns:
    (ᾱ, statistics): updated and reset to the prior at an update step,
    unchanged otherwise.
  """
  num_bins, length = statistics['loss_sums'].shape
  update = should_update(step, every)
  new_table = adaptive_alphas_cumprod(
      alphas_cumprod, statistics, bin_steps=bin_steps
  )
  prior = prior_statistics(num_bins, length)
  return jax.tree.map(
      lambda new, old: jnp.where(update, new, old),
      (new_table, prior),
      (alphas_cumprod, statistics),
  )


def plot_alpha_bar(
    before: np.ndarray,
    after: np.ndarray,
    path: str,
    positions: tuple[int, ...] | None = None,
) -> str:
  """Plots ᾱ_t per position before and after an update, to a PNG file.

  Args:
    before: ᾱ before.  # [steps, length]
    after: ᾱ after.  # [steps, length]
    path: the PNG file to write (folders are created).
    positions: the positions drawn; default about eight spread over L.

  Returns:
    `path`.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

  before, after = np.asarray(before), np.asarray(after)
  num_steps, length = after.shape
  if positions is None:
    positions = tuple(sorted(set(np.linspace(0, length - 1, 8).astype(int))))
  figure, axes = pyplot.subplots(1, 2, figsize=(11, 4), sharey=True)
  colors = pyplot.get_cmap('viridis')(np.linspace(0, 1, len(positions)))
  steps = np.arange(num_steps)
  for axis, table, title in (
      (axes[0], before, 'before'),
      (axes[1], after, 'after'),
  ):
    for color, position in zip(colors, positions):
      axis.plot(steps, table[:, position], color=color, label=f'pos {position}')
    axis.set_title(f'alpha_bar_t {title} the update')
    axis.set_xlabel('t')
  axes[0].set_ylabel('alpha_bar')
  axes[1].legend(fontsize='small')
  figure.tight_layout()
  folder = os.path.dirname(path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  figure.savefig(path, dpi=100)
  pyplot.close(figure)
  return path
