r"""Model-zoo train-step benchmark: BART-base and LLaMA 1.1B vs transformers.

One entry point for the two families' train-step benchmarks
(`bench_train_step.py` for the encoder-decoder, `bench_llama_train_step.py` for
the decoder). Each runs our jitted step and `transformers`' PyTorch step on the
same shapes and random batch and appends tokens/s and MFU to its table under
`experiments/results/`.

  ./run.sh experiments/bench_models.py              # CPU, small shapes
  python experiments/bench_models.py --gpu          # lent GPU, paper shapes

On a GPU the shapes are the issue's: BART-base, batch 64, 128 + 128 tokens;
LLaMA 1.1B (22 layers, d 2048, GQA 32/4), batch 8 x 2048; bf16 compute, fp32
params, against the H200's 989 dense bf16 TFLOP/s. The 1.1B model's two sides
run in separate processes on a GPU, because JAX keeps the memory it reserved
and both would not fit beside each other; everything else shares a process.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CPU_RUNS = (
    ['bench_train_step.py'],
    ['bench_llama_train_step.py'],
)
GPU_COMMON = ['--dtype=bfloat16', '--peak_tflops=989', '--repeats=3']
GPU_RUNS = (
    # (script and flags, whether each side needs its own process)
    (
        [
            'bench_train_step.py',
            '--size=base',
            '--vocab=50265',
            '--batch=64',
            '--src_len=128',
            '--tgt_len=128',
            '--steps=20',
        ],
        False,
    ),
    (
        [
            'bench_llama_train_step.py',
            '--shape=tinyllama',
            '--attention_impl=cudnn',
            '--steps=5',
        ],
        True,
    ),
)


def run(argv: list[str]) -> int:
  command = [sys.executable, os.path.join(HERE, argv[0]), *argv[1:]]
  print('$', ' '.join(command), flush=True)
  return subprocess.call(command)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--gpu', action='store_true', help='the paper shapes')
  parser.add_argument(
      '--results_dir',
      default=os.path.join(HERE, 'results'),
      help='where the tables are appended',
  )
  args = parser.parse_args()
  failures = 0
  if not args.gpu:
    for argv in CPU_RUNS:
      name = argv[0].replace('.py', '.md')
      failures += bool(
          run(argv + [f'--results={os.path.join(args.results_dir, name)}'])
      )
  else:
    for argv, split_sides in GPU_RUNS:
      name = argv[0].replace('.py', '.md')
      flags = argv + GPU_COMMON
      flags.append(f'--results={os.path.join(args.results_dir, name)}')
      if split_sides:
        failures += bool(run(flags + ['--skip_torch']))
        failures += bool(run(flags + ['--skip_jax']))
      else:
        failures += bool(run(flags))
  sys.exit(1 if failures else 0)


if __name__ == '__main__':
  main()
