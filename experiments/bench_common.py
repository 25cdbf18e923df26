"""Pieces every train-step benchmark shares: timing, the table, the record."""

import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence


def median_step_seconds(
    run: Callable[[int], None], steps: int, repeats: int
) -> float:
  """Median seconds per step over `repeats` calls of `run(steps)`.

  `run` must block until its steps are done (device sync included).
  """
  per_step = []
  for _ in range(repeats):
    start = time.perf_counter()
    run(steps)
    per_step.append((time.perf_counter() - start) / steps)
  return statistics.median(per_step)


def time_train_step(task, config, batch, steps: int, repeats: int):
  """Seconds per flaxllm train step of `task` on one fixed batch.

  Builds the state and the jitted step as `train.py` does (AdamW from
  `config.optimizer`, a data-parallel mesh over every device), runs two steps
  to compile and warm up, then times `repeats` runs of `steps` steps.

  Args:
    task: a flaxllm task object.
    config: the experiment config the task was built from.
    batch: host arrays of one global batch.
    steps: steps per timed run.
    repeats: timed runs; the median is returned.

  Returns:
    (median seconds per step, parameter count).
  """
  # Imported here: the module stays importable without jax for the tables.
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from flaxllm import optim  # pylint: disable=g-import-not-at-top
  from flaxllm import sharding  # pylint: disable=g-import-not-at-top
  from flaxllm import train  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh((-1, 1, 1))
  tx, schedule = optim.make_optimizer(config.optimizer, 10**6)
  placement = train.shard_state(task, tx, config, mesh)
  batch_sharding = sharding.logical_sharding(
      mesh, placement.rules, jax.sharding.PartitionSpec('batch')
  )
  step = train.make_train_step(
      task, tx, schedule, config, placement, batch_sharding
  )
  holder = {'state': placement.init(jax.random.PRNGKey(0))}
  params = sum(
      int(np.prod(x.shape)) for x in jax.tree.leaves(holder['state'].params)
  )
  device_batch = sharding.global_batch(batch, batch_sharding)

  def run(n):
    state = holder['state']
    for _ in range(n):
      state, metrics = step(state, device_batch)
    jax.block_until_ready(metrics['loss_sum'])
    holder['state'] = state

  run(2)  # compile and warm up
  return median_step_seconds(run, steps, repeats), params


def throughput_table(
    rows: Sequence[tuple[str, float, int]],
    *,
    tokens: int,
    flops_per_step: Callable[[int], float],
    peak_tflops: float,
) -> str:
  """Markdown table of (name, seconds/step, params) rows, with MFU and ratio.

  Args:
    rows: one per implementation; flaxllm first, transformers second.
    tokens: tokens per step.
    flops_per_step: model FLOPs of one step given the parameter count.
    peak_tflops: the chip's peak for MFU; 0 prints n/a.

  Returns:
    The table, followed by the tokens/s ratio when there are two rows.
  """
  lines = [
      '| implementation | params | ms/step | tokens/s | MFU |',
      '| --- | --- | --- | --- | --- |',
  ]
  for name, seconds, params in rows:
    flops = flops_per_step(params) / seconds
    mfu = f'{100 * flops / (peak_tflops * 1e12):.1f}%' if peak_tflops else 'n/a'
    lines.append(
        f'| {name} | {params / 1e6:.1f}M | {1000 * seconds:.1f} |'
        f' {tokens / seconds:,.0f} | {mfu} |'
    )
  if len(rows) == 2:
    lines.append(
        '\nflaxllm / transformers tokens/s ratio:'
        f' {rows[1][1] / rows[0][1]:.2f}x'
    )
  return '\n'.join(lines)


def record(path: str, header: str, table: str) -> None:
  """Prints the result and appends it, with the command, to `path`."""
  print(f'\n{header}\n{table}')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
      '%Y-%m-%d %H:%M UTC'
  )
  command = ' '.join(['python', os.path.relpath(sys.argv[0]), *sys.argv[1:]])
  with open(path, 'a') as f:
    f.write(f'\n## {stamp}: {header}\n`{command}`\n\n{table}\n')
