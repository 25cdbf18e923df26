"""Config validation names the offending key and the fix, before any work."""

from absl.testing import absltest
from absl.testing import parameterized

from configs import common
from configs import seq2seq
from flaxllm import configuration
from flaxllm.errors import UserInputError


class ValidateTest(parameterized.TestCase):

  def config(self):
    return seq2seq.get_config('runlocal')

  def test_the_runlocal_config_is_valid(self):
    configuration.validate(self.config(), num_devices=8)

  def test_unknown_key_in_a_section(self):
    config = self.config()
    config.train.unlock()
    config.train.stepz = 3
    with self.assertRaisesRegex(
        UserInputError, r"'train\.stepz' is unknown.*'steps'"
    ):
      configuration.validate(config, num_devices=8)

  def test_wrong_type(self):
    config = self.config()
    config.train.unlock()
    del config.train['steps']
    config.train.steps = 'many'
    with self.assertRaisesRegex(
        UserInputError, r"'train\.steps' is 'many' \(str\)"
    ):
      configuration.validate(config, num_devices=8)

  @parameterized.parameters(
      ('train', 'steps', 0, r"'train\.steps' is 0 but must be > 0"),
      ('data', 'overlong', 'drop', r"'data\.overlong' is 'drop'"),
      ('optimizer', 'ema_decay', 1.5, 'ema_decay'),
      ('train', 'max_train_seconds', -1.0, r"'train\.max_train_seconds'"),
      ('train', 'grad_accum_steps', 3, 'grad_accum_steps=3'),
  )
  def test_bad_values(self, section, key, value, message):
    config = self.config()
    config[section][key] = value
    with self.assertRaisesRegex(UserInputError, message):
      configuration.validate(config, num_devices=8)

  def test_unknown_task_and_model_keys(self):
    config = self.config()
    config.task.name = 'translation'
    with self.assertRaisesRegex(UserInputError, 'task.name'):
      configuration.validate(config, num_devices=8)
    config = self.config()
    config.model.unlock()
    config.model.d_modle = 3
    with self.assertRaisesRegex(UserInputError, 'd_modle'):
      configuration.validate(config, num_devices=8)

  def test_batch_divides_processes(self):
    config = self.config()
    config.train.batch_size = 8
    config.train.eval_batch_size = 8
    with self.assertRaisesRegex(UserInputError, 'processes'):
      configuration.validate(config, num_devices=8, num_processes=3)


class ParseArgTest(absltest.TestCase):

  def test_words_and_pairs(self):
    arg = common.parse_arg(
        'runlocal,size=base', runlocal=False, size='small', steps=10
    )
    self.assertTrue(arg.runlocal)
    self.assertEqual(arg.size, 'base')
    self.assertEqual(arg.steps, 10)

  def test_unknown_argument(self):
    with self.assertRaisesRegex(ValueError, 'sise'):
      common.parse_arg('sise=base', size='small')


if __name__ == '__main__':
  absltest.main()
