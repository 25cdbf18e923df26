"""The train step: gradient accumulation is exact, EMA is kept, metrics add up."""

import os
import tempfile

from absl.testing import absltest
import jax
import numpy as np

from flaxllm import train
from tests import run_helpers


def params_after(config, workdir):
  train.train_and_evaluate(config, workdir)
  run = train.setup(config, workdir)
  state, _ = train.restore_or_init(run)
  run.checkpointer.close()
  return jax.device_get(state)


class TrainStepTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = run_helpers.make_data_dir(os.path.join(cls.tmp, 'data'))

  def test_grad_accumulation_equals_the_full_batch(self):
    full = run_helpers.tiny_config(
        self.data, train__steps=3, train__batch_size=16
    )
    accumulated = run_helpers.tiny_config(
        self.data,
        train__steps=3,
        train__batch_size=16,
        train__grad_accum_steps=2,
    )
    accumulated.mesh.shape = (2, 4, 1)  # microbatches of 8 over 8 batch shards
    want = params_after(full, os.path.join(self.tmp, 'full'))
    got = params_after(accumulated, os.path.join(self.tmp, 'accumulated'))
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
      np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
    losses_full = run_helpers.train_losses(os.path.join(self.tmp, 'full'))
    losses_accumulated = run_helpers.train_losses(
        os.path.join(self.tmp, 'accumulated')
    )
    for step in (1, 2, 3):
      self.assertAlmostEqual(
          losses_full[step], losses_accumulated[step], delta=1e-5
      )

  def test_ema_is_kept_and_lags_the_params(self):
    config = run_helpers.tiny_config(
        self.data, train__steps=3, optimizer__ema_decay=0.5
    )
    state = params_after(config, os.path.join(self.tmp, 'ema'))
    self.assertIsNotNone(state.ema_params)
    differences = [
        float(np.abs(e - p).max())
        for e, p in zip(
            jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params)
        )
    ]
    self.assertGreater(max(differences), 0.0)

  def test_profile_window_and_tensorboard_are_written(self):
    workdir = os.path.join(self.tmp, 'profiled')
    config = run_helpers.tiny_config(self.data, train__steps=3)
    config.profile.steps = (1, 2)
    train.train_and_evaluate(config, workdir)
    traces = [
        name
        for _, _, files in os.walk(os.path.join(workdir, 'profile'))
        for name in files
    ]
    self.assertTrue(
        any('trace' in name or name.endswith('.pb') for name in traces), traces
    )
    events = os.listdir(os.path.join(workdir, 'tensorboard'))
    self.assertTrue(
        any(name.startswith('events.out.tfevents') for name in events), events
    )


if __name__ == '__main__':
  absltest.main()
