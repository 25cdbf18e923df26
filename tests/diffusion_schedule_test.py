"""Tests for flaxllm.diffusion.schedules: base tables, q_sample, respacing."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.diffusion import schedules


def _per_position_table(num_steps: int = 50, length: int = 4) -> np.ndarray:
  """A sqrt table bent differently per position (as after adaptive updates)."""
  base = schedules.base_alphas_cumprod('sqrt', num_steps, 1)[:, 0]
  exponents = np.linspace(0.6, 1.8, length)
  return base[:, None] ** exponents[None, :]  # [steps, length]


class BaseScheduleTest(parameterized.TestCase):

  def test_sqrt_schedule_has_the_papers_values_at_two_thousand_steps(self):
    table = schedules.make_schedule('sqrt', 2000, 3).alphas_cumprod
    table = np.asarray(table)
    self.assertEqual(table.shape, (2000, 3))
    self.assertAlmostEqual(table[0, 0], 0.985, places=3)
    self.assertAlmostEqual(table[999, 0], 0.296, places=3)
    np.testing.assert_allclose(table[1999, 0], 2.0e-7, rtol=0.05)
    np.testing.assert_array_equal(table[:, 0], table[:, 2])

  @parameterized.parameters('sqrt', 'linear', 'cosine')
  def test_base_schedule_decreases_from_near_one_to_near_zero(self, name):
    betas = schedules.base_betas(name, 400)
    self.assertTrue(np.all(betas > 0) and np.all(betas <= 0.999))
    table = schedules.base_alphas_cumprod(name, 400, 2)[:, 0]
    self.assertTrue(np.all(np.diff(table) < 0))
    self.assertGreater(table[0], 0.95)
    self.assertLess(table[-1], 1e-3)

  def test_unknown_schedule_name_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'task.schedule'):
      schedules.make_schedule('quadratic', 10, 2)

  def test_derived_coefficients_match_gaussian_conditioning(self):
    table = _per_position_table()
    schedule = schedules.from_alphas_cumprod(jnp.asarray(table, jnp.float32))
    prev = np.concatenate([np.ones((1, table.shape[1])), table[:-1]])
    alphas = table / prev
    # x_{t-1} | x0 ~ N(sqrt(ab_prev) x0, 1 - ab_prev) and
    # x_t = sqrt(alpha) x_{t-1} + sqrt(1 - alpha) e: condition on x_t.
    gain = np.sqrt(alphas) * (1 - prev) / (1 - table)
    expected_c1 = np.sqrt(prev) - gain * np.sqrt(table)
    expected_variance = (1 - prev) - alphas * (1 - prev) ** 2 / (1 - table)
    np.testing.assert_allclose(
        schedule.posterior_mean_coef2, gain, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        schedule.posterior_mean_coef1, expected_c1, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        schedule.posterior_variance, expected_variance, rtol=1e-3, atol=1e-7
    )
    np.testing.assert_allclose(schedule.alphas_cumprod_prev, prev, rtol=1e-6)
    np.testing.assert_allclose(
        np.cumprod(1 - np.asarray(schedule.betas, np.float64), axis=0),
        table,
        rtol=1e-4,
        atol=1e-6,
    )
    # The variance is zero at t = 0; its clipped log repeats step 1.
    np.testing.assert_allclose(schedule.posterior_variance[0], 0.0, atol=1e-7)
    np.testing.assert_array_equal(
        schedule.posterior_log_variance_clipped[0],
        schedule.posterior_log_variance_clipped[1],
    )
    np.testing.assert_allclose(
        schedule.posterior_log_variance_clipped[1:],
        np.log(expected_variance[1:]),
        rtol=1e-3,
    )

  def test_q_sample_moments_match_the_tables_per_position(self):
    table = _per_position_table(num_steps=20, length=3)
    schedule = schedules.from_alphas_cumprod(jnp.asarray(table, jnp.float32))
    draws, dim = 4000, 8
    x_start = jnp.full((draws, 3, dim), 1.5)
    for step in (0, 7, 19):
      timesteps = jnp.full((draws,), step, jnp.int32)
      noise = jax.random.normal(jax.random.key(step), x_start.shape)
      noisy = np.asarray(
          schedules.q_sample(schedule, x_start, timesteps, noise)
      )
      mean = noisy.mean(axis=(0, 2))  # [length]
      variance = noisy.var(axis=(0, 2))
      np.testing.assert_allclose(
          mean, 1.5 * np.sqrt(table[step]), atol=0.03, err_msg=f't={step}'
      )
      np.testing.assert_allclose(
          variance, 1 - table[step], rtol=0.05, atol=2e-3, err_msg=f't={step}'
      )


class RespacingTest(absltest.TestCase):

  def test_spaced_timesteps_keep_both_ends_and_increase(self):
    steps = schedules.spaced_timesteps(2000, 200)
    self.assertLen(steps, 200)
    self.assertEqual((steps[0], steps[-1]), (0, 1999))
    self.assertTrue(np.all(np.diff(steps) > 0))
    np.testing.assert_array_equal(
        schedules.spaced_timesteps(30, 30), np.arange(30)
    )
    for count in (0, 31):
      with self.assertRaisesRegex(errors.UserInputError, 'sampling_steps'):
        schedules.spaced_timesteps(30, count)

  def test_respaced_tables_keep_alpha_bar_and_merge_the_skipped_betas(self):
    table = _per_position_table(num_steps=60, length=4)
    schedule = schedules.from_alphas_cumprod(jnp.asarray(table, jnp.float32))
    steps = schedules.spaced_timesteps(60, 7)
    respaced = schedules.respace(schedule, steps)
    kept = table[steps]  # [7, length]
    np.testing.assert_allclose(respaced.alphas_cumprod, kept, rtol=1e-6)
    merged = 1 - kept / np.concatenate([np.ones((1, 4)), kept[:-1]])
    np.testing.assert_allclose(respaced.betas, merged, rtol=1e-4, atol=1e-6)
    # Per position: the merged betas differ between positions.
    self.assertGreater(float(np.ptp(np.asarray(respaced.betas[3]))), 0.01)
    np.testing.assert_allclose(
        np.cumprod(1 - np.asarray(respaced.betas, np.float64), axis=0),
        kept,
        rtol=1e-4,
        atol=1e-6,
    )

  def test_respacing_over_every_step_is_the_identity(self):
    schedule = schedules.from_alphas_cumprod(
        jnp.asarray(_per_position_table(num_steps=40), jnp.float32)
    )
    respaced = schedules.respace(schedule, schedules.spaced_timesteps(40, 40))
    for full, spaced in zip(
        jax.tree.leaves(schedule), jax.tree.leaves(respaced)
    ):
      np.testing.assert_array_equal(full, spaced)


if __name__ == '__main__':
  absltest.main()
