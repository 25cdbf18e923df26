r"""More seeds and strategies of the CPU-scale DMT experiment, in one table.

Runs `configs/dmt.py:runlocal` once per (strategy, seed), each in its own
workdir under `--root`, `--parallel` at a time, and skips runs whose workdir
already holds a `results.json` (so an interrupted sweep resumes where it
stopped) or that another sweep on the same root has claimed (a
`<run>_s<seed>.claim` file, removed when the run ends). `--report` then reads
every finished run under `--root` and appends a table to
experiments/results/dmt.md: per strategy, each ability's score as mean +-
sample std over the seeds found (the single value with one seed).

  # every strategy of the paper but single, DMT at two k, three seeds
  nice -n 10 python experiments/dmt_sweep.py --seeds=0,1,2 \
      --runs=multi_task,mixed_sequential,dmt@0.0625,sequential,dmt@0.00390625
  # each specialist alone
  nice -n 10 python experiments/dmt_sweep.py --seeds=0 \
      --runs=single@math,single@code,single@general
  python experiments/dmt_sweep.py --report

A run name is a strategy, with `@k` for dmt and `@source` for single. Seed S
sets both `config.seed` (initialisation and batch order) and
`config.task.recipe.seed` (which examples are cut and replayed); seed 0 is
the default of `configs/dmt.py`, so it repeats the first table's runs.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# (results key, column title, number format).
METRICS = (
    ('math_accuracy', 'math acc.', '{:.1f}'),
    ('code_pass@1', 'code pass@1', '{:.1f}'),
    ('general_rougeL', 'general ROUGE-L', '{:.2f}'),
    ('accuracy', 'test token acc. (%)', '{:.1f}'),
)
# Stages of each strategy, for the table.
STAGES = {
    'single': 'one source alone',
    'multi_task': 'all mixed',
    'sequential': 'code, then math, then general',
    'mixed_sequential': 'code+math, then general',
    'dmt': 'code+math, then general + k of each specialist',
}
_SOURCE_SIZE = 1500  # Examples per source in configs/dmt.py:runlocal.
_LOG_LOCK = threading.Lock()  # Guards runs.jsonl between parallel runs.


def config_arg(run: str, extra: str = '') -> str:
  """'dmt@0.0625' -> 'runlocal,strategy=dmt,k=0.0625' (the :variant part).

  `extra` ('math_level=two_digit', say) is appended for every run.
  """
  strategy, _, value = run.partition('@')
  if strategy not in STAGES:
    raise SystemExit(f'run {run!r}: strategy must be one of {sorted(STAGES)}')
  arg = f'runlocal,strategy={strategy}'
  if strategy == 'dmt':
    arg += f',k={float(value or 1 / 256)}'
  elif strategy == 'single':
    arg += f',single={value or "math"}'
  elif value:
    raise SystemExit(f'run {run!r}: only dmt@k and single@source take a value')
  return f'{arg},{extra}' if extra else arg


def command(
    run: str, seed: int, workdir: str, extra: str = '', steps: int = 0
) -> list[str]:
  argv = [
      sys.executable,
      '-m',
      'flaxllm.main',
      f'--config=configs/dmt.py:{config_arg(run, extra)}',
      f'--config.seed={seed}',
      f'--config.task.recipe.seed={seed}',
      f'--workdir={workdir}',
  ]
  if steps:
    argv.append(f'--config.train.steps={steps}')
  return argv


def _run_one(
    run: str,
    seed: int,
    root: str,
    timeout_s: int,
    extra: str = '',
    steps: int = 0,
) -> None:
  """Trains and evaluates one (run, seed) unless it is done or claimed."""
  workdir = os.path.join(root, f'{run}_s{seed}')
  if os.path.exists(os.path.join(workdir, 'results.json')):
    print(f'{run} seed {seed}: done before, skipped', flush=True)
    return
  # A claim file lets several sweeps share one root without running the same
  # (run, seed) twice; a sweep that is killed leaves it behind.
  claim = workdir + '.claim'
  try:
    os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
  except FileExistsError:
    print(
        f'{run} seed {seed}: claimed by another sweep, skipped (delete'
        f' {claim} if no sweep runs it)',
        flush=True,
    )
    return
  try:
    argv = command(run, seed, workdir, extra, steps)
    start = time.time()
    with open(workdir + '.log', 'w', encoding='utf-8') as log:
      try:
        code = subprocess.call(
            argv,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
        )
      except subprocess.TimeoutExpired:
        code = 'timeout'
    seconds = time.time() - start
    with _LOG_LOCK, open(
        os.path.join(root, 'runs.jsonl'), 'a', encoding='utf-8'
    ) as f:
      f.write(
          json.dumps({
              'run': run,
              'seed': seed,
              'returncode': code,
              'seconds': round(seconds),
              'command': ' '.join(argv[1:]),
          })
          + '\n'
      )
    print(f'{run} seed {seed}: rc={code} in {seconds:.0f} s', flush=True)
  finally:
    os.remove(claim)


def run_all(
    runs,
    seeds,
    root: str,
    timeout_s: int,
    parallel: int = 1,
    extra: str = '',
    steps: int = 0,
) -> None:
  """Runs every (run, seed), seed-major, `parallel` trainings at a time.

  `extra` is appended to every run's config argument and `steps` (> 0)
  overrides `train.steps` (a stage's length scales with it).
  """
  os.makedirs(root, exist_ok=True)
  jobs = [(run, seed) for seed in seeds for run in runs]
  with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
    futures = [
        pool.submit(_run_one, run, seed, root, timeout_s, extra, steps)
        for run, seed in jobs
    ]
    for future in futures:
      future.result()


def _label(run: str) -> str:
  strategy, _, value = run.partition('@')
  if strategy == 'dmt':
    k = float(value or 1 / 256)
    denominator = round(1 / k) if k else 0
    per_source = int(k * _SOURCE_SIZE + 1e-9)
    return f'DMT(k = 1/{denominator}, {per_source} per specialist)'
  if strategy == 'single':
    return f'{value or "math"} only'
  return strategy.replace('_', ' ').replace('multi task', 'multi-task')


def _cell(values, fmt: str) -> str:
  if not values:
    return '-'
  if len(values) == 1:
    return fmt.format(values[0])
  return (
      f'{fmt.format(statistics.mean(values))} +-'
      f' {fmt.format(statistics.stdev(values))}'
  )


def report(root: str, results_md: str) -> str:
  """The table of every finished run under `root`, appended to results_md."""
  finished = {}
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name, 'results.json')
    if not os.path.exists(path):
      continue
    run, _, seed = name.rpartition('_s')
    with open(path, encoding='utf-8') as f:
      finished.setdefault(run, {})[int(seed)] = json.load(f)['test']
  seconds, example = {}, ''
  runs_log = os.path.join(root, 'runs.jsonl')
  if os.path.exists(runs_log):
    with open(runs_log, encoding='utf-8') as f:
      for line in f:
        entry = json.loads(line)
        seconds[(entry['run'], entry['seed'])] = entry['seconds']
        example = example or entry.get('command', '')
  order = list(STAGES)
  rows = sorted(
      finished,
      key=lambda run: (order.index(run.partition('@')[0]), run),
  )
  header = ['strategy', 'stages', 'seeds'] + [m[1] for m in METRICS]
  lines = [
      '| ' + ' | '.join(header) + ' |',
      '|' + ' --- |' * len(header),
  ]
  for run in rows:
    by_seed = finished[run]
    cells = [
        _label(run),
        STAGES[run.partition('@')[0]],
        ','.join(map(str, sorted(by_seed))),
    ]
    for key, _, fmt in METRICS:
      scale = 100.0 if key == 'accuracy' else 1.0
      values = [
          scale * metrics[key] for metrics in by_seed.values() if key in metrics
      ]
      cells.append(_cell(values, fmt))
    lines.append('| ' + ' | '.join(cells) + ' |')
  per_seed = [
      '',
      '| run | seed | ' + ' | '.join(m[1] for m in METRICS) + ' | wall s |',
      '|' + ' --- |' * (len(METRICS) + 3),
  ]
  for run in rows:
    for seed, metrics in sorted(finished[run].items()):
      values = [
          fmt.format((100.0 if key == 'accuracy' else 1.0) * metrics[key])
          if key in metrics
          else '-'
          for key, _, fmt in METRICS
      ]
      per_seed.append(
          f'| {_label(run)} | {seed} | '
          + ' | '.join(values)
          + f' | {seconds.get((run, seed), "-")} |'
      )
  table = '\n'.join(lines + per_seed)
  print(table)
  if results_md:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    with open(results_md, 'a', encoding='utf-8') as f:
      f.write(
          f'\n## {stamp}, sweep: `python experiments/dmt_sweep.py --report'
          f' --root={root}`\n\nEach run: `python -m flaxllm.main'
          ' --config=configs/dmt.py:runlocal,strategy=S[,k=K|,single=X]'
          ' --config.seed=N --config.task.recipe.seed=N` (the commands and'
          ' wall times are in the runs.jsonl of the sweep root'
          + (f'; the first was `python {example}`' if example else '')
          + '). Scores are mean +- sample std over the seeds listed.\n\n'
          + table
          + '\n'
      )
  return table


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
      '--runs', default='multi_task,mixed_sequential,dmt@0.0625'
  )
  parser.add_argument('--seeds', default='1,2')
  parser.add_argument('--root', default='/tmp/dmt_sweep')
  parser.add_argument('--timeout_s', type=int, default=1800)
  parser.add_argument(
      '--parallel',
      type=int,
      default=1,
      help='trainings at a time (each is one process).',
  )
  parser.add_argument(
      '--config_args',
      default='',
      help="appended to every run's config argument, e.g. math_level=two_digit",
  )
  parser.add_argument(
      '--steps', type=int, default=0, help='train.steps of every run (0 keeps)'
  )
  parser.add_argument('--report', action='store_true')
  parser.add_argument(
      '--results', default=os.path.join(HERE, 'results', 'dmt.md')
  )
  args = parser.parse_args()
  if args.report:
    report(args.root, args.results)
    return
  runs = [run.strip() for run in args.runs.split(',') if run.strip()]
  for run in runs:
    config_arg(run)  # Fails on a bad name before any run starts.
  seeds = [int(seed) for seed in args.seeds.split(',') if seed.strip()]
  run_all(
      runs,
      seeds,
      args.root,
      args.timeout_s,
      args.parallel,
      args.config_args,
      args.steps,
  )


if __name__ == '__main__':
  main()
