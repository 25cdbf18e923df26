"""Checkpoints: a thin wrapper over orbax's CheckpointManager.

One checkpoint holds everything a run needs to continue exactly: the train
state (params, optimizer state, EMA, step, RNG) and the data iterator's
position (JSON). Saves are asynchronous; restores go straight into the target
shardings of the current mesh, which may differ from the mesh that saved
(elastic resume).

Orbax logs, and then skips, an async save that failed in its background
thread. Here a save that did not commit is raised as `CheckpointError` at the
next step boundary (`check()`) or at `wait()`, never silently skipped.
"""

import os
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

STATE = 'state'
DATA = 'data'


class CheckpointError(RuntimeError):
  """A checkpoint save did not complete."""


class Checkpointer:
  """Saves and restores (train state, data-iterator state) pairs by step."""

  def __init__(
      self, directory: str, *, keep: int, every: int, async_save: bool = True
  ):
    """Opens (or creates) the checkpoint folder.

    Args:
      directory: absolute path of the checkpoint folder (workdir/checkpoints).
      keep: how many of the newest checkpoints to keep.
      every: save period in steps; 0 saves only when forced.
      async_save: write in a background thread while training continues.
    """
    self.directory = os.path.abspath(directory)
    self.every = every
    self._pending_step: int | None = None
    self._failure_reported = False
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=async_save,
        ),
        item_names=(STATE, DATA),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    return self.every > 0 and step % self.every == 0

  def save(
      self, step: int, state: Any, data_state: dict, *, force=False
  ) -> bool:
    """Starts saving `state` and `data_state` as checkpoint `step`.

    Args:
      step: the train step the state has completed.
      state: the train state pytree (global jax.Arrays).
      data_state: JSON-serialisable iterator position.
      force: save even off the period (final and preemption saves).

    Returns:
      Whether a save was started.

    Raises:
      CheckpointError: if an earlier async save failed.
    """
    self.check()
    if step in self._manager.all_steps():
      return False
    if not (force or self.should_save(step)):
      return False
    self._pending_step = step
    self._manager.save(
        step,
        args=ocp.args.Composite(**{
            STATE: ocp.args.StandardSave(state),
            DATA: ocp.args.JsonSave(data_state),
        }),
        force=True,
    )
    return True

  def _failed(self, step: int, cause: str) -> CheckpointError:
    self._failure_reported = True
    return CheckpointError(
        f'checkpoint of step {step} in {self.directory} failed to save'
        f' ({cause}); earlier checkpoints are intact'
    )

  def check(self) -> None:
    """Raises CheckpointError if the last async save finished uncommitted."""
    step = self._pending_step
    if step is None or self._manager.is_saving_in_progress():
      return
    self._pending_step = None
    self._manager.reload()
    if step not in self._manager.all_steps():
      raise self._failed(step, 'see the log above for the cause')

  def wait(self) -> None:
    """Blocks until pending saves are written; raises if one failed."""
    step = self._pending_step
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._pending_step = None
      raise self._failed(step, f'{type(e).__name__}: {e}') from e
    self.check()

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores checkpoint `step` into the shardings of `abstract_state`.

    Args:
      step: which checkpoint.
      abstract_state: a pytree of `jax.ShapeDtypeStruct` carrying the target
        shardings; arrays are placed straight there, whatever mesh saved them.

    Returns:
      (train state, data-iterator state).
    """
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(**{
            STATE: ocp.args.StandardRestore(abstract_state),
            DATA: ocp.args.JsonRestore(),
        }),
    )
    logging.info('Restored checkpoint %d from %s', step, self.directory)
    return restored[STATE], restored[DATA]

  def close(self) -> None:
    """Waits for pending saves (raising a failure not yet raised), closes."""
    already_reported = self._failure_reported
    try:
      self.wait()
    except CheckpointError:
      if not already_reported:
        raise
    finally:
      try:
        self._manager.close()
      except Exception:  # pylint: disable=broad-except
        if not already_reported:
          raise


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs of `tree` (arrays or structs) with target shardings."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      tree,
      shardings,
  )
