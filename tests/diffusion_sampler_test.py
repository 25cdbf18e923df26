"""Tests for flaxllm.diffusion.sampler: DDPM, respacing, DDIM, rounding."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.diffusion import sampler
from flaxllm.diffusion import schedules

STEPS, BATCH, LENGTH, DIM = 12, 2, 3, 4
SHAPE = (BATCH, LENGTH, DIM)
POSITION_WEIGHTS = np.array([0.3, 0.6, 0.9])


def _table() -> np.ndarray:
  """A float32-exact per-position ᾱ table (as after an adaptive update)."""
  base = schedules.base_alphas_cumprod('sqrt', STEPS, 1)[:, 0]
  table = base[:, None] ** np.linspace(0.7, 1.5, LENGTH)[None, :]
  return table.astype(np.float32)


def _schedule() -> schedules.NoiseSchedule:
  return schedules.from_alphas_cumprod(jnp.asarray(_table()))


def _denoise(noisy, timesteps, self_condition):
  """A toy x0 predictor that depends on x_t, t, position and x̂0."""
  weights = jnp.asarray(POSITION_WEIGHTS, jnp.float32)[None, :, None]
  time = timesteps.astype(jnp.float32)[:, None, None] / STEPS
  return jnp.tanh(weights * noisy + time + 0.5 * self_condition)


def _reference(
    rng,
    *,
    visited,
    method='ddpm',
    eta=0.0,
    self_conditioning=True,
    quirk=False,
):
  """The reverse process written out step by step in float64 numpy.

  Coefficients come from ᾱ at the visited steps by the DDPM formulas; the
  noise is drawn with the sampler's key layout (x_T from the first half of
  the split key, step k's noise from the second half folded with k).
  """
  table = _table().astype(np.float64)[visited]  # [K, length]
  prev = np.concatenate([np.ones((1, LENGTH)), table[:-1]])
  alphas = table / prev
  betas = 1 - alphas
  c1 = betas * np.sqrt(prev) / (1 - table)
  c2 = (1 - prev) * np.sqrt(alphas) / (1 - table)
  variance = betas * (1 - prev) / (1 - table)
  log_variance = np.log(np.concatenate([variance[1:2], variance[1:]]))
  if quirk:
    flat = np.log(np.append(variance[1], variance[1:]))[: len(visited)]
    log_variance = np.repeat(flat[:, None], LENGTH, axis=1)
  start_rng, step_rng = jax.random.split(rng)
  x = np.asarray(jax.random.normal(start_rng, SHAPE), np.float64)
  self_condition = np.zeros(SHAPE)
  for k in reversed(range(len(visited))):
    times = jnp.full((BATCH,), visited[k], jnp.int32)
    x_start = np.asarray(
        _denoise(
            jnp.asarray(x, jnp.float32),
            times,
            jnp.asarray(self_condition, jnp.float32),
        ),
        np.float64,
    )
    noise = np.asarray(
        jax.random.normal(jax.random.fold_in(step_rng, k), SHAPE), np.float64
    )
    column = lambda values: values[k][None, :, None]
    if method == 'ddpm':
      x = column(c1) * x_start + column(c2) * x
      if k > 0:
        x = x + np.exp(0.5 * column(log_variance)) * noise
    else:
      eps = (x - np.sqrt(column(table)) * x_start) / np.sqrt(1 - column(table))
      sigma = (
          eta
          * np.sqrt((1 - column(prev)) / (1 - column(table)))
          * np.sqrt(1 - column(table) / column(prev))
      )
      x = (
          np.sqrt(column(prev)) * x_start
          + np.sqrt(1 - column(prev) - sigma**2) * eps
      )
      if k > 0:
        x = x + sigma * noise
    if self_conditioning:
      self_condition = x_start
  return x


class SamplerTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('ddpm_all_steps', None, 'ddpm', 0.0, True, False),
      ('ddpm_respaced', 5, 'ddpm', 0.0, True, False),
      ('ddpm_without_self_conditioning', None, 'ddpm', 0.0, False, False),
      ('ddpm_log_variance_quirk', None, 'ddpm', 0.0, True, True),
      ('ddim_deterministic', 5, 'ddim', 0.0, True, False),
      ('ddim_noisy', None, 'ddim', 0.7, True, False),
  )
  def test_sampler_matches_the_reverse_process_written_out(
      self, count, method, eta, self_conditioning, quirk
  ):
    rng = jax.random.key(4)
    timesteps = None
    visited = np.arange(STEPS)
    if count is not None:
      timesteps = schedules.spaced_timesteps(STEPS, count)
      visited = timesteps
    run = jax.jit(
        lambda key: sampler.sample(
            _denoise,
            _schedule(),
            SHAPE,
            key,
            timesteps=timesteps,
            sampler=method,
            eta=eta,
            self_conditioning=self_conditioning,
            log_variance_quirk=quirk,
        )
    )
    expected = _reference(
        rng,
        visited=visited,
        method=method,
        eta=eta,
        self_conditioning=self_conditioning,
        quirk=quirk,
    )
    np.testing.assert_allclose(run(rng), expected, rtol=1e-4, atol=1e-4)

  def test_respaced_sampling_over_all_steps_reproduces_the_full_sampler(self):
    full = sampler.sample(_denoise, _schedule(), SHAPE, jax.random.key(1))
    respaced = sampler.sample(
        _denoise,
        _schedule(),
        SHAPE,
        jax.random.key(1),
        timesteps=schedules.spaced_timesteps(STEPS, STEPS),
    )
    np.testing.assert_array_equal(respaced, full)
    fewer = sampler.sample(
        _denoise,
        _schedule(),
        SHAPE,
        jax.random.key(1),
        timesteps=schedules.spaced_timesteps(STEPS, 4),
    )
    self.assertGreater(float(jnp.abs(fewer - full).max()), 1e-3)

  def test_sampling_is_deterministic_given_a_seed(self):
    run = jax.jit(lambda key: sampler.sample(_denoise, _schedule(), SHAPE, key))
    np.testing.assert_array_equal(
        run(jax.random.key(7)), run(jax.random.key(7))
    )
    self.assertGreater(
        float(jnp.abs(run(jax.random.key(7)) - run(jax.random.key(8))).max()),
        1e-3,
    )

  def test_the_whole_reverse_process_is_one_scan(self):
    jaxpr = jax.make_jaxpr(
        lambda key: sampler.sample(_denoise, _schedule(), SHAPE, key)
    )(jax.random.key(0))
    scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == 'scan']
    self.assertLen(scans, 1)
    self.assertEqual(scans[0].params['length'], STEPS)

  def test_quirk_reads_the_authors_flattened_np_append_table(self):
    schedule = _schedule()
    variance = np.asarray(schedule.posterior_variance, np.float64)
    authors = np.log(np.append(variance[1], variance[1:]))  # flattened
    np.testing.assert_allclose(
        sampler.flattened_log_variance(schedule), authors[:STEPS], rtol=1e-5
    )
    # Step t < L reads step 1 at position t; later steps read row-major.
    np.testing.assert_allclose(
        sampler.flattened_log_variance(schedule)[LENGTH + 4],
        np.log(variance[1 + 4 // LENGTH, 4 % LENGTH]),
        rtol=1e-5,
    )

  def test_unknown_sampler_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'task.sampler'):
      sampler.sample(
          _denoise, _schedule(), SHAPE, jax.random.key(0), sampler='plms'
      )


class RoundingTest(absltest.TestCase):

  def test_round_to_ids_takes_the_argmax(self):
    logits = jnp.array([[[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]])
    np.testing.assert_array_equal(sampler.round_to_ids(logits), [[1, 0]])

  def test_everything_after_the_first_eos_or_pad_becomes_pad(self):
    eos, pad = 2, 1
    ids = jnp.array([
        [5, 6, 2, 7, 2, 8],
        [5, 1, 7, 8, 9, 9],
        [5, 6, 7, 8, 9, 9],
    ])
    np.testing.assert_array_equal(
        sampler.truncate_after_end(ids, eos, pad),
        [
            [5, 6, 2, 1, 1, 1],
            [5, 1, 1, 1, 1, 1],
            [5, 6, 7, 8, 9, 9],
        ],
    )


if __name__ == '__main__':
  absltest.main()
