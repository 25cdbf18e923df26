"""Bad input gets one line naming the problem, exit 2, and an untouched workdir."""

import hashlib
import json
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from tests import run_helpers


def snapshot(directory: str) -> dict[str, str]:
  """path -> content hash of every file under `directory`."""
  digests = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        digests[os.path.relpath(path, directory)] = hashlib.sha256(
            f.read()
        ).hexdigest()
  return digests


class BadInputTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = run_helpers.make_data_dir(os.path.join(cls.tmp, 'data'))
    cls.config = run_helpers.write_config_file(
        os.path.join(cls.tmp, 'tiny_config.py'), cls.data, train__steps=2
    )
    corrupt = os.path.join(cls.tmp, 'corrupt.jsonl')
    with open(cls.data['train']) as f:
      lines = f.readlines()
    lines[6] = '{"src": "fever cough", "tgt": \n'
    with open(corrupt, 'w') as f:
      f.writelines(lines)
    empty = os.path.join(cls.tmp, 'empty_target.jsonl')
    lines[6] = json.dumps({'src': 'fever cough', 'tgt': '  '}) + '\n'
    with open(empty, 'w') as f:
      f.writelines(lines)
    cls.corrupt, cls.empty = corrupt, empty
    # An existing, trained workdir that no bad run may alter.
    cls.workdir = os.path.join(cls.tmp, 'trained')
    result = run_helpers.run_cli(
        [f'--config={cls.config}', f'--workdir={cls.workdir}']
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cls.before = snapshot(cls.workdir)

  def assert_one_line_error(self, flags, *patterns):
    result = run_helpers.run_cli(
        [f'--config={self.config}', f'--workdir={self.workdir}', *flags]
    )
    lines = result.stderr.strip().splitlines()
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertLen(lines, 1, result.stderr[-3000:])
    self.assertStartsWith(lines[0], 'flaxllm: error: ')
    for pattern in patterns:
      self.assertRegex(lines[0], pattern)
    self.assertEqual(snapshot(self.workdir), self.before)

  def test_unknown_config_key(self):
    self.assert_one_line_error(['--config.train.stepz=3'], 'stepz')

  def test_unknown_key_inside_a_config_file(self):
    self.assert_one_line_error(['--config.model.d_modle=64'], 'd_modle')

  def test_mesh_that_does_not_divide_the_devices(self):
    self.assert_one_line_error(
        ['--config.mesh.shape=(3,3,1)'], r'mesh\.shape', '9 devices', '8'
    )

  def test_batch_not_divisible_by_the_data_axes(self):
    self.assert_one_line_error(
        ['--config.train.batch_size=12'], r'batch_size=12', 'divisible'
    )

  def test_missing_data_file(self):
    self.assert_one_line_error(
        ['--config.data.train=/no/such/train.jsonl'],
        '/no/such/train.jsonl',
        'does not exist',
    )

  def test_corrupt_jsonl_line(self):
    self.assert_one_line_error(
        [f'--config.data.train={self.corrupt}'],
        r'corrupt\.jsonl:7',
        'on_bad_record',
    )

  def test_empty_target(self):
    self.assert_one_line_error(
        [f'--config.data.train={self.empty}'], r'empty_target\.jsonl:7', 'tgt'
    )

  def test_other_model_shape_in_a_trained_workdir(self):
    self.assert_one_line_error(
        ['--config.model.d_model=64'], 'd_model', 'new --workdir'
    )

  def test_corrupt_line_is_skipped_when_asked(self):
    result = run_helpers.run_cli([
        f'--config={self.config}',
        f'--workdir={os.path.join(self.tmp, "skipping")}',
        f'--config.data.train={self.corrupt}',
        '--config.data.on_bad_record=skip',
    ])
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertRegex(result.stderr, r'corrupt\.jsonl:7')


if __name__ == '__main__':
  absltest.main()
