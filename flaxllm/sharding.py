"""Device mesh and logical-axis sharding.

The mesh has three named axes, ('data', 'fsdp', 'tensor'). Models name the
axes of every param and activation logically (batch, length, embed, heads, kv,
mlp, vocab, layers); the config's `mesh.logical_axis_rules` map those names to
mesh axes. State shardings are derived shape-first: `jax.eval_shape(init)` ->
logical PartitionSpecs -> `NamedSharding`s, so nothing is materialised before
its placement is known.
"""

from collections.abc import Sequence
import math
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import AxisType, NamedSharding, PartitionSpec
import numpy as np

from flaxllm.errors import UserInputError

MESH_AXES = ('data', 'fsdp', 'tensor')


def resolve_mesh_shape(
    shape: Sequence[int], num_devices: int
) -> tuple[int, ...]:
  """Fills the one `-1` entry of a mesh shape and checks it uses every device.

  Args:
    shape: sizes of ('data', 'fsdp', 'tensor'); at most one may be -1.
    num_devices: devices available to the whole job.

  Returns:
    The concrete mesh shape.

  Raises:
    UserInputError: when the shape is malformed or its product does not equal
      the number of devices.
  """
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(MESH_AXES):
    raise UserInputError(
        f'mesh.shape {shape} must have {len(MESH_AXES)} entries for axes'
        f' {MESH_AXES}; e.g. --config.mesh.shape="(-1,1,1)"'
    )
  unknown = [i for i, s in enumerate(shape) if s == -1]
  if len(unknown) > 1 or any(s == 0 or s < -1 for s in shape):
    raise UserInputError(
        f'mesh.shape {shape} may hold positive sizes and at most one -1;'
        ' set e.g. --config.mesh.shape="(-1,1,1)"'
    )
  known = math.prod(s for s in shape if s != -1)
  if unknown:
    if num_devices % known:
      raise UserInputError(
          f'mesh.shape {shape} cannot fill {num_devices} devices (the fixed'
          f' axes multiply to {known}, which does not divide {num_devices});'
          ' pick axis sizes that divide the device count'
      )
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise UserInputError(
        f'mesh.shape {shape} needs {math.prod(shape)} devices but'
        f' {num_devices} are available; set --config.mesh.shape so the'
        f' product is {num_devices} (one axis may be -1)'
    )
  return shape


def make_mesh(shape: Sequence[int], devices=None) -> jax.sharding.Mesh:
  """Builds the ('data', 'fsdp', 'tensor') mesh with Auto axis types.

  Args:
    shape: mesh shape, one entry may be -1 ("the rest").
    devices: devices to use; all of `jax.devices()` by default.

  Returns:
    The mesh. Axis types are Auto so logical sharding constraints apply (the
    Explicit default of recent jax rejects them).
  """
  devices = jax.devices() if devices is None else devices
  shape = resolve_mesh_shape(shape, len(devices))
  return jax.make_mesh(
      shape,
      MESH_AXES,
      axis_types=(AxisType.Auto,) * len(MESH_AXES),
      devices=devices,
  )


def data_parallel_size(mesh: jax.sharding.Mesh, rules) -> int:
  """Number of shards the global batch is split into."""
  axes = dict(rules).get('batch')
  if axes is None:
    return 1
  axes = (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.shape[a] for a in axes)


def logical_sharding(
    mesh: jax.sharding.Mesh, rules, logical_spec: PartitionSpec
) -> NamedSharding:
  """NamedSharding of one logical PartitionSpec (e.g. P('batch', 'length'))."""
  return nn.logical_to_mesh_sharding(logical_spec, mesh, rules)


def tree_shardings(mesh: jax.sharding.Mesh, rules, logical_specs: Any) -> Any:
  """Maps a tree of logical PartitionSpecs to a tree of NamedShardings."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def global_batch(local_batch: dict[str, np.ndarray], sharding: NamedSharding):
  """Assembles each process's rows into global arrays sharded over the batch.

  Args:
    local_batch: this process's share of the global batch (leading axis).
    sharding: the batch sharding (leading axis over the data axes).

  Returns:
    A dict of global `jax.Array`s; single-process runs take the same path.
  """
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x),
      local_batch,
  )
