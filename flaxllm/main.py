r"""Launcher: `python -m flaxllm.main --config=configs/X.py[:variant] --workdir=DIR`.

  --mode=train    train (resuming from the workdir's checkpoint), then evaluate
  --mode=eval     evaluate the workdir's latest checkpoint
  --mode=predict  decode `predict.split` to workdir/predictions.jsonl
  --mode=decode   decode a prompts jsonl (`decode.*`, flaxllm.decode_mode)
  --mode=route    ZOOTER: route a queries jsonl to one zoo member each
                  (`route.*`, flaxllm.route_mode)

Config overrides: `--config.train.steps=300 --config.mesh.shape='(2,4,1)'`.
Multi-process (TPU pod slices, SLURM or MPI GPU clusters, several CPU
processes): pass --coordinator_address, --num_processes and --process_id, or
--distributed=auto to let JAX detect the cluster.

The whole config is validated before any work; a user error prints one line
`flaxllm: error: ...` and exits with status 2, leaving the workdir as it was.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from flaxllm.errors import UserInputError

_CONFIG = config_flags.DEFINE_config_file(
    'config',
    None,
    'Path to a config file, with an optional :variant.',
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Folder for checkpoints, logs, outputs.'
)
_MODE = flags.DEFINE_enum(
    'mode',
    'train',
    ['train', 'eval', 'predict', 'decode', 'route'],
    'What to run.',
)
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed',
    'off',
    ['off', 'auto'],
    'auto: call jax.distributed.initialize() and let JAX detect the cluster.',
)
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address',
    None,
    'host:port of process 0, for multi-process runs.',
)
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Processes in the job.'
)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0-based.')

USAGE_EXIT_CODE = 2


def fail(message: str) -> None:
  """Prints a one-line error and exits with status 2 (no traceback)."""
  print(f'flaxllm: error: {message}', file=sys.stderr, flush=True)
  sys.exit(USAGE_EXIT_CODE)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing whose errors (unknown config keys...) are one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(' '.join(str(e).split()))
  except UserInputError as e:
    fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    # A config file that raises while building (bad :variant argument...).
    fail(f'{type(e).__name__}: {" ".join(str(e).split())}')
  return []


def init_distributed() -> None:
  """Starts JAX's distributed runtime when this is a multi-process run."""
  import jax  # pylint: disable=g-import-not-at-top

  explicit = _COORDINATOR.value or (_NUM_PROCESSES.value or 1) > 1
  if not explicit and _DISTRIBUTED.value == 'off':
    return
  if os.environ.get('JAX_PLATFORMS', '') == 'cpu' or _on_cpu_only():
    # CPU processes exchange collectives through gloo.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    jax.distributed.initialize(
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
    )
  else:
    jax.distributed.initialize()
  logging.info(
      'Process %d of %d, %d local / %d global devices',
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )


def _on_cpu_only() -> bool:
  try:
    import jaxlib  # pylint: disable=g-import-not-at-top,unused-import
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top

    return set(xla_bridge.backends().keys()) <= {'cpu'}
  except Exception:  # pylint: disable=broad-except
    return False


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; pass options as --flag=value')
  if _CONFIG.value is None:
    fail('--config is required, e.g. --config=configs/seq2seq.py:runlocal')
  if not _WORKDIR.value:
    fail('--workdir is required, e.g. --workdir=/tmp/flaxllm_run')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(
        logging.WARNING
    )  # orbax's INFO lines drown the progress
  config, workdir = _CONFIG.value, os.path.abspath(_WORKDIR.value)
  try:
    init_distributed()
    import jax  # pylint: disable=g-import-not-at-top

    from flaxllm import configuration  # pylint: disable=g-import-not-at-top
    from flaxllm import train  # pylint: disable=g-import-not-at-top

    configuration.validate(
        config,
        num_devices=jax.device_count(),
        num_processes=jax.process_count(),
    )
    from flaxllm import precision  # pylint: disable=g-import-not-at-top

    # Every mode (decode and route too) traces under the run's precision.
    with precision.scope(config.matmul_precision):
      if _MODE.value == 'train':
        results = train.train_and_evaluate(config, workdir)
        if 'preempted' in results:
          sys.exit(train.PREEMPTED_EXIT_CODE)
      elif _MODE.value == 'eval':
        train.evaluate_only(config, workdir)
      elif _MODE.value == 'decode':
        from flaxllm import decode_mode  # pylint: disable=g-import-not-at-top

        decode_mode.decode_file(config, workdir)
      elif _MODE.value == 'route':
        from flaxllm import route_mode  # pylint: disable=g-import-not-at-top

        route_mode.route_file(config, workdir)
      else:
        train.predict_only(config, workdir)
  except UserInputError as e:
    fail(str(e))


def add_config_root_to_path(argv: list[str]) -> None:
  """Lets config files `from configs import common` wherever flaxllm runs."""
  for arg in argv:
    if arg.startswith('--config='):
      path = arg.split('=', 1)[1].split(':', 1)[0]
      root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
      if root not in sys.path:
        sys.path.insert(0, root)


def run() -> None:
  add_config_root_to_path(sys.argv)
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
