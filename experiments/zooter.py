r"""ZOOTER at CPU scale: route queries among three tiny domain experts.

  nice -n 10 python experiments/zooter.py --workdir=/tmp/zooter_run

1. Three tiny LLaMA experts, one per synthetic domain (math, code, general;
   flaxllm.data.synthetic_sft), trained with configs/sft.py:runlocal when
   /tmp/zooter_experts/<domain> holds none (cached there, never in the repo).
2. configs/zooter.py:runlocal: every member answers the router's training
   queries (the domains' valid splits), the reward-model queries (train
   splits) and the test queries (test splits); task-grounded scores (GSM8K
   answer check, sandboxed asserts, ROUGE-L) for all answers.
3. A Bradley-Terry reward model (frozen all-MiniLM-L6-v2 + MLP head) on the
   preference pairs of the reward-model queries.
4. Routers (frozen all-MiniLM-L6-v2 + linear head, soft-label cross-entropy)
   from task-score labels without tags, with k-means tags and with the data's
   'kind' tags (beta = 0.3), and from reward-model labels.
5. One evaluation on the test queries: each single member, random routing
   (its expectation), reward-model ranking (RMR: all members answer, the RM
   picks), the ZOOTER routers and the oracle; per-domain scores, mean task
   rank and %first over the domains, routing accuracy against the oracle,
   member calls and FLOPs per query. The --mode=route path is checked on the
   test queries: it runs only the chosen member and reproduces the
   evaluation's answers.

Answers and scores are cached in the workdir per query set and member (a
rerun only retrains the reward model and routers); `--answer_only=math,code`
answers with the named members and stops, so members can answer while others
still train.
Writes experiments/results/zooter.md.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from configs import zooter as zooter_config
from flaxllm import route_mode
from flaxllm.recipes import reward_model
from flaxllm.recipes import zooter
from flaxllm.recipes import zooter_router

# pylint: enable=g-import-not-at-top,wrong-import-position

DOMAINS = ('math', 'code', 'general')
ANSWER_SECONDS = {}  # 'set/member' -> seconds to answer and score
EXPERT_STEPS = {'math': 900, 'code': 500, 'general': 500}


def expert_command(experts: str, domain: str) -> list[str]:
  return [
      sys.executable,
      '-m',
      'flaxllm.main',
      '--config=configs/sft.py:runlocal',
      f'--workdir={experts}/{domain}',
      f'--config.data.train=synthetic:{domain}:train:3000',
      f'--config.data.eval=synthetic:{domain}:valid:32',
      f'--config.data.test=synthetic:{domain}:test:48',
      '--config.data.max_source_length=128',
      '--config.data.max_target_length=48',
      f'--config.train.steps={EXPERT_STEPS[domain]}',
  ]


def ensure_experts(experts: str) -> None:
  for domain in DOMAINS:
    if os.path.isdir(os.path.join(experts, domain, 'checkpoints')):
      continue
    print(f'training the {domain} expert', flush=True)
    subprocess.run(expert_command(experts, domain), cwd=ROOT, check=True)


def cached(path: str, make):
  if os.path.isfile(path):
    with open(path) as f:
      return json.load(f)
  value = make()
  with open(path, 'w') as f:
    json.dump(value, f)
  return value


def answers_and_scores(
    zoo, examples, workdir: str, name: str, members=None
) -> dict:
  """Every member's answer to every example, with FLOPs and task scores.

  Cached per (query set, member), so members can be answered one by one.
  """
  texts = [e['src'] for e in examples]
  columns = []
  for member in members or zoo.names:

    def make(member=member):
      start = time.time()
      results = zoo.generate(member, texts)
      outputs = [result['output'] for result in results]
      scores = zooter.task_scores(examples, outputs)
      print(
          f'{name}/{member}: answered and scored in'
          f' {time.time() - start:.0f} s',
          flush=True,
      )
      return {
          'seconds': time.time() - start,
          'outputs': outputs,
          'flops': [result['flops'] for result in results],
          'scores': scores.tolist(),
      }

    columns.append(cached(os.path.join(workdir, f'{name}_{member}.json'), make))
  for member, column in zip(members or zoo.names, columns):
    ANSWER_SECONDS[f'{name}/{member}'] = column.get('seconds')
  return {
      'outputs': [list(row) for row in zip(*(c['outputs'] for c in columns))],
      'flops': np.array([c['flops'] for c in columns]).T,
      'scores': np.array([c['scores'] for c in columns]).T,
  }


def train_one_router(config, texts, labels, names):
  r = config.route
  folder = zooter_router.encoder_folder(r.encoder)
  net, params = zooter_router.pretrained_head(
      folder, len(names), hidden=r.router_head_hidden, seed=config.seed
  )
  router, losses = zooter_router.train_router(
      net,
      params,
      zooter_router.TextEncoder.from_folder(folder, r.max_query_length),
      texts,
      labels,
      names,
      zooter_router.FitSettings(
          steps=r.router_steps,
          learning_rate=r.router_learning_rate,
          weight_decay=r.router_weight_decay,
          train_encoder=r.router_train_encoder,
          seed=config.seed,
      ),
      batch_size=r.router_batch_size,
  )
  return router, losses


def fmt(value: float) -> str:
  if value >= 1e9:
    return f'{value / 1e9:.2f} G'
  return f'{value / 1e6:.1f} M'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='/tmp/zooter_run')
  parser.add_argument('--experts', default='/tmp/zooter_experts')
  parser.add_argument(
      '--output', default=os.path.join(ROOT, 'experiments/results/zooter.md')
  )
  parser.add_argument('--train_per_domain', type=int, default=64)
  parser.add_argument('--test_per_domain', type=int, default=48)
  parser.add_argument('--rm_per_domain', type=int, default=32)
  parser.add_argument(
      '--answer_only',
      default='',
      help='comma-separated members: cache their answers and stop',
  )
  parser.add_argument(
      '--member_settings',
      default='',
      help="route.member_settings, e.g. 'code.temperature=0.7'",
  )
  args = parser.parse_args()
  os.makedirs(args.workdir, exist_ok=True)
  start = time.time()
  if not args.answer_only:
    ensure_experts(args.experts)
  config = zooter_config.get_config(f'runlocal,experts={args.experts}')
  r = config.route
  for key, split, count in (
      ('train', 'valid', args.train_per_domain),
      ('test', 'test', args.test_per_domain),
      ('rm_train', 'train', args.rm_per_domain),
  ):
    r[key] = ';'.join(f'synthetic:{d}:{split}:{count}' for d in DOMAINS)
  r.member_settings = args.member_settings
  zoo = zooter.Zoo.from_config(config)
  names = zoo.names
  train = zooter.load_queries(r.train)
  test = zooter.load_queries(r.test, 'route.test')
  rm_queries = zooter.load_queries(r.rm_train, 'route.rm_train')
  if args.answer_only:
    for examples, name in (
        (train, 'train'),
        (test, 'test'),
        (rm_queries, 'rm'),
    ):
      answers_and_scores(
          zoo, examples, args.workdir, name, args.answer_only.split(',')
      )
    return

  train_a = answers_and_scores(zoo, train, args.workdir, 'train')
  test_a = answers_and_scores(zoo, test, args.workdir, 'test')
  rm_a = answers_and_scores(zoo, rm_queries, args.workdir, 'rm')
  train_texts = [e['src'] for e in train]
  test_texts = [e['src'] for e in test]

  # The reward model: Bradley-Terry on the rm queries' preference pairs.
  pairs = reward_model.preference_pairs(
      [e['src'] for e in rm_queries], rm_a['outputs'], rm_a['scores']
  )
  folder = zooter_router.encoder_folder(r.encoder)
  net, params = zooter_router.pretrained_head(
      folder, 1, hidden=r.rm_head_hidden, seed=config.seed
  )
  rm_encoder = zooter_router.TextEncoder.from_folder(folder, r.rm_max_length)
  rm, rm_losses = reward_model.train_reward_model(
      net,
      params,
      rm_encoder,
      pairs,
      zooter_router.FitSettings(
          steps=r.rm_steps,
          learning_rate=r.rm_learning_rate,
          weight_decay=r.router_weight_decay,
          train_encoder=r.rm_train_encoder,
          seed=config.seed,
      ),
      batch_size=r.rm_batch_size,
  )

  def rm_scores(texts, outputs):
    return np.stack(
        [
            rm.score(texts, [row[m] for row in outputs])
            for m in range(len(names))
        ],
        axis=1,
    )

  test_rm = rm_scores(test_texts, test_a['outputs'])
  train_rm = rm_scores(train_texts, train_a['outputs'])
  rm_params = zooter_router.matmul_params(rm.params)
  print(
      f'reward model: {len(pairs)} pairs, loss {rm_losses[0]:.3f} ->'
      f' {np.mean(rm_losses[-20:]):.3f}',
      flush=True,
  )

  # Labels and routers.
  task_labels = zooter.silver_labels(train_a['scores'], r.label_temperature)
  kmeans_tags = zooter.query_tags(train, r)
  kind_tags = zooter.field_tags(train, 'kind')
  rm_labels = zooter.silver_labels(train_rm, 1.0)
  variants = {
      'ZOOTER, task labels, no tags (beta = 1)': task_labels,
      'ZOOTER, task labels, k-means tags (beta = 0.3)': zooter.enhance_labels(
          task_labels, kmeans_tags, r.beta
      ),
      'ZOOTER, task labels, data tags (beta = 0.3)': zooter.enhance_labels(
          task_labels, kind_tags, r.beta
      ),
      'ZOOTER, RM labels, k-means tags (beta = 0.3)': zooter.enhance_labels(
          rm_labels, kmeans_tags, r.beta
      ),
  }
  domains = [e['kind'] for e in test]
  scores, flops = test_a['scores'], test_a['flops']
  n = len(test)
  choices, calls, cost = {}, {}, {}
  for m, name in enumerate(names):
    label = f'single: {name} expert'
    choices[label] = np.full(n, m)
    calls[label], cost[label] = 1.0, flops[:, m].mean()
  routers = {}
  router_losses = {}
  for label, labels in variants.items():
    router, losses = train_one_router(config, train_texts, labels, names)
    routers[label] = router
    router_losses[label] = (losses[0], float(np.mean(losses[-20:])))
    picked = np.array(router.route(test_texts)[0])
    choices[label] = picked
    query_tokens = router.text_encoder.batch(test_texts)['mask'].sum(1)
    calls[label] = 1.0
    cost[label] = float(
        np.mean(
            flops[np.arange(n), picked]
            + 2.0 * router.matmul_params() * query_tokens
        )
    )
  pair_tokens = np.stack(
      [
          rm_encoder.batch(test_texts, [row[m] for row in test_a['outputs']])[
              'mask'
          ].sum(1)
          for m in range(len(names))
      ],
      axis=1,
  )
  choices['RMR (all members, the reward model picks)'] = test_rm.argmax(1)
  calls['RMR (all members, the reward model picks)'] = float(len(names))
  cost['RMR (all members, the reward model picks)'] = float(
      np.mean(flops.sum(1) + 2.0 * rm_params * pair_tokens.sum(1))
  )
  oracle = zooter.oracle_choices(scores, flops)
  choices['oracle (best member per query)'] = oracle
  calls['oracle (best member per query)'] = float(len(names))
  cost['oracle (best member per query)'] = float(flops.sum(1).mean())

  table = {
      m: zooter.domain_scores(c, scores, domains) for m, c in choices.items()
  }
  # Random routing: the expectation over a uniform choice.
  table['random routing (expected)'] = {
      d: 100.0 * float(scores[np.array(domains) == d].mean()) for d in DOMAINS
  } | {'all': 100.0 * float(scores.mean())}
  calls['random routing (expected)'] = 1.0
  cost['random routing (expected)'] = float(flops.mean())
  accuracy = {m: zooter.routing_accuracy(c, scores) for m, c in choices.items()}
  accuracy['random routing (expected)'] = float(
      np.mean(scores >= scores.max(1, keepdims=True))
  )
  ranks = zooter.mean_task_rank(table, list(DOMAINS))

  # --mode=route on the test queries: only the chosen member runs, and its
  # answers are the evaluation's (greedy decoding).
  best = 'ZOOTER, task labels, k-means tags (beta = 0.3)'
  routers[best].save(  # for --mode=route --workdir=<this workdir>
      os.path.join(args.workdir, zooter.ROUTER_DIR), {'tags': 'kmeans'}
  )
  fresh = zooter.Zoo.from_config(config)
  routed = route_mode.route_records(
      routers[best], fresh, [{'prompt': t} for t in test_texts], 'prompt'
  )
  same = np.mean([
      o['output'] == test_a['outputs'][i][names.index(o['member'])]
      for i, o in enumerate(routed)
  ])
  route_calls = {k: int(v) for k, v in fresh.calls.items()}
  elapsed = time.time() - start

  order = (
      [f'single: {name} expert' for name in names]
      + ['random routing (expected)']
      + list(variants)
      + [
          'RMR (all members, the reward model picks)',
          'oracle (best member per query)',
      ]
  )
  lines = [
      '# ZOOTER at CPU scale: routing among three tiny domain experts',
      '',
      (
          'Zoo: three tiny LLaMA experts (2 layers, d 128, own 1k BPE vocab), '
          'each fine-tuned with `configs/sft.py:runlocal` on 3,000 generated '
          'examples of one domain (`flaxllm/data/synthetic_sft.py`: math word '
          'problems checked by the GSM8K answer checker, one-line Python '
          'functions checked by sandboxed asserts, HPO definition -> concept '
          'name scored by ROUGE-L F1), math 900 steps, code and general 500, '
          'batch 16. Greedy answers, at most 48 new tokens.'
      ),
      '',
      f'Router training queries: {len(train)} ({args.train_per_domain} per'
      f' domain, the valid splits); reward-model queries: {len(rm_queries)}'
      f" ({args.rm_per_domain} per domain, the experts' train splits); test"
      f' queries: {n} ({args.test_per_domain} per domain, the test splits).'
      ' Router: all-MiniLM-L6-v2 (real weights) mean-pooled, frozen '
      f'(CPU budget), + a linear head, {r.router_steps} AdamW steps of '
      f'{r.router_batch_size}, lr {r.router_learning_rate}, soft-label '
      f'cross-entropy; task labels softmax(score / {r.label_temperature}); '
      f'k-means: {r.num_clusters} clusters of the MiniLM query embeddings. '
      f'Reward model: frozen MiniLM + MLP head ({r.rm_head_hidden} hidden), '
      f'Bradley-Terry on {len(pairs)} preference pairs (member answers whose '
      f'task scores differ), {r.rm_steps} steps; RM labels softmax(r).',
      '',
      (
          'Scores are x 100 (math accuracy, code pass@1, general ROUGE-L F1);'
          ' MTR = mean rank over the three domains among all rows (ties share'
          ' the average rank), %first = share of domains where the row ranks'
          ' first; accuracy = share of queries sent to a member with the best'
          " score (the oracle's); FLOPs = 2 x parameters x (prompt + generated"
          " tokens) per member call, plus the router's (or reward model's) 2 x"
          " non-embedding parameters x its input tokens; the oracle's scorer is"
          ' not counted.'
      ),
      '',
      f'## {time.strftime("%Y-%m-%d")}, seed {config.seed}',
      '',
      (
          '| method | math | code | general | all | MTR | %first | routing acc.'
          ' | member calls / query | FLOPs / query |'
      ),
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ]
  for m in order:
    t = table[m]
    lines.append(
        f'| {m} | {t["math"]:.1f} | {t["code"]:.1f} | {t["general"]:.1f} | '
        f'{t["all"]:.1f} | {ranks[m][0]:.2f} | {ranks[m][1]:.0f}% | '
        f'{100 * accuracy[m]:.1f}% | {calls[m]:.0f} | {fmt(cost[m])} |'
    )
  lines += [
      '',
      'Router losses (first step -> mean of the last 20): '
      + '; '.join(
          f'{k}: {a:.3f} -> {b:.3f}' for k, (a, b) in router_losses.items()
      )
      + f'. Reward model: {rm_losses[0]:.3f} -> '
      f'{np.mean(rm_losses[-20:]):.3f}.',
      '',
      f'`--mode=route` path (flaxllm.route_mode.route_records with a fresh '
      f'zoo) on the {n} test queries with the k-means-tag router: member '
      f'calls {route_calls} (each member ran only on the queries routed to '
      f'it, {sum(route_calls.values())} answers for {n} queries); '
      f"{100 * same:.1f}% of its answers equal the evaluation's answer of "
      'the chosen member.',
      '',
      f'Wall time of the final run {elapsed / 60:.1f} min on the shared'
      ' 2-core CPU (load average 25-35 from other jobs), answers read from'
      ' the workdir cache; answering and scoring took (s, per query set and'
      ' member, each when first cached): '
      + ', '.join(
          f'{k} {v:.0f}' if v is not None else f'{k} n/a'
          for k, v in ANSWER_SECONDS.items()
      )
      + '. Command:',
      '',
      '    nice -n 10 python experiments/zooter.py --workdir=/tmp/zooter_run',
      '',
      'Experts: '
      + '; '.join(
          '`' + ' '.join(expert_command('/tmp/zooter_experts', d)[1:]) + '`'
          for d in DOMAINS
      ),
      '',
  ]
  with open(args.output, 'w') as f:
    f.write('\n'.join(lines))
  print('\n'.join(lines))


if __name__ == '__main__':
  main()
