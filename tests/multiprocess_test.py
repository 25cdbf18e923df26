"""Two processes on localhost (gloo, 4 CPU devices each) train like one of 8."""

import os
import socket
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from tests import run_helpers


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


class MultiProcessTest(absltest.TestCase):

  def test_two_processes_match_one_process_of_eight_devices(self):
    tmp = tempfile.mkdtemp()
    data = run_helpers.make_data_dir(os.path.join(tmp, 'data'))
    config_path = run_helpers.write_config_file(
        os.path.join(tmp, 'tiny_config.py'), data, train__steps=3
    )
    mesh = '--config.mesh.shape=(2,4,1)'

    single = os.path.join(tmp, 'single')
    result = run_helpers.run_cli(
        [f'--config={config_path}', f'--workdir={single}', mesh], devices=8
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])

    multi = os.path.join(tmp, 'multi')
    port = free_port()
    env = dict(os.environ)
    env.update(
        XLA_FLAGS='--xla_force_host_platform_device_count=4',
        JAX_PLATFORMS='cpu',
        PYTHONUNBUFFERED='1',
    )
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                '-m',
                'flaxllm.main',
                f'--config={config_path}',
                f'--workdir={multi}',
                mesh,
                f'--coordinator_address=localhost:{port}',
                '--num_processes=2',
                f'--process_id={index}',
            ],
            cwd=run_helpers.ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [p.communicate(timeout=400) for p in processes]
    for process, (_, err) in zip(processes, outputs):
      self.assertEqual(process.returncode, 0, err[-3000:])

    want = run_helpers.train_losses(single)
    got = run_helpers.train_losses(multi)
    self.assertEqual(sorted(got), [1, 2, 3])
    np.testing.assert_allclose(
        [got[s] for s in (1, 2, 3)],
        [want[s] for s in (1, 2, 3)],
        rtol=0,
        atol=1e-5,
    )
    # Only process 0 prints the progress line.
    self.assertIn('step 3/3', outputs[0][0])
    self.assertNotIn('step 3/3', outputs[1][0])


if __name__ == '__main__':
  absltest.main()
