"""SeqDiffuSeq through the trainer: schedule tables live in the checkpoint."""

import tempfile

from absl.testing import absltest
import jax
import numpy as np

from flaxllm import train
from flaxllm.diffusion import schedules
from tests import run_helpers


def _diffusion_config(data, **train_keys):
  """A tiny SeqDiffuSeq config whose adaptive schedule re-fits at steps 6, 8."""
  from configs import seqdiffuseq  # pylint: disable=g-import-not-at-top

  base = run_helpers.tiny_config(data)
  config = seqdiffuseq.get_config('runlocal')
  config.data = base.data
  config.tokenizer = base.tokenizer
  config.model.d_model = 32
  config.model.num_heads = 2
  config.model.ffn_dim = 64
  config.model.encoder_layers = 1
  config.model.decoder_layers = 1
  config.model.max_positions = 32
  config.model.embedding_dim = 16
  config.task.diffusion_steps = 40
  config.task.sampling_steps = 10
  config.task.bin_steps = 10
  config.task.adaptive_every = 2
  for key in ('steps', 'batch_size', 'eval_batch_size', 'log_every'):
    config.train[key] = base.train[key]
  config.train.steps = 9
  config.train.eval_every = 0
  config.train.num_samples = 0
  config.optimizer.warmup_steps = 2
  config.checkpoint.every = 3
  return run_helpers.apply_overrides(config, train_keys)


def _final_task_state(config, workdir):
  run = train.setup(config, workdir)
  state, _ = train.restore_or_init(run)
  run.checkpointer.close()
  return jax.device_get(state.task_state), jax.device_get(state.params)


class DiffusionTrainingTest(absltest.TestCase):

  def test_adaptive_tables_are_checkpointed_and_resume_exactly(self):
    data = run_helpers.make_data_dir(tempfile.mkdtemp())
    straight = tempfile.mkdtemp()
    results = train.train_and_evaluate(_diffusion_config(data), straight)
    self.assertIn('dist_1', results['test'])
    tables, params = _final_task_state(_diffusion_config(data), straight)
    # The re-fits at steps 6 and 8 moved the schedule off the sqrt tables.
    length = tables['alphas_cumprod'].shape[1]
    base = np.asarray(
        schedules.base_alphas_cumprod('sqrt', 40, length), np.float32
    )
    self.assertGreater(
        np.abs(tables['alphas_cumprod'][:, 1:] - base[:, 1:]).max(), 1e-4
    )
    np.testing.assert_allclose(
        tables['alphas_cumprod'][:, 0], base[:, 0], rtol=1e-6
    )  # position 0 is never re-fitted

    resumed = tempfile.mkdtemp()
    stopped = train.train_and_evaluate(
        _diffusion_config(data, train__stop_at_step=7), resumed
    )
    self.assertEqual(stopped, {'stopped': 7})
    train.train_and_evaluate(_diffusion_config(data), resumed)
    tables_resumed, params_resumed = _final_task_state(
        _diffusion_config(data), resumed
    )
    for key in tables:
      np.testing.assert_array_equal(tables_resumed[key], tables[key])
    for a, b in zip(jax.tree.leaves(params_resumed), jax.tree.leaves(params)):
      np.testing.assert_array_equal(a, b)


if __name__ == '__main__':
  absltest.main()
