r"""Does BART denoising pretraining help a downstream seq2seq task here?

Three stages, each resumable (a finished stage is skipped when rerun):

  pretrain  configs/bart_pretrain.py:runlocal (tiny BART: d 128, 2+2 layers,
            64 positions, a 2,000-id BPE) on the train-split HPO definitions
            plus the train-split PubMedQA abstracts (one text file built under
            --workdir), BART noise (30% Poisson(3) span infilling). Its train
            and eval loss curve goes to --plot.
  export    the final checkpoint as a Hugging Face BART folder with the
            pretraining tokenizer beside it (reloaded and checked for equal
            params), usable as init_from='hf:<folder>'.
  finetune  configs/summarize.py:runlocal (HPO definition -> concept name,
            splits by concept id, so no eval/test definition was seen in
            pretraining) with the same architecture and tokenizer, from
            scratch vs from the pretrained folder, same data, steps, lr and
            seeds; valid/test BLEU and ROUGE-1/2/L with beam search (and with
            greedy decoding, scored again from the same checkpoint).

  nice -n 10 .venv/bin/python experiments/bart_pretrain_downstream.py \
      --seeds=1,2

A quick end-to-end check:

  .venv/bin/python experiments/bart_pretrain_downstream.py --seeds=1 \
      --pretrain_steps=20 --finetune_steps=20 --max_eval_examples=16 \
      --workdir=/tmp/bpd_check --plot=''

Prints the tables (also written to <workdir>/tables.md; the figures of record
are in experiments/results/bart_pretrain.md) and writes the loss-curve PNG
(--plot).
"""

import json
import os
import shutil
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import bart_pretrain  # pylint: disable=g-import-not-at-top
from configs import summarize  # pylint: disable=g-import-not-at-top
from flaxllm import configuration  # pylint: disable=g-import-not-at-top
from flaxllm import train  # pylint: disable=g-import-not-at-top
from flaxllm.data import documents  # pylint: disable=g-import-not-at-top
from flaxllm.models import hf  # pylint: disable=g-import-not-at-top

_RESULTS_DIR = os.path.join(os.path.dirname(__file__), 'results')

_WORKDIR = flags.DEFINE_string(
    'workdir', '/tmp/bart_pretrain_downstream', 'Where every run trains.'
)
_PUBMEDQA = flags.DEFINE_string(
    'pubmedqa',
    '/work/shared/data/pubmedqa',
    'PubMedQA folder whose train-split abstracts join the pretraining corpus'
    " ('' or a missing folder: HPO definitions only).",
)
_PRETRAIN_STEPS = flags.DEFINE_integer(
    'pretrain_steps', 0, '0: the :runlocal schedule (1,500 steps).'
)
_PRETRAIN_STOP_AT = flags.DEFINE_integer(
    'pretrain_stop_at',
    0,
    'Stop pretraining at this step (a saved checkpoint step) of its schedule'
    ' (train.stop_at_step; 0: run the whole schedule).',
)
_FINETUNE_STEPS = flags.DEFINE_integer(
    'finetune_steps', 1500, 'Fine-tuning steps of every downstream run.'
)
_SEEDS = flags.DEFINE_list('seeds', ['1', '2'], 'Fine-tuning seeds.')
_INITS = flags.DEFINE_list(
    'inits', ['scratch', 'pretrained'], 'Fine-tuning inits to run.'
)
_BEAM = flags.DEFINE_integer('beam_size', 4, 'Beam size of the scores.')
_LENGTH_PENALTY = flags.DEFINE_float('length_penalty', 1.0, 'Beam alpha.')
_MAX_EVAL = flags.DEFINE_integer(
    'max_eval_examples', 400, 'Examples decoded per split.'
)
_STOP_AFTER = flags.DEFINE_enum(
    'stop_after', 'finetune', ['pretrain', 'export', 'finetune'],
    'The last stage to run.',
)
_PLOT = flags.DEFINE_string(
    'plot',
    os.path.join(_RESULTS_DIR, 'bart_pretrain_loss.png'),
    "Loss-curve PNG ('' = none).",
)

INITS = ('scratch', 'pretrained')
METRICS = ('bleu', 'rouge1', 'rouge2', 'rougeL')


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, payload) -> None:
  with open(path, 'w') as f:
    json.dump(payload, f, indent=1)


# -----------------------------------------------------------------------------
# Pretraining
# -----------------------------------------------------------------------------


def pretrain_corpus() -> tuple[str, dict[str, int]]:
  """Writes the train-split documents, one per line; (path, counts)."""
  path = os.path.join(_WORKDIR.value, 'corpus', 'pretrain_train.txt')
  texts = {'hpo_definitions': documents.hpo_definitions('train')}
  pubmedqa = _PUBMEDQA.value
  if pubmedqa and os.path.exists(pubmedqa):
    texts['pubmedqa_abstracts'] = documents.pubmedqa_abstracts(
        pubmedqa, 'train'
    )
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    for docs in texts.values():
      for doc in docs:
        f.write(' '.join(doc['text'].split()) + '\n')
  return path, {name: len(docs) for name, docs in texts.items()}


def pretrain_config(corpus: str):
  config = bart_pretrain.get_config('runlocal')
  config.data.train = f'text:{corpus}'
  if _PRETRAIN_STEPS.value:
    config.train.steps = _PRETRAIN_STEPS.value
    config.train.eval_every = max(1, _PRETRAIN_STEPS.value // 3)
    config.train.log_every = max(1, _PRETRAIN_STEPS.value // 15)
    config.optimizer.warmup_steps = max(1, _PRETRAIN_STEPS.value // 10)
    config.checkpoint.every = _PRETRAIN_STEPS.value
  config.train.stop_at_step = _PRETRAIN_STOP_AT.value
  return config


def pretrain() -> dict:
  """Trains (or finds) the pretraining run; its record."""
  workdir = os.path.join(_WORKDIR.value, 'pretrain')
  done = os.path.join(workdir, 'stage.json')
  if os.path.exists(done):
    return _read_json(done)
  corpus, counts = pretrain_corpus()
  config = pretrain_config(corpus)
  configuration.validate(config, num_devices=jax.device_count())
  start = time.time()
  results = train.train_and_evaluate(config, workdir)
  if 'preempted' in results:
    sys.exit(f'pretraining preempted at step {results["preempted"]}; rerun')
  steps = config.train.steps
  if 'stopped' in results:  # train.stop_at_step: score that checkpoint
    steps = results['stopped']
    results = train.evaluate_only(config, workdir)
  record = {
      'seconds': time.time() - start,
      'steps': steps,
      'schedule_steps': config.train.steps,
      'documents': counts,
      'results': results,
      'config': config.to_dict(),
  }
  _write_json(done, record)
  return record


def loss_curve(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """(step, loss) of the train and eval records of a run's metrics.jsonl."""
  curve = {'train': [], 'eval': []}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if record['split'] in curve and 'loss' in record:
        curve[record['split']].append((record['step'], record['loss']))
  # A rerun that resumes and rescores logs a step again: keep the last.
  return {split: sorted(dict(points).items()) for split, points in curve.items()}


def train_minutes(workdir: str) -> float:
  """Time spent in train steps, from the logged steps/s of each interval."""
  seconds, last_step = 0.0, 0
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if record['split'] == 'train' and record['step'] > last_step:
        seconds += (record['step'] - last_step) / record['steps_per_sec']
        last_step = record['step']
  return seconds / 60


def plot_curve(curve: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

  figure, axes = pyplot.subplots(figsize=(6, 4))
  for split, style in (('train', '-'), ('eval', 'o-')):
    if curve[split]:
      steps, losses = zip(*curve[split])
      axes.plot(steps, losses, style, label=f'{split} loss')
  axes.set_xlabel('step')
  axes.set_ylabel('token cross-entropy (nats)')
  axes.set_title('BART denoising pretraining, bart_pretrain.py:runlocal')
  axes.grid(alpha=0.3)
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  pyplot.close(figure)


# -----------------------------------------------------------------------------
# Export
# -----------------------------------------------------------------------------


def export(pretrain_record: dict) -> str:
  """The pretrained run as an HF folder (+ its tokenizer); the folder."""
  folder = os.path.join(_WORKDIR.value, 'pretrained_hf')
  if os.path.isfile(os.path.join(folder, 'tokenizer.json')):
    return folder
  workdir = os.path.join(_WORKDIR.value, 'pretrain')
  import ml_collections  # pylint: disable=g-import-not-at-top

  config = ml_collections.ConfigDict(pretrain_record['config'])
  run, state, _ = train._restore_for_inference(config, workdir)  # pylint: disable=protected-access
  try:
    params = jax.device_get(train.eval_params(state))
    hf.save_pretrained(folder, run.task.model_config, params)
  finally:
    run.checkpointer.close()
  # The reloaded folder must hold exactly the trained params.
  _, reloaded = hf.load_pretrained(folder)
  flat = jax.tree_util.tree_leaves_with_path(params)
  again = dict(jax.tree_util.tree_leaves_with_path(reloaded))
  for key, value in flat:
    np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(value))
  source = os.path.join(workdir, 'tokenizer')
  for name in os.listdir(source):
    shutil.copy(os.path.join(source, name), folder)
  return folder


# -----------------------------------------------------------------------------
# Fine-tuning
# -----------------------------------------------------------------------------


def finetune_config(init: str, seed: int, folder: str, pretrain_record: dict):
  """Same architecture, tokenizer, data and budget; only the init differs."""
  config = summarize.get_config('runlocal')
  model = dict(pretrain_record['config']['model'])
  for key, value in model.items():
    config.model[key] = value
  config.tokenizer.path = folder
  config.init_from = f'hf:{folder}' if init == 'pretrained' else ''
  config.seed = seed
  config.data.max_source_length = min(
      config.data.max_source_length, model['max_positions']
  )
  config.data.bucket_boundaries = tuple(
      b for b in config.data.bucket_boundaries
      if b < config.data.max_source_length
  ) + (config.data.max_source_length,)
  config.data.max_eval_examples = _MAX_EVAL.value
  config.train.steps = _FINETUNE_STEPS.value
  config.train.eval_every = 0
  config.train.log_every = max(1, _FINETUNE_STEPS.value // 15)
  config.optimizer.warmup_steps = max(1, _FINETUNE_STEPS.value // 10)
  config.checkpoint.every = 0
  config.predict.beam_size = _BEAM.value
  config.predict.length_penalty = _LENGTH_PENALTY.value
  return config


def finetune(init: str, seed: int, folder: str, pretrain_record: dict) -> dict:
  """Trains one downstream run, scores it with beam and greedy decoding."""
  workdir = os.path.join(_WORKDIR.value, 'finetune', init, f'seed{seed}')
  done = os.path.join(workdir, 'stage.json')
  if os.path.exists(done):
    return _read_json(done)
  config = finetune_config(init, seed, folder, pretrain_record)
  configuration.validate(config, num_devices=jax.device_count())
  start = time.time()
  beam = train.train_and_evaluate(config, workdir)
  if 'preempted' in beam:
    sys.exit(f'{workdir} preempted at step {beam["preempted"]}; rerun')
  seconds = time.time() - start
  config.predict.beam_size = 1
  greedy = train.evaluate_only(config, workdir)
  record = {
      'seconds': seconds,
      'steps': config.train.steps,
      'beam': beam,
      'greedy': greedy,
      'curve': loss_curve(workdir),
  }
  _write_json(done, record)
  return record


# -----------------------------------------------------------------------------
# Report
# -----------------------------------------------------------------------------


def mean_std(values: list[float]) -> str:
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def report(pretrain_record: dict, runs: dict, seeds: list[int]) -> str:
  """The markdown tables of the finished runs."""
  lines = []
  steps = pretrain_record['steps']
  counts = ', '.join(f'{n:,} {k}' for k, n in pretrain_record['documents'].items())
  workdir = os.path.join(_WORKDIR.value, 'pretrain')
  lines.append(
      f'Pretraining: {steps} steps of a {pretrain_record["schedule_steps"]}-step'
      f' schedule, {train_minutes(workdir):.1f} min of training steps, on'
      f' {counts} documents.'
  )
  curve = loss_curve(workdir)
  lines += ['', '| step | train loss | eval loss |', '| --- | --- | --- |']
  eval_at = dict(curve['eval'])
  final = pretrain_record['results'].get('eval', {})
  if final:
    eval_at[steps] = final['loss']
  for step, loss in curve['train']:
    shown = f'{eval_at[step]:.3f}' if step in eval_at else ''
    lines.append(f'| {step} | {loss:.3f} | {shown} |')
  for split in ('eval', 'test'):
    metrics = pretrain_record['results'].get(split)
    if metrics:
      lines.append(
          f'\nPretraining {split} reconstruction (greedy): loss'
          f' {metrics["loss"]:.3f}, BLEU {metrics["bleu"]:.2f}, ROUGE-L'
          f' {metrics["rougeL"]:.2f}.'
      )
  for decoding in ('beam', 'greedy'):
    label = (
        f'beam {_BEAM.value}, length penalty {_LENGTH_PENALTY.value}'
        if decoding == 'beam' else 'greedy'
    )
    for split, name in (('eval', 'valid'), ('test', 'test')):
      lines += [
          '',
          f'Downstream {name}, {label} (mean ± std over seeds'
          f' {",".join(map(str, seeds))}):',
          '',
          '| init | loss | BLEU | ROUGE-1 | ROUGE-2 | ROUGE-L | train minutes |',
          '| --- | --- | --- | --- | --- | --- | --- |',
      ]
      for init in INITS:
        records = [runs[init, seed] for seed in seeds]
        cells = [
            mean_std([r[decoding][split][key] for r in records])
            for key in ('loss',) + METRICS
        ]
        minutes = mean_std([
            train_minutes(os.path.join(_WORKDIR.value, 'finetune', init, f'seed{seed}'))
            for seed in seeds
        ])
        lines.append(f'| {init} | {" | ".join(cells)} | {minutes} |')
  return '\n'.join(lines)


def main(argv):
  del argv
  seeds = [int(s) for s in _SEEDS.value]
  pretrain_record = pretrain()
  if _PLOT.value:
    plot_curve(loss_curve(os.path.join(_WORKDIR.value, 'pretrain')), _PLOT.value)
  if _STOP_AFTER.value == 'pretrain':
    return
  folder = export(pretrain_record)
  if _STOP_AFTER.value == 'export':
    return
  runs = {}
  for seed in seeds:
    for init in _INITS.value:
      runs[init, seed] = finetune(init, seed, folder, pretrain_record)
      print(f'[{init} seed {seed}] beam test {runs[init, seed]["beam"]["test"]}',
            flush=True)
  if set(_INITS.value) != set(INITS):
    return  # a partial invocation (runs in parallel processes)
  text = report(pretrain_record, runs, seeds)
  print(text)
  path = os.path.join(_WORKDIR.value, 'tables.md')
  with open(path, 'w') as f:
    f.write(text + '\n')
  print(f'Tables written to {path}')


if __name__ == '__main__':
  app.run(main)
