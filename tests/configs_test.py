"""Every config in configs/ builds, validates, and trains one step at :runlocal."""

import glob
import importlib.util
import json
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


# Configs for --mode=decode: validated, not trained.
DECODE_CONFIGS = ('decode', 'scd')
# Configs for --mode=route (ZOOTER): validated, their zoo parsed, not trained.
ROUTE_CONFIGS = ('zooter',)
# Configs whose data folder a helper script writes (`data=DIR`).
NEEDS_DATA_DIR = ('distill_draft',)


def write_distill_data(directory: str) -> str:
  """What experiments/make_distill_data.py writes, in miniature."""
  from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

  _, _, tokenizer = gguf.read_gguf(gguf.smollm2_path(), tensors=False)
  tokenizer.save(os.path.join(directory, 'tokenizer'))
  for split, count in (('train', 32), ('eval', 8)):
    with open(os.path.join(directory, f'{split}.jsonl'), 'w') as f:
      for index in range(count):
        text = f'Patient {index} reports fever and cough for {index} days.'
        f.write(json.dumps({'text': text}) + '\n')
  return directory


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
    name = os.path.basename(path)[:-3]
    self.assertIn('python -m flaxllm.main', module.__doc__)
    arg = 'runlocal'
    if name in NEEDS_DATA_DIR:
      arg = f'runlocal,data={write_distill_data(tempfile.mkdtemp())}'
    full = module.get_config(
        arg.replace('runlocal,', '').replace('runlocal', '')
    )
    configuration.validate(full, num_devices=jax.device_count())
    config = module.get_config(arg)
    configuration.validate(config, num_devices=jax.device_count())
    if name in ROUTE_CONFIGS:  # --mode=route configs train no LM step
      from flaxllm.recipes import zooter  # pylint: disable=g-import-not-at-top

      self.assertIn('--mode=route', module.__doc__)
      self.assertGreaterEqual(len(zooter.parse_members(config.route)), 2)
      return
    if name in DECODE_CONFIGS:  # --mode=decode configs train nothing
      self.assertIn('--mode=decode', module.__doc__)
      self.assertIn(config.decode.method, configuration.DECODE_METHODS)
      return
    config.train.steps = 1
    config.data.max_eval_examples = 8
    results = train.train_and_evaluate(config, tempfile.mkdtemp())
    split = 'test' if config.data.test else 'eval'
    self.assertIn(split, results)
    for value in results[split].values():
      self.assertFalse(value != value, 'a metric is NaN')


if __name__ == '__main__':
  absltest.main()
