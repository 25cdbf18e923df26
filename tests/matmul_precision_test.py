"""config.matmul_precision: validated, and the run traces under it."""

from unittest import mock

from absl.testing import absltest
import jax

from configs import seq2seq
from flaxllm import configuration
from flaxllm import precision
from flaxllm import train
from flaxllm.errors import UserInputError


class _Stop(Exception):
  """Raised by the patched setup once it has seen the precision."""


class MatmulPrecisionTest(absltest.TestCase):

  def test_an_unknown_precision_is_rejected_naming_the_key(self):
    config = seq2seq.get_config('runlocal')
    config.matmul_precision = 'fp32'
    with self.assertRaisesRegex(UserInputError, 'matmul_precision'):
      configuration.validate(config, num_devices=1)

  def test_scope_sets_the_precision_and_restores_it(self):
    before = jax.config.jax_default_matmul_precision
    with precision.scope('float32'):
      self.assertEqual(jax.config.jax_default_matmul_precision, 'float32')
    self.assertEqual(jax.config.jax_default_matmul_precision, before)
    with precision.scope('default'):
      self.assertEqual(jax.config.jax_default_matmul_precision, before)

  def test_run_entry_points_work_under_the_config_precision(self):
    config = seq2seq.get_config('runlocal')
    config.matmul_precision = 'float32'
    seen = []

    def fake_setup(*unused_args, **unused_kwargs):
      seen.append(jax.config.jax_default_matmul_precision)
      raise _Stop()

    def fake_restore(*unused_args, **unused_kwargs):
      return fake_setup()

    with mock.patch.object(train, 'setup', fake_setup), mock.patch.object(
        train, '_restore_for_inference', fake_restore
    ):
      for entry in (
          train.train_and_evaluate,
          train.evaluate_only,
          train.predict_only,
      ):
        with self.assertRaises(_Stop):
          entry(config, '/nonexistent')
    self.assertEqual(seen, ['float32'] * 3)
    self.assertIsNone(jax.config.jax_default_matmul_precision)


if __name__ == '__main__':
  absltest.main()
