r"""MuggleMath's scaling law at CPU scale: accuracy vs ln(amount of data).

Trains `configs/mugglemath.py:runlocal` once per augmentation amount: the same
seed items (generated two-step word problems with GSM8K-style annotated
solutions, `synthetic:math:train`) grown by 0, 1, 3, 7, ... rule-based number
changes each, so the training set holds N = seed items + new items. Every run
has the same number of steps and batch size (so the larger sets are seen
fewer times each). A tiny LLaMA scores ~0 on real GSM8K test, so the
measured accuracy is that of the generated math test split (problems of the
same form with held-out numbers), read by the GSM8K checker; the test
token accuracy (teacher-forced, on the response tokens) is reported beside
it, as the finer-grained measure. Both are fitted to a + b ln N
(`mugglemath.fit_log_linear`) and plotted (`mugglemath.plot_scaling`), and
the table is appended to experiments/results/mugglemath.md. With
`--stop_at_step=T` every run trains T steps of the `--steps` schedule and the
checkpoint of step T is evaluated (`--mode=eval`):

  nice -n 10 python experiments/mugglemath_scaling.py \
      --copies=0,1,3,7 --seed_items=200 --steps=500 --stop_at_step=251

A run whose workdir already holds results.json is not run again, so an
interrupted sweep resumes.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from configs import mugglemath as mugglemath_config  # pylint: disable=wrong-import-position
from flaxllm.data import sources  # pylint: disable=wrong-import-position
from flaxllm.recipes import mugglemath  # pylint: disable=wrong-import-position


def variant(args, copies: int) -> str:
  return (
      f'runlocal,base=synthetic,seed_items={args.seed_items},copies={copies},'
      f'responses={args.responses},test_items={args.test_items}'
  )


def command(args, copies: int, workdir: str, mode: str = 'train') -> list[str]:
  """The trainer's command line; with --stop_at_step, training stops there."""
  argv = [
      sys.executable,
      '-m',
      'flaxllm.main',
      f'--config=configs/mugglemath.py:{variant(args, copies)}',
      f'--config.train.steps={args.steps}',
      f'--config.train.batch_size={args.batch_size}',
      '--config.data.max_source_length=128',
      '--config.data.max_target_length=64',
      f'--workdir={workdir}',
  ]
  if mode == 'train' and args.stop_at_step:
    argv.append(f'--config.train.stop_at_step={args.stop_at_step}')
  if mode != 'train':
    argv.append(f'--mode={mode}')
  return argv


def training_set(args, copies: int) -> tuple[int, int]:
  """(N, new test-question overlaps) of one amount's training set."""
  config = mugglemath_config.get_config(variant(args, copies))
  train_spec, test_spec = config.data.train, config.data.test
  train = sources.load_examples(train_spec)
  test_questions = {
      example['src'] for example in sources.load_examples(test_spec)
  }
  overlap = sum(example['src'] in test_questions for example in train)
  return len(train), overlap


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--copies', default='0,1,3,7')
  parser.add_argument('--seed_items', type=int, default=200)
  parser.add_argument('--responses', type=int, default=1)
  parser.add_argument('--test_items', type=int, default=200)
  parser.add_argument('--steps', type=int, default=500)
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument(
      '--stop_at_step',
      type=int,
      default=0,
      help=(
          '> 0: stop every run there (schedule still --steps long), then'
          ' evaluate that checkpoint'
      ),
  )
  parser.add_argument('--root', default='/tmp/mugglemath_scaling')
  parser.add_argument('--timeout_s', type=int, default=1800)
  parser.add_argument(
      '--results', default=os.path.join(HERE, 'results', 'mugglemath.md')
  )
  parser.add_argument(
      '--png',
      default=os.path.join(HERE, 'results', 'mugglemath_scaling.png'),
  )
  args = parser.parse_args()
  amounts = [int(c) for c in args.copies.split(',') if c.strip()]
  os.makedirs(args.root, exist_ok=True)

  rows = []
  for copies in amounts:
    workdir = os.path.join(args.root, f'copies{copies}')
    results_path = os.path.join(workdir, 'results.json')
    seconds = None
    if not os.path.exists(results_path):
      start = time.time()
      with open(workdir + '.log', 'w', encoding='utf-8') as log:
        code = subprocess.call(
            command(args, copies, workdir),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=args.timeout_s,
        )
        if not code and args.stop_at_step:  # Stopped early: evaluate.
          code = subprocess.call(
              command(args, copies, workdir, mode='eval'),
              cwd=REPO,
              stdout=log,
              stderr=subprocess.STDOUT,
              timeout=args.timeout_s,
          )
      seconds = round(time.time() - start)
      print(f'copies={copies}: rc={code} in {seconds} s', flush=True)
      if code:
        raise SystemExit(f'run failed; see {workdir}.log')
      with open(workdir + '.seconds', 'w', encoding='utf-8') as f:
        f.write(str(seconds))
    elif os.path.exists(workdir + '.seconds'):
      with open(workdir + '.seconds', encoding='utf-8') as f:
        seconds = int(f.read())
    with open(results_path, encoding='utf-8') as f:
      payload = json.load(f)
    test = {**payload['test'], 'step': payload['step']}
    size, overlap = training_set(args, copies)
    rows.append((copies, size, overlap, test, seconds))
    print(
        f'copies={copies} N={size} math_accuracy={test["math_accuracy"]:.1f}',
        flush=True,
    )

  sizes = [size for _, size, *_ in rows]
  measures = {
      'math acc. (%)': [test['math_accuracy'] for *_, test, _ in rows],
      'test token acc. (%)': [100 * test['accuracy'] for *_, test, _ in rows],
  }
  fits = {
      name: mugglemath.fit_log_linear(sizes, values)
      for name, values in measures.items()
  }
  pngs = {
      'math acc. (%)': args.png,
      'test token acc. (%)': args.png.replace('.png', '_token_accuracy.png'),
  }
  for name, values in measures.items():
    mugglemath.plot_scaling(
        sizes,
        values,
        fits[name],
        pngs[name],
        title=f'generated math test: {name} vs N',
    )
  lines = [
      (
          '| copies per seed item | N (training examples) | steps |'
          ' math acc. (%) | fit | test token acc. (%) | fit | wall s |'
      ),
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  predicted = {name: fit.predict(sizes) for name, fit in fits.items()}
  for index, (copies, size, _, test, seconds) in enumerate(rows):
    cells = [str(copies), str(size), str(test.get('step', '-'))]
    for name in measures:
      cells += [
          f'{measures[name][index]:.1f}',
          f'{predicted[name][index]:.1f}',
      ]
    cells.append(str(seconds if seconds is not None else '-'))
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines.append('')
  for name, fit in fits.items():
    lines.append(
        f'- {name}: {fit.intercept:.2f} + {fit.slope:.2f} ln N,'
        f' R^2 = {fit.r_squared:.3f} ({len(rows)} points); plot'
        f' `{os.path.relpath(pngs[name], os.path.join(HERE, "results"))}`'
    )
  lines.append(
      '- training questions equal to a test question:'
      f' {max(overlap for _, _, overlap, *_ in rows)} at most'
  )
  table = '\n'.join(lines)
  print(table)
  if args.results:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    invocation = 'python experiments/mugglemath_scaling.py ' + ' '.join(
        sys.argv[1:]
    )
    run_line = ' '.join(command(args, 0, '/tmp/w')[1:]).replace(
        'copies=0', 'copies=C'
    )
    budget = f'{args.steps} steps of {args.batch_size} rows'
    if args.stop_at_step:
      budget = (
          f'training stopped at step {args.stop_at_step} of a'
          f' {args.steps}-step schedule, {args.batch_size} rows a step,'
          ' then `--mode=eval`'
      )
    with open(args.results, 'a', encoding='utf-8') as f:
      f.write(
          f'\n## {stamp}: `{invocation.strip()}`\n\n'
          f'Each run: `python {run_line}` ({budget} for every N; test: the'
          f' {args.test_items} items of `synthetic:math:test`, GSM8K'
          ' checker, greedy).'
          f'\n\n{table}\n'
      )


if __name__ == '__main__':
  main()
