"""Learning-rate schedules, weight-decay masks, EMA."""

from absl.testing import absltest
from absl.testing import parameterized
import jax.numpy as jnp
import numpy as np

from flaxllm import configuration
from flaxllm import optim
from flaxllm.errors import UserInputError


def optimizer_config(**overrides):
  config = configuration.default_config().optimizer
  config.update(overrides)
  return config


class ScheduleTest(parameterized.TestCase):

  @parameterized.parameters('cosine', 'linear', 'constant')
  def test_warmup_then_decay(self, decay):
    schedule = optim.learning_rate_schedule(
        optimizer_config(learning_rate=1.0, warmup_steps=10, decay=decay), 110
    )
    self.assertAlmostEqual(float(schedule(0)), 0.0)
    self.assertAlmostEqual(float(schedule(5)), 0.5, places=6)
    self.assertAlmostEqual(float(schedule(10)), 1.0, places=6)
    end = float(schedule(110))
    self.assertAlmostEqual(end, 1.0 if decay == 'constant' else 0.0, places=6)

  def test_end_fraction(self):
    schedule = optim.learning_rate_schedule(
        optimizer_config(
            learning_rate=2.0,
            warmup_steps=0,
            decay='linear',
            end_lr_fraction=0.1,
        ),
        100,
    )
    self.assertAlmostEqual(float(schedule(100)), 0.2, places=6)

  def test_unknown_names_are_user_errors(self):
    with self.assertRaisesRegex(UserInputError, 'optimizer.decay'):
      optim.learning_rate_schedule(optimizer_config(decay='step'), 10)
    with self.assertRaisesRegex(UserInputError, 'optimizer.name'):
      optim.make_optimizer(optimizer_config(name='lion'), 10)


class WeightDecayTest(absltest.TestCase):

  def test_decay_reaches_matrices_only(self):
    params = {
        'kernel': jnp.ones((3, 3)),
        'bias': jnp.ones(3),
        'scale': jnp.ones(3),
    }
    tx, _ = optim.make_optimizer(
        optimizer_config(
            learning_rate=0.1,
            warmup_steps=0,
            decay='constant',
            weight_decay=0.5,
            grad_clip_norm=0.0,
        ),
        10,
    )
    zero_grads = {k: jnp.zeros_like(v) for k, v in params.items()}
    updates, _ = tx.update(zero_grads, tx.init(params), params)
    np.testing.assert_allclose(
        updates['kernel'], -0.05 * np.ones((3, 3)), rtol=1e-6
    )
    np.testing.assert_array_equal(updates['bias'], np.zeros(3))
    np.testing.assert_array_equal(updates['scale'], np.zeros(3))

  def test_clipping_bounds_the_update_norm(self):
    tx, _ = optim.make_optimizer(
        optimizer_config(
            name='sgd',
            learning_rate=1.0,
            warmup_steps=0,
            decay='constant',
            weight_decay=0.0,
            grad_clip_norm=1.0,
            b1=0.0,
        ),
        10,
    )
    params = {'w': jnp.zeros(4)}
    updates, _ = tx.update({'w': jnp.full(4, 10.0)}, tx.init(params), params)
    self.assertAlmostEqual(float(jnp.linalg.norm(updates['w'])), 1.0, places=5)


class EmaTest(absltest.TestCase):

  def test_ema_moves_towards_params(self):
    ema = optim.update_ema({'w': jnp.zeros(2)}, {'w': jnp.ones(2)}, 0.9)
    np.testing.assert_allclose(ema['w'], [0.1, 0.1], rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
