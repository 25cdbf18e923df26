"""--mode=eval and --mode=predict on a trained workdir."""

import json
import os
import tempfile

from absl.testing import absltest

from tests import run_helpers


class ModesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = run_helpers.make_data_dir(os.path.join(cls.tmp, 'data'))
    cls.config = run_helpers.write_config_file(
        os.path.join(cls.tmp, 'tiny_config.py'), cls.data, train__steps=2
    )
    cls.workdir = os.path.join(cls.tmp, 'trained')
    result = run_helpers.run_cli(
        [f'--config={cls.config}', f'--workdir={cls.workdir}'], devices=2
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(cls.workdir, 'results.json')) as f:
      cls.train_results = json.load(f)

  def test_eval_reproduces_the_final_metrics(self):
    result = run_helpers.run_cli(
        [f'--config={self.config}', f'--workdir={self.workdir}', '--mode=eval'],
        devices=2,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn('[test]', result.stdout)
    with open(os.path.join(self.workdir, 'results.json')) as f:
      results = json.load(f)
    self.assertEqual(results['step'], 2)
    for split in ('eval', 'test'):
      for key in ('loss', 'bleu', 'rougeL'):
        self.assertAlmostEqual(
            results[split][key], self.train_results[split][key], places=4
        )

  def test_predict_writes_every_example_of_the_split(self):
    result = run_helpers.run_cli(
        [
            f'--config={self.config}',
            f'--workdir={self.workdir}',
            '--mode=predict',
            '--config.predict.split=eval',
        ],
        devices=2,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(self.workdir, 'predictions.jsonl')) as f:
      rows = [json.loads(line) for line in f]
    with open(self.data['eval']) as f:
      sources = [json.loads(line)['src'] for line in f]
    self.assertEqual([row['src'] for row in rows], sources)
    self.assertTrue(all(isinstance(row['prediction'], str) for row in rows))

  def test_eval_without_a_checkpoint_is_a_user_error(self):
    result = run_helpers.run_cli(
        [
            f'--config={self.config}',
            f'--workdir={os.path.join(self.tmp, "empty")}',
            '--mode=eval',
        ],
        devices=2,
    )
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertIn('has no checkpoint', result.stderr)
    self.assertFalse(os.path.exists(os.path.join(self.tmp, 'empty')))


if __name__ == '__main__':
  absltest.main()
