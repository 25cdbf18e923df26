r"""SeqDiffuSeq ablation at CPU scale, beside an autoregressive baseline.

Trains `configs/seqdiffuseq.py:runlocal` (HPO name -> synonym) four ways at
one budget -- full / no adaptive schedule / no self-conditioning / neither
(the paper's Table 2) -- over several seeds, plus the autoregressive
seq2seq model of the same size on the same data (`configs/seq2seq.py`, tiny,
greedy decoding). For each run it records test BLEU, ROUGE-L and dist-1, and
how much the model uses its source: the test loss with each row's true
source against the loss with the sources of the batch rotated by one row
(a model that ignores the source scores the same on both).

  python experiments/seqdiffuseq_ablation.py --steps=800 --seeds=0,1,2 \
      --workdir=/tmp/sdsq_ablation \
      --out=experiments/results/seqdiffuseq_ablation.md

`--copy_task` swaps the HPO pairs for a synthetic copy task (target = source:
8-12 words drawn from 50 one-letter words, 20,000 train / 300 test pairs,
written under the workdir, one BPE token per word), the check that the
diffusion models read their source at all, and the task on which the variants
can be ranked at CPU budgets (the HPO models stay source-blind there);
`--learning_rate` overrides `:runlocal`'s. The ablation of record:

  python experiments/seqdiffuseq_ablation.py --copy_task --steps=500 \
      --seeds=0,1,2,3,4 --learning_rate=1e-3 --workdir=/tmp/copy_ablation

`--alpha_bar_png=PATH` also plots ᾱ_t per position of the first full run,
before (the sqrt tables) and after its adaptive updates. Runs whose workdir
already holds results.json are read back, not retrained, so an interrupted
sweep resumes.
"""

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import seq2seq
from configs import seqdiffuseq
from flaxllm import train
from flaxllm.diffusion import schedules
from flaxllm.eval import diversity
# pylint: enable=g-import-not-at-top,wrong-import-position

# name: (adaptive_schedule, self_conditioning); None is the AR baseline.
VARIANTS = {
    'full': (True, True),
    'no_adaptive': (False, True),
    'no_self_conditioning': (True, False),
    'neither': (False, False),
    'autoregressive': None,
}


def diffusion_config(
    variant: str, seed: int, steps: int, encoder_input_init: str = 'normal'
):
  """`seqdiffuseq.py:runlocal` with the variant's switches and the budget."""
  adaptive, self_conditioning = VARIANTS[variant]
  config = seqdiffuseq.get_config(
      f'runlocal,adaptive_schedule={adaptive},'
      f'self_conditioning={self_conditioning},'
      f'encoder_input_init={encoder_input_init}'
  )
  # Re-fit at steps 3S, 4S, ... with S an eighth of the run: six updates.
  config.task.adaptive_every = max(steps // 8, 1)
  config.task.mbr_candidates = 1  # one sample per source, as the paper's BLEU
  return _budget(config, seed, steps)


def autoregressive_config(seed: int, steps: int):
  """`seq2seq.py:runlocal` on the diffusion run's data, size and optimizer."""
  reference = seqdiffuseq.get_config('runlocal')
  config = seq2seq.get_config('runlocal,dataset=name2syn')
  config.model.dropout_rate = reference.model.dropout_rate
  for key in ('max_source_length', 'max_target_length', 'bucket_boundaries',
              'max_eval_examples'):
    config.data[key] = reference.data[key]
  config.tokenizer.vocab_size = reference.tokenizer.vocab_size
  config.train.batch_size = reference.train.batch_size
  config.optimizer.learning_rate = reference.optimizer.learning_rate
  return _budget(config, seed, steps)


COPY_WORDS = tuple('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX')


def write_copy_task(folder: str) -> str:
  """Writes the synthetic copy task's train/test jsonl; returns folder."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.RandomState(0)
  for split, count in (('train', 20_000), ('test', 300)):
    path = os.path.join(folder, f'{split}.jsonl')
    if os.path.exists(path):
      continue
    with open(path, 'w') as f:
      for _ in range(count):
        text = ' '.join(rng.choice(COPY_WORDS, rng.randint(8, 13)))
        f.write(json.dumps({'src': text, 'tgt': text}) + '\n')
  return folder


def use_copy_task(config, folder: str):
  """Points a config at the copy task (one bucket, 16 source tokens)."""
  config.data.train = f'jsonl:{folder}/train.jsonl'
  config.data.eval = f'jsonl:{folder}/test.jsonl'
  config.data.test = f'jsonl:{folder}/test.jsonl'
  config.data.max_source_length = 16
  config.data.max_target_length = 15
  config.data.bucket_boundaries = (16,)
  # 256 bytes + 5 specials + one merge per space-prefixed word: every word
  # is then one token (at 300, 11 of the 50 words were split in two).
  config.tokenizer.vocab_size = 320
  return config


def _budget(config, seed: int, steps: int):
  config.seed = seed
  config.train.steps = steps
  config.optimizer.warmup_steps = max(steps // 10, 1)
  config.train.eval_every = 0
  config.train.log_every = max(steps // 4, 1)
  config.train.num_samples = 3
  config.checkpoint.every = steps
  return config


def source_use(config, workdir: str) -> tuple[float, float, float]:
  """Test loss with true sources, with sources rotated by one row; dist-1.

  dist-1 (0-100) is of the test predictions (the first
  data.max_eval_examples), which the seq2seq task does not report itself.
  """
  run, state, evaluator = train._restore_for_inference(  # pylint: disable=protected-access
      config, workdir
  )
  params = train.eval_params(state)
  extra = train.task_args(run.task, state.task_state)
  totals = {'true': None, 'rotated': None}
  try:
    predictions, _ = evaluator.generate(
        params, 'test', config.data.max_eval_examples, state.task_state
    )
    dist_1 = 100 * diversity.distinct_n([str(p) for p in predictions], 1)
    with jax.set_mesh(run.placement.mesh):
      for batch in evaluator._batches('test'):  # pylint: disable=protected-access
        rotated = dict(batch)
        for key in ('inputs', 'input_mask'):
          rotated[key] = jnp.roll(batch[key], 1, axis=0)
        for name, b in (('true', batch), ('rotated', rotated)):
          sums = jax.device_get(evaluator._metrics_step(params, b, *extra))  # pylint: disable=protected-access
          totals[name] = sums if totals[name] is None else {
              k: totals[name][k] + sums[k] for k in sums
          }
  finally:
    run.checkpointer.close()
  true_loss, rotated_loss = (
      float(totals[name]['loss_sum'] / totals[name]['denominator'])
      for name in ('true', 'rotated')
  )
  return true_loss, rotated_loss, dist_1


def plot_schedule(config, workdir: str, path: str) -> str:
  """Writes ᾱ_t before (the base tables) and after a run's updates."""
  run, state, _ = train._restore_for_inference(config, workdir)  # pylint: disable=protected-access
  run.checkpointer.close()
  after = np.asarray(jax.device_get(state.task_state['alphas_cumprod']))
  before = schedules.base_alphas_cumprod(
      config.task.schedule, after.shape[0], after.shape[1]
  )
  return schedules.plot_alpha_bar(before, after, path)


def run_one(
    variant: str,
    seed: int,
    steps: int,
    root: str,
    encoder_input_init: str = 'normal',
    copy_task: bool = False,
    learning_rate: float = 0.0,
    batch_size: int = 0,
    max_train_seconds: float = 0.0,
) -> dict:
  """Trains (or reads back) one run; returns its test figures."""
  workdir = os.path.join(root, f'{variant}_seed{seed}')
  if variant == 'autoregressive':
    config = autoregressive_config(seed, steps)
  else:
    config = diffusion_config(variant, seed, steps, encoder_input_init)
  if copy_task:
    config = use_copy_task(config, write_copy_task(os.path.join(root, 'copy')))
  if learning_rate:
    config.optimizer.learning_rate = learning_rate
  if batch_size:
    config.train.batch_size = batch_size
  config.train.max_train_seconds = max_train_seconds
  record_path = os.path.join(workdir, 'ablation_record.json')
  if os.path.exists(record_path):
    with open(record_path) as f:
      return json.load(f)
  start = time.perf_counter()
  results = train.train_and_evaluate(config, workdir)
  seconds = time.perf_counter() - start
  with open(os.path.join(workdir, 'results.json')) as f:
    steps_done = json.load(f)['step']  # < steps if the time budget ended it
  true_loss, rotated_loss, dist_1 = source_use(config, workdir)
  test = results['test']
  record = {
      'variant': variant,
      'seed': seed,
      'steps': steps_done,
      'batch_size': config.train.batch_size,
      'task': 'copy' if copy_task else 'hpo',
      'learning_rate': config.optimizer.learning_rate,
      'bleu': test['bleu'],
      'rougeL': test['rougeL'],
      'dist_1': test.get('dist_1', dist_1),
      'loss': true_loss,
      'loss_rotated_source': rotated_loss,
      'seconds': seconds,
  }
  with open(record_path, 'w') as f:
    json.dump(record, f)
  print(json.dumps(record), flush=True)
  return record


def _mean_std(values: list[float], digits: int = 2) -> str:
  if len(values) == 1:
    return f'{values[0]:.{digits}f}'
  return (f'{statistics.mean(values):.{digits}f} ±'
          f' {statistics.stdev(values):.{digits}f}')


def table(records: list[dict]) -> str:
  """Markdown: one row per variant, mean ± std over seeds."""
  lines = [
      '| variant | seeds | test BLEU | ROUGE-L | dist-1 | test loss |'
      ' loss, rotated sources | steps | minutes/run |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for variant in VARIANTS:
    rows = [r for r in records if r['variant'] == variant]
    if not rows:
      continue
    pick = lambda key: [r[key] for r in rows]  # pylint: disable=cell-var-from-loop
    lines.append(
        f'| {variant} | {len(rows)} | {_mean_std(pick("bleu"))} |'
        f' {_mean_std(pick("rougeL"))} | {_mean_std(pick("dist_1"))} |'
        f' {_mean_std(pick("loss"), 4)} |'
        f' {_mean_std(pick("loss_rotated_source"), 4)}'
        f' | {_mean_std(pick("steps"), 0)}'
        f' | {statistics.mean(pick("seconds")) / 60:.1f} |'
    )
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=800)
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--variants', default=','.join(VARIANTS))
  parser.add_argument('--workdir', default='/tmp/sdsq_ablation')
  parser.add_argument('--out', default='', help='also write the table here')
  parser.add_argument('--alpha_bar_png', default='')
  parser.add_argument(
      '--encoder_input_init', default='normal', choices=('normal', 'fan_in'),
      help="the diffusion models' encoder input projection init (use another"
      ' --workdir per init: run folders are named by variant and seed)',
  )
  parser.add_argument(
      '--copy_task', action='store_true',
      help='train on the synthetic copy task instead of the HPO pairs',
  )
  parser.add_argument(
      '--learning_rate', type=float, default=0.0,
      help="overrides the configs' learning rate (0 keeps it)",
  )
  parser.add_argument(
      '--batch_size', type=int, default=0,
      help="overrides the configs' batch size (0 keeps it)",
  )
  parser.add_argument(
      '--max_train_seconds', type=float, default=0.0,
      help='ends each run\'s training after this many seconds (0: none) and'
      ' evaluates it there; the record holds the steps reached',
  )
  args = parser.parse_args()
  variants = args.variants.split(',')
  for variant in variants:
    if variant not in VARIANTS:
      sys.exit(f'--variants: {variant!r} is unknown; use some of {list(VARIANTS)}')
  seeds = [int(s) for s in args.seeds.split(',')]
  records = []
  for seed in seeds:  # seeds outermost: a cut-short sweep still compares
    for variant in variants:
      records.append(
          run_one(
              variant,
              seed,
              args.steps,
              args.workdir,
              args.encoder_input_init,
              copy_task=args.copy_task,
              learning_rate=args.learning_rate,
              batch_size=args.batch_size,
              max_train_seconds=args.max_train_seconds,
          )
      )
  if args.alpha_bar_png and 'full' in variants:
    config = diffusion_config(
        'full', seeds[0], args.steps, args.encoder_input_init
    )
    path = plot_schedule(
        config, os.path.join(args.workdir, f'full_seed{seeds[0]}'),
        args.alpha_bar_png,
    )
    print(f'wrote {path}')
  text = table(records)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  main()
