"""Parity of Hugging Face BART/mBART checkpoints with `EncoderDecoder`.

Tiny random `transformers` models are saved as safetensors folders, loaded by
`flaxllm.models.hf`, and their logits compared with PyTorch's; our saves are
loaded back by `transformers`.
"""

import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
import torch
import transformers

from flaxllm import errors
from flaxllm.models import encoder_decoder
from flaxllm.models import hf
from flaxllm.models import hf_bart

VOCAB, BATCH, SRC, TGT, PAD = 99, 2, 9, 6, 1
ATOL = 1e-4
_HF_CLASSES = {
    'bart': (
        transformers.BartConfig,
        transformers.BartForConditionalGeneration,
    ),
    'mbart': (
        transformers.MBartConfig,
        transformers.MBartForConditionalGeneration,
    ),
}


def _hf_model(model_type: str = 'bart', **overrides) -> torch.nn.Module:
  """A tiny BART/mBART whose every weight, norms included, is random."""
  torch.manual_seed(0)
  config_cls, model_cls = _HF_CLASSES[model_type]
  fields = dict(
      vocab_size=VOCAB,
      d_model=32,
      encoder_layers=2,
      decoder_layers=2,
      encoder_attention_heads=2,
      decoder_attention_heads=2,
      encoder_ffn_dim=64,
      decoder_ffn_dim=64,
      max_position_embeddings=40,
      dropout=0.0,
      pad_token_id=PAD,
  )
  model = model_cls(config_cls(**{**fields, **overrides})).eval()
  with torch.no_grad():
    for param in model.parameters():
      param.add_(0.2 * torch.randn_like(param))
    model.final_logits_bias.normal_(0.0, 0.2)
    if not model.config.tie_word_embeddings:
      # Untied, transformers keeps separate encoder and decoder tables; ours
      # share one, so only checkpoints whose tables agree can load.
      model.model.encoder.embed_tokens.weight.copy_(model.model.shared.weight)
      model.model.decoder.embed_tokens.weight.copy_(model.model.shared.weight)
  return model


def _inputs():
  """Source ids with the second row right-padded, and decoder ids."""
  rng = np.random.default_rng(0)
  inputs = rng.integers(3, VOCAB, (BATCH, SRC))
  input_mask = np.ones((BATCH, SRC), np.int64)
  input_mask[1, 5:] = 0
  inputs[1, 5:] = PAD
  decoder_inputs = rng.integers(3, VOCAB, (BATCH, TGT))
  return inputs, input_mask, decoder_inputs


def _torch_logits(model: torch.nn.Module) -> np.ndarray:
  inputs, input_mask, decoder_inputs = map(torch.tensor, _inputs())
  with torch.no_grad():
    output = model(
        input_ids=inputs,
        attention_mask=input_mask,
        decoder_input_ids=decoder_inputs,
    )
  return output.logits.numpy()  # [batch, tgt, vocab]


def _our_logits(config, params) -> np.ndarray:
  inputs, input_mask, decoder_inputs = _inputs()
  logits = encoder_decoder.EncoderDecoder(config).apply(
      {'params': params}, inputs, input_mask, decoder_inputs
  )
  return np.asarray(logits)  # [batch, tgt, vocab]


# name, model_type, scan_layers, HF config overrides
_CASES = (
    ('bart', 'bart', False, {}),
    ('bart_scan', 'bart', True, {}),
    ('scale_embedding', 'bart', False, {'scale_embedding': True}),
    (
        'untied_relu',
        'bart',
        True,
        {'tie_word_embeddings': False, 'activation_function': 'relu'},
    ),
    ('mbart_pre_ln_scan', 'mbart', True, {}),
)


class HfBartTest(parameterized.TestCase):

  def _tempdir(self) -> str:
    return self.enterContext(tempfile.TemporaryDirectory())

  def _save_hf(self, model: torch.nn.Module) -> str:
    path = self._tempdir()
    model.save_pretrained(path, safe_serialization=True)
    return path

  @parameterized.named_parameters(*_CASES)
  def test_logits_match_transformers(self, model_type, scan_layers, overrides):
    model = _hf_model(model_type, **overrides)
    config, params = hf.load_pretrained(
        self._save_hf(model), scan_layers=scan_layers
    )
    self.assertEqual(config.scan_layers, scan_layers)
    self.assertEqual(config.pre_ln, model_type == 'mbart')
    self.assertEqual(
        config.scale_embedding, overrides.get('scale_embedding', False)
    )
    self.assertIsInstance(params['shared']['embedding'], jax.Array)
    np.testing.assert_allclose(
        _our_logits(config, params), _torch_logits(model), rtol=0, atol=ATOL
    )

  @parameterized.named_parameters(*_CASES)
  def test_save_round_trips_through_transformers(
      self, model_type, scan_layers, overrides
  ):
    model = _hf_model(model_type, **overrides)
    config, params = hf.load_pretrained(
        self._save_hf(model), scan_layers=scan_layers
    )
    path = os.path.join(self._tempdir(), 'saved')
    hf.save_pretrained(path, config, params)
    reloaded, info = _HF_CLASSES[model_type][1].from_pretrained(
        path, output_loading_info=True
    )
    self.assertEmpty(info['missing_keys'])
    self.assertEmpty(info['unexpected_keys'])
    self.assertEmpty(info['mismatched_keys'])
    original_state = model.state_dict()
    for name, tensor in reloaded.state_dict().items():
      np.testing.assert_array_equal(
          tensor.numpy(), original_state[name].numpy(), err_msg=name
      )
    np.testing.assert_allclose(
        _torch_logits(reloaded.eval()), _torch_logits(model), rtol=0, atol=ATOL
    )

  def test_bfloat16_checkpoint_and_dtype_override(self):
    model = _hf_model().to(torch.bfloat16)
    path = self._save_hf(model)
    expected = model.model.shared.weight.detach().float().numpy()
    _, params = hf.load_pretrained(path)
    self.assertEqual(params['shared']['embedding'].dtype, np.float32)
    np.testing.assert_array_equal(params['shared']['embedding'], expected)
    config, params = hf.load_pretrained(path, param_dtype='bfloat16')
    self.assertEqual(np.dtype(config.param_dtype).name, 'bfloat16')
    for leaf in jax.tree.leaves(params):
      self.assertEqual(leaf.dtype.name, 'bfloat16')

  def test_bare_model_names_and_missing_logits_bias(self):
    model = _hf_model()
    model.final_logits_bias.zero_()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    config = hf_bart.config_from_hf(model.config.to_dict())
    expected = hf_bart.params_from_hf(state, config)
    # A bare BartModel's names: no 'model.' prefix, no LM head or bias.
    bare = {
        name.removeprefix('model.'): array
        for name, array in state.items()
        if name not in ('final_logits_bias', 'lm_head.weight')
    }
    jax.tree.map(
        np.testing.assert_array_equal,
        hf_bart.params_from_hf(bare, config),
        expected,
    )

  def test_tensor_errors_name_the_tensor(self):
    model = _hf_model()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    config = hf_bart.config_from_hf(model.config.to_dict())
    name = 'model.decoder.layers.1.fc1.weight'
    cases = {
        'wrong shape': {**state, name: state[name][:, :-1]},
        'missing': {k: v for k, v in state.items() if k != name},
        'unexpected': {
            **state,
            'classification_head.dense.weight': state[name],
        },
        'differing copy': {
            **state,
            'model.encoder.embed_tokens.weight': (
                state['model.shared.weight'] + 1.0
            ),
        },
    }
    for case, bad_state in cases.items():
      with self.subTest(case):
        expected_name = {
            'unexpected': 'classification_head',
            'differing copy': 'model.encoder.embed_tokens.weight',
        }.get(case, name)
        with self.assertRaisesRegex(errors.UserInputError, expected_name):
          hf_bart.params_from_hf(bad_state, config)

  @parameterized.named_parameters(
      ('heads', {'decoder_attention_heads': 4}, 'decoder_attention_heads'),
      ('ffn', {'decoder_ffn_dim': 32}, 'decoder_ffn_dim'),
      ('activation', {'activation_function': 'gelu_new'}, 'gelu_new'),
      ('legacy_bias', {'add_bias_logits': True}, 'add_bias_logits'),
      ('pre_ln_no_final', {'normalize_before': True}, 'normalize_before'),
      ('model_type', {'model_type': 'llama'}, 'llama'),
  )
  def test_unsupported_config_features(self, change, message):
    hf_config = {**_hf_model().config.to_dict(), **change}
    with self.assertRaisesRegex(errors.UserInputError, message):
      hf_bart.config_from_hf(hf_config)

  def test_legacy_pre_ln_flags_select_pre_ln(self):
    hf_config = _hf_model().config.to_dict()
    hf_config.update(normalize_before=True, add_final_layer_norm=True)
    self.assertTrue(hf_bart.config_from_hf(hf_config).pre_ln)

  @parameterized.parameters(
      {}, {'pre_ln': True, 'scale_embedding': True}, {'tie_embeddings': False}
  )
  def test_config_round_trip(self, **fields):
    config = encoder_decoder.EncoderDecoderConfig(
        vocab_size=VOCAB, d_model=32, num_heads=2, **fields
    )
    self.assertEqual(
        hf_bart.config_from_hf(hf_bart.config_to_hf(config)), config
    )

  def test_config_without_hf_counterpart(self):
    config = encoder_decoder.EncoderDecoderConfig(
        vocab_size=VOCAB, d_model=32, num_heads=2, position_offset=0
    )
    with self.assertRaisesRegex(errors.UserInputError, 'position_offset'):
      hf_bart.config_to_hf(config)


if __name__ == '__main__':
  absltest.main()
