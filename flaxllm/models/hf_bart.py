"""Hugging Face BART and mBART <-> `EncoderDecoder` configs and params.

BART (model_type 'bart') normalises after each residual block. mBART
('mbart') normalises before it and closes each stack with a final
`layer_norm`, which is our `pre_ln=True`; older BART configs say the same with
`normalize_before` and `add_final_layer_norm`.

Every Hugging Face tensor has exactly one counterpart in our params, listed
by `_tensors`, which both directions of the conversion read. Torch Linear
weights are [out, in] and our kernels [in, out]; attention kernels also split
the model axis into heads: q/k/v [embed, heads, head_dim], out_proj
[heads, head_dim, embed]. The position tables keep BART's two leading unused
rows (our `position_offset=2`), so they copy unchanged.

Settings that only regularise training and that our model lacks
(`activation_dropout`, `encoder_layerdrop`, `decoder_layerdrop`) are dropped
with a warning; every other feature our model cannot reproduce is an error.
"""

import dataclasses
from typing import Any, Mapping

from absl import logging
import jax
import numpy as np

from flaxllm import errors
from flaxllm.models import encoder_decoder

CONFIG_CLASS = encoder_decoder.EncoderDecoderConfig

MODEL_TYPES = ('bart', 'mbart')
_ARCHITECTURES = {
    'bart': 'BartForConditionalGeneration',
    'mbart': 'MBartForConditionalGeneration',
}
# Values transformers assumes for keys a config.json leaves out.
_HF_DEFAULTS = {
    'vocab_size': 50265,
    'd_model': 1024,
    'encoder_layers': 12,
    'decoder_layers': 12,
    'encoder_attention_heads': 16,
    'decoder_attention_heads': 16,
    'encoder_ffn_dim': 4096,
    'decoder_ffn_dim': 4096,
    'max_position_embeddings': 1024,
    'dropout': 0.1,
    'attention_dropout': 0.0,
    'activation_function': 'gelu',
    'scale_embedding': False,
    'pad_token_id': 1,
    'tie_word_embeddings': True,
}
# Hugging Face activation_function -> ours.
_ACTIVATIONS = {'gelu': 'gelu', 'relu': 'relu', 'silu': 'silu', 'swish': 'silu'}
# Flags of older BART configs, with the only value our model reproduces.
_LEGACY_FLAGS = {
    'add_bias_logits': False,
    'static_position_embeddings': False,
    'extra_pos_embeddings': 2,
    'normalize_embedding': True,
}
# Training-only regularisers our model lacks; dropped with a warning.
_IGNORED_IF_NONZERO = (
    'activation_dropout',
    'encoder_layerdrop',
    'decoder_layerdrop',
)
_POSITION_OFFSET = 2


def _pre_ln(hf_config: Mapping[str, Any]) -> bool:
  """Whether the checkpoint normalises before each block (with final norms)."""
  if hf_config['model_type'] == 'mbart':
    return True
  before = bool(hf_config.get('normalize_before', False))
  final_norm = bool(hf_config.get('add_final_layer_norm', False))
  if before != final_norm:
    raise errors.UserInputError(
        f'unsupported BART config: normalize_before={before} with'
        f' add_final_layer_norm={final_norm}; our pre-LN model always ends'
        ' each stack with a final layer norm and our post-LN model never does'
    )
  return before


def config_from_hf(
    hf_config: Mapping[str, Any], **overrides: Any
) -> encoder_decoder.EncoderDecoderConfig:
  """Converts a Hugging Face BART/mBART config.

  Args:
    hf_config: the contents of config.json.
    **overrides: fields of our config that replace the converted values.

  Returns:
    The validated config.

  Raises:
    UserInputError: on another model_type or a feature our model lacks.
  """
  model_type = hf_config.get('model_type')
  if model_type not in MODEL_TYPES:
    raise errors.UserInputError(
        f'model_type {model_type!r} is not one of {list(MODEL_TYPES)}'
    )
  get = lambda key: hf_config.get(key, _HF_DEFAULTS[key])
  unsupported = [
      f'{key}={hf_config[key]!r}'
      for key, value in _LEGACY_FLAGS.items()
      if key in hf_config and hf_config[key] != value
  ]
  for encoder_key, decoder_key in (
      ('encoder_attention_heads', 'decoder_attention_heads'),
      ('encoder_ffn_dim', 'decoder_ffn_dim'),
  ):
    if get(encoder_key) != get(decoder_key):
      unsupported.append(
          f'{encoder_key}={get(encoder_key)} != {decoder_key}='
          f'{get(decoder_key)}'
      )
  if get('activation_function') not in _ACTIVATIONS:
    unsupported.append(
        f'activation_function={get("activation_function")!r} (supported:'
        f' {sorted(_ACTIVATIONS)})'
    )
  if unsupported:
    raise errors.UserInputError(
        f'unsupported {model_type} config features: {", ".join(unsupported)}'
    )
  ignored = [key for key in _IGNORED_IF_NONZERO if hf_config.get(key)]
  if ignored:
    logging.warning(
        'ignoring %s: our encoder-decoder has no such regulariser',
        ', '.join(f'{key}={hf_config[key]}' for key in ignored),
    )
  pad_id = get('pad_token_id')
  fields = dict(
      vocab_size=get('vocab_size'),
      d_model=get('d_model'),
      num_heads=get('encoder_attention_heads'),
      ffn_dim=get('encoder_ffn_dim'),
      encoder_layers=get('encoder_layers'),
      decoder_layers=get('decoder_layers'),
      max_positions=get('max_position_embeddings'),
      dropout_rate=get('dropout'),
      attention_dropout=get('attention_dropout'),
      activation=_ACTIVATIONS[get('activation_function')],
      pre_ln=_pre_ln(hf_config),
      layernorm_embedding=True,
      scale_embedding=bool(get('scale_embedding')),
      tie_embeddings=bool(get('tie_word_embeddings')),
      final_logits_bias=True,
      position_offset=_POSITION_OFFSET,
      pad_id=_HF_DEFAULTS['pad_token_id'] if pad_id is None else pad_id,
  )
  return CONFIG_CLASS.from_dict(fields, **overrides)


def config_to_hf(config: encoder_decoder.EncoderDecoderConfig) -> dict:
  """Converts our config to a Hugging Face BART (post-LN) or mBART (pre-LN).

  Args:
    config: our config.

  Returns:
    The contents of config.json.

  Raises:
    UserInputError: if the config has no Hugging Face counterpart.
  """
  unsupported = []
  if not config.layernorm_embedding:
    unsupported.append('layernorm_embedding=False')
  if config.position_offset != _POSITION_OFFSET:
    unsupported.append(f'position_offset={config.position_offset}')
  if unsupported:
    raise errors.UserInputError(
        'cannot save as Hugging Face BART: unsupported'
        f' {", ".join(unsupported)}'
    )
  model_type = 'mbart' if config.pre_ln else 'bart'
  return {
      'model_type': model_type,
      'architectures': [_ARCHITECTURES[model_type]],
      'is_encoder_decoder': True,
      'vocab_size': config.vocab_size,
      'd_model': config.d_model,
      'encoder_layers': config.encoder_layers,
      'decoder_layers': config.decoder_layers,
      'encoder_attention_heads': config.num_heads,
      'decoder_attention_heads': config.num_heads,
      'encoder_ffn_dim': config.ffn_dim,
      'decoder_ffn_dim': config.ffn_dim,
      'max_position_embeddings': config.max_positions,
      'dropout': config.dropout_rate,
      'attention_dropout': config.attention_dropout,
      'activation_function': config.activation,
      'scale_embedding': config.scale_embedding,
      'pad_token_id': config.pad_id,
      'tie_word_embeddings': config.tie_embeddings,
  }


@dataclasses.dataclass(frozen=True)
class _Tensor:
  """One Hugging Face tensor and its place in our params.

  Attributes:
    hf_name: the Hugging Face state-dict name.
    path: keys into our (unrolled) params tree.
    hf_shape: the Hugging Face shape.
    shape: our shape.
    transpose: a torch Linear weight, [out, in] there and [in, out] (then
      reshaped) here.
  """

  hf_name: str
  path: tuple[str, ...]
  hf_shape: tuple[int, ...]
  shape: tuple[int, ...]
  transpose: bool = False

  def from_hf(self, array: np.ndarray) -> np.ndarray:
    return (array.T if self.transpose else array).reshape(self.shape)

  def to_hf(self, array: np.ndarray) -> np.ndarray:
    if self.transpose:
      return np.ascontiguousarray(array.reshape(self.hf_shape[::-1]).T)
    return array.reshape(self.hf_shape)


def _tensors(config: encoder_decoder.EncoderDecoderConfig) -> list[_Tensor]:
  """Lists every tensor of the checkpoint with its counterpart in our tree."""
  d, heads, head_dim = config.d_model, config.num_heads, config.head_dim
  vocab, ffn = config.vocab_size, config.ffn_dim

  def norm(hf_prefix, path):
    return [
        _Tensor(f'{hf_prefix}.weight', (*path, 'scale'), (d,), (d,)),
        _Tensor(f'{hf_prefix}.bias', (*path, 'bias'), (d,), (d,)),
    ]

  def linear(hf_prefix, path, in_shape, out_shape):
    in_size, out_size = int(np.prod(in_shape)), int(np.prod(out_shape))
    return [
        _Tensor(
            f'{hf_prefix}.weight',
            (*path, 'kernel'),
            (out_size, in_size),
            (*in_shape, *out_shape),
            transpose=True,
        ),
        _Tensor(f'{hf_prefix}.bias', (*path, 'bias'), (out_size,), out_shape),
    ]

  def attention(hf_prefix, path):
    tensors = []
    for proj in ('q_proj', 'k_proj', 'v_proj'):
      tensors += linear(
          f'{hf_prefix}.{proj}', (*path, proj), (d,), (heads, head_dim)
      )
    return tensors + linear(
        f'{hf_prefix}.out_proj', (*path, 'out_proj'), (heads, head_dim), (d,)
    )

  tensors = [
      _Tensor(
          'model.shared.weight', ('shared', 'embedding'), (vocab, d), (vocab, d)
      )
  ]
  for stack, num_layers in (
      ('encoder', config.encoder_layers),
      ('decoder', config.decoder_layers),
  ):
    hf_stack = f'model.{stack}'
    positions_shape = (config.max_positions + _POSITION_OFFSET, d)
    tensors.append(
        _Tensor(
            f'{hf_stack}.embed_positions.weight',
            (stack, 'embed_positions', 'embedding'),
            positions_shape,
            positions_shape,
        )
    )
    tensors += norm(
        f'{hf_stack}.layernorm_embedding', (stack, 'layernorm_embedding')
    )
    if config.pre_ln:
      tensors += norm(f'{hf_stack}.layer_norm', (stack, 'layer_norm'))
    blocks = (
        ('self_attn', 'encoder_attn') if stack == 'decoder' else ('self_attn',)
    )
    for index in range(num_layers):
      hf_layer, layer = f'{hf_stack}.layers.{index}', (stack, f'layers_{index}')
      for block in blocks:
        tensors += attention(f'{hf_layer}.{block}', (*layer, block))
        tensors += norm(
            f'{hf_layer}.{block}_layer_norm', (*layer, f'{block}_layer_norm')
        )
      tensors += linear(f'{hf_layer}.fc1', (*layer, 'mlp', 'fc1'), (d,), (ffn,))
      tensors += linear(f'{hf_layer}.fc2', (*layer, 'mlp', 'fc2'), (ffn,), (d,))
      tensors += norm(
          f'{hf_layer}.final_layer_norm', (*layer, 'final_layer_norm')
      )
  if config.final_logits_bias:
    tensors.append(
        _Tensor(
            'final_logits_bias', ('final_logits_bias',), (1, vocab), (vocab,)
        )
    )
  if not config.tie_embeddings:
    tensors.append(
        _Tensor('lm_head.weight', ('lm_head',), (vocab, d), (d, vocab), True)
    )
  return tensors


def _canonical_name(name: str) -> str:
  """Adds the 'model.' prefix that checkpoints of a bare BartModel lack."""
  if name.split('.', 1)[0] in ('shared', 'encoder', 'decoder'):
    return f'model.{name}'
  return name


def _stack_layers(params: dict, config) -> dict:
  """Replaces layers_0..layers_{n-1} of each stack by one stacked 'layers'."""
  for stack, num_layers in (
      ('encoder', config.encoder_layers),
      ('decoder', config.decoder_layers),
  ):
    layer_trees = [params[stack].pop(f'layers_{i}') for i in range(num_layers)]
    params[stack]['layers'] = jax.tree.map(
        lambda *arrays: np.stack(arrays), *layer_trees
    )
  return params


def _unstack_layers(params: Mapping[str, Any], config) -> dict:
  """Inverse of `_stack_layers` (shallow copies; `params` is not changed)."""
  params = dict(params)
  for stack, num_layers in (
      ('encoder', config.encoder_layers),
      ('decoder', config.decoder_layers),
  ):
    params[stack] = dict(params[stack])
    stacked = params[stack].pop('layers')
    for i in range(num_layers):
      params[stack][f'layers_{i}'] = jax.tree.map(
          lambda array, i=i: array[i], stacked
      )
  return params


def _embedding_copies(config) -> list[str]:
  """Names under which checkpoints may repeat the shared embedding table."""
  names = [
      'model.encoder.embed_tokens.weight',
      'model.decoder.embed_tokens.weight',
  ]
  return names + ['lm_head.weight'] if config.tie_embeddings else names


def params_from_hf(
    state: Mapping[str, np.ndarray],
    config: encoder_decoder.EncoderDecoderConfig,
) -> dict:
  """Converts a BART/mBART state dict to our params.

  Args:
    state: {Hugging Face name: array}, with or without the 'model.' prefix.
    config: our config, from `config_from_hf`.

  Returns:
    Our params (numpy, in `config.param_dtype`), layers stacked when
    `config.scan_layers`.

  Raises:
    UserInputError: naming a missing, misshapen or unexpected tensor.
  """
  state = {_canonical_name(name): array for name, array in state.items()}
  # Our model has one embedding table; the checkpoint may hold copies of it.
  for name in _embedding_copies(config):
    if name not in state:
      continue
    copy = state.pop(name)
    shared = state.setdefault('model.shared.weight', copy)
    if shared.shape != copy.shape or not np.array_equal(shared, copy):
      raise errors.UserInputError(
          f'tensor {name!r} differs from model.shared.weight, but our model'
          ' shares one embedding table between encoder, decoder and (when'
          ' tied) the LM head'
      )
  if config.final_logits_bias:
    # transformers treats a missing bias as zeros.
    state.setdefault(
        'final_logits_bias', np.zeros((1, config.vocab_size), np.float32)
    )

  param_dtype = np.dtype(config.param_dtype)
  params = {}
  for tensor in _tensors(config):
    if tensor.hf_name not in state:
      raise errors.UserInputError(
          f'tensor {tensor.hf_name!r} is missing from the checkpoint'
      )
    array = state.pop(tensor.hf_name)
    if array.shape != tensor.hf_shape:
      raise errors.UserInputError(
          f'tensor {tensor.hf_name!r} has shape {array.shape}, but the config'
          f' implies {tensor.hf_shape}'
      )
    node = params
    for key in tensor.path[:-1]:
      node = node.setdefault(key, {})
    node[tensor.path[-1]] = tensor.from_hf(array).astype(
        param_dtype, copy=False
    )
  if state:
    raise errors.UserInputError(
        f'{len(state)} unexpected tensors in the checkpoint, e.g.'
        f' {sorted(state)[:5]}'
    )
  return _stack_layers(params, config) if config.scan_layers else params


def params_to_hf(
    params: Mapping[str, Any], config: encoder_decoder.EncoderDecoderConfig
) -> dict[str, np.ndarray]:
  """Converts our params to a BART/mBART state dict.

  Args:
    params: our unboxed params (stacked layers when `config.scan_layers`).
    config: our config.

  Returns:
    {Hugging Face name: numpy array in Hugging Face layout}. With tied
    embeddings the copies (lm_head, embed_tokens) are left out, as
    transformers saves them.

  Raises:
    UserInputError: naming a param that is missing, misshapen or unexpected.
  """
  if config.scan_layers:
    params = _unstack_layers(params, config)
  state = {}
  used = 0
  for tensor in _tensors(config):
    node = params
    try:
      for key in tensor.path:
        node = node[key]
    except KeyError:
      raise errors.UserInputError(
          f'param {"/".join(tensor.path)} is missing'
      ) from None
    array = np.asarray(node)
    if array.shape != tensor.shape:
      raise errors.UserInputError(
          f'param {"/".join(tensor.path)} has shape {array.shape}, but the'
          f' config implies {tensor.shape}'
      )
    state[tensor.hf_name] = tensor.to_hf(array)
    used += 1
  total = len(jax.tree.leaves(params))
  if total != used:
    raise errors.UserInputError(
        f'{total - used} params have no Hugging Face BART counterpart'
    )
  if not config.tie_embeddings:
    # transformers ties the encoder and decoder tables to `shared` only when
    # it also ties the LM head, so untied checkpoints need the copies.
    for name in _embedding_copies(config):
      state[name] = state['model.shared.weight']
  if not config.final_logits_bias:
    state['final_logits_bias'] = np.zeros(
        (1, config.vocab_size), np.dtype(config.param_dtype)
    )
  return state
