"""Run logging: metrics.jsonl, TensorBoard events, a progress line, profiling.

Only process 0 writes; the other processes get writers that do nothing, so the
trainer calls them unconditionally.
"""

import json
import os
import sys
import time
from typing import Any

from absl import logging as absl_logging
import jax


class MetricsWriter:
  """Appends scalars to workdir/metrics.jsonl and TensorBoard event files."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
    except ImportError:  # TensorBoard output is optional.
      absl_logging.warning('tensorboardX missing: no TensorBoard events')

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
    """Writes one record: {'step', 'split', metric: value, ...}."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in metrics.items()}
    self._jsonl.write(
        json.dumps({'step': step, 'split': split, **values}) + '\n'
    )
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in values.items():
        self._tb.add_scalar(f'{split}/{name}', value, step)
      self._tb.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


class ProgressLine:
  """Prints `step a/b | x step/s | y tok/s | loss z | eta` at log intervals."""

  def __init__(
      self, total_steps: int, first_step: int, *, enabled: bool = True
  ):
    self.total_steps = total_steps
    self.enabled = enabled
    self._last_step = first_step
    self._last_time = time.perf_counter()
    self._start_step = first_step
    self._start_time = self._last_time

  def update(self, step: int, tokens: float, metrics: dict[str, float]) -> dict:
    """Prints one line; returns the throughput figures it printed."""
    now = time.perf_counter()
    steps = max(step - self._last_step, 1)
    elapsed = max(now - self._last_time, 1e-9)
    rate = {
        'steps_per_sec': steps / elapsed,
        'tokens_per_sec': tokens / elapsed,
    }
    self._last_step, self._last_time = step, now
    if self.enabled:
      overall = (step - self._start_step) / max(now - self._start_time, 1e-9)
      eta = (self.total_steps - step) / max(overall, 1e-9)
      parts = [
          f'step {step}/{self.total_steps}',
          f'{rate["steps_per_sec"]:.2f} step/s',
          f'{rate["tokens_per_sec"]:,.0f} tok/s',
      ] + [f'{k} {v:.4g}' for k, v in metrics.items()]
      parts.append(f'eta {time.strftime("%H:%M:%S", time.gmtime(eta))}')
      print(' | '.join(parts), file=sys.stdout, flush=True)
    return rate


class ProfileWindow:
  """Traces steps [start, stop) with jax.profiler into workdir/profile."""

  def __init__(
      self, workdir: str, steps: tuple[int, int], *, enabled: bool = True
  ):
    self.start, self.stop = steps
    self.enabled = enabled and self.stop > self.start
    self.directory = os.path.join(workdir, 'profile')
    self._active = False

  def before_step(self, step: int) -> None:
    if self.enabled and step == self.start and not self._active:
      jax.profiler.start_trace(self.directory)
      self._active = True

  def after_step(self, step: int) -> None:
    if self._active and step + 1 >= self.stop:
      jax.profiler.stop_trace()
      self._active = False
      absl_logging.info(
          'Profile of steps %s written to %s',
          (self.start, self.stop),
          self.directory,
      )
