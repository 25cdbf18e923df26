"""The one trainer: every task trains, evaluates and predicts through here.

A task (see `flaxllm.tasks` for the protocol) supplies `init`, `loss_fn`,
`eval_metrics`, optionally `predict`, and `evaluate`; a stateful task also
keeps arrays of its own (`task_state`, e.g. an adaptive noise schedule) that
live in the train state and its checkpoints. Its data bundle supplies the
tokenizer and the iterators. Everything else (mesh, sharded state, the jitted step, gradient
accumulation, EMA, checkpoints, preemption, logging, evaluation) lives here,
in banner sections: Workdir, Mesh and state, Step, Evaluation, Loop, Modes.
"""

import dataclasses
import json
import os
import signal
import threading
import time
from typing import Any

from absl import logging
import flax.linen as nn
from flax import struct
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
from jax.sharding import PartitionSpec
import ml_collections
import numpy as np
import optax

from flaxllm import checkpointing
from flaxllm import configuration
from flaxllm import logging as run_logging
from flaxllm import optim
from flaxllm import perturb
from flaxllm import precision
from flaxllm import sharding
from flaxllm import tasks
from flaxllm.errors import UserInputError

# Exit status of a run stopped by SIGTERM after its checkpoint was saved.
PREEMPTED_EXIT_CODE = 143


# =============================================================================
# Workdir
# =============================================================================


def write_json_atomically(path: str, payload: Any) -> None:
  """Writes JSON to `path` via a temp file so readers never see half a file."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(payload, f, indent=2, sort_keys=True, default=str)
  os.replace(tmp, path)


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses a workdir whose checkpoints belong to a differently shaped model."""
  saved_path = os.path.join(workdir, 'config.json')
  checkpoints = os.path.join(workdir, 'checkpoints')
  if not (os.path.exists(saved_path) and os.path.isdir(checkpoints)):
    return
  with open(saved_path) as f:
    saved = ml_collections.ConfigDict(json.load(f))
  if 'model' not in saved or 'tokenizer' not in saved:
    return
  before, now = configuration.model_shape(saved), configuration.model_shape(
      config
  )
  changed = sorted(
      k for k in before.keys() | now.keys() if before.get(k) != now.get(k)
  )
  if changed:
    key = changed[0]
    raise UserInputError(
        f'workdir {workdir} holds checkpoints of another model shape'
        f' ({key}={before.get(key)!r}, the config asks {now.get(key)!r}); use a'
        ' new --workdir or the saved model config'
    )


# =============================================================================
# Mesh and state
# =============================================================================


@struct.dataclass
class TrainState:
  step: jax.Array  # int32 []
  params: Any
  opt_state: Any
  ema_params: Any  # None without EMA
  rng: jax.Array  # uint32 [2]
  task_state: Any = None  # a stateful task's arrays (replicated), else None


def is_stateful(task) -> bool:
  """Whether the task keeps a `task_state` (see `flaxllm.tasks`)."""
  return hasattr(task, 'init_task_state')


def task_args(task, state_or_task_state) -> tuple:
  """The trailing `task_state` argument of a stateful task's functions."""
  if not is_stateful(task):
    return ()
  if isinstance(state_or_task_state, TrainState):
    return (state_or_task_state.task_state,)
  return (state_or_task_state,)


def _is_spec(x) -> bool:
  return isinstance(x, PartitionSpec)


@dataclasses.dataclass
class ShardedState:
  """How to create, place and restore the train state on a mesh."""

  mesh: jax.sharding.Mesh
  rules: tuple
  shardings: TrainState  # NamedShardings, mirroring the state
  abstract: TrainState  # ShapeDtypeStructs carrying those shardings
  init: Any  # jitted rng -> TrainState, created straight in its shardings
  # jitted (rng, params) -> TrainState around given (already placed) params.
  init_from_params: Any


def shard_state(task, tx, config, mesh) -> ShardedState:
  """Derives the state's shardings shape-first and jits its creation."""
  rules = tuple(tuple(r) for r in config.mesh.logical_axis_rules)
  dummy = task.dummy_batch(1)
  use_ema = config.optimizer.ema_decay > 0

  def state_around(params, train_rng):
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=params if use_ema else None,
        rng=train_rng,
        task_state=task.init_task_state() if is_stateful(task) else None,
    )

  def init_state(rng):
    init_rng, train_rng = jax.random.split(rng)
    return state_around(nn.unbox(task.init(init_rng, dummy)), train_rng)

  def init_state_from_params(rng, params):
    _, train_rng = jax.random.split(rng)
    return state_around(params, train_rng)

  rng = jax.random.PRNGKey(config.seed)
  boxed_params = jax.eval_shape(lambda r: task.init(r, dummy), rng)
  param_specs = nn.get_partition_spec(boxed_params)
  abstract = jax.eval_shape(init_state, rng)
  opt_specs = optax.tree_map_params(
      tx,
      lambda _, spec: spec,
      abstract.opt_state,
      param_specs,
      transform_non_params=lambda _: PartitionSpec(),
      is_leaf=_is_spec,
  )
  logical = TrainState(
      step=PartitionSpec(),
      params=param_specs,
      opt_state=opt_specs,
      ema_params=param_specs if use_ema else None,
      rng=PartitionSpec(),
      task_state=jax.tree.map(lambda _: PartitionSpec(), abstract.task_state),
  )
  shardings = sharding.tree_shardings(mesh, rules, logical)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    init = jax.jit(init_state, out_shardings=shardings)
    init_from_params = jax.jit(
        init_state_from_params,
        in_shardings=(sharding.replicated(mesh), shardings.params),
        out_shardings=shardings,
    )
  return ShardedState(
      mesh=mesh,
      rules=rules,
      shardings=shardings,
      abstract=checkpointing.abstract_like(abstract, shardings),
      init=init,
      init_from_params=init_from_params,
  )


# =============================================================================
# Step
# =============================================================================


def make_train_step(
    task, tx, schedule, config, placement: ShardedState, batch_sharding
):
  """The jitted train step: (state, batch) -> (state, metrics), state donated.

  With `train.grad_accum_steps` = k the global batch is split into k
  microbatches (row i goes to microbatch i % k, so each stays spread over the
  data shards) whose gradients are weighted by their token counts, making the
  update equal to the one of the whole batch. A stateful task's
  `observations` (sums, like the metrics) update its `task_state` after the
  optimizer step.
  """
  accum = config.train.grad_accum_steps
  ema_decay = config.optimizer.ema_decay
  grad_fn = jax.value_and_grad(task.loss_fn, has_aux=True)
  perturb_settings = perturb.Settings.from_config(config)

  def microbatch_grads(params, batch, rng, *extra):
    # HyPe / NEFTune noise (config.perturb) on the training forward pass only.
    with perturb.perturbation(perturb_settings):
      (_, metrics), grads = grad_fn(params, batch, rng, *extra)
    return metrics, grads

  def accumulated_grads(params, batch, rng, *extra):
    def split(x):  # [batch, ...] -> [accum, batch / accum, ...]
      x = x.reshape(x.shape[0] // accum, accum, *x.shape[1:]).swapaxes(0, 1)
      return nn.with_logical_constraint(
          x, (None, 'batch') + (None,) * (x.ndim - 2)
      )

    micro = jax.tree.map(split, batch)

    def body(carry, inputs):
      grad_sum, metric_sum = carry
      index, microbatch = inputs
      metrics, grads = microbatch_grads(
          params, microbatch, jax.random.fold_in(rng, index), *extra
      )
      weight = metrics['denominator']
      grad_sum = jax.tree.map(lambda s, g: s + g * weight, grad_sum, grads)
      metric_sum = jax.tree.map(jnp.add, metric_sum, metrics)
      return (grad_sum, metric_sum), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    first = jax.tree.map(lambda x: x[0], micro)
    metric_zeros = jax.tree.map(
        jnp.zeros_like,
        jax.eval_shape(lambda: microbatch_grads(params, first, rng, *extra)[0]),
    )
    (grad_sum, metrics), _ = jax.lax.scan(
        body, (zeros, metric_zeros), (jnp.arange(accum), micro)
    )
    total = jnp.maximum(metrics['denominator'], 1.0)
    return metrics, jax.tree.map(lambda g: g / total, grad_sum)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    extra = task_args(task, state)
    if accum == 1:
      metrics, grads = microbatch_grads(state.params, batch, rng, *extra)
    else:
      metrics, grads = accumulated_grads(state.params, batch, rng, *extra)
    metrics = dict(metrics)
    observations = metrics.pop('observations', None)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = optim.update_ema(ema, params, ema_decay)
    metrics['grad_norm'] = optax.tree.norm(grads)
    metrics['learning_rate'] = schedule(state.step)
    task_state = state.task_state
    if is_stateful(task):
      task_state = task.update_task_state(
          task_state, observations, state.step + 1
      )
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        ema_params=ema,
        task_state=task_state,
    )
    return new_state, metrics

  replicated = sharding.replicated(placement.mesh)
  with jax.set_mesh(placement.mesh), nn.logical_axis_rules(placement.rules):
    return jax.jit(
        train_step,
        in_shardings=(placement.shardings, batch_sharding),
        out_shardings=(placement.shardings, replicated),
        donate_argnums=(0,),
    )


def averages_of_sums(sums: dict[str, float]) -> dict[str, float]:
  """Task metric sums -> averages: each '<x>_sum' / 'denominator' as <x>.

  'correct_sum' becomes 'accuracy'; keys without the suffix are dropped.
  """
  denominator = max(float(sums['denominator']), 1.0)
  averages = {}
  for key, value in sums.items():
    if key.endswith('_sum'):
      name = 'accuracy' if key == 'correct_sum' else key[: -len('_sum')]
      averages[name] = float(value) / denominator
  return averages


def summarize_train_metrics(history: list[dict]) -> dict[str, float]:
  """Host-side summary of the device metrics of the steps since the last log."""
  fetched = jax.device_get(history)
  sums = {
      key: sum(float(m[key]) for m in fetched)
      for key in fetched[0]
      if key.endswith('_sum') or key == 'denominator'
  }
  return {
      **averages_of_sums(sums),
      'grad_norm': float(np.mean([m['grad_norm'] for m in fetched])),
      'learning_rate': float(fetched[-1]['learning_rate']),
  }


def count_tokens(local_batch: dict[str, np.ndarray]) -> float:
  """Real (non-pad) tokens of a local batch, over all its *_mask arrays."""
  return float(
      sum(
          v.sum()
          for k, v in local_batch.items()
          if k.endswith('_mask') and k != 'example_mask'
      )
  )


# =============================================================================
# Evaluation
# =============================================================================


class Evaluator:
  """Eval loss and prediction metrics of one split, under the run's mesh.

  `loss`, `generate` and `run` take the params to evaluate and, for a stateful
  task, its `task_state` (e.g. the noise schedule a diffusion model samples
  with).
  """

  def __init__(
      self, task, data, config, placement: ShardedState, batch_sharding
  ):
    self.task, self.data, self.config = task, data, config
    self.batch_sharding = batch_sharding
    self.placement = placement
    self.predicts = callable(getattr(task, 'predict', None))
    replicated = sharding.replicated(placement.mesh)
    param_shardings = placement.shardings.params
    extra_shardings = ()
    if is_stateful(task):
      extra_shardings = (placement.shardings.task_state,)
    with jax.set_mesh(placement.mesh), nn.logical_axis_rules(placement.rules):
      self._metrics_step = jax.jit(
          task.eval_metrics,
          in_shardings=(param_shardings, batch_sharding, *extra_shardings),
          out_shardings=replicated,
      )
      # The row mask comes back replicated with the outputs: on several hosts
      # a global input array cannot be read whole by any one of them.
      if self.predicts:
        self._predict_step = jax.jit(
            lambda p, b, r, *e: (task.predict(p, b, r, *e), b['example_mask']),
            in_shardings=(
                param_shardings,
                batch_sharding,
                replicated,
                *extra_shardings,
            ),
            out_shardings=replicated,
        )

  def _batches(self, split: str, max_examples: int = 0):
    for local in self.data.eval_batches(
        split,
        global_batch_size=self.config.train.eval_batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        max_examples=max_examples,
    ):
      yield sharding.global_batch(local, self.batch_sharding)

  def loss(self, params, split: str, task_state=None) -> dict[str, float]:
    """The task's averaged metrics (loss, accuracy, ...) over a whole split."""
    totals = None
    extra = task_args(self.task, task_state)
    with jax.set_mesh(self.placement.mesh), nn.logical_axis_rules(
        self.placement.rules
    ):
      for batch in self._batches(split):
        sums = self._metrics_step(params, batch, *extra)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    metrics = averages_of_sums(jax.device_get(totals))
    metrics['perplexity'] = float(np.exp(min(metrics['loss'], 50.0)))
    return metrics

  def _decode(self, rows: np.ndarray) -> list:
    if hasattr(self.task, 'decode_outputs'):
      return list(self.task.decode_outputs(rows))
    return self.data.tokenizer.decode_batch(rows.tolist())

  def generate(
      self, params, split: str, max_examples: int = 0, task_state=None
  ) -> tuple[list, list[dict]]:
    """The task's predictions on a split: (predictions, examples)."""
    predictions = []
    extra = task_args(self.task, task_state)
    rng = jax.random.PRNGKey(self.config.seed)
    with jax.set_mesh(self.placement.mesh), nn.logical_axis_rules(
        self.placement.rules
    ):
      for index, batch in enumerate(self._batches(split, max_examples)):
        outputs, mask = jax.device_get(
            self._predict_step(
                params, batch, jax.random.fold_in(rng, index), *extra
            )
        )
        outputs, mask = np.asarray(outputs), np.asarray(mask) > 0
        predictions.extend(self._decode(outputs[mask]))
    return predictions, self.data.examples(split, max_examples)

  def run(
      self, params, split: str, max_examples: int = 0, task_state=None
  ) -> tuple[dict, list]:
    """Loss metrics, then (if the task predicts) prediction metrics + samples.

    Returns:
      (metrics, samples): samples are (source, reference, prediction) triples.
    """
    metrics = self.loss(params, split, task_state)
    if not self.predicts:
      return metrics, []
    predictions, examples = self.generate(
        params, split, max_examples, task_state
    )
    metrics.update(self.task.evaluate(predictions, examples))
    samples = [
        (e.get('src', ''), e.get('tgt', ''), prediction)
        for e, prediction in zip(examples, predictions)
    ]
    return metrics, samples


def print_samples(split: str, metrics: dict, samples: list, count: int) -> None:
  if jax.process_index() != 0:
    return
  shown = ', '.join(f'{k} {v:.4g}' for k, v in sorted(metrics.items()))
  print(f'[{split}] {shown}', flush=True)
  for source, reference, prediction in samples[:count]:
    print(f'  source:     {str(source)[:160]}', flush=True)
    print(f'  reference:  {reference}', flush=True)
    print(f'  prediction: {prediction}', flush=True)


# =============================================================================
# Loop
# =============================================================================


class PreemptionWatch:
  """Turns SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self._requested = threading.Event()
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint after this step')
    self._requested.set()

  def requested(self, *, sync: bool) -> bool:
    """Whether any process was asked to stop (sync=True agrees across hosts)."""
    local = self._requested.is_set()
    if jax.process_count() == 1 or not sync:
      return local
    flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
    return bool(np.any(flags))

  def stop_at_signal(self, step: int) -> None:
    """From now on SIGTERM raises `Preempted(step)` at once.

    For the evaluation after the final checkpoint: nothing is left to save,
    so the signal ends the run instead of waiting for a step boundary.
    """
    if self._previous is None:
      return

    def handle(signum, frame):
      del signum, frame
      raise Preempted(step)

    signal.signal(signal.SIGTERM, handle)

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


class TrainingClock:
  """The wall-clock budget of the training loop (`train.max_train_seconds`).

  Counted from construction, i.e. after restoring and before the first step,
  so compilation counts; 0 means no limit. Once expired it stays expired.
  """

  def __init__(self, limit: float):
    self.limit = float(limit)
    self._start = time.monotonic()
    self._expired = False

  def expired(self, *, sync: bool) -> bool:
    """Whether the budget is spent (sync=True agrees across hosts)."""
    if self._expired or not self.limit:
      return self._expired
    local = time.monotonic() - self._start >= self.limit
    if jax.process_count() > 1 and sync:
      flags = multihost_utils.process_allgather(np.asarray(local, np.int32))
      local = bool(np.any(flags))
    elif jax.process_count() > 1:
      return False  # hosts decide together, at the next log step
    self._expired = local
    return local


class Preempted(Exception):
  """SIGTERM arrived after the checkpoint of `step` was complete."""

  def __init__(self, step: int):
    super().__init__(f'SIGTERM after the checkpoint of step {step}')
    self.step = step


@dataclasses.dataclass
class Run:
  """Everything a mode needs: task, data, mesh, state placement, checkpoints."""

  config: ml_collections.ConfigDict
  workdir: str
  task: Any
  data: Any
  placement: ShardedState
  batch_sharding: Any
  checkpointer: checkpointing.Checkpointer
  tx: Any
  schedule: Any


def setup(config: ml_collections.ConfigDict, workdir: str) -> Run:
  """Builds data, task, mesh and state placement. Writes only the tokenizer."""
  check_workdir(config, workdir)
  is_main = jax.process_index() == 0
  task, data = tasks.build(
      config,
      workdir,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )
  mesh = sharding.make_mesh(config.mesh.shape)
  tx, schedule = optim.make_optimizer(config.optimizer, config.train.steps)
  placement = shard_state(task, tx, config, mesh)
  batch_sharding = sharding.logical_sharding(
      mesh, placement.rules, PartitionSpec('batch')
  )
  if is_main:
    os.makedirs(workdir, exist_ok=True)
  checkpointer = checkpointing.Checkpointer(
      os.path.join(workdir, 'checkpoints'),
      keep=config.checkpoint.keep,
      every=config.checkpoint.every,
      async_save=config.checkpoint.async_save,
  )
  return Run(
      config,
      workdir,
      task,
      data,
      placement,
      batch_sharding,
      checkpointer,
      tx,
      schedule,
  )


def load_initial_params(run: Run):
  """The params of `config.init_from`, placed in the state's shardings."""
  from flaxllm.models import pretrained  # pylint: disable=g-import-not-at-top

  spec = run.config.init_from
  shardings = run.placement.shardings.params
  if hasattr(run.task, 'load_pretrained'):  # a task wrapping the model
    params = run.task.load_pretrained(spec, shardings)
  else:
    params = pretrained.load_params(spec, run.task.model_config, shardings)
  expected = jax.tree.structure(run.placement.abstract.params)
  if jax.tree.structure(params) != expected:
    raise UserInputError(
        f'init_from {spec!r} does not give the params task'
        f' {run.config.task.name!r} builds; check model.scan_layers and the'
        ' checkpoint family'
    )
  for path, got, want in zip(
      jax.tree_util.tree_leaves_with_path(params),
      jax.tree.leaves(params),
      jax.tree.leaves(run.placement.abstract.params),
  ):
    if got.shape != want.shape:
      raise UserInputError(
          f'init_from {spec!r}: param {jax.tree_util.keystr(path[0])} has'
          f' shape {got.shape}, the model needs {want.shape}'
      )
  return params


def restore_or_init(run: Run):
  """Latest checkpoint of the workdir, else a fresh state. -> (state, data_state).

  A fresh state starts from `config.init_from`'s weights when it is set.
  """
  latest = run.checkpointer.latest_step()
  if latest is None:
    rng = jax.random.PRNGKey(run.config.seed)
    if run.config.get('init_from'):
      with jax.set_mesh(run.placement.mesh):
        state = run.placement.init_from_params(rng, load_initial_params(run))
      return state, None
    return run.placement.init(rng), None
  return run.checkpointer.restore(latest, run.placement.abstract)


@precision.under_config_precision
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config.train.steps` steps (resuming), then evaluates eval and test.

  Returns:
    The final metrics: {'eval': {...}, 'test': {...}}; {'preempted': step}
    when SIGTERM stopped the run after saving.
  """
  run = setup(config, workdir)
  is_main = jax.process_index() == 0
  if is_main:
    write_json_atomically(
        os.path.join(workdir, 'config.json'), config.to_dict()
    )
  state, data_state = restore_or_init(run)
  train_iter = run.data.train_iterator(
      global_batch_size=config.train.batch_size,
      seed=config.seed,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )
  if data_state is not None:
    train_iter.set_state(data_state)
  step = int(jax.device_get(state.step))
  if step:
    logging.info('Resumed at step %d', step)
    if is_main:
      print(
          f'Resuming from the checkpoint of step {step} in {workdir}',
          flush=True,
      )

  train_step = make_train_step(
      run.task, run.tx, run.schedule, config, run.placement, run.batch_sharding
  )
  evaluator = Evaluator(
      run.task, run.data, config, run.placement, run.batch_sharding
  )
  writer = run_logging.MetricsWriter(workdir, enabled=is_main)
  progress = run_logging.ProgressLine(config.train.steps, step, enabled=is_main)
  profile = run_logging.ProfileWindow(
      workdir, tuple(config.profile.steps), enabled=is_main
  )
  preemption = PreemptionWatch()
  history, tokens = [], 0.0
  multi_process = jax.process_count() > 1
  stage_ends = set(getattr(run.data, 'checkpoint_steps', ()))
  try:
    with jax.set_mesh(run.placement.mesh), nn.logical_axis_rules(
        run.placement.rules
    ):
      last_step = config.train.steps
      if config.train.stop_at_step:
        last_step = min(config.train.stop_at_step, last_step)
      clock = TrainingClock(config.train.get('max_train_seconds', 0.0))
      while step < last_step:
        profile.before_step(step)
        local = next(train_iter)
        tokens += count_tokens(local) * jax.process_count()
        state, metrics = train_step(
            state, sharding.global_batch(local, run.batch_sharding)
        )
        history.append(metrics)
        profile.after_step(step)
        step += 1
        run.checkpointer.save(
            step,
            state,
            train_iter.get_state(),
            force=step in stage_ends,  # a data stage ended here
        )
        at_log = (
            step % config.train.log_every == 0 or step == config.train.steps
        )
        if at_log:
          summary = summarize_train_metrics(history)
          summary.update(
              progress.update(step, tokens, {'loss': summary['loss']})
          )
          writer.write(step, 'train', summary)
          history, tokens = [], 0.0
        # One host sync per log interval in multi-process runs; none otherwise.
        if preemption.requested(sync=at_log) and (at_log or not multi_process):
          run.checkpointer.save(step, state, train_iter.get_state(), force=True)
          run.checkpointer.wait()
          if is_main:
            print(f'Preempted: saved the checkpoint of step {step}', flush=True)
          return {'preempted': step}
        if (
            config.train.eval_every
            and step % config.train.eval_every == 0
            and step < config.train.steps
        ):
          metrics_eval = evaluator.loss(
              eval_params(state), 'eval', state.task_state
          )
          writer.write(step, 'eval', metrics_eval)
        # Multi-process runs agree at log steps (False until then).
        if clock.expired(sync=at_log):
          if is_main:
            print(
                f'Training stopped at step {step} of {config.train.steps}:'
                f' train.max_train_seconds={clock.limit:g} elapsed; the'
                ' final evaluation follows (rerun the workdir to go on)',
                flush=True,
            )
          break
    run.checkpointer.save(step, state, train_iter.get_state(), force=True)
    run.checkpointer.wait()
    if step < config.train.steps and not clock.expired(sync=False):
      if is_main:
        print(
            f'Stopped at step {step} (train.stop_at_step); resume with the same'
            ' workdir',
            flush=True,
        )
      return {'stopped': step}
    if preemption.requested(sync=True):  # signalled during the final save
      if is_main:
        print(f'Preempted: saved the checkpoint of step {step}', flush=True)
      return {'preempted': step}
    preemption.stop_at_signal(step)
    try:
      results = evaluate_splits(run, evaluator, state, writer, step)
    except Preempted:
      if is_main:
        print(
            f'Preempted during the final evaluation; the checkpoint of step'
            f' {step} is complete: evaluate it with --mode=eval',
            flush=True,
        )
      return {'preempted': step}
  finally:
    preemption.restore()
    writer.close()
    run.checkpointer.close()
  return results


def eval_params(state: TrainState):
  """The params evaluation uses: the EMA when kept, else the live ones."""
  return state.ema_params if state.ema_params is not None else state.params


def evaluate_splits(
    run: Run, evaluator: Evaluator, state: TrainState, writer, step: int
) -> dict:
  """Eval and test metrics (loss + generation), printed with sample outputs."""
  results = {}
  for split in ('eval', 'test'):
    if not run.config.data[split]:
      continue
    metrics, samples = evaluator.run(
        eval_params(state),
        split,
        run.config.data.max_eval_examples,
        state.task_state,
    )
    writer.write(step, split, metrics)
    print_samples(split, metrics, samples, run.config.train.num_samples)
    results[split] = metrics
  if jax.process_index() == 0:
    write_json_atomically(
        os.path.join(run.workdir, 'results.json'), {'step': step, **results}
    )
  return results


# =============================================================================
# Modes
# =============================================================================


def _restore_for_inference(
    config, workdir
) -> tuple[Run, TrainState, Evaluator]:
  """The latest checkpoint of a trained workdir, with an evaluator on its mesh."""
  missing = UserInputError(
      f'workdir {workdir} has no checkpoint to evaluate; train first with'
      ' --mode=train or point --workdir at a trained run'
  )
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    raise missing  # before setup(), which would create the folder
  run = setup(config, workdir)
  latest = run.checkpointer.latest_step()
  if latest is None:
    run.checkpointer.close()
    raise missing
  state, _ = run.checkpointer.restore(latest, run.placement.abstract)
  evaluator = Evaluator(
      run.task, run.data, config, run.placement, run.batch_sharding
  )
  return run, state, evaluator


def load_checkpoint(config: ml_collections.ConfigDict, workdir: str):
  """The run and the latest train state of a workdir, for analysis.

  For notebooks and scripts that inspect a trained run (its params, or a
  stateful task's `task_state` such as SeqDiffuSeq's schedule tables).

  Returns:
    (run, state): close `run.checkpointer` when done.
  """
  run, state, _ = _restore_for_inference(config, workdir)
  return run, state


@precision.under_config_precision
def evaluate_only(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """--mode=eval: metrics of the latest checkpoint on the eval and test splits."""
  run, state, evaluator = _restore_for_inference(config, workdir)
  writer = run_logging.MetricsWriter(workdir, enabled=jax.process_index() == 0)
  try:
    step = int(jax.device_get(state.step))
    return evaluate_splits(run, evaluator, state, writer, step)
  finally:
    writer.close()
    run.checkpointer.close()


@precision.under_config_precision
def predict_only(config: ml_collections.ConfigDict, workdir: str) -> str:
  """--mode=predict: decodes `predict.split` to workdir/predictions.jsonl."""
  run, state, evaluator = _restore_for_inference(config, workdir)
  if not evaluator.predicts:
    run.checkpointer.close()
    raise UserInputError(
        f'task {config.task.name!r} makes no predictions; use --mode=eval'
    )
  try:
    predictions, examples = evaluator.generate(
        eval_params(state),
        config.predict.split,
        config.predict.max_examples,
        task_state=state.task_state,
    )
  finally:
    run.checkpointer.close()
  path = os.path.join(workdir, 'predictions.jsonl')
  if jax.process_index() == 0:
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'w') as f:
      for example, prediction in zip(examples, predictions):
        record = {k: v for k, v in example.items() if not k.endswith('_ids')}
        record['prediction'] = prediction
        f.write(json.dumps(record, default=str) + '\n')
    os.replace(tmp, path)
    print(f'Wrote {len(predictions)} predictions to {path}', flush=True)
  return path
