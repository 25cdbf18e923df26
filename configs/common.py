"""Shared pieces of the experiment configs.

`parse_arg('runlocal,size=base', size='small', runlocal=False)` turns the
`:variant` part of `--config=configs/X.py:variant` into a ConfigDict, the way
big_vision does: bare words are booleans set to True, `k=v` pairs take the
type of their default.
"""

import ml_collections

from flaxllm.configuration import default_config

__all__ = [
    'default_config',
    'parse_arg',
    'encoder_decoder_model',
    'decoder_model',
]


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses a config's variant argument against typed defaults."""
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    if key not in defaults:
      raise ValueError(
          f'config argument {key!r} is unknown; known: {sorted(defaults)}'
      )
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ValueError(f'config argument {key!r} needs a value: {key}=...')
      parsed[key] = True
    elif isinstance(default, bool):
      parsed[key] = value.lower() in ('1', 'true', 'yes')
    else:
      parsed[key] = type(default)(value)
  return parsed


ENCODER_DECODER_SIZES = {
    # name: (d_model, heads, ffn, encoder layers, decoder layers)
    'tiny': (128, 4, 512, 2, 2),
    'small': (256, 4, 1024, 3, 3),
    'base': (768, 12, 3072, 6, 6),  # BART-base shape
}


def encoder_decoder_model(size: str) -> ml_collections.ConfigDict:
  """config.model for a BART-style encoder-decoder of a named size."""
  if size not in ENCODER_DECODER_SIZES:
    raise ValueError(
        f'size={size!r} is unknown; use one of {sorted(ENCODER_DECODER_SIZES)}'
    )
  d_model, heads, ffn, enc, dec = ENCODER_DECODER_SIZES[size]
  m = ml_collections.ConfigDict()
  m.family = 'encoder_decoder'
  m.d_model = d_model
  m.num_heads = heads
  m.ffn_dim = ffn
  m.encoder_layers = enc
  m.decoder_layers = dec
  m.max_positions = 256
  m.dropout_rate = 0.1
  m.attention_dropout = 0.0
  m.activation = 'gelu'
  m.pre_ln = False
  m.layernorm_embedding = True
  m.scale_embedding = False
  m.tie_embeddings = True
  m.final_logits_bias = True
  m.dtype = 'float32'  # compute dtype; 'bfloat16' for mixed precision
  m.param_dtype = 'float32'
  m.scan_layers = False
  m.remat = False
  m.attention_impl = 'xla'
  return m


DECODER_SIZES = {
    # name: (d_model, heads, kv heads, ffn, layers)
    'tiny': (128, 4, 2, 384, 2),
    'small': (256, 8, 4, 688, 4),
    'tinyllama': (2048, 32, 4, 5632, 22),  # the LLaMA 1.1B shape
}


def decoder_model(size: str) -> ml_collections.ConfigDict:
  """config.model for a LLaMA-style decoder of a named size."""
  if size not in DECODER_SIZES:
    raise ValueError(
        f'size={size!r} is unknown; use one of {sorted(DECODER_SIZES)}'
    )
  d_model, heads, kv_heads, ffn, num_layers = DECODER_SIZES[size]
  m = ml_collections.ConfigDict()
  m.family = 'decoder'
  m.d_model = d_model
  m.num_heads = heads
  m.num_kv_heads = kv_heads
  m.ffn_dim = ffn
  m.num_layers = num_layers
  m.max_positions = 2048
  m.rope_theta = 10000.0
  m.tie_embeddings = True
  m.dtype = 'float32'  # compute dtype; 'bfloat16' for mixed precision
  m.param_dtype = 'float32'
  m.scan_layers = False
  m.remat = False
  m.attention_impl = 'xla'
  return m
