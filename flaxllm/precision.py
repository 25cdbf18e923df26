"""The matmul precision a run traces its float32 matrix products under.

JAX on NVIDIA GPUs (Ampere and later) and TPUs computes float32 matmuls with
reduced-precision inputs by default (TF32 on GPUs: a 10-bit mantissa, about
5e-4 relative), while PyTorch runs them in full float32 unless told
otherwise. Most training does not notice; a method that adds noise far below
that resolution does: HyPe's sigma = 1e-5 perturbation of layer inputs is
rounded away at the next matmul under TF32. `config.matmul_precision` picks
the precision for the whole run:

  default         the backend's own choice (TF32 on GPUs, bf16 passes on TPU)
  tensorfloat32   TF32-style inputs where the hardware has them
  float32         full float32 products (what the PyTorch originals ran)
  bfloat16        single bfloat16 pass (fastest, least precise)

CPU runs compute float32 products in float32 whatever the setting.
"""

import contextlib
import functools
from typing import Any, Callable

import jax
import ml_collections

from flaxllm.errors import UserInputError

CHOICES = ('default', 'tensorfloat32', 'float32', 'bfloat16')


def check(value: str) -> None:
  """Raises UserInputError unless `value` is one of CHOICES."""
  if value not in CHOICES:
    raise UserInputError(
        f"config key 'matmul_precision' is {value!r}; use one of {CHOICES}"
    )


def scope(value: str) -> contextlib.AbstractContextManager[Any]:
  """A context under which jitted code traces with `value`'s precision."""
  check(value)
  if value == 'default':
    return contextlib.nullcontext()
  return jax.default_matmul_precision(value)


def under_config_precision(fn: Callable[..., Any]) -> Callable[..., Any]:
  """Decorates fn(config, ...) to run under config.matmul_precision."""

  @functools.wraps(fn)
  def wrapped(config: ml_collections.ConfigDict, *args, **kwargs):
    with scope(config.get('matmul_precision', 'default')):
      return fn(config, *args, **kwargs)

  return wrapped
