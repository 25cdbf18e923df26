"""Tests of experiments/dmt_sweep.py: run names, claims and the seed table."""

import importlib.util
import json
import os
import statistics
import sys
import tempfile

from absl.testing import absltest

_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    'experiments',
    'dmt_sweep.py',
)


def _load_sweep():
  spec = importlib.util.spec_from_file_location('dmt_sweep', _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _write_results(root, name, metrics):
  os.makedirs(os.path.join(root, name))
  with open(os.path.join(root, name, 'results.json'), 'w') as f:
    json.dump({'step': 900, 'test': metrics}, f)


class DmtSweepTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.sweep = _load_sweep()
    self.root = tempfile.mkdtemp()

  def test_run_names_become_config_variants(self):
    self.assertEqual(
        self.sweep.config_arg('dmt@0.25'), 'runlocal,strategy=dmt,k=0.25'
    )
    self.assertEqual(
        self.sweep.config_arg('single@code'),
        'runlocal,strategy=single,single=code',
    )
    self.assertEqual(
        self.sweep.config_arg('sequential'), 'runlocal,strategy=sequential'
    )
    with self.assertRaises(SystemExit):
      self.sweep.config_arg('curriculum')
    with self.assertRaises(SystemExit):
      self.sweep.config_arg('multi_task@0.5')

  def test_report_gives_mean_and_sample_std_over_seeds(self):
    math_by_seed = [10.0, 20.0, 36.0]
    for seed, math in enumerate(math_by_seed):
      _write_results(
          self.root,
          f'dmt@0.0625_s{seed}',
          {'math_accuracy': math, 'code_pass@1': 50.0, 'accuracy': 0.5},
      )
    _write_results(
        self.root, 'sequential_s0', {'math_accuracy': 4.0, 'accuracy': 0.25}
    )
    results_md = os.path.join(self.root, 'dmt.md')

    table = self.sweep.report(self.root, results_md)

    mean = statistics.mean(math_by_seed)
    std = statistics.stdev(math_by_seed)
    dmt_row = next(line for line in table.splitlines() if '1/16' in line)
    self.assertIn('| 0,1,2 |', dmt_row)
    self.assertIn(f'{mean:.1f} +- {std:.1f}', dmt_row)
    sequential_row = next(
        line for line in table.splitlines() if line.startswith('| sequential')
    )
    self.assertIn('| 4.0 |', sequential_row)
    self.assertIn('| 25.0 |', sequential_row)  # token accuracy in percent
    with open(results_md) as f:
      self.assertIn(table, f.read())

  def test_command_carries_config_args_and_steps_to_every_run(self):
    argv = self.sweep.command(
        'dmt@0.25', 2, '/tmp/w', extra='math_level=small', steps=2700
    )

    self.assertIn(
        '--config=configs/dmt.py:runlocal,strategy=dmt,k=0.25,'
        'math_level=small',
        argv,
    )
    self.assertIn('--config.train.steps=2700', argv)
    self.assertIn('--config.seed=2', argv)
    self.assertNotIn(
        '--config.train.steps=0', self.sweep.command('sequential', 0, '/tmp/w')
    )

  def test_claimed_run_is_left_to_its_sweep(self):
    claim = os.path.join(self.root, 'multi_task_s1.claim')
    open(claim, 'w').close()

    self.sweep._run_one('multi_task', 1, self.root, timeout_s=5)

    self.assertTrue(os.path.exists(claim))
    self.assertFalse(os.path.exists(os.path.join(self.root, 'runs.jsonl')))

  def test_run_is_logged_and_its_claim_released(self):
    self.sweep.command = lambda run, seed, workdir, extra, steps: [
        sys.executable,
        '-c',
        'import sys; sys.exit(3)',
    ]

    self.sweep.run_all(
        ['sequential', 'dmt@0.25'], [0, 1], self.root, timeout_s=60, parallel=2
    )

    with open(os.path.join(self.root, 'runs.jsonl')) as f:
      entries = [json.loads(line) for line in f]
    self.assertCountEqual(
        [(entry['run'], entry['seed']) for entry in entries],
        [('sequential', 0), ('dmt@0.25', 0), ('sequential', 1),
         ('dmt@0.25', 1)],
    )
    self.assertEqual({entry['returncode'] for entry in entries}, {3})
    self.assertEqual(
        [name for name in os.listdir(self.root) if name.endswith('.claim')],
        [],
    )


if __name__ == '__main__':
  absltest.main()
