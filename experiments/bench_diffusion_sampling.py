r"""Sampling speed and BLEU of SeqDiffuSeq at K in {T, 200, 50} vs AR greedy.

Trains (or reuses) one SeqDiffuSeq model and one autoregressive seq2seq
model of the same size on the same data, then, from those checkpoints,
times generation for the same test sentences: the diffusion sampler over
K = T, 200 and 50 respaced steps (K above T is skipped), and greedy
decoding with the KV cache. Each timing compiles and warms up first, then
takes the median of --repeats passes over all sentences, each ending in
`block_until_ready`. BLEU is sacreBLEU corpus BLEU of the same outputs.

CPU (the embedded HPO name -> synonym task of `seqdiffuseq.py:runlocal`):

  python experiments/bench_diffusion_sampling.py --steps=1500 \
      --sentences=100 --workdir=/tmp/bench_sdsq

GPU, QQP-sized (paper shape: base model, T = 2000, 64 target tokens; only
QQP's valid.jsonl exists here, so it is both the training and the test data
and sentences are cycled up to --sentences; the few training steps make the
BLEU meaningless, the speed is what counts):

  python experiments/bench_diffusion_sampling.py --qqp_dir=../shared/data/qqp \
      --steps=200 --sentences=2500 --batch_size=500 --workdir=/tmp/bench_qqp

Re-running with the same --workdir reuses the trained checkpoints;
--diffusion_workdir / --ar_workdir reuse runs trained elsewhere with the same
model shapes (e.g. the `full` and `autoregressive` runs of
experiments/seqdiffuseq_ablation.py, at --steps equal to theirs).
"""

import argparse
import os
import statistics
import sys
import time

import flax.linen as nn
import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import seq2seq
from configs import seqdiffuseq
from flaxllm import train
from flaxllm.data import iterator as iterator_lib
from flaxllm.eval import text_metrics
# pylint: enable=g-import-not-at-top,wrong-import-position


def configs_for(args):
  """(diffusion config, autoregressive config) on the same data and size."""
  if args.qqp_dir:
    data = os.path.abspath(args.qqp_dir)
    diffusion = seqdiffuseq.get_config(f'qqp,data={data}')
    for split in ('train', 'eval', 'test'):
      diffusion.data[split] = f'jsonl:{data}/valid.jsonl'
    diffusion.train.stop_at_step = 0
    diffusion.optimizer.warmup_steps = max(args.steps // 10, 1)
    diffusion.optimizer.ema_decay = 0.0
  else:
    diffusion = seqdiffuseq.get_config('runlocal')
  diffusion.model.dtype = args.dtype
  diffusion.train.steps = args.steps
  if args.train_batch_size:
    diffusion.train.batch_size = args.train_batch_size
  diffusion.train.eval_every = 0
  diffusion.train.num_samples = 0
  diffusion.data.max_eval_examples = 16  # the post-training eval is not timed
  diffusion.checkpoint.every = args.steps
  diffusion.task.adaptive_every = max(args.steps // 8, 1)
  diffusion.task.mbr_candidates = 1  # one sample per sentence

  autoregressive = seq2seq.get_config('runlocal')
  autoregressive.model = diffusion.model.copy_and_resolve_references()
  autoregressive.model.family = 'encoder_decoder'
  del autoregressive.model['embedding_dim']
  autoregressive.data = diffusion.data.copy_and_resolve_references()
  autoregressive.tokenizer = diffusion.tokenizer.copy_and_resolve_references()
  for key in ('steps', 'batch_size', 'eval_every', 'num_samples'):
    autoregressive.train[key] = diffusion.train[key]
  # seq2seq's own optimizer chain at the diffusion run's lr (as the AR runs
  # of experiments/seqdiffuseq_ablation.py, whose checkpoints it can reuse).
  autoregressive.optimizer.learning_rate = diffusion.optimizer.learning_rate
  autoregressive.optimizer.warmup_steps = max(args.steps // 10, 1)
  autoregressive.checkpoint.every = args.steps
  return diffusion, autoregressive


def trained(config, workdir: str):
  """Trains unless the workdir has a checkpoint; -> (run, state, evaluator)."""
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    train.train_and_evaluate(config, workdir)
  return train._restore_for_inference(config, workdir)  # pylint: disable=protected-access


def test_batches(run, sentences: int, batch_size: int):
  """The first `sentences` test examples (cycled if fewer), batched."""
  examples = run.data.examples('test')
  examples = [examples[i % len(examples)] for i in range(sentences)]
  batches = list(
      iterator_lib.eval_batches(
          examples, global_batch_size=batch_size, collate=run.data.collator
      )
  )
  return examples, batches


def time_generation(run, state, batches, repeats: int):
  """Median seconds of a pass over `batches`; and that pass's outputs."""
  task = run.task
  params = train.eval_params(state)
  extra = train.task_args(task, state.task_state)
  with jax.set_mesh(run.placement.mesh), nn.logical_axis_rules(
      run.placement.rules
  ):
    predict = jax.jit(lambda p, b, r, *e: task.predict(p, b, r, *e))
    rng = jax.random.PRNGKey(0)

    def one_pass():
      outputs = [
          predict(params, batch, jax.random.fold_in(rng, i), *extra)
          for i, batch in enumerate(batches)
      ]
      return jax.block_until_ready(outputs)

    # Compile and warm up on the first batch: the batches share one shape,
    # so this is the same executable without paying a whole extra pass.
    jax.block_until_ready(predict(params, batches[0], rng, *extra))
    seconds = []
    for _ in range(repeats):
      start = time.perf_counter()
      outputs = one_pass()
      seconds.append(time.perf_counter() - start)
  rows = []
  for batch, output in zip(batches, jax.device_get(outputs)):
    rows.extend(output[batch['example_mask'] > 0])
  return statistics.median(seconds), seconds, rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=1500)
  parser.add_argument('--sentences', type=int, default=100)
  parser.add_argument('--batch_size', type=int, default=0,
                      help='sentences per sampling batch; 0: all at once')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--qqp_dir', default='')
  parser.add_argument('--train_batch_size', type=int, default=0,
                      help='training batch; 0: the config\'s (128 at qqp,'
                      ' about 22 GiB of activations in float32)')
  parser.add_argument('--dtype', default='float32',
                      choices=('float32', 'bfloat16'),
                      help='compute dtype of both models (params float32)')
  parser.add_argument('--workdir', default='/tmp/bench_diffusion_sampling')
  parser.add_argument('--diffusion_workdir', default='',
                      help='a trained diffusion run to reuse (default'
                      ' WORKDIR/diffusion)')
  parser.add_argument('--ar_workdir', default='',
                      help='a trained seq2seq run to reuse (default'
                      ' WORKDIR/ar)')
  args = parser.parse_args()
  batch_size = args.batch_size or args.sentences
  diffusion_config, ar_config = configs_for(args)

  rows = []
  run, state, _ = trained(
      diffusion_config,
      args.diffusion_workdir or os.path.join(args.workdir, 'diffusion'),
  )
  examples, batches = test_batches(run, args.sentences, batch_size)
  references = [example['tgt'] for example in examples]
  steps = run.task.diffusion_steps
  for count in (50, 200, steps):  # cheapest first
    if count > steps:
      continue
    run.task.sampling_steps = count
    median, seconds, outputs = time_generation(
        run, state, batches, args.repeats
    )
    texts = run.task.decode_outputs(outputs)
    rows.append((f'diffusion, K = {count}', median, seconds,
                 text_metrics.corpus_bleu(texts, references)))
    print(_row(rows[-1], args.sentences), flush=True)
  run.checkpointer.close()

  run, state, _ = trained(
      ar_config, args.ar_workdir or os.path.join(args.workdir, 'ar')
  )
  _, batches = test_batches(run, args.sentences, batch_size)
  median, seconds, outputs = time_generation(run, state, batches, args.repeats)
  texts = run.data.tokenizer.decode_batch([list(r) for r in outputs])
  rows.append(('autoregressive greedy', median, seconds,
               text_metrics.corpus_bleu(texts, references)))
  print(_row(rows[-1], args.sentences), flush=True)
  run.checkpointer.close()

  print(f'device: {jax.devices()[0].device_kind}; {args.sentences} sentences'
        f' in batches of {batch_size}; median of {args.repeats} passes;'
        f' compute {args.dtype}')
  print('| decoder | seconds | sentences/s | BLEU | all passes (s) |')
  print('| --- | --- | --- | --- | --- |')
  for row in rows:
    print(_row(row, args.sentences))


def _row(row, sentences: int) -> str:
  """A markdown table row of (name, median s, all passes' s, BLEU)."""
  name, median, seconds, bleu = row
  passes = ', '.join(f'{s:.2f}' for s in seconds)
  return (f'| {name} | {median:.2f} | {sentences / median:.1f} |'
          f' {bleu:.2f} | {passes} |')


if __name__ == '__main__':
  main()
