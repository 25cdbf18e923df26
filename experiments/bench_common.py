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
