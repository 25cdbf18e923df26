r"""SeqDiffuSeq train step: what adaptive schedule and self-conditioning cost.

Times one jitted diffusion train step (`tasks/diffusion.py` through
`train.make_train_step`, AdamW) on a fixed random batch for each row:

  neither               adaptive schedule off, self-conditioning off
  self-conditioning     self-conditioning only
  adaptive              adaptive schedule on (branch-free update, as shipped)
  adaptive (lax.cond)   the same with the update behind `lax.cond` (the form
                        before 2026-11-26, rebuilt here for the comparison)
  full                  both on (as shipped)

The adaptive statistics are accumulated every step and the table is re-fit
every `--adaptive_every` steps (default 20,000, the paper's: no re-fit
happens while timing, so the rows time the per-step bookkeeping).

  python experiments/bench_diffusion_train_step.py             # runlocal shape
  python experiments/bench_diffusion_train_step.py --size=base --batch=128 \
      --src_len=128 --tgt_len=63 --dtype=bfloat16              # paper shape

Prints a table of ms/step (median of --repeats timings of --steps steps) and
appends it to experiments/results/bench_diffusion_train_step.md.
"""

import argparse
import os
import sys

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
import bench_common
from configs import seqdiffuseq
from flaxllm.diffusion import schedules
from flaxllm.tasks import diffusion
# pylint: enable=g-import-not-at-top,wrong-import-position

PAD, EOS, BOS = 1, 2, 0

# name: (adaptive_schedule, self_conditioning, update behind lax.cond).
ROWS = {
    'neither': (False, False, False),
    'self-conditioning': (False, True, False),
    'adaptive': (True, False, False),
    'adaptive (lax.cond)': (True, False, True),
    'full': (True, True, False),
}


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', default='tiny')
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--src_len', type=int, default=32)
  parser.add_argument('--tgt_len', type=int, default=16)
  parser.add_argument('--vocab', type=int, default=4000)
  parser.add_argument('--adaptive_every', type=int, default=20_000)
  parser.add_argument(
      '--dtype', default='float32', choices=('float32', 'bfloat16')
  )
  parser.add_argument('--steps', type=int, default=50)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--rows', default=','.join(ROWS))
  parser.add_argument(
      '--results',
      default=os.path.join(
          ROOT, 'experiments', 'results', 'bench_diffusion_train_step.md'
      ),
  )
  return parser.parse_args()


def cond_maybe_update(
    alphas_cumprod, statistics, step, *, every: int, bin_steps: int
):
  """The adaptive update behind `lax.cond` (the earlier form, for timing)."""
  num_bins, length = statistics['loss_sums'].shape

  def update():
    return (
        schedules.adaptive_alphas_cumprod(
            alphas_cumprod, statistics, bin_steps=bin_steps
        ),
        schedules.prior_statistics(num_bins, length),
    )

  return jax.lax.cond(
      schedules.should_update(step, every),
      update,
      lambda: (alphas_cumprod, statistics),
  )


def make_config(args, adaptive: bool, self_conditioning: bool):
  config = seqdiffuseq.get_config(
      f'runlocal,adaptive_schedule={adaptive},'
      f'self_conditioning={self_conditioning}'
  )
  if args.size != 'tiny':
    # pylint: disable-next=protected-access
    config.model = seqdiffuseq._model(args.size)
  config.model.dropout_rate = 0.0
  config.model.attention_dropout = 0.0
  config.model.dtype = args.dtype
  config.model.max_positions = max(args.src_len, args.tgt_len + 1)
  config.task.adaptive_every = args.adaptive_every
  config.data.max_source_length = args.src_len
  config.data.max_target_length = args.tgt_len
  config.train.batch_size = args.batch
  config.optimizer.warmup_steps = 0
  config.optimizer.decay = 'constant'
  return config


def random_batch(args, rng: np.random.Generator) -> dict[str, np.ndarray]:
  src = rng.integers(5, args.vocab, (args.batch, args.src_len), dtype=np.int32)
  tgt = rng.integers(5, args.vocab, (args.batch, args.tgt_len), dtype=np.int32)
  return {
      'inputs': src,
      'input_mask': np.ones_like(src),
      'decoder_inputs': np.full_like(tgt, PAD),
      'targets': tgt,
      'target_mask': np.ones(tgt.shape, np.float32),
      'example_mask': np.ones((args.batch,), np.float32),
  }


def time_row(args, batch, row: str) -> float:
  """Seconds per train step of one row."""
  adaptive, self_conditioning, use_cond = ROWS[row]
  config = make_config(args, adaptive, self_conditioning)
  task = diffusion.DiffusionTask(
      config, vocab_size=args.vocab, pad_id=PAD, eos_id=EOS, bos_id=BOS
  )
  shipped = schedules.maybe_update
  if use_cond:
    schedules.maybe_update = cond_maybe_update
  try:  # traced while the patch is in place
    seconds, _ = bench_common.time_train_step(
        task, config, batch, args.steps, args.repeats
    )
    return seconds
  finally:
    schedules.maybe_update = shipped


def main():
  args = parse_args()
  batch = random_batch(args, np.random.default_rng(0))
  rows = [row.strip() for row in args.rows.split(',') if row.strip()]
  for row in rows:
    if row not in ROWS:
      sys.exit(f'--rows: {row!r} is unknown; use some of {list(ROWS)}')
  seconds = {row: time_row(args, batch, row) for row in rows}
  base = seconds.get('neither')
  lines = [
      '| row | ms/step | vs neither |',
      '| --- | --- | --- |',
  ]
  for row in rows:
    ratio = f'{seconds[row] / base:.2f}x' if base else '-'
    lines.append(f'| {row} | {1e3 * seconds[row]:.2f} | {ratio} |')
  table = '\n'.join(lines)
  device = jax.devices()[0]
  header = (
      f'{device.device_kind} ({device.platform}), jax {jax.__version__},'
      f' size={args.size} batch={args.batch} src={args.src_len}'
      f' tgt={args.tgt_len} {args.dtype}, median of {args.repeats} x'
      f' {args.steps} steps'
  )
  bench_common.record(args.results, header, table)


if __name__ == '__main__':
  main()
