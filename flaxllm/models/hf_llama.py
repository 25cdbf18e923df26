"""Hugging Face LLaMA checkpoints <-> `decoder.Decoder` params.

The converter module of model_type 'llama' for `flaxllm.models.hf`. It works
on plain dicts (the HF config.json contents, and state dicts of numpy arrays
keyed like `model.layers.0.self_attn.q_proj.weight`); reading and writing
folders is `hf`'s job. Torch `Linear` weights are [out, in]; our kernels are [in, out]
with the head axes split out ([embed, heads, kv] for q/k/v, [heads, kv,
embed] for the output projection).
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np

from flaxllm import errors
from flaxllm.models import decoder

CONFIG_CLASS = decoder.DecoderConfig

_DTYPE_NAMES = {'float32', 'bfloat16', 'float16'}
_ATTENTION = ('q_proj', 'k_proj', 'v_proj')
_MLP = ('gate_proj', 'up_proj', 'down_proj')
_NORMS = ('input_layernorm', 'post_attention_layernorm')


def _rope_from_hf(hf_config: Mapping[str, Any]) -> tuple[float, Any]:
  """(rope_theta, rope_scaling) from old (rope_scaling) or new HF keys."""
  parameters = dict(
      hf_config.get('rope_scaling') or hf_config.get('rope_parameters') or {}
  )
  theta = parameters.pop('rope_theta', hf_config.get('rope_theta', 10000.0))
  rope_type = parameters.pop('rope_type', parameters.pop('type', 'default'))
  if rope_type == 'default':
    return float(theta), None
  return float(theta), {'rope_type': rope_type, **parameters}


def config_from_hf(
    hf_config: Mapping[str, Any], **overrides: Any
) -> decoder.DecoderConfig:
  """Builds our config from a LLaMA config.json.

  Args:
    hf_config: the config.json contents (model_type 'llama').
    **overrides: our config fields to set (e.g. dtype, scan_layers).

  Returns:
    The validated config.

  Raises:
    UserInputError: on a LLaMA variant this model does not implement.
  """
  activation = hf_config.get('hidden_act', 'silu')
  if activation != 'silu':
    raise errors.UserInputError(
        f'LLaMA config has hidden_act={activation!r}; only silu is supported'
    )
  theta, scaling = _rope_from_hf(hf_config)
  num_heads = hf_config['num_attention_heads']
  pad_id = hf_config.get('pad_token_id')
  if pad_id is None:
    eos = hf_config.get('eos_token_id')
    pad_id = (eos[0] if isinstance(eos, list) else eos) or 0
  values = dict(
      vocab_size=hf_config['vocab_size'],
      d_model=hf_config['hidden_size'],
      num_heads=num_heads,
      num_kv_heads=hf_config.get('num_key_value_heads') or num_heads,
      head_dim=hf_config.get('head_dim')
      or hf_config['hidden_size'] // num_heads,
      ffn_dim=hf_config['intermediate_size'],
      num_layers=hf_config['num_hidden_layers'],
      max_positions=hf_config.get('max_position_embeddings', 2048),
      rms_norm_eps=hf_config.get('rms_norm_eps', 1e-6),
      rope_theta=theta,
      rope_scaling=scaling,
      tie_embeddings=bool(hf_config.get('tie_word_embeddings', False)),
      attention_bias=bool(hf_config.get('attention_bias', False)),
      mlp_bias=bool(hf_config.get('mlp_bias', False)),
      pad_id=pad_id,
  )
  return decoder.DecoderConfig.from_dict(values, **overrides)


def config_to_hf(config: decoder.DecoderConfig) -> dict[str, Any]:
  """Writes our config as a LLaMA config.json dict.

  Both the old (`rope_theta`, `rope_scaling`) and the transformers 5
  (`rope_parameters`) spellings of the rotary settings are written.

  Args:
    config: our config.

  Returns:
    A JSON-serialisable dict.
  """
  scaling = None if config.rope_scaling is None else dict(config.rope_scaling)
  parameters = {'rope_type': 'default', **(scaling or {})}
  parameters['rope_theta'] = config.rope_theta
  dtype_name = np.dtype(config.param_dtype).name
  return {
      'model_type': 'llama',
      'architectures': ['LlamaForCausalLM'],
      'vocab_size': config.vocab_size,
      'hidden_size': config.d_model,
      'intermediate_size': config.ffn_dim,
      'num_hidden_layers': config.num_layers,
      'num_attention_heads': config.num_heads,
      'num_key_value_heads': config.kv_heads,
      'head_dim': config.dim_per_head,
      'hidden_act': 'silu',
      'max_position_embeddings': config.max_positions,
      'rms_norm_eps': config.rms_norm_eps,
      'rope_theta': config.rope_theta,
      'rope_scaling': scaling,
      'rope_parameters': parameters,
      'tie_word_embeddings': config.tie_embeddings,
      'attention_bias': config.attention_bias,
      'mlp_bias': config.mlp_bias,
      'pad_token_id': config.pad_id,
      'torch_dtype': dtype_name if dtype_name in _DTYPE_NAMES else 'float32',
  }


def _layer_from_hf(
    state: Mapping[str, np.ndarray], prefix: str, config: decoder.DecoderConfig
) -> dict[str, Any]:
  """One layer's params from the HF tensors under `prefix`."""
  embed, head_dim = config.d_model, config.dim_per_head
  heads = {
      'q_proj': config.num_heads,
      'k_proj': config.kv_heads,
      'v_proj': config.kv_heads,
  }
  attention = {}
  for name, count in heads.items():
    weight = state[f'{prefix}self_attn.{name}.weight']  # [heads*kv, embed]
    attention[name] = {'kernel': weight.T.reshape(embed, count, head_dim)}
    if config.attention_bias:
      bias = state[f'{prefix}self_attn.{name}.bias']
      attention[name]['bias'] = bias.reshape(count, head_dim)
  weight = state[f'{prefix}self_attn.o_proj.weight']  # [embed, heads*kv]
  attention['out_proj'] = {
      'kernel': weight.T.reshape(config.num_heads, head_dim, embed)
  }
  if config.attention_bias:
    attention['out_proj']['bias'] = state[f'{prefix}self_attn.o_proj.bias']
  mlp = {}
  for name in _MLP:
    mlp[name] = {'kernel': state[f'{prefix}mlp.{name}.weight'].T}
    if config.mlp_bias:
      mlp[name]['bias'] = state[f'{prefix}mlp.{name}.bias']
  layer = {'self_attn': attention, 'mlp': mlp}
  for name in _NORMS:
    layer[name] = {'scale': state[f'{prefix}{name}.weight']}
  return layer


def params_from_hf(
    state: Mapping[str, np.ndarray], config: decoder.DecoderConfig
) -> dict[str, Any]:
  """Converts a LLaMA state dict to our params.

  Args:
    state: HF tensor name -> numpy array (`model.` prefixed, as saved by
      `LlamaForCausalLM`).
    config: our config (from `config_from_hf`).

  Returns:
    Nested dict of numpy arrays in `Decoder`'s layout; the layers stacked on
    a leading axis under 'layers' when `config.scan_layers`.

  Raises:
    UserInputError: if a tensor is missing.
  """
  try:
    layer_params = [
        _layer_from_hf(state, f'model.layers.{index}.', config)
        for index in range(config.num_layers)
    ]
    params = {
        'embed_tokens': {'embedding': state['model.embed_tokens.weight']},
        'norm': {'scale': state['model.norm.weight']},
    }
    if not config.tie_embeddings:
      head = state.get('lm_head.weight', state['model.embed_tokens.weight'])
      params['lm_head'] = head.T  # [embed, vocab]
  except KeyError as error:
    raise errors.UserInputError(
        f'LLaMA checkpoint lacks tensor {error.args[0]!r}'
    ) from None
  if config.scan_layers:
    params['layers'] = jax.tree.map(lambda *xs: np.stack(xs), *layer_params)
  else:
    for index, layer in enumerate(layer_params):
      params[f'layers_{index}'] = layer
  return params


def params_to_hf(
    params: Mapping[str, Any], config: decoder.DecoderConfig
) -> dict[str, np.ndarray]:
  """Converts our params to a LLaMA state dict.

  Args:
    params: `Decoder` params (boxed or not, scanned or not, jax or numpy).
    config: our config.

  Returns:
    HF tensor name -> numpy array; `lm_head.weight` only when untied.
  """
  params = nn.unbox(params)
  if set(params) == {'params'}:
    params = params['params']
  params = jax.tree.map(np.asarray, params)
  if config.scan_layers:
    layer_params = [
        jax.tree.map(lambda x, i=index: x[i], params['layers'])
        for index in range(config.num_layers)
    ]
  else:
    layer_params = [params[f'layers_{i}'] for i in range(config.num_layers)]
  state = {
      'model.embed_tokens.weight': params['embed_tokens']['embedding'],
      'model.norm.weight': params['norm']['scale'],
  }
  if not config.tie_embeddings:
    state['lm_head.weight'] = params['lm_head'].T
  for index, layer in enumerate(layer_params):
    prefix = f'model.layers.{index}.'
    attention = layer['self_attn']
    for name in _ATTENTION:
      kernel = attention[name]['kernel']  # [embed, heads, kv]
      state[f'{prefix}self_attn.{name}.weight'] = kernel.reshape(
          kernel.shape[0], -1
      ).T
      if 'bias' in attention[name]:
        state[f'{prefix}self_attn.{name}.bias'] = attention[name][
            'bias'
        ].reshape(-1)
    kernel = attention['out_proj']['kernel']  # [heads, kv, embed]
    state[f'{prefix}self_attn.o_proj.weight'] = kernel.reshape(
        -1, kernel.shape[-1]
    ).T
    if 'bias' in attention['out_proj']:
      state[f'{prefix}self_attn.o_proj.bias'] = attention['out_proj']['bias']
    for name in _MLP:
      state[f'{prefix}mlp.{name}.weight'] = layer['mlp'][name]['kernel'].T
      if 'bias' in layer['mlp'][name]:
        state[f'{prefix}mlp.{name}.bias'] = layer['mlp'][name]['bias']
    for name in _NORMS:
      state[f'{prefix}{name}.weight'] = layer[name]['scale']
  return {key: np.ascontiguousarray(value) for key, value in state.items()}
