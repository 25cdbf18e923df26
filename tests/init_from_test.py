"""config.init_from: runs start from a Hugging Face folder's or GGUF's weights."""

import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import numpy as np

from flaxllm import configuration
from flaxllm import errors
from flaxllm import train
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.models import decoder
from flaxllm.models import gguf
from flaxllm.models import hf
from flaxllm.models import pretrained
from tests import run_helpers


def _llama_folder(data: dict[str, str]) -> tuple[str, dict]:
  """A tiny random LLaMA saved as a HF folder, with a tokenizer beside it."""
  folder = tempfile.mkdtemp()
  with open(data['train']) as f:
    texts = [line for line in f]
  tokenizer = tokenizer_lib.train_bpe(texts, 300)
  config = decoder.DecoderConfig(
      vocab_size=tokenizer.vocab_size,
      d_model=32,
      num_heads=4,
      num_kv_heads=2,
      ffn_dim=48,
      num_layers=2,
      max_positions=64,
      pad_id=tokenizer.pad_id,
  )
  ids = np.zeros((1, 4), np.int32)
  params = nn.unbox(
      decoder.Decoder(config).init(jax.random.key(7), ids)['params']
  )
  hf.save_pretrained(folder, config, params)
  # The tokenizer files go beside the weights, as in a Hugging Face folder.
  tokenizer_folder = os.path.join(tempfile.mkdtemp(), 'tokenizer')
  tokenizer.save(tokenizer_folder)
  for name in os.listdir(tokenizer_folder):
    shutil.copy(os.path.join(tokenizer_folder, name), folder)
  return folder, jax.device_get(params)


class InitFromTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data = run_helpers.make_data_dir(tempfile.mkdtemp())
    cls.folder, cls.params = _llama_folder(cls.data)

  @parameterized.parameters(False, True)
  def test_fresh_run_starts_from_the_folders_weights(self, scan_layers):
    config = run_helpers.lm_tiny_config(self.data)
    config.init_from = f'hf:{self.folder}'
    config.model.scan_layers = scan_layers
    config.mesh.shape = (2, 2, 2)
    configuration.validate(config, num_devices=jax.device_count())
    run = train.setup(config, tempfile.mkdtemp())
    state, _ = train.restore_or_init(run)
    self.assertEqual(run.task.model_config.num_layers, 2)
    self.assertEqual(run.task.model_config.scan_layers, scan_layers)
    # The tokenizer is the folder's, not a freshly trained one.
    self.assertEqual(
        run.data.tokenizer.vocab_size, run.task.model_config.vocab_size
    )
    _, expected = hf.load_pretrained(self.folder, scan_layers=scan_layers)
    got = jax.device_get(state.params)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(expected)
    ):
      np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    # The params really are sharded on the 2 x 2 x 2 mesh.
    embed = state.params['embed_tokens']['embedding']
    self.assertGreater(len(embed.sharding.device_set), 1)
    run.checkpointer.close()

  def test_checkpoint_of_another_family_is_a_user_error(self):
    config = run_helpers.tiny_config(self.data)  # seq2seq: encoder-decoder
    config.init_from = f'hf:{self.folder}'
    with self.assertRaisesRegex(errors.UserInputError, 'EncoderDecoderConfig'):
      train.setup(config, tempfile.mkdtemp())

  def test_malformed_and_missing_specs_are_user_errors(self):
    config = run_helpers.lm_tiny_config(self.data)
    for spec, message in (
        ('safetensors:/x', 'is not'),
        ('hf:/no/such/folder', 'config.json'),
        (f'gguf:{self.folder}/none.gguf', 'does not exist'),
    ):
      config.init_from = spec
      with self.assertRaisesRegex(errors.UserInputError, message):
        configuration.validate(config, num_devices=jax.device_count())

  def test_gguf_spec_gives_architecture_and_tokenizer_from_metadata(self):
    spec = f'gguf:{gguf.smollm2_path()}'
    config = pretrained.model_config(
        spec, decoder.DecoderConfig, {'scan_layers': True, 'd_model': 8}
    )
    self.assertEqual(config.num_layers, 30)
    self.assertEqual(config.d_model, 576)  # architecture keys are ignored
    self.assertTrue(config.scan_layers)  # run-time keys apply
    tokenizer = pretrained.load_tokenizer(spec)
    self.assertEqual(tokenizer.vocab_size, config.vocab_size)
    self.assertTrue(os.path.isfile(gguf.smollm2_path()))


if __name__ == '__main__':
  absltest.main()
