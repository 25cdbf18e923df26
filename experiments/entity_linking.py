r"""GenBioEL at CPU scale: Recall@1/@5 and partial-KB linking, with commands.

Trains tiny BART-style models with flaxllm's trainer (configs/genbioel.py and
configs/genbioel_pretrain.py) and links with trie-constrained beam search:

  ncbi_scratch     NCBI-disease, fine-tuned from scratch on train.
  ncbi_pretrained  NCBI-disease: KB-guided pre-training on MEDIC, exported
                   to a Hugging Face folder, then fine-tuned from it
                   (init_from) with the same budget.
  hpo              The embedded HPO mention set, fine-tuned from scratch.

Each model links the evaluation mentions twice: under the full KB's trie
(Recall@1 / Recall@5, and post-pruning) and under the partial KB's trie
(direct inference, then thresholding on the mean token log-prob). The
partial KB is a MEDIC branch (Neoplasms, MESH:D009369) for NCBI and an HPO
branch (Abnormality of the nervous system, HP:0000707) for HPO; gold
mentions outside it are NIL. tau is chosen by F1 on held-apart mentions:
for NCBI the devel abstracts of even index choose it and the odd ones are
scored (the partial-KB table is on the odd half); for HPO valid chooses and
test is scored.

  for stage in ncbi_scratch ncbi_pretrained hpo; do
    nice -n 10 python experiments/entity_linking.py --stage=$stage \
        --data_dir=/work/shared/data/ncbi_disease --workdir=/tmp/el_exp &
  done; wait
  python experiments/entity_linking.py --stage=report --workdir=/tmp/el_exp

Each stage trains (unless its run is finished), links and pickles its
beams; the stages run in parallel and `report` prints the tables of those
that finished (also written to <workdir>/tables.md).
"""

import os
import pickle
import shutil
import sys
import time

from absl import app
from absl import flags
import jax
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import genbioel  # pylint: disable=g-import-not-at-top
from configs import genbioel_pretrain  # pylint: disable=g-import-not-at-top
from flaxllm import train  # pylint: disable=g-import-not-at-top
from flaxllm.linking import partial_kb  # pylint: disable=g-import-not-at-top
from flaxllm.linking import trie as trie_lib  # pylint: disable=g-import-not-at-top
from flaxllm.models import hf  # pylint: disable=g-import-not-at-top
from flaxllm.tasks import linking  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string(
    'data_dir', '/work/shared/data/ncbi_disease', 'NCBI-disease folder.'
)
flags.DEFINE_string('workdir', '/tmp/el_exp', 'Where the runs go.')
flags.DEFINE_integer('finetune_steps', 1500, 'Fine-tuning steps per run.')
flags.DEFINE_integer('pretrain_steps', 1500, 'KB-guided pre-training steps.')
flags.DEFINE_integer('batch_size', 32, 'Training batch size.')
flags.DEFINE_integer('max_mentions', 0, 'Cap on mentions linked per split.')
flags.DEFINE_integer('max_source_length', 64, 'Encoder tokens per mention.')
flags.DEFINE_enum(
    'stage',
    'report',
    ['ncbi_scratch', 'ncbi_pretrained', 'hpo', 'report'],
    'What to run: one model (train, link) or the tables of the finished ones.',
)
flags.DEFINE_string('ncbi_subkb', 'MESH:D009369', 'MEDIC branch root.')
flags.DEFINE_string('hpo_subkb', 'HP:0000707', 'HPO branch root.')

EVAL_BATCH = 64


def small(config, steps: int):
  """The CPU budget: tiny model, no evaluation during training."""
  config.train.steps = steps
  config.train.batch_size = FLAGS.batch_size
  config.train.log_every = 100
  config.train.eval_every = 0
  config.train.eval_batch_size = EVAL_BATCH
  config.checkpoint.every = 0
  config.data.max_source_length = FLAGS.max_source_length
  config.data.max_target_length = 40
  config.task.max_prompt_length = 16
  config.data.max_eval_examples = 8
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.optimizer.grad_clip_norm = 1.0
  return config


def trained(config, workdir: str) -> float:
  """Trains unless the workdir is finished; returns the seconds spent."""
  if os.path.isfile(os.path.join(workdir, 'results.json')):
    return 0.0
  start = time.time()
  train.train_and_evaluate(config, workdir)
  return time.time() - start


def restore(config, workdir: str):
  """(task, data, params) of a finished run."""
  run = train.setup(config, workdir)
  state, _ = run.checkpointer.restore(
      run.checkpointer.latest_step(), run.placement.abstract
  )
  run.checkpointer.close()
  return run.task, run.data, train.eval_params(state)


def export_hf(config, workdir: str, folder: str) -> None:
  """A trained run as a Hugging Face folder (weights + tokenizer)."""
  task, data, params = restore(config, workdir)
  shutil.rmtree(folder, ignore_errors=True)
  hf.save_pretrained(folder, task.model_config, params)
  staging = folder + '.tokenizer'
  data.tokenizer.save(staging)
  for name in os.listdir(staging):
    os.replace(os.path.join(staging, name), os.path.join(folder, name))
  os.rmdir(staging)


def link(task, data, params, split: str, name_trie) -> list[dict]:
  """Decoded beams for a split under one trie."""
  device_trie = name_trie.to_device(task.model_config.vocab_size)
  search = jax.jit(task.search, static_argnums=3)
  length = task.decode_length(name_trie)
  predictions = []
  for batch in data.eval_batches(
      split,
      global_batch_size=EVAL_BATCH,
      process_index=0,
      process_count=1,
      max_examples=FLAGS.max_mentions,
  ):
    rows = np.asarray(search(params, batch, device_trie, length))
    rows = rows[np.asarray(batch['example_mask']) > 0]
    predictions.extend(task.decode_outputs(rows, name_trie))
  return predictions


def recalls(predictions, examples) -> dict[str, float]:
  rankings = [p['concept_ids'] for p in predictions]
  gold = [e['concept_ids'] for e in examples]
  return {f'R@{k}': partial_kb.recall_at_k(rankings, gold, k) for k in (1, 5)}


def tops(predictions, keys):
  return partial_kb.top_predictions(
      keys,
      [predictions[k]['concept_ids'] for k in keys],
      [predictions[k]['scores'] for k in keys],
  )


def partial_table(full, direct, examples, partial_ids, tune, report):
  """P/R/F1 rows on the `report` mentions; tau chosen on `tune`."""
  gold = {i: e['concept_ids'] for i, e in enumerate(examples)}
  partial_gold = partial_kb.partial_gold(gold, partial_ids)
  tune_gold = {k: v for k, v in partial_gold.items() if k in set(tune)}
  report_gold = {k: v for k, v in partial_gold.items() if k in set(report)}
  tau, _ = partial_kb.choose_threshold(tops(direct, tune), tune_gold)
  rows = {
      'full KB, no redemption': tops(full, report),
      'direct (sub-KB trie)': tops(direct, report),
      f'direct + thresholding (tau={tau:.3f})': partial_kb.apply_threshold(
          tops(direct, report), tau
      ),
      'post-pruning (full-KB trie)': partial_kb.post_prune(
          tops(full, report), partial_ids
      ),
  }
  table = {
      name: partial_kb.micro_prf(chosen, report_gold)
      for name, chosen in rows.items()
  }
  nil = sum(1 for k in report if k not in partial_gold)
  return table, tau, len(report_gold), nil


def evaluate_model(task, data, params, splits, subkb_root):
  """Links each split under the full and the partial trie."""
  sub = linking.select_subkb(task.kb, subkb_root)
  sub_trie = trie_lib.build_name_trie(sub.name_to_ids(), data.tokenizer)
  out = {'subkb_size': len(sub)}
  for split in splits:
    start = time.time()
    examples = data.examples(split, FLAGS.max_mentions)
    full = link(task, data, params, split, task.full_trie)
    direct = link(task, data, params, split, sub_trie)
    out[split] = {
        'examples': examples,
        'full': full,
        'direct': direct,
        'recall': recalls(full, examples),
        'seconds': time.time() - start,
    }
  out['partial_ids'] = set(sub.ids())
  return out


def format_table(table) -> list[str]:
  lines = ['| inference | P | R | F1 |', '|---|---|---|---|']
  for name, scores in table.items():
    lines.append(
        f'| {name} | {100 * scores.precision:.1f} |'
        f' {100 * scores.recall:.1f} | {100 * scores.f1:.1f} |'
    )
  return lines


def _ncbi(arg: str = ''):
  return genbioel.get_config(f'size=tiny,data_dir={FLAGS.data_dir}{arg}')


def run_stage(stage: str, root: str) -> None:
  """Trains one model (unless finished), links its mentions, pickles them."""
  start = time.time()
  if stage == 'hpo':
    config = small(genbioel.get_config('size=tiny'), FLAGS.finetune_steps)
    splits, subkb = ['eval', 'test'], FLAGS.hpo_subkb
  else:
    config = small(_ncbi(), FLAGS.finetune_steps)
    splits, subkb = ['eval'], FLAGS.ncbi_subkb
  if stage == 'ncbi_pretrained':
    pretrain_dir = os.path.join(root, 'medic_pretrain')
    pretrain = small(
        genbioel_pretrain.get_config(f'size=tiny,data_dir={FLAGS.data_dir}'),
        FLAGS.pretrain_steps,
    )
    trained(without_eval(pretrain), pretrain_dir)
    folder = os.path.join(root, 'medic_pretrain_hf')
    if not os.path.isfile(os.path.join(folder, 'config.json')):
      export_hf(pretrain, pretrain_dir, folder)
    config.init_from = f'hf:{folder}'
  workdir = os.path.join(root, stage)
  trained(without_eval(config), workdir)
  train_seconds = time.time() - start
  task, data, params = restore(config, workdir)
  result = evaluate_model(task, data, params, splits, subkb)
  result['train_seconds'] = train_seconds
  with open(os.path.join(root, f'{stage}.pkl'), 'wb') as f:
    pickle.dump(result, f)


def without_eval(config):
  """A copy that trains only: the linking comes after, outside the trainer."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.data.eval = ''
  config.data.test = ''
  return config


def ncbi_halves(examples):
  """(tune, report) mention indices: even / odd devel abstracts."""
  documents = [e['doc_id'] for e in examples]
  order = {doc: i for i, doc in enumerate(dict.fromkeys(documents))}
  tune = [i for i, doc in enumerate(documents) if order[doc] % 2 == 0]
  report = [i for i, doc in enumerate(documents) if order[doc] % 2 == 1]
  return tune, report


def report(root: str) -> str:
  """The markdown tables of every finished stage."""
  results = {}
  for stage in STAGES:
    path = os.path.join(root, f'{stage}.pkl')
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        results[stage] = pickle.load(f)
  lines = [
      '## Recall@1 / Recall@5 (full-KB trie, beam 5)',
      '',
      '| data | model | mentions | R@1 | R@5 | train s | link s |',
      '|---|---|---|---|---|---|---|',
  ]
  for stage, result in results.items():
    for split in ('eval', 'test'):
      if split not in result:
        continue
      linked = result[split]
      lines.append(
          f'| {STAGES[stage][0]} {split} | {STAGES[stage][1]} |'
          f' {len(linked["examples"])} |'
          f' {100 * linked["recall"]["R@1"]:.1f} |'
          f' {100 * linked["recall"]["R@5"]:.1f} |'
          f' {result["train_seconds"]:.0f} | {linked["seconds"]:.0f} |'
      )
  lines.append('')
  for stage, result in results.items():
    if stage == 'hpo':
      valid, test = result['eval'], result['test']
      full = valid['full'] + test['full']
      direct = valid['direct'] + test['direct']
      examples = valid['examples'] + test['examples']
      tune = list(range(len(valid['examples'])))
      scored = list(range(len(tune), len(examples)))
      where = 'HPO test; tau chosen by F1 on HPO valid'
      subkb = FLAGS.hpo_subkb
    else:
      linked = result['eval']
      full, direct, examples = (
          linked['full'],
          linked['direct'],
          linked['examples'],
      )
      tune, scored = ncbi_halves(examples)
      where = (
          'NCBI-disease devel, odd-index abstracts; tau chosen by F1 on the'
          ' even-index ones'
      )
      subkb = FLAGS.ncbi_subkb
    table, tau, num_gold, nil = partial_table(
        full, direct, examples, result['partial_ids'], tune, scored
    )
    del tau
    lines += [
        (
            f'## Partial KB: {STAGES[stage][0]}, {STAGES[stage][1]}; branch'
            f' {subkb} ({result["subkb_size"]} concepts)'
        ),
        '',
        (
            f'{where}. Scored mentions: {len(scored)} ({num_gold} with a gold'
            f' concept in the branch, {nil} NIL); tau tuned on {len(tune)}.'
        ),
        '',
        *format_table(table),
        '',
    ]
  return '\n'.join(lines)


STAGES = {  # stage: (data, model)
    'ncbi_scratch': ('NCBI-disease', 'fine-tuned from scratch'),
    'ncbi_pretrained': (
        'NCBI-disease',
        'KB-guided pre-training on MEDIC, then fine-tuned',
    ),
    'hpo': ('HPO mentions', 'fine-tuned from scratch'),
}


def main(argv):
  del argv
  root = FLAGS.workdir
  os.makedirs(root, exist_ok=True)
  if FLAGS.stage != 'report':
    run_stage(FLAGS.stage, root)
  text = report(root)
  print(text)
  with open(os.path.join(root, 'tables.md'), 'w') as f:
    f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
