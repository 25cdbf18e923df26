"""Parity of decoder.Decoder + hf_llama with transformers' LlamaForCausalLM."""

import json
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import numpy as safetensors_numpy
import torch
import transformers

from flaxllm.models import decoder
from flaxllm.models import hf_llama

VOCAB, BATCH, LENGTH = 101, 2, 11
TOLERANCE = 1e-4
ROPE_SCALINGS = {
    'none': None,
    'linear': {'rope_type': 'linear', 'factor': 2.0},
    'llama3': {
        'rope_type': 'llama3',
        'factor': 8.0,
        'low_freq_factor': 1.0,
        'high_freq_factor': 4.0,
        'original_max_position_embeddings': 16,
    },
    'yarn': {
        'rope_type': 'yarn',
        'factor': 4.0,
        'original_max_position_embeddings': 16,
    },
}


def _hf_model(rope: str, tied: bool) -> transformers.LlamaForCausalLM:
  torch.manual_seed(0)
  scaling = ROPE_SCALINGS[rope]
  hf_config = transformers.LlamaConfig(
      vocab_size=VOCAB,
      hidden_size=32,
      intermediate_size=64,
      num_hidden_layers=2,
      num_attention_heads=4,
      num_key_value_heads=2,
      max_position_embeddings=64,
      rms_norm_eps=1e-5,
      rope_theta=500.0,
      # A copy: transformers adds keys to the dict it is given.
      rope_scaling=None if scaling is None else dict(scaling),
      tie_word_embeddings=tied,
      attention_bias=rope == 'yarn',
      pad_token_id=0,
  )
  model = transformers.LlamaForCausalLM(hf_config).eval()
  # Random, non-trivial norm scales (HF initialises them to 1).
  with torch.no_grad():
    for name, param in model.named_parameters():
      if name.endswith('norm.weight') or name.endswith('bias'):
        param.add_(0.1 * torch.randn_like(param))
  return model


def _ids() -> np.ndarray:
  return np.random.default_rng(0).integers(0, VOCAB, (BATCH, LENGTH))


def _hf_logits(model: transformers.PreTrainedModel) -> np.ndarray:
  with torch.no_grad():
    return model(torch.tensor(_ids())).logits.float().numpy()


def _our_logits(config: decoder.DecoderConfig, params) -> np.ndarray:
  logits = decoder.Decoder(config).apply(
      {'params': params}, jnp.asarray(_ids(), jnp.int32)
  )
  return np.asarray(logits)


def _load(model: transformers.PreTrainedModel, scan_layers: bool):
  state = {k: v.float().numpy() for k, v in model.state_dict().items()}
  config = hf_llama.config_from_hf(
      model.config.to_dict(), scan_layers=scan_layers
  )
  return config, hf_llama.params_from_hf(state, config)


class HfLlamaTest(parameterized.TestCase):

  @parameterized.product(
      rope=list(ROPE_SCALINGS), tied=[False, True], scan_layers=[False, True]
  )
  def test_logits_match_transformers(self, rope, tied, scan_layers):
    model = _hf_model(rope, tied)
    config, params = _load(model, scan_layers)
    self.assertEqual(config.tie_embeddings, tied)
    self.assertEqual(config.rope_scaling, ROPE_SCALINGS[rope])
    np.testing.assert_allclose(
        _our_logits(config, params), _hf_logits(model), atol=TOLERANCE, rtol=0
    )

  @parameterized.product(
      rope=['none', 'llama3'], tied=[False, True], scan_layers=[False, True]
  )
  def test_save_folder_loads_in_transformers(self, rope, tied, scan_layers):
    model = _hf_model(rope, tied)
    config, params = _load(model, scan_layers)
    # Perturb every param so the saved weights are ours, not the originals.
    params = jax.tree.map(lambda x: x + 0.01, params)
    with tempfile.TemporaryDirectory() as folder:
      with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(hf_llama.config_to_hf(config), f)
      safetensors_numpy.save_file(
          hf_llama.params_to_hf(params, config),
          os.path.join(folder, 'model.safetensors'),
          metadata={'format': 'pt'},
      )
      reloaded = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
      # And back: the folder's config and tensors give our params again.
      with open(os.path.join(folder, 'config.json')) as f:
        config_back = hf_llama.config_from_hf(
            json.load(f), scan_layers=scan_layers
        )
      state = safetensors_numpy.load_file(
          os.path.join(folder, 'model.safetensors')
      )
    self.assertEqual(config_back, config)
    jax.tree.map(
        np.testing.assert_array_equal,
        hf_llama.params_from_hf(state, config_back),
        params,
    )
    np.testing.assert_allclose(
        _hf_logits(reloaded),
        _our_logits(config, params),
        atol=TOLERANCE,
        rtol=0,
    )

  def test_config_round_trip_and_rejects_other_activations(self):
    config = decoder.DecoderConfig.from_dict(
        dict(
            vocab_size=VOCAB,
            d_model=32,
            num_heads=4,
            num_kv_heads=2,
            head_dim=8,
        ),
        rope_scaling=ROPE_SCALINGS['linear'],
    )
    self.assertEqual(
        hf_llama.config_from_hf(hf_llama.config_to_hf(config)), config
    )
    hf_config = dict(hf_llama.config_to_hf(config), hidden_act='gelu')
    with self.assertRaisesRegex(Exception, 'hidden_act'):
      hf_llama.config_from_hf(hf_config)


if __name__ == '__main__':
  absltest.main()
