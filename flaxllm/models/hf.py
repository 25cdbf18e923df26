"""Hugging Face checkpoint folders <-> flaxllm params, for every model family.

A Hugging Face folder holds `config.json` and the weights as safetensors,
either one `model.safetensors` or shards listed by
`model.safetensors.index.json`. This module reads and writes such folders and
dispatches on the family: the config's `model_type` picks a converter module
(`FAMILY_MODULES`), which maps the family's config and tensor names and
layouts onto ours. Each converter module exposes

  CONFIG_CLASS                              our config dataclass
  config_from_hf(hf_config, **overrides)    -> CONFIG_CLASS
  config_to_hf(config)                      -> dict for config.json
  params_from_hf(state, config)             -> nested dict of arrays, ours
  params_to_hf(params, config)              -> {HF name: array in HF layout}

Loaded tensors go straight from host memory into their target sharding
(`place`), so a model larger than one device is never whole on a device.
"""

import importlib
import json
import os
import shutil
import tempfile
from types import ModuleType
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from safetensors import numpy as safetensors_np

from flaxllm import errors

# HF model_type -> converter module, imported only when used.
FAMILY_MODULES = {
    'bart': 'flaxllm.models.hf_bart',
    'mbart': 'flaxllm.models.hf_bart',
    'llama': 'flaxllm.models.hf_llama',
    'bert': 'flaxllm.models.hf_bert',
}

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
INDEX_FILE = 'model.safetensors.index.json'
# Written into every folder we save; its presence allows overwriting.
MARKER_FILE = 'flaxllm_save.json'


def _family_module(model_type: Any) -> ModuleType:
  if model_type not in FAMILY_MODULES:
    raise errors.UserInputError(
        f'unsupported Hugging Face model_type {model_type!r}; supported:'
        f' {sorted(FAMILY_MODULES)}'
    )
  return importlib.import_module(FAMILY_MODULES[model_type])


def _check_folder(path: str) -> None:
  if not os.path.isdir(path):
    raise errors.UserInputError(
        f'no Hugging Face checkpoint folder at {path!r}'
    )


def read_config(path: str) -> dict[str, Any]:
  """Reads `config.json` of a Hugging Face folder.

  Args:
    path: the folder.

  Returns:
    The config as a dict.

  Raises:
    UserInputError: if the folder or its config.json is missing or invalid.
  """
  _check_folder(path)
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.isfile(config_path):
    raise errors.UserInputError(f'{config_path!r} does not exist')
  try:
    with open(config_path) as f:
      config = json.load(f)
  except json.JSONDecodeError as e:
    raise errors.UserInputError(f'{config_path!r} is not valid JSON: {e}')
  if not isinstance(config, dict):
    raise errors.UserInputError(f'{config_path!r} does not hold an object')
  return config


def _read_safetensors(filename: str, state: dict[str, np.ndarray]) -> None:
  """Adds every tensor of one safetensors file to `state`."""
  if not os.path.isfile(filename):
    raise errors.UserInputError(f'weights file {filename!r} does not exist')
  for name, array in safetensors_np.load_file(filename).items():
    if name in state:
      raise errors.UserInputError(
          f'tensor {name!r} appears twice in the checkpoint'
      )
    state[name] = array


def read_state(path: str) -> dict[str, np.ndarray]:
  """Reads every tensor of a Hugging Face folder into host memory.

  Args:
    path: the folder, holding `model.safetensors` or
      `model.safetensors.index.json` and the shards it lists.

  Returns:
    {tensor name: numpy array}; bfloat16 tensors come back as ml_dtypes
    bfloat16 arrays.

  Raises:
    UserInputError: if the folder has no safetensors weights, or a shard is
      missing.
  """
  _check_folder(path)
  state = {}
  index_path = os.path.join(path, INDEX_FILE)
  if os.path.isfile(index_path):
    with open(index_path) as f:
      weight_map = json.load(f).get('weight_map', {})
    for shard in sorted(set(weight_map.values())):
      _read_safetensors(os.path.join(path, shard), state)
    missing = sorted(set(weight_map) - set(state))
    if missing:
      raise errors.UserInputError(
          f'{index_path!r} lists tensors that no shard holds: {missing[:5]}'
      )
  elif os.path.isfile(os.path.join(path, WEIGHTS_FILE)):
    _read_safetensors(os.path.join(path, WEIGHTS_FILE), state)
  else:
    raise errors.UserInputError(
        f'{path!r} holds neither {WEIGHTS_FILE} nor {INDEX_FILE}; only'
        ' safetensors checkpoints are supported (re-save PyTorch .bin files'
        ' with save_pretrained(..., safe_serialization=True))'
    )
  return state


def _plan_shards(
    state: dict[str, np.ndarray], max_shard_bytes: int
) -> list[list[str]]:
  """Groups tensor names, in name order, into shards of at most the limit.

  A tensor larger than the limit gets a shard of its own.

  Args:
    state: the tensors.
    max_shard_bytes: the largest shard size wanted.

  Returns:
    Lists of tensor names, one per shard.
  """
  shards, current, current_bytes = [], [], 0
  for name in sorted(state):
    size = state[name].nbytes
    if current and current_bytes + size > max_shard_bytes:
      shards.append(current)
      current, current_bytes = [], 0
    current.append(name)
    current_bytes += size
  if current or not shards:
    shards.append(current)
  return shards


def _write_contents(
    folder: str,
    hf_config: dict[str, Any],
    state: dict[str, np.ndarray],
    max_shard_bytes: int,
) -> None:
  """Writes config, weights (sharded if needed) and marker into `folder`."""
  with open(os.path.join(folder, CONFIG_FILE), 'w') as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  shards = _plan_shards(state, max_shard_bytes)
  if len(shards) == 1:
    filenames = [WEIGHTS_FILE]
  else:
    filenames = [
        f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors'
        for i in range(len(shards))
    ]
  weight_map = {}
  for filename, names in zip(filenames, shards):
    tensors = {name: np.ascontiguousarray(state[name]) for name in names}
    safetensors_np.save_file(
        tensors, os.path.join(folder, filename), metadata={'format': 'pt'}
    )
    weight_map.update({name: filename for name in names})
  if len(shards) > 1:
    total_size = sum(array.nbytes for array in state.values())
    index = {'metadata': {'total_size': total_size}, 'weight_map': weight_map}
    with open(os.path.join(folder, INDEX_FILE), 'w') as f:
      json.dump(index, f, indent=2, sort_keys=True)
  with open(os.path.join(folder, MARKER_FILE), 'w') as f:
    json.dump({'files': sorted(os.listdir(folder))}, f)


def write_folder(
    path: str,
    hf_config: dict[str, Any],
    state: dict[str, np.ndarray],
    *,
    max_shard_bytes: int = 2**31,
) -> None:
  """Writes a Hugging Face folder atomically.

  Everything is written into a temporary sibling folder, which then replaces
  `path` by a rename; a writer that fails midway leaves `path` as it was.

  Args:
    path: the folder to create, or to replace if it is empty or a previous
      flaxllm save.
    hf_config: the contents of config.json.
    state: {HF tensor name: numpy array in HF layout}.
    max_shard_bytes: above this total size the weights are split into shards
      listed by model.safetensors.index.json.

  Raises:
    UserInputError: if `path` is a file, or a non-empty folder that is not a
      previous flaxllm save.
  """
  path = os.path.abspath(path)
  replaces_save = False
  if os.path.lexists(path):
    if not os.path.isdir(path):
      raise errors.UserInputError(f'{path!r} exists and is not a folder')
    if os.listdir(path):
      if not os.path.isfile(os.path.join(path, MARKER_FILE)):
        raise errors.UserInputError(
            f'{path!r} is a non-empty folder that flaxllm did not write;'
            ' choose a new or empty folder'
        )
      replaces_save = True
  parent, name = os.path.split(path)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f'.{name}.tmp-', dir=parent)
  try:
    os.chmod(staging, 0o755)  # mkdtemp makes it private to the owner.
    _write_contents(staging, hf_config, state, max_shard_bytes)
    if replaces_save:
      # Renaming onto a non-empty folder fails, so move the old save aside.
      retired = tempfile.mkdtemp(prefix=f'.{name}.old-', dir=parent)
      os.replace(path, retired)
      os.replace(staging, path)
      shutil.rmtree(retired)
    else:
      os.replace(staging, path)  # Onto nothing or an empty folder.
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def place(params: Any, shardings: Any = None) -> Any:
  """Moves host arrays into their target shardings, slice by slice.

  Each device receives only its own slice of each host array (through
  `jax.make_array_from_callback`), so no device ever holds more than its
  share.

  Args:
    params: a tree of numpy arrays.
    shardings: a tree of `jax.sharding.Sharding` with the structure of
      `params` (a None leaf means the default device), or None to put
      everything on the default device.

  Returns:
    The tree of `jax.Array`s.
  """

  def put(array, sharding):
    array = np.asarray(array)
    if sharding is None:
      sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.make_array_from_callback(
        array.shape, sharding, lambda index: array[index]
    )

  if shardings is None:
    return jax.tree.map(lambda array: put(array, None), params)
  return jax.tree.map(put, params, shardings)


def load_pretrained(
    path: str,
    *,
    scan_layers: bool = False,
    shardings: Any = None,
    **config_overrides: Any,
) -> tuple[Any, Any]:
  """Loads a Hugging Face folder as our config and params.

  Args:
    path: the folder (config.json + safetensors).
    scan_layers: stack the layers' params for `nn.scan`.
    shardings: target shardings of the params, as for `place`, or a
      function of our config returning them (the usual case: the param tree
      is known only once the config is), e.g. from the model's logical axis
      names and a mesh.
    **config_overrides: fields of our config that replace the converted
      values (e.g. dtype='bfloat16', dropout_rate=0.0).

  Returns:
    (config, params): the family's config and unboxed params as jax Arrays,
    in the config's param dtype.

  Raises:
    UserInputError: on a missing folder, an unsupported model_type or config
      feature, or a tensor that is missing or of the wrong shape.
  """
  hf_config = read_config(path)
  family = _family_module(hf_config.get('model_type'))
  config = family.config_from_hf(
      hf_config, scan_layers=scan_layers, **config_overrides
  )
  params = family.params_from_hf(read_state(path), config)
  if callable(shardings):
    shardings = shardings(config)
  return config, place(params, shardings)


def _module_for_config(config: Any) -> ModuleType:
  """Finds the converter module whose CONFIG_CLASS is the config's type."""
  for module_name in dict.fromkeys(FAMILY_MODULES.values()):
    try:
      module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
      if e.name == module_name:
        continue  # A family without a converter yet.
      raise
    if type(config) is module.CONFIG_CLASS:
      return module
  raise errors.UserInputError(
      f'no Hugging Face converter for {type(config).__name__}'
  )


def save_pretrained(
    path: str, config: Any, params: Any, *, max_shard_bytes: int = 2**31
) -> None:
  """Saves our config and params as a Hugging Face folder.

  Args:
    path: the folder to write (see `write_folder`).
    config: the family's config.
    params: the params tree (boxed or not; jax or numpy arrays).
    max_shard_bytes: shard size limit, as for `write_folder`.
  """
  family = _module_for_config(config)
  params = jax.device_get(nn.unbox(params))
  write_folder(
      path,
      family.config_to_hf(config),
      family.params_to_hf(params, config),
      max_shard_bytes=max_shard_bytes,
  )
