"""Every config in configs/ builds, validates, and trains one step at :runlocal."""

import glob
import importlib.util
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax

from flaxllm import configuration
from flaxllm import train
from tests import run_helpers

CONFIG_FILES = sorted(
    path
    for path in glob.glob(os.path.join(run_helpers.ROOT, 'configs', '*.py'))
    if os.path.basename(path) not in ('__init__.py', 'common.py')
)


def load_config_module(path: str):
  spec = importlib.util.spec_from_file_location(
      os.path.basename(path)[:-3], path
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class ConfigsTest(parameterized.TestCase):

  def test_there_are_configs(self):
    self.assertNotEmpty(CONFIG_FILES)

  @parameterized.named_parameters(
      (os.path.basename(p)[:-3], p) for p in CONFIG_FILES
  )
  def test_config_validates_and_runs_one_step(self, path):
    module = load_config_module(path)
    self.assertIn('python -m flaxllm.main', module.__doc__)
    full = module.get_config()
    configuration.validate(full, num_devices=jax.device_count())
    config = module.get_config('runlocal')
    configuration.validate(config, num_devices=jax.device_count())
    config.train.steps = 1
    config.data.max_eval_examples = 8
    results = train.train_and_evaluate(config, tempfile.mkdtemp())
    self.assertIn('test', results)
    for value in results['test'].values():
      self.assertFalse(value != value, 'a metric is NaN')


if __name__ == '__main__':
  absltest.main()
