"""Exact resume, preemption by SIGTERM, elastic resume, failed async saves."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from unittest import mock

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from flaxllm import checkpointing
from flaxllm import train
from tests import run_helpers


def final_params(config, workdir):
  run = train.setup(config, workdir)
  state, data_state = train.restore_or_init(run)
  run.checkpointer.close()
  return jax.device_get(state.params), data_state


class ResumeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = run_helpers.make_data_dir(os.path.join(cls.tmp, 'data'))
    cls.straight = os.path.join(cls.tmp, 'straight')
    config = run_helpers.tiny_config(cls.data, train__steps=6)
    config.mesh.shape = (2, 4, 1)
    train.train_and_evaluate(config, cls.straight)
    cls.straight_losses = run_helpers.train_losses(cls.straight)

  def test_stop_and_resume_equals_straight_run(self):
    workdir = os.path.join(self.tmp, 'resumed')
    config = run_helpers.tiny_config(
        self.data, train__steps=6, train__stop_at_step=3
    )
    config.mesh.shape = (2, 4, 1)
    self.assertEqual(train.train_and_evaluate(config, workdir), {'stopped': 3})
    config.train.stop_at_step = 0
    train.train_and_evaluate(config, workdir)

    resumed, resumed_data = final_params(config, workdir)
    straight, straight_data = final_params(config, self.straight)
    self.assertEqual(resumed_data, straight_data)
    for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    losses = run_helpers.train_losses(workdir)
    for step in (4, 5, 6):  # same batches after the resume, so the same losses
      self.assertAlmostEqual(
          losses[step], self.straight_losses[step], delta=1e-6
      )

  def test_time_budget_ends_training_evaluates_and_resumes_on_rerun(self):
    workdir = os.path.join(self.tmp, 'timed')
    config = run_helpers.tiny_config(
        self.data, train__steps=6, train__max_train_seconds=1e-9
    )
    config.mesh.shape = (2, 4, 1)
    results = train.train_and_evaluate(config, workdir)
    self.assertIn('test', results)  # evaluated, not merely stopped
    with open(os.path.join(workdir, 'results.json')) as f:
      self.assertEqual(json.load(f)['step'], 1)  # the budget ends step 1
    config.train.max_train_seconds = 0.0
    train.train_and_evaluate(config, workdir)
    resumed, _ = final_params(config, workdir)
    straight, _ = final_params(config, self.straight)
    for got, want in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
      np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

  def test_elastic_resume_on_four_devices_with_another_mesh(self):
    config_path = run_helpers.write_config_file(
        os.path.join(self.tmp, 'elastic_config.py'), self.data, train__steps=6
    )
    workdir = os.path.join(self.tmp, 'elastic')
    first = run_helpers.run_cli(
        [
            f'--config={config_path}',
            f'--workdir={workdir}',
            '--config.mesh.shape=(2,4,1)',
            '--config.train.stop_at_step=3',
        ],
        devices=8,
    )
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    second = run_helpers.run_cli(
        [
            f'--config={config_path}',
            f'--workdir={workdir}',
            '--config.mesh.shape=(1,2,2)',
        ],
        devices=4,
    )
    self.assertEqual(second.returncode, 0, second.stderr[-3000:])
    self.assertIn('Resuming from the checkpoint of step 3', second.stdout)
    losses = run_helpers.train_losses(workdir)
    for step in (4, 5, 6):
      self.assertAlmostEqual(
          losses[step], self.straight_losses[step], delta=1e-5
      )

  def test_sigterm_saves_the_last_step_and_resumes_from_it(self):
    config_path = run_helpers.write_config_file(
        os.path.join(self.tmp, 'long_config.py'),
        self.data,
        train__steps=100_000,
        checkpoint__every=0,
    )
    workdir = os.path.join(self.tmp, 'preempted')
    env = dict(
        os.environ,
        XLA_FLAGS='--xla_force_host_platform_device_count=1',
        JAX_PLATFORMS='cpu',
        PYTHONUNBUFFERED='1',
    )
    process = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'flaxllm.main',
            f'--config={config_path}',
            f'--workdir={workdir}',
        ],
        cwd=run_helpers.ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = os.path.join(workdir, 'metrics.jsonl')
    deadline = time.time() + 240
    while time.time() < deadline:
      if (
          os.path.exists(metrics)
          and len(run_helpers.train_losses(workdir)) >= 5
      ):
        break
      self.assertIsNone(process.poll(), 'the run ended before it was signalled')
      time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    self.assertEqual(process.returncode, train.PREEMPTED_EXIT_CODE, err[-3000:])
    saved = int(
        re.search(r'Preempted: saved the checkpoint of step (\d+)', out).group(
            1
        )
    )
    self.assertGreaterEqual(saved, max(run_helpers.train_losses(workdir)))
    self.assertEqual(
        sorted(os.listdir(os.path.join(workdir, 'checkpoints'))), [str(saved)]
    )

    resumed = run_helpers.run_cli(
        [
            f'--config={config_path}',
            f'--workdir={workdir}',
            f'--config.train.stop_at_step={saved + 2}',
        ],
        devices=1,
    )
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
    self.assertIn(
        f'Resuming from the checkpoint of step {saved}', resumed.stdout
    )
    self.assertIn(f'Stopped at step {saved + 2}', resumed.stdout)


class PreemptedEvaluationTest(absltest.TestCase):

  def test_sigterm_during_the_final_evaluation_ends_the_run(self):
    # The signal goes to this process: it must land in the handler the run
    # installs, which only the main thread can install.
    self.assertIs(threading.current_thread(), threading.main_thread())
    tmp = tempfile.mkdtemp()
    config = run_helpers.tiny_config(
        run_helpers.make_data_dir(os.path.join(tmp, 'data')), train__steps=3
    )
    workdir = os.path.join(tmp, 'run')
    evaluated = []

    def slow_evaluation(*unused_args, **unused_kwargs):
      evaluated.append(time.time())
      os.kill(os.getpid(), signal.SIGTERM)
      time.sleep(30)  # a long evaluation; the signal must cut it short
      return {'eval': {}}

    with mock.patch.object(train, 'evaluate_splits', slow_evaluation):
      results = train.train_and_evaluate(config, workdir)
    self.assertLen(evaluated, 1)
    self.assertLess(time.time() - evaluated[0], 20)
    self.assertEqual(results, {'preempted': 3})
    self.assertIn('3', os.listdir(os.path.join(workdir, 'checkpoints')))
    # The run's handler is gone: the previous one (the default) is back.
    self.assertIs(signal.getsignal(signal.SIGTERM), signal.SIG_DFL)


class _FailingWrite:
  """A future of an async write that fails, like a full disk."""

  def result(self, timeout=None):
    del timeout
    raise OSError('No space left on device (injected)')


class CheckpointerTest(absltest.TestCase):

  def test_keeps_the_newest_k_and_saves_on_the_period(self):
    directory = os.path.join(tempfile.mkdtemp(), 'checkpoints')
    checkpointer = checkpointing.Checkpointer(directory, keep=2, every=2)
    state = {'w': jnp.arange(4.0)}
    started = [
        checkpointer.save(step, state, {'step': step}) for step in range(1, 7)
    ]
    self.assertEqual(started, [False, True, False, True, False, True])
    self.assertTrue(checkpointer.save(7, state, {'step': 7}, force=True))
    checkpointer.wait()
    self.assertEqual(checkpointer.all_steps(), [6, 7])
    checkpointer.close()

  def test_failed_async_save_is_raised_not_skipped(self):
    directory = os.path.join(tempfile.mkdtemp(), 'checkpoints')
    checkpointer = checkpointing.Checkpointer(directory, keep=3, every=1)
    state = {'w': jnp.arange(8.0)}
    checkpointer.save(1, state, {'epoch': 0})
    checkpointer.wait()
    self.assertEqual(checkpointer.all_steps(), [1])

    original = ocp.PyTreeCheckpointHandler.async_save

    async def failing_async_save(self, *args, **kwargs):
      futures = await original(self, *args, **kwargs)
      return list(futures or []) + [_FailingWrite()]

    with mock.patch.object(
        ocp.PyTreeCheckpointHandler, 'async_save', failing_async_save
    ):
      checkpointer.save(2, state, {'epoch': 0})
      with self.assertRaisesRegex(
          checkpointing.CheckpointError, 'step 2 .* failed to save'
      ):
        checkpointer.wait()
      # Without waiting: the next step boundary's check() raises it.
      checkpointer.save(3, state, {'epoch': 0})
      with self.assertRaisesRegex(
          checkpointing.CheckpointError, 'step 3 .* failed to save'
      ):
        deadline = time.time() + 30
        while time.time() < deadline:
          checkpointer.check()
          time.sleep(0.05)
    # The earlier checkpoint is intact and restorable.
    restored, data_state = checkpointer.restore(
        1,
        {
            'w': jax.ShapeDtypeStruct(
                (8,), jnp.float32, sharding=state['w'].sharding
            )
        },
    )
    np.testing.assert_array_equal(restored['w'], state['w'])
    self.assertEqual(data_state, {'epoch': 0})
    checkpointer.close()


if __name__ == '__main__':
  absltest.main()
