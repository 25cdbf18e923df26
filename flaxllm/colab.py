"""Small helpers for flaxllm's notebooks: runtime, sizes, curves and tables.

The notebooks in `notebooks/` run on a Colab TPU or GPU runtime at the
method's real sizes and in CI on CPU at `runlocal` sizes. These helpers keep
the per-notebook code about the method: which accelerator is attached, which
size to run, a mesh that fits the devices, the logged curves of a run
(workdir/metrics.jsonl) and results as a table.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Sequence

import jax
import ml_collections

from flaxllm.errors import UserInputError

RUNLOCAL_ENV = 'FLAXLLM_RUNLOCAL'


def runtime() -> str:
  """The attached accelerator: 'tpu', 'gpu' or 'cpu'."""
  return jax.default_backend()


def choose_runlocal(flag: bool | None) -> bool:
  """Whether to run CPU-sized jobs.

  Args:
    flag: the notebook's RUNLOCAL variable; None decides from the
      FLAXLLM_RUNLOCAL environment variable (CI sets it to 1) and else from
      the runtime (CPU -> runlocal).

  Returns:
    True for `runlocal` sizes.
  """
  if flag is not None:
    return bool(flag)
  if os.environ.get(RUNLOCAL_ENV, '') in ('0', '1'):
    return os.environ[RUNLOCAL_ENV] == '1'
  return runtime() == 'cpu'


def fit_mesh(config: ml_collections.ConfigDict) -> str:
  """Sets a mesh for the attached devices and describes it.

  One device or a CPU: pure data parallelism. Several accelerator chips:
  parameters and optimizer state sharded over all of them (FSDP), which
  fits the larger sizes in memory and needs no model-specific rule.

  Args:
    config: a run config; `config.mesh.shape` is overwritten.

  Returns:
    A one-line description, e.g. 'tpu x8: mesh (data 1, fsdp 8, tensor 1)'.
  """
  count = jax.device_count()
  if runtime() == 'cpu' or count == 1:
    config.mesh.shape = (-1, 1, 1)
    shape = (count, 1, 1)
  else:
    config.mesh.shape = (1, -1, 1)
    shape = (1, count, 1)
  return (
      f'{runtime()} x{count}: mesh (data {shape[0]}, fsdp {shape[1]},'
      f' tensor {shape[2]})'
  )


def read_metrics(workdir: str, split: str = 'train') -> list[dict[str, Any]]:
  """The records of `split` in workdir/metrics.jsonl, in step order."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    raise UserInputError(
        f'{path} does not exist; train a run in {workdir} first'
    )
  records = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      if line.strip():
        record = json.loads(line)
        if record.get('split') == split:
          records.append(record)
  return sorted(records, key=lambda r: r['step'])


def plot_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str = 'step',
    ylabel: str = 'loss',
    title: str = '',
    logx: bool = False,
):
  """Plots named (x, y) curves on one axis; returns the matplotlib figure."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  figure, axis = plt.subplots(figsize=(6, 3.5))
  for name, (xs, ys) in curves.items():
    axis.plot(list(xs), list(ys), marker='.', label=name)
  axis.set_xlabel(xlabel)
  axis.set_ylabel(ylabel)
  if logx:
    axis.set_xscale('log')
  if title:
    axis.set_title(title)
  if len(curves) > 1:
    axis.legend()
  axis.grid(alpha=0.3)
  figure.tight_layout()
  return figure


def loss_curve(workdir: str, key: str = 'loss', split: str = 'train'):
  """(steps, values) of one logged metric of a run."""
  records = [r for r in read_metrics(workdir, split) if key in r]
  return [r['step'] for r in records], [r[key] for r in records]


def table(rows: Iterable[dict[str, Any]], digits: int = 3):
  """Rows of dicts as a pandas DataFrame (floats rounded) for display."""
  import pandas as pd  # pylint: disable=g-import-not-at-top

  frame = pd.DataFrame(list(rows))
  return frame.round(digits)
