"""`config.init_from`: start training from a checkpoint users already have.

The spec names where the weights are:

  hf:/path/to/folder          a Hugging Face folder (config.json + safetensors)
  gguf:/path/to/model.gguf    a LLaMA-architecture GGUF file

A task asks for the checkpoint's architecture (`model_config`), with the
run-time fields of `config.model` (dtypes, scan, remat, attention kernel,
dropout) laid over it, and for its tokenizer (`load_tokenizer`); the trainer
then loads the weights straight into the state's shardings (`load_params`)
when a run starts without a checkpoint of its own.
"""

import dataclasses
import importlib
import os
from typing import Any

from flaxllm import errors

KINDS = ('hf', 'gguf')

# config.model keys that may differ from the checkpoint's: they change how the
# model runs, not its parameters.
RUNTIME_FIELDS = (
    'dtype',
    'param_dtype',
    'scan_layers',
    'remat',
    'attention_impl',
    'dropout_rate',
    'attention_dropout',
    'activation_dropout',
)


def parse(spec: str) -> tuple[str, str]:
  """Splits 'hf:/path' or 'gguf:/path' into (kind, path), checking both."""
  kind, separator, path = spec.partition(':')
  if not separator or kind not in KINDS or not path:
    raise errors.UserInputError(
        f"config key init_from={spec!r} is not 'hf:/folder' or"
        " 'gguf:/file.gguf'"
    )
  if kind == 'hf' and not os.path.isfile(os.path.join(path, 'config.json')):
    raise errors.UserInputError(
        f'init_from folder {path!r} has no config.json; point init_from at a'
        ' local Hugging Face checkpoint folder'
    )
  if kind == 'gguf' and not os.path.isfile(path):
    raise errors.UserInputError(
        f'init_from GGUF file {path!r} does not exist; fix config.init_from'
    )
  return kind, path


def runtime_overrides(model_fields: dict[str, Any], config_class) -> dict:
  """The run-time fields of config.model that `config_class` has."""
  names = {field.name for field in dataclasses.fields(config_class)}
  return {
      key: value
      for key, value in model_fields.items()
      if key in RUNTIME_FIELDS and key in names
  }


def _hf_family(path: str):
  from flaxllm.models import hf  # pylint: disable=g-import-not-at-top

  hf_config = hf.read_config(path)
  return hf_config, hf._family_module(hf_config.get('model_type'))  # pylint: disable=protected-access


def model_config(spec: str, config_class, model_fields: dict[str, Any]) -> Any:
  """The checkpoint's architecture as `config_class`, run-time fields applied.

  Args:
    spec: the init_from string.
    config_class: the family config the task needs (e.g. DecoderConfig).
    model_fields: config.model as a dict; only RUNTIME_FIELDS are used.

  Returns:
    An instance of `config_class`.

  Raises:
    UserInputError: the checkpoint is of another family.
  """
  kind, path = parse(spec)
  overrides = runtime_overrides(model_fields, config_class)
  if kind == 'gguf':
    from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top
    from flaxllm.models import hf_llama  # pylint: disable=g-import-not-at-top

    hf_config, _, _ = gguf.read_gguf(path, tensors=False)
    family = hf_llama
  else:
    hf_config, family = _hf_family(path)
  if family.CONFIG_CLASS is not config_class:
    raise errors.UserInputError(
        f'init_from {spec!r} holds a {hf_config.get("model_type", "llama")}'
        f' checkpoint ({family.CONFIG_CLASS.__name__}), but the task needs'
        f' {config_class.__name__}; pick a matching task or checkpoint'
    )
  return family.config_from_hf(hf_config, **overrides)


def load_params(spec: str, config: Any, shardings: Any = None) -> Any:
  """The checkpoint's params for `config`, placed in `shardings`.

  Args:
    spec: the init_from string.
    config: the family config `model_config` returned.
    shardings: target shardings (a tree like the params) or None.

  Returns:
    The unboxed params as jax Arrays.
  """
  from flaxllm.models import hf  # pylint: disable=g-import-not-at-top

  kind, path = parse(spec)
  if kind == 'gguf':
    from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

    _, state, _ = gguf.read_gguf(path)
    family = importlib.import_module('flaxllm.models.hf_llama')
  else:
    _, family = _hf_family(path)
    state = hf.read_state(path)
  return hf.place(family.params_from_hf(state, config), shardings)


def load_tokenizer(spec: str):
  """The checkpoint's tokenizer (from the folder's files or the GGUF vocab)."""
  from flaxllm.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top

  kind, path = parse(spec)
  if kind == 'gguf':
    from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

    return gguf.read_gguf(path, tensors=False)[2]
  return tokenizer_lib.load_tokenizer(path)


def run_model_config(
    config: Any, config_class, *, vocab_size: int, pad_id: int
) -> Any:
  """A run's model config: `init_from`'s architecture, else `config.model`.

  Args:
    config: the run config (its `model` section and `init_from`).
    config_class: the family config class the task needs.
    vocab_size: the tokenizer's vocabulary, for a model built from scratch.
    pad_id: the tokenizer's padding id, likewise.

  Returns:
    An instance of `config_class`.
  """
  fields = config.model.to_dict()
  fields.pop('family', None)
  if config.get('init_from'):
    return model_config(config.init_from, config_class, fields)
  return config_class.from_dict(fields, vocab_size=vocab_size, pad_id=pad_id)
