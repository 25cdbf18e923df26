"""Tasks: one module per training objective, and the protocol the trainer uses.

A task module `flaxllm/tasks/<name>.py` provides
  `task_defaults() -> ConfigDict`   the keys its `config.task` section takes;
  `check_config(config)`            validation of config.task and config.model;
  `build(config, workdir, process_index, process_count) -> (task, data)`.
`config.task.name` picks the module. The trainer knows nothing else.

The task object:
  dummy_batch(n)                    numpy batch of the maximum shapes, with
                                    'example_mask' float32 [n] (0: padding row)
  init(rng, batch)                  boxed params
  loss_fn(params, batch, rng[, task_state]) -> (loss, metrics)
                                    metrics: float32 sums, with 'loss_sum' and
                                    'denominator'; each other '<x>_sum' is
                                    reported as <x> ('correct_sum': accuracy);
                                    a stateful task may add 'observations'
  eval_metrics(params, batch[, task_state]) -> the same sums
  predict(params, batch, rng[, task_state]) -> [batch, ...]   (optional)
  decode_outputs(rows) -> list      (optional; default: tokenizer decoding)
  evaluate(predictions, examples) -> dict of floats
  init_task_state() / update_task_state(task_state, observations, step)
                                    (stateful tasks only: arrays kept in the
                                    train state and its checkpoints, updated
                                    inside the jitted step)

The data bundle: `tokenizer`, `examples(split, max_examples)`,
`train_iterator(...)` (resumable: get_state/set_state) and `eval_batches(...)`.
"""

import importlib

import ml_collections

from flaxllm.errors import UserInputError

TASK_NAMES = (
    'seq2seq',
    'lm',
    'sft',
    'denoise',
    'classify',
    'diffusion',
    'linking',
)


def _module(name: str):
  if name not in TASK_NAMES:
    raise UserInputError(
        f'config key task.name={name!r} is unknown; use one of {TASK_NAMES}'
    )
  return importlib.import_module(f'flaxllm.tasks.{name}')


def check_task_config(config: ml_collections.ConfigDict) -> None:
  """Validates config.task (known keys, types) and config.model for the task."""
  if 'name' not in config.task:
    raise UserInputError("config key 'task.name' is missing; e.g. 'seq2seq'")
  module = _module(config.task.name)
  defaults = module.task_defaults()
  for key in config.task.keys():
    if key not in defaults:
      raise UserInputError(
          f'config key task.{key!r} is unknown for task {config.task.name!r};'
          f' it takes {sorted(defaults.keys())}'
      )
    default = defaults[key]
    if isinstance(default, (int, float)) and not isinstance(default, bool):
      value = config.task[key]
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserInputError(
            f'config key task.{key} must be a number, got {value!r}'
        )
  module.check_config(config)


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
):
  """Builds (task, data bundle) for config.task.name."""
  return _module(config.task.name).build(
      config, workdir, process_index=process_index, process_count=process_count
  )
