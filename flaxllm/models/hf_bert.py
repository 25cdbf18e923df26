"""Converts Hugging Face BERT checkpoints (model_type 'bert') to and from ours.

The converter works on plain data: a `config.json` dict and a flat state dict
of numpy arrays (as read from `model.safetensors`); `flaxllm.models.hf` does
the folder IO and dispatches here by model_type. Both `BertModel` checkpoints
(keys `embeddings.`, `encoder.`, `pooler.`) and `BertForSequenceClassification`
ones (the same under `bert.`, plus `classifier.`) load; keys of other heads,
such as the masked-LM head `cls.`, are ignored.

Torch `Linear` weights are [out, in]; our kernels are [in, out], with the
attention projections split into heads: query/key/value kernels are
[embed, heads, kv] and the attention output kernel [heads, kv, embed].
"""

from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from flaxllm import errors
from flaxllm.models import encoder

CONFIG_CLASS = encoder.EncoderConfig

_PREFIX = 'bert.'
_HEAD_SUFFIX = 'ForSequenceClassification'

# How a tensor changes between the two layouts; see `_to_ours`.
_COPY = 'copy'
_LINEAR = 'linear'  # [out, in] <-> [in, out]
_INTO_HEADS = 'into_heads'  # [heads * kv, embed] <-> [embed, heads, kv]
_HEAD_BIAS = 'head_bias'  # [heads * kv] <-> [heads, kv]
_FROM_HEADS = 'from_heads'  # [embed, heads * kv] <-> [heads, kv, embed]

# (our path within a layer, HF name within `encoder.layer.N.`, kind).
_LAYER_TENSORS = (
    ('attention/q_proj/kernel', 'attention.self.query.weight', _INTO_HEADS),
    ('attention/q_proj/bias', 'attention.self.query.bias', _HEAD_BIAS),
    ('attention/k_proj/kernel', 'attention.self.key.weight', _INTO_HEADS),
    ('attention/k_proj/bias', 'attention.self.key.bias', _HEAD_BIAS),
    ('attention/v_proj/kernel', 'attention.self.value.weight', _INTO_HEADS),
    ('attention/v_proj/bias', 'attention.self.value.bias', _HEAD_BIAS),
    ('attention/out_proj/kernel', 'attention.output.dense.weight', _FROM_HEADS),
    ('attention/out_proj/bias', 'attention.output.dense.bias', _COPY),
    ('attention_LayerNorm/scale', 'attention.output.LayerNorm.weight', _COPY),
    ('attention_LayerNorm/bias', 'attention.output.LayerNorm.bias', _COPY),
    ('mlp/fc1/kernel', 'intermediate.dense.weight', _LINEAR),
    ('mlp/fc1/bias', 'intermediate.dense.bias', _COPY),
    ('mlp/fc2/kernel', 'output.dense.weight', _LINEAR),
    ('mlp/fc2/bias', 'output.dense.bias', _COPY),
    ('output_LayerNorm/scale', 'output.LayerNorm.weight', _COPY),
    ('output_LayerNorm/bias', 'output.LayerNorm.bias', _COPY),
)


def _tensors(
    config: encoder.EncoderConfig, prefix: str
) -> Iterator[tuple[str, str, str]]:
  """Yields (our path, HF key, kind) for each tensor of `config`'s model.

  Args:
    config: the model config; layer paths are the unrolled ones (`layer_N`).
    prefix: put in front of every HF key but the classifier's.
  """
  for name in ('word', 'position', 'token_type'):
    yield (
        f'embeddings/{name}_embeddings/embedding',
        f'{prefix}embeddings.{name}_embeddings.weight',
        _COPY,
    )
  for ours, hf in (('scale', 'weight'), ('bias', 'bias')):
    hf_key = f'{prefix}embeddings.LayerNorm.{hf}'
    yield f'embeddings/LayerNorm/{ours}', hf_key, _COPY
  for index in range(config.num_layers):
    for path, hf_name, kind in _LAYER_TENSORS:
      hf_key = f'{prefix}encoder.layer.{index}.{hf_name}'
      yield f'layer_{index}/{path}', hf_key, kind
  if config.pooler:
    yield 'pooler/dense/kernel', f'{prefix}pooler.dense.weight', _LINEAR
    yield 'pooler/dense/bias', f'{prefix}pooler.dense.bias', _COPY
  if config.num_labels:
    yield 'classifier/kernel', 'classifier.weight', _LINEAR
    yield 'classifier/bias', 'classifier.bias', _COPY


def _to_ours(
    tensor: np.ndarray, kind: str, config: encoder.EncoderConfig
) -> np.ndarray:
  """Rearranges one HF tensor of the given kind into our layout."""
  heads, head_dim = config.num_heads, config.head_dim
  if kind == _LINEAR:
    return tensor.T
  if kind == _INTO_HEADS:
    return tensor.T.reshape(-1, heads, head_dim)
  if kind == _HEAD_BIAS:
    return tensor.reshape(heads, head_dim)
  if kind == _FROM_HEADS:
    return tensor.T.reshape(heads, head_dim, -1)
  return tensor


def _to_hf(tensor: np.ndarray, kind: str) -> np.ndarray:
  """Inverse of `_to_ours`."""
  if kind == _LINEAR:
    return tensor.T
  if kind == _INTO_HEADS:
    return tensor.reshape(tensor.shape[0], -1).T
  if kind == _HEAD_BIAS:
    return tensor.reshape(-1)
  if kind == _FROM_HEADS:
    return tensor.reshape(-1, tensor.shape[-1]).T
  return tensor


def config_from_hf(
    hf_config: dict[str, Any], **overrides: Any
) -> encoder.EncoderConfig:
  """Builds our config from a Hugging Face BERT `config.json` dict.

  A sequence-classification checkpoint (its `architectures` name one) gets a
  head with one output per label; any other gets none.

  Args:
    hf_config: the parsed `config.json`.
    **overrides: our config fields to set instead (e.g. dtype='bfloat16',
      scan_layers=True, num_labels=3 for a fresh head).

  Returns:
    The validated config.

  Raises:
    UserInputError: for a model type or variant that is not supported.
  """
  model_type = hf_config.get('model_type', 'bert')
  if model_type != 'bert':
    raise errors.UserInputError(
        f"config.json has model_type {model_type!r}, expected 'bert'"
    )
  position_type = hf_config.get('position_embedding_type', 'absolute')
  if position_type != 'absolute':
    raise errors.UserInputError(
        f'BERT position_embedding_type {position_type!r} is not supported;'
        " only 'absolute'"
    )
  if hf_config.get('is_decoder') or hf_config.get('add_cross_attention'):
    raise errors.UserInputError(
        'decoder BERT checkpoints (is_decoder or add_cross_attention) are not'
        ' supported; flaxllm.models.encoder is bidirectional only'
    )
  architectures = hf_config.get('architectures') or ()
  num_labels = 0
  if any(name.endswith(_HEAD_SUFFIX) for name in architectures):
    id2label = hf_config.get('id2label')
    num_labels = len(id2label) if id2label else hf_config.get('num_labels', 2)
  problem_type = hf_config.get('problem_type')
  is_regression = problem_type == 'regression' or (
      problem_type is None and num_labels == 1
  )
  values = dict(
      vocab_size=hf_config['vocab_size'],
      d_model=hf_config['hidden_size'],
      num_heads=hf_config['num_attention_heads'],
      ffn_dim=hf_config['intermediate_size'],
      num_layers=hf_config['num_hidden_layers'],
      max_positions=hf_config['max_position_embeddings'],
      type_vocab_size=hf_config.get('type_vocab_size', 2),
      layer_norm_eps=hf_config.get('layer_norm_eps', 1e-12),
      activation=hf_config.get('hidden_act', 'gelu'),
      dropout_rate=hf_config.get('hidden_dropout_prob', 0.1),
      attention_dropout=hf_config.get('attention_probs_dropout_prob', 0.1),
      pad_id=hf_config.get('pad_token_id') or 0,
      num_labels=num_labels,
      problem='regression' if is_regression else 'classification',
  )
  return encoder.EncoderConfig.from_dict(values, **overrides)


def config_to_hf(config: encoder.EncoderConfig) -> dict[str, Any]:
  """Builds a Hugging Face BERT `config.json` dict from our config.

  Args:
    config: our config. Hugging Face cannot express `pooler=False`; its
      models then create (and randomly initialise) a pooler.

  Returns:
    A JSON-serialisable dict for `BertModel` (no head) or
    `BertForSequenceClassification` (with one).
  """
  hf_config = {
      'model_type': 'bert',
      'architectures': [
          f'Bert{_HEAD_SUFFIX}' if config.num_labels else 'BertModel'
      ],
      'vocab_size': config.vocab_size,
      'hidden_size': config.d_model,
      'num_attention_heads': config.num_heads,
      'intermediate_size': config.ffn_dim,
      'num_hidden_layers': config.num_layers,
      'max_position_embeddings': config.max_positions,
      'type_vocab_size': config.type_vocab_size,
      'layer_norm_eps': config.layer_norm_eps,
      'hidden_act': config.activation,
      'hidden_dropout_prob': config.dropout_rate,
      'attention_probs_dropout_prob': config.attention_dropout,
      'pad_token_id': config.pad_id,
      'position_embedding_type': 'absolute',
      'initializer_range': 0.02,
  }
  if config.num_labels:
    labels = [f'LABEL_{index}' for index in range(config.num_labels)]
    hf_config['id2label'] = dict(enumerate(labels))
    hf_config['label2id'] = {label: i for i, label in enumerate(labels)}
    hf_config['problem_type'] = (
        'regression'
        if config.problem == 'regression'
        else 'single_label_classification'
    )
  return hf_config


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
  *parents, leaf = path.split('/')
  for name in parents:
    tree = tree.setdefault(name, {})
  tree[leaf] = value


def _get(tree: dict[str, Any], path: str) -> Any:
  for name in path.split('/'):
    tree = tree[name]
  return tree


def _stack_layers(params: dict[str, Any], num_layers: int) -> dict[str, Any]:
  """Moves `layer_0` ... `layer_{n-1}` into `layer`, stacked on axis 0."""
  per_layer = [params.pop(f'layer_{i}') for i in range(num_layers)]
  params['layer'] = jax.tree.map(lambda *xs: np.stack(xs), *per_layer)
  return params


def _unstack_layers(params: dict[str, Any], num_layers: int) -> dict[str, Any]:
  """Splits the stacked `layer` subtree into `layer_0` ... `layer_{n-1}`."""
  params = dict(params)
  stacked = params.pop('layer')
  for index in range(num_layers):
    params[f'layer_{index}'] = jax.tree.map(lambda x: x[index], stacked)
  return params


def _expected_params(config: encoder.EncoderConfig) -> Any:
  """Our params' shapes and dtypes for `config`, nothing materialised."""
  ids = jax.ShapeDtypeStruct((1, 1), np.int32)
  variables = jax.eval_shape(
      encoder.Encoder(config).init, jax.random.key(0), ids, ids
  )
  return nn.unbox(variables['params'])


def params_from_hf(
    state: dict[str, np.ndarray], config: encoder.EncoderConfig
) -> dict[str, Any]:
  """Converts a Hugging Face BERT state dict to our parameter tree.

  Args:
    state: HF names -> arrays, with or without the 'bert.' prefix.
    config: our config (e.g. from `config_from_hf`); it decides whether the
      pooler and the classifier are read and whether layers are stacked.

  Returns:
    Nested dict of numpy arrays in `config.param_dtype`, shaped as
    `Encoder(config).init` makes them (unboxed); layers stacked under `layer`
    when `config.scan_layers`.

  Raises:
    UserInputError: if a tensor the config needs is missing or misshapen.
  """
  unprefixed = {
      key.removeprefix(_PREFIX): value for key, value in state.items()
  }
  expected = _expected_params(config.replace(scan_layers=False))
  params = {}
  for path, hf_key, kind in _tensors(config, prefix=''):
    if hf_key not in unprefixed:
      hint = ''
      if hf_key.startswith('pooler.'):
        hint = '; load with pooler=False'
      elif hf_key.startswith('classifier.'):
        hint = '; load with num_labels=0 and add a fresh head'
      raise errors.UserInputError(
          f'BERT checkpoint has no tensor {hf_key!r}{hint}'
      )
    tensor = np.asarray(unprefixed[hf_key])
    # Checked in HF's layout, before a reshape could fail on it.
    want = _to_hf(
        np.broadcast_to(np.int8(0), _get(expected, path).shape), kind
    ).shape
    if tensor.shape != want:
      raise errors.UserInputError(
          f'BERT tensor {hf_key!r} has shape {tensor.shape}, but the config'
          f' needs {want}; does config.json match the weights?'
      )
    _set(
        params,
        path,
        _to_ours(tensor, kind, config).astype(config.param_dtype),
    )
  if config.scan_layers:
    params = _stack_layers(params, config.num_layers)
  return params


def params_to_hf(
    params: dict[str, Any], config: encoder.EncoderConfig
) -> dict[str, np.ndarray]:
  """Converts our parameter tree to a Hugging Face BERT state dict.

  Args:
    params: our (unboxed) params, stacked when `config.scan_layers`.
    config: the config the params belong to.

  Returns:
    HF names -> contiguous numpy arrays: `BertModel` names without a head,
    `BertForSequenceClassification` names ('bert.' prefix, 'classifier.')
    with one.
  """
  params = jax.tree.map(np.asarray, params)
  if config.scan_layers:
    params = _unstack_layers(params, config.num_layers)
  prefix = _PREFIX if config.num_labels else ''
  state = {}
  for path, hf_key, kind in _tensors(config, prefix):
    state[hf_key] = np.ascontiguousarray(_to_hf(_get(params, path), kind))
  return state
