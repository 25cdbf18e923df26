r"""LLaMA train-step throughput: flaxllm's decoder vs transformers (PyTorch).

Same shape, same random batch, AdamW on both sides, in one process. Prints
tokens/s and MFU (6 x params x tokens + 12 x layers x d x seq per token, over
time, over the peak) and appends the table to
experiments/results/bench_llama_train_step.md.

  ./run.sh experiments/bench_llama_train_step.py                   # CPU, tiny
  python experiments/bench_llama_train_step.py --shape=tinyllama \
      --dtype=bfloat16 --attention_impl=cudnn --peak_tflops=989    # GPU

The causal-LM loss here is a plain next-token cross-entropy written for the
benchmark; the trainer's LM task is a separate piece of work.
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import bench_common  # pylint: disable=g-import-not-at-top,wrong-import-position
from flaxllm.models import decoder  # pylint: disable=wrong-import-position

SHAPES = {
    # name: (layers, d_model, heads, kv heads, ffn, vocab, batch, seq)
    'tiny': (2, 128, 4, 2, 352, 4000, 4, 128),
    'tinyllama': (22, 2048, 32, 4, 5632, 32000, 8, 2048),
}


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--shape', default='tiny', choices=sorted(SHAPES))
  parser.add_argument(
      '--dtype', default='float32', choices=['float32', 'bfloat16']
  )
  parser.add_argument(
      '--attention_impl', default='xla', choices=['xla', 'cudnn']
  )
  parser.add_argument('--remat', action='store_true')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--peak_tflops', type=float, default=0.0)
  parser.add_argument('--skip_torch', action='store_true')
  parser.add_argument(
      '--skip_jax',
      action='store_true',
      help='on one GPU run each side in its own process: JAX holds memory',
  )
  parser.add_argument(
      '--results',
      default=os.path.join(
          ROOT, 'experiments', 'results', 'bench_llama_train_step.md'
      ),
  )
  return parser.parse_args()


def bench_jax(args, ids: np.ndarray) -> tuple[float, int]:
  layers, d_model, heads, kv_heads, ffn, vocab, _, seq = SHAPES[args.shape]
  config = decoder.DecoderConfig.from_dict({
      'vocab_size': vocab,
      'd_model': d_model,
      'num_heads': heads,
      'num_kv_heads': kv_heads,
      'ffn_dim': ffn,
      'num_layers': layers,
      'max_positions': seq,
      'dtype': args.dtype,
      'scan_layers': True,
      'remat': args.remat,
      'attention_impl': args.attention_impl,
  })
  model = decoder.Decoder(config)
  tx = optax.adamw(1e-4, b1=0.9, b2=0.95, weight_decay=0.1)
  tokens = jnp.asarray(ids)

  def init(rng):
    params = jax.tree.map(
        lambda x: x.unbox() if hasattr(x, 'unbox') else x,
        model.init(rng, tokens[:1, :8])['params'],
        is_leaf=lambda x: hasattr(x, 'unbox'),
    )
    return params, tx.init(params)

  def loss_fn(params, batch):
    # The full length goes in (cuDNN flash wants multiples of 64), as in HF.
    logits = model.apply({'params': params}, batch)  # [b, s, vocab]
    return optax.softmax_cross_entropy_with_integer_labels(
        logits[:, :-1], batch[:, 1:]
    ).mean()

  def train_step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step = jax.jit(train_step, donate_argnums=(0, 1))
  params, opt_state = jax.jit(init)(jax.random.PRNGKey(0))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  state = {'params': params, 'opt': opt_state}

  def run(n):
    for _ in range(n):
      state['params'], state['opt'], loss = step(
          state['params'], state['opt'], tokens
      )
    jax.block_until_ready(loss)

  run(2)
  return bench_common.median_step_seconds(run, args.steps, args.repeats), count


def bench_torch(args, ids: np.ndarray) -> tuple[float, int]:
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  layers, d_model, heads, kv_heads, ffn, vocab, _, seq = SHAPES[args.shape]
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  model = (
      transformers.LlamaForCausalLM(
          transformers.LlamaConfig(
              vocab_size=vocab,
              hidden_size=d_model,
              intermediate_size=ffn,
              num_hidden_layers=layers,
              num_attention_heads=heads,
              num_key_value_heads=kv_heads,
              max_position_embeddings=seq,
              attn_implementation='sdpa',
          )
      )
      .to(device)
      .train()
  )
  if args.remat:
    model.gradient_checkpointing_enable()
  count = sum(p.numel() for p in model.parameters())
  optimizer = torch.optim.AdamW(
      model.parameters(),
      lr=1e-4,
      betas=(0.9, 0.95),
      weight_decay=0.1,
      fused=device == 'cuda',
  )
  tokens = torch.from_numpy(ids).long().to(device)
  autocast = torch.autocast(
      device, dtype=torch.bfloat16, enabled=args.dtype == 'bfloat16'
  )

  def run(n):
    for _ in range(n):
      with autocast:
        loss = model(input_ids=tokens, labels=tokens).loss
      loss.backward()
      optimizer.step()
      optimizer.zero_grad(set_to_none=True)
    if device == 'cuda':
      torch.cuda.synchronize()

  run(2)
  return bench_common.median_step_seconds(run, args.steps, args.repeats), count


def main():
  args = parse_args()
  layers, d_model, _, _, _, vocab, batch, seq = SHAPES[args.shape]
  ids = (
      np.random.default_rng(0).integers(0, vocab, (batch, seq)).astype(np.int32)
  )
  rows = []
  if not args.skip_jax:
    name = f'flaxllm decoder (jax, {args.attention_impl} attention)'
    rows.append((name, *bench_jax(args, ids)))
  if not args.skip_torch:
    rows.append(('transformers LLaMA (torch, sdpa)', *bench_torch(args, ids)))
  tokens = batch * seq
  table = bench_common.throughput_table(
      rows,
      tokens=tokens,
      flops_per_step=lambda p: (6 * p + 12 * layers * d_model * seq) * tokens,
      peak_tflops=args.peak_tflops,
  )
  header = (
      f'shape={args.shape} batch={batch} seq={seq} dtype={args.dtype}'
      f' remat={args.remat} device={jax.devices()[0].device_kind}'
      f' jax={jax.__version__}'
  )
  bench_common.record(args.results, header, table)


if __name__ == '__main__':
  main()
