"""Tests for the adaptive noise schedule in flaxllm.diffusion.schedules."""

import os
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm.diffusion import schedules

STEPS, BIN_STEPS, LENGTH = 200, 10, 4
BINS = STEPS // BIN_STEPS
# Synthetic denoising loss of position i as a function of ᾱ: decreasing in
# ᾱ, with a different curvature per position.
POWERS = np.array([0.5, 0.5, 1.0, 3.0])
SCALES = np.array([1.0, 1.0, 0.6, 2.0])


def _synthetic_loss(alphas_cumprod: np.ndarray) -> np.ndarray:
  return SCALES * (1.0 - np.asarray(alphas_cumprod, np.float64)) ** POWERS


def _zero_statistics():
  return {
      'loss_sums': jnp.zeros((BINS, LENGTH)),
      'loss_counts': jnp.zeros((BINS, LENGTH)),
  }


def _statistics_of(table: np.ndarray, repeats: int = 1):
  """H, N from one loss observation per (time step, position)."""
  statistics = _zero_statistics()
  losses = jnp.asarray(_synthetic_loss(table), jnp.float32)  # [steps, length]
  for _ in range(repeats):
    statistics = schedules.accumulate(
        statistics,
        losses,
        jnp.ones((STEPS, LENGTH)),
        jnp.arange(STEPS),
        bin_steps=BIN_STEPS,
    )
  return statistics


def _linearity_error(values: np.ndarray) -> float:
  """Max deviation from the least-squares line, relative to the range."""
  steps = np.arange(len(values))
  fit = np.polyval(np.polyfit(steps, values, 1), steps)
  return float(np.max(np.abs(values - fit)) / np.ptp(values))


class AdaptiveUpdateTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.table = jnp.asarray(
        schedules.base_alphas_cumprod('sqrt', STEPS, LENGTH), jnp.float32
    )

  def test_update_makes_the_loss_linear_in_t_for_every_position_but_bos(self):
    new_table = np.asarray(
        schedules.adaptive_alphas_cumprod(
            self.table, _statistics_of(self.table), bin_steps=BIN_STEPS
        )
    )
    # Exactly linear through the interpolated loss-versus-ᾱ map: the bin
    # means of the old table carry the measured bin losses.
    anchors = np.asarray(self.table).reshape(BINS, BIN_STEPS, LENGTH).mean(1)
    bin_loss = _synthetic_loss(self.table).reshape(BINS, BIN_STEPS, LENGTH)
    bin_loss = bin_loss.mean(1)
    for position in range(1, LENGTH):
      inner = (new_table[:, position] <= anchors[0, position]) & (
          new_table[:, position] >= anchors[-1, position]
      )
      interpolated = np.interp(
          new_table[inner, position],
          anchors[::-1, position],
          bin_loss[::-1, position],
      )
      second_difference = np.diff(interpolated, 2)
      np.testing.assert_allclose(second_difference, 0.0, atol=2e-4)
    np.testing.assert_array_equal(new_table[:, 0], np.asarray(self.table)[:, 0])

  def test_update_is_monotone_and_spans_the_old_extremes(self):
    new_table = np.asarray(
        schedules.adaptive_alphas_cumprod(
            self.table, _statistics_of(self.table), bin_steps=BIN_STEPS
        )
    )
    self.assertTrue(np.all(np.diff(new_table[:, 1:], axis=0) <= 0))
    np.testing.assert_allclose(
        new_table[0, 1:], float(jnp.max(self.table)), rtol=1e-5
    )
    np.testing.assert_allclose(
        new_table[-1, 1:], float(jnp.min(self.table)), rtol=1e-3
    )

  def test_a_loss_that_dips_still_gives_a_decreasing_schedule(self):
    statistics = _statistics_of(self.table)
    dipped = statistics['loss_sums'].at[5:8, 2].set(0.0)  # loss 0 in bins 5-7
    new_table = np.asarray(
        schedules.adaptive_alphas_cumprod(
            self.table,
            {**statistics, 'loss_sums': dipped},
            bin_steps=BIN_STEPS,
        )
    )
    self.assertTrue(np.all(np.isfinite(new_table)))
    self.assertTrue(np.all(np.diff(new_table[:, 2]) <= 0))

  def test_repeated_updates_make_the_true_loss_linear_in_t(self):
    # One update linearises the binned map exactly; the true loss follows
    # up to the binning error, which the next update (on statistics
    # gathered under the new schedule) removes.
    first = schedules.adaptive_alphas_cumprod(
        self.table, _statistics_of(self.table), bin_steps=BIN_STEPS
    )
    second = schedules.adaptive_alphas_cumprod(
        first, _statistics_of(first), bin_steps=BIN_STEPS
    )
    for position in range(1, LENGTH):
      errors_by_update = [
          _linearity_error(_synthetic_loss(table)[:, position])
          for table in (self.table, first, second)
      ]
      self.assertGreater(errors_by_update[0], 0.1, msg=position)
      self.assertLess(
          errors_by_update[1], errors_by_update[0] / 4, msg=position
      )
      self.assertLess(errors_by_update[2], 0.01, msg=position)
    np.testing.assert_array_equal(second[:, 0], self.table[:, 0])


class StatisticsTest(absltest.TestCase):

  def test_prior_ramps_from_zero_to_half_with_unit_counts(self):
    prior = schedules.prior_statistics(5, 3)
    np.testing.assert_allclose(
        prior['loss_sums'][:, 1], [0.0, 0.125, 0.25, 0.375, 0.5]
    )
    np.testing.assert_array_equal(prior['loss_counts'], np.ones((5, 3)))

  def test_accumulate_bins_by_time_and_skips_pad_tokens(self):
    per_token_loss = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, jnp.nan]])
    token_mask = jnp.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    timesteps = jnp.array([3, 47])  # bins 0 and 4 of 10 steps each
    statistics = schedules.accumulate(
        schedules.prior_statistics(5, 3),
        per_token_loss,
        token_mask,
        timesteps,
        bin_steps=10,
    )
    prior = schedules.prior_statistics(5, 3)
    added_sums = statistics['loss_sums'] - prior['loss_sums']
    added_counts = statistics['loss_counts'] - prior['loss_counts']
    expected_sums = np.zeros((5, 3))
    expected_sums[0, :2] = [1.0, 2.0]
    expected_sums[4, :2] = [4.0, 5.0]
    np.testing.assert_allclose(added_sums, expected_sums, atol=1e-6)
    np.testing.assert_array_equal(added_counts, (expected_sums > 0) * 1.0)

  def test_updates_fire_at_multiples_of_s_from_3s_on_and_reset_statistics(self):
    every = 5
    update = jax.jit(
        lambda table, statistics, step: schedules.maybe_update(
            table, statistics, step, every=every, bin_steps=BIN_STEPS
        )
    )
    table = jnp.asarray(
        schedules.base_alphas_cumprod('sqrt', STEPS, LENGTH), jnp.float32
    )
    statistics = _statistics_of(table, repeats=3)
    fired = []
    for step in (5, 10, 14, 15, 16, 20):
      new_table, new_statistics = update(table, statistics, jnp.int32(step))
      changed = not np.array_equal(new_table, table)
      fired.append(changed)
      if changed:
        prior = schedules.prior_statistics(BINS, LENGTH)
        for key in prior:
          np.testing.assert_array_equal(new_statistics[key], prior[key])
      else:
        for key in statistics:
          np.testing.assert_array_equal(new_statistics[key], statistics[key])
    self.assertEqual(fired, [False, False, False, True, False, True])


class PlotTest(absltest.TestCase):

  def test_plot_writes_a_png_of_both_tables(self):
    table = schedules.base_alphas_cumprod('sqrt', STEPS, LENGTH)
    path = os.path.join(tempfile.mkdtemp(), 'figures', 'alpha_bar.png')
    self.assertEqual(schedules.plot_alpha_bar(table, table**2, path), path)
    with open(path, 'rb') as png:
      self.assertEqual(png.read(8), b'\x89PNG\r\n\x1a\n')


if __name__ == '__main__':
  absltest.main()
