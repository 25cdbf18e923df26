r"""Seq2seq train-step throughput: flaxllm (JAX) vs transformers' BART (PyTorch).

Both sides train the same BART-style shape on the same random batch with
AdamW, in one process, and report tokens/s (source + target tokens), the
ratio, and model FLOPs utilization (6 x params x tokens over time over peak).

  ./run.sh experiments/bench_train_step.py                      # CPU, small
  python experiments/bench_train_step.py --size=base --batch=64 \
      --src_len=128 --tgt_len=128 --dtype=bfloat16 --peak_tflops=989   # GPU

Appends a row to experiments/results/bench_train_step.md.
"""

import argparse
import os
import sys

import jax
import ml_collections
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import bench_common  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position
from flaxllm import configuration  # pylint: disable=wrong-import-position
from flaxllm.tasks import seq2seq  # pylint: disable=wrong-import-position

PAD, EOS = 1, 2


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
      '--size', default='small', choices=sorted(common.ENCODER_DECODER_SIZES)
  )
  parser.add_argument('--vocab', type=int, default=8000)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--src_len', type=int, default=64)
  parser.add_argument('--tgt_len', type=int, default=32)
  parser.add_argument(
      '--dtype', default='float32', choices=['float32', 'bfloat16']
  )
  parser.add_argument(
      '--attention_impl', default='xla', choices=['xla', 'cudnn']
  )
  parser.add_argument(
      '--steps', type=int, default=10, help='timed steps per repeat'
  )
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument(
      '--peak_tflops', type=float, default=0.0, help='for MFU; 0 skips it'
  )
  parser.add_argument('--skip_torch', action='store_true')
  parser.add_argument(
      '--results',
      default=os.path.join(
          ROOT, 'experiments', 'results', 'bench_train_step.md'
      ),
  )
  return parser.parse_args()


def make_config(args) -> ml_collections.ConfigDict:
  config = configuration.default_config()
  config.task = seq2seq.task_defaults()
  config.model = common.encoder_decoder_model(args.size)
  config.model.dropout_rate = 0.0
  config.model.max_positions = max(args.src_len, args.tgt_len)
  config.model.dtype = args.dtype
  config.model.attention_impl = args.attention_impl
  config.data.max_source_length = args.src_len
  config.data.max_target_length = args.tgt_len
  config.train.batch_size = args.batch
  config.optimizer.warmup_steps = 0
  config.optimizer.decay = 'constant'
  config.optimizer.learning_rate = 1e-4
  config.optimizer.grad_clip_norm = 0.0
  return config


def random_batch(args, rng: np.random.Generator) -> dict[str, np.ndarray]:
  src = rng.integers(5, args.vocab, (args.batch, args.src_len), dtype=np.int32)
  tgt = rng.integers(5, args.vocab, (args.batch, args.tgt_len), dtype=np.int32)
  decoder_inputs = np.concatenate(
      [np.full((args.batch, 1), EOS, np.int32), tgt[:, :-1]], 1
  )
  return {
      'inputs': src,
      'input_mask': np.ones_like(src),
      'decoder_inputs': decoder_inputs,
      'targets': tgt,
      'target_mask': np.ones(tgt.shape, np.float32),
      'example_mask': np.ones((args.batch,), np.float32),
  }


def bench_jax(args, batch) -> tuple[float, int]:
  config = make_config(args)
  task = seq2seq.Seq2SeqTask(
      config,
      vocab_size=args.vocab,
      pad_id=PAD,
      eos_id=EOS,
      decoder_start_id=EOS,
  )
  return bench_common.time_train_step(
      task, config, batch, args.steps, args.repeats
  )


def bench_torch(args, batch) -> tuple[float, int]:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  d_model, heads, ffn, enc, dec = common.ENCODER_DECODER_SIZES[args.size]
  bart_config = transformers.BartConfig(
      vocab_size=args.vocab,
      d_model=d_model,
      encoder_attention_heads=heads,
      decoder_attention_heads=heads,
      encoder_ffn_dim=ffn,
      decoder_ffn_dim=ffn,
      encoder_layers=enc,
      decoder_layers=dec,
      max_position_embeddings=max(args.src_len, args.tgt_len),
      dropout=0.0,
      attention_dropout=0.0,
      activation_dropout=0.0,
      pad_token_id=PAD,
      eos_token_id=EOS,
      bos_token_id=0,
      decoder_start_token_id=EOS,
  )
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  model = (
      transformers.BartForConditionalGeneration(bart_config).to(device).train()
  )
  params = sum(p.numel() for p in model.parameters())
  optimizer = torch.optim.AdamW(
      model.parameters(), lr=1e-4, fused=device == 'cuda'
  )
  tensors = {
      k: torch.from_numpy(np.asarray(v)).to(device) for k, v in batch.items()
  }
  autocast = torch.autocast(
      device, dtype=torch.bfloat16, enabled=args.dtype == 'bfloat16'
  )

  def run(n):
    for _ in range(n):
      with autocast:
        out = model(
            input_ids=tensors['inputs'].long(),
            attention_mask=tensors['input_mask'].long(),
            decoder_input_ids=tensors['decoder_inputs'].long(),
            labels=tensors['targets'].long(),
        )
      out.loss.backward()
      optimizer.step()
      optimizer.zero_grad(set_to_none=True)
    if device == 'cuda':
      torch.cuda.synchronize()

  run(2)
  return bench_common.median_step_seconds(run, args.steps, args.repeats), params


def main():
  args = parse_args()
  batch = random_batch(args, np.random.default_rng(0))
  tokens = args.batch * (args.src_len + args.tgt_len)
  rows = []
  seconds, params = bench_jax(args, batch)
  rows.append(
      (f'flaxllm (jax, {args.attention_impl} attention)', seconds, params)
  )
  if not args.skip_torch:
    seconds, params = bench_torch(args, batch)
    rows.append(('transformers BART (torch)', seconds, params))

  table = bench_common.throughput_table(
      rows,
      tokens=tokens,
      flops_per_step=lambda p: 6 * p * tokens,
      peak_tflops=args.peak_tflops,
  )
  header = (
      f'{jax.devices()[0].device_kind}, size={args.size} batch={args.batch}'
      f' src={args.src_len} tgt={args.tgt_len} vocab={args.vocab}'
      f' {args.dtype} jax={jax.__version__}'
  )
  bench_common.record(args.results, header, table)


if __name__ == '__main__':
  main()
