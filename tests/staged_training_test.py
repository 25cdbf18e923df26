"""SFT data stages: recipe-composed stages, boundary checkpoints, resuming."""

import os
import tempfile

from absl.testing import absltest
import numpy as np

from flaxllm import train
from flaxllm.data import lm_data
from flaxllm.data import packing
from flaxllm.tasks import sft
from tests import run_helpers


class _Counter:
  """A resumable iterator yielding {'value': [tag, i]} batches."""

  def __init__(self, tag):
    self.tag, self.i = tag, 0

  def __next__(self):
    self.i += 1
    return {'value': np.array([self.tag, self.i])}

  def get_state(self):
    return {'i': self.i}

  def set_state(self, state):
    self.i = state['i']


def _sft_config(data, strategy, steps=6):
  config = run_helpers.lm_tiny_config(data, train__steps=steps)
  config.task = sft.task_defaults()
  config.task.chat_template = 'none'
  config.task.separator = '\n'
  config.task.sources = f'math={data["train"]},general={data["eval"]}'
  config.task.recipe.strategy = strategy
  config.task.recipe.specialist_sources = ('math',)
  config.task.recipe.k = 0.25
  config.data.train = ''
  config.data.eval = ''
  config.data.max_source_length = 20
  return config


class StagedIteratorTest(absltest.TestCase):

  def test_switches_at_the_boundaries_and_resumes(self):
    staged = packing.StagedIterator(
        [_Counter(0), _Counter(1), _Counter(2)], (2, 3)
    )
    tags = [int(next(staged)['value'][0]) for _ in range(5)]
    self.assertEqual(tags, [0, 0, 1, 2, 2])
    resumed = packing.StagedIterator(
        [_Counter(0), _Counter(1), _Counter(2)], (2, 3)
    )
    resumed.set_state(staged.get_state())
    np.testing.assert_array_equal(next(resumed)['value'], [2, 3])

  def test_stage_boundaries_split_steps_by_stage_size(self):
    self.assertEqual(lm_data.stage_boundaries([300, 100], 40), (30, 40))
    self.assertEqual(lm_data.stage_boundaries([1, 1, 2], 8), (2, 4, 8))


class StagedTrainingTest(absltest.TestCase):

  def test_dmt_stages_follow_the_recipe(self):
    data = run_helpers.make_data_dir(tempfile.mkdtemp())
    bundle = lm_data.LMData.from_config(
        _sft_config(data, 'dmt'), tempfile.mkdtemp()
    )
    (name1, first), (name2, second) = bundle.stages
    self.assertEqual(len(first), 256)  # the math source
    self.assertEqual(len(second), 32 + 64)  # general + floor(0.25 * 256) math
    self.assertEqual(bundle.checkpoint_steps, (round(6 * 256 / 352),))
    self.assertIn('math', name1)
    self.assertIn('general', name2)

  def test_a_run_checkpoints_at_the_stage_boundary_and_resumes_there(self):
    data = run_helpers.make_data_dir(tempfile.mkdtemp())
    config = _sft_config(data, 'mixed_sequential', steps=6)
    config.checkpoint.every = 0
    config.train.stop_at_step = 5
    workdir = tempfile.mkdtemp()
    self.assertEqual(train.train_and_evaluate(config, workdir), {'stopped': 5})
    boundary = lm_data.stage_boundaries([256, 32], 6)[0]
    saved = sorted(
        int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))
    )
    self.assertIn(boundary, saved)
    config.train.stop_at_step = 0
    results = train.train_and_evaluate(config, workdir)
    self.assertIn('rougeL', results['test'])


if __name__ == '__main__':
  absltest.main()
