"""ZOOTER (Lu et al., NAACL 2024): reward-guided routing to one expert LLM.

The pipeline (config section `route`, see flaxllm/configuration.py):

  1. the zoo: members named in `route.members` ('name=spec;...', a spec is
     'workdir:/trained/sft/run', 'hf:/folder' or 'gguf:/file.gguf'), each
     with generation settings (`route.*`, per member `route.member_settings`
     'name.key=value;...');
  2. every member answers every training query (`route.train`);
  3. rewards: task-grounded (`route.scorer='task'`: GSM8K answer
     correctness for 'math' queries, the HumanEval-style tests for 'code',
     ROUGE-L F1 against the reference otherwise) or a Bradley-Terry reward
     model (`'reward_model'`, flaxllm.recipes.reward_model);
  4. silver labels s(q) = softmax(r(q) / route.label_temperature);
  5. tag-based label enhancement: tags from a data field (`route.tags=
     'field'`) or k-means clusters of the router encoder's query embeddings
     (`'kmeans'`, when no tagger exists); s_t is the mean label of the
     queries tagged t and s*(q) = beta s(q) + (1 - beta) mean_{t in T(q)} s_t
     (beta = route.beta, 0.3 by default as in the paper);
  6. the router (flaxllm.recipes.zooter_router) is distilled from s*.

Evaluation helpers compare routing methods on a table of per-(query, member)
scores: mean score per domain, mean task rank (MTR) and %first over domains,
routing accuracy against the oracle, cost in member calls and FLOPs.
"""

import collections
import dataclasses
import os
import sys
from typing import Any, Callable, Mapping, Sequence

import ml_collections
import numpy as np

from flaxllm.errors import UserInputError

MEMBER_KINDS = ('workdir', 'hf', 'gguf')
SCORERS = ('task', 'reward_model')
TAG_SOURCES = ('none', 'field', 'kmeans')
CHAT_TEMPLATES = ('auto', 'tokenizer', 'alpaca', 'none')
# Generation keys a member may override ('name.key=value').
MEMBER_KEYS = ('chat_template', 'max_new_tokens', 'temperature', 'top_p')
ROUTER_DIR = 'router'
REWARD_MODEL_DIR = 'reward_model'


def route_defaults() -> ml_collections.ConfigDict:
  """The `route` config section (ZOOTER and --mode=route)."""
  r = ml_collections.ConfigDict()
  # The zoo: 'name=spec;name=spec', spec = workdir:/run | hf:/dir | gguf:/f.
  r.members = ''
  r.member_settings = ''  # 'math.max_new_tokens=64;code.temperature=0.7'
  r.chat_template = 'auto'  # 'auto': the tokenizer's template, else Alpaca
  r.add_bos = True
  r.max_new_tokens = 64
  r.temperature = 0.0  # the paper samples at 0.7; 0 = greedy
  r.top_p = 1.0
  r.batch_size = 16
  r.max_prompt_length = 256  # tokens; longer prompts keep their end
  # Router training queries (';'-joined source specs with a 'src' field).
  r.train = ''
  r.test = ''  # evaluation queries (experiments/zooter.py)
  r.scorer = 'task'  # 'task' | 'reward_model'
  r.label_temperature = 1.0  # the paper: a plain softmax of the rewards
  r.tags = 'kmeans'  # 'none' | 'field' | 'kmeans'
  r.tag_field = 'kind'  # with tags='field'; ',' separates several tags
  r.num_clusters = 8  # with tags='kmeans'
  r.beta = 0.3
  # The router: '' = the bundled all-MiniLM-L6-v2, or hf:/bert/folder.
  r.encoder = ''
  r.router = ''  # trained router folder; '' = workdir/router
  r.max_query_length = 128
  r.router_steps = 300
  r.router_batch_size = 16
  r.router_learning_rate = 5e-5
  r.router_weight_decay = 5e-7  # the paper's
  # False: the encoder is frozen and only the head learns (its embeddings
  # computed once; what a CPU affords).
  r.router_train_encoder = True
  r.router_head_hidden = 0  # 0: a linear head over the members
  # The reward model (scorer='reward_model' and the RMR baseline).
  r.reward_model = ''  # trained folder; '' = workdir/reward_model
  r.rm_train = ''  # queries whose member answers give preference pairs
  r.rm_steps = 150
  r.rm_batch_size = 8
  r.rm_learning_rate = 5e-5
  r.rm_max_length = 192
  r.rm_max_pairs = 0
  r.rm_train_encoder = True
  r.rm_head_hidden = 0  # 0: a linear scalar head
  # --mode=route: queries in, outputs out.
  r.queries = ''
  r.query_field = 'prompt'
  r.output = ''  # '' = workdir/route_outputs.jsonl
  return r


# =============================================================================
# The zoo
# =============================================================================


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  """One zoo member: where it is and how it generates."""

  name: str
  spec: str
  chat_template: str = 'auto'
  max_new_tokens: int = 64
  temperature: float = 0.0
  top_p: float = 1.0


def _parse_setting(key: str, value: str) -> Any:
  if key == 'chat_template':
    if value not in CHAT_TEMPLATES:
      raise UserInputError(
          f'route.member_settings chat_template={value!r}; use one of'
          f' {CHAT_TEMPLATES}'
      )
    return value
  try:
    number = int(value) if key == 'max_new_tokens' else float(value)
  except ValueError:
    raise UserInputError(
        f'route.member_settings {key}={value!r} is not a number'
    ) from None
  if number < 0 or (key in ('max_new_tokens', 'top_p') and number == 0):
    raise UserInputError(f'route.member_settings {key}={value} is out of range')
  return number


def parse_members(route: ml_collections.ConfigDict) -> list[MemberSpec]:
  """The zoo of `route.members` with each member's generation settings.

  Raises:
    UserInputError: naming the malformed entry and the expected form.
  """
  members = {}
  for entry in filter(None, (e.strip() for e in route.members.split(';'))):
    name, equals, spec = entry.partition('=')
    kind, colon, rest = spec.partition(':')
    if not equals or not name or not colon or kind not in MEMBER_KINDS:
      raise UserInputError(
          f'route.members entry {entry!r} is not name=workdir:/run,'
          ' name=hf:/folder or name=gguf:/file.gguf'
      )
    if name in members:
      raise UserInputError(f'route.members names {name!r} twice')
    members[name] = MemberSpec(
        name,
        spec,
        chat_template=route.chat_template,
        max_new_tokens=route.max_new_tokens,
        temperature=route.temperature,
        top_p=route.top_p,
    )
  for entry in filter(
      None, (e.strip() for e in route.member_settings.split(';'))
  ):
    target, equals, value = entry.partition('=')
    name, dot, key = target.partition('.')
    if not equals or not dot or key not in MEMBER_KEYS:
      raise UserInputError(
          f'route.member_settings entry {entry!r} is not name.key=value with'
          f' key in {MEMBER_KEYS}'
      )
    if name not in members:
      raise UserInputError(
          f'route.member_settings names member {name!r}, not in'
          f' route.members {sorted(members)}'
      )
    members[name] = dataclasses.replace(
        members[name], **{key: _parse_setting(key, value)}
    )
  return list(members.values())


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates `config.route` (cheap: no file is opened but named paths)."""
  r = config.route
  members = parse_members(r)
  if r.members and len(members) < 2:
    raise UserInputError(
        f'route.members has {len(members)} member; a zoo needs at least two'
    )
  for key, allowed in (
      ('scorer', SCORERS),
      ('tags', TAG_SOURCES),
      ('chat_template', CHAT_TEMPLATES),
  ):
    if r[key] not in allowed:
      raise UserInputError(
          f'config key route.{key}={r[key]!r}; use one of {allowed}'
      )
  if not 0.0 <= r.beta <= 1.0:
    raise UserInputError(f'config key route.beta={r.beta} must be in [0, 1]')
  for key in (
      'label_temperature',
      'max_new_tokens',
      'batch_size',
      'max_prompt_length',
      'num_clusters',
      'max_query_length',
      'router_steps',
      'router_batch_size',
      'router_learning_rate',
      'rm_steps',
      'rm_batch_size',
      'rm_learning_rate',
      'rm_max_length',
      'top_p',
  ):
    if r[key] <= 0:
      raise UserInputError(f'config key route.{key}={r[key]} must be > 0')
  for key in (
      'temperature',
      'rm_max_pairs',
      'router_weight_decay',
      'router_head_hidden',
      'rm_head_hidden',
  ):
    if r[key] < 0:
      raise UserInputError(f'config key route.{key}={r[key]} must be >= 0')
  if r.queries and not os.path.isfile(r.queries):
    raise UserInputError(
        f'route.queries file {r.queries!r} does not exist; fix'
        ' --config.route.queries'
    )


def load_queries(spec: str, key: str = 'route.train') -> list[dict]:
  """The examples of ';'-joined source specs (each with 'src', maybe 'kind')."""
  from flaxllm.data import sources  # pylint: disable=g-import-not-at-top

  if not spec:
    raise UserInputError(
        f'{key} is empty; name the queries, e.g. {key}='
        + "'synthetic:math:valid:64;synthetic:code:valid:64'"
    )
  examples = []
  for part in filter(None, (p.strip() for p in spec.split(';'))):
    examples.extend(sources.load_examples(part))
  return examples


class Zoo:
  """The members, loaded on first use, generating with their settings.

  Attributes:
    members: the specs, in label order.
    names: their names.
    calls: queries answered so far, per member name.
    loads: members loaded so far, in order.
  """

  def __init__(
      self,
      members: Sequence[MemberSpec],
      *,
      batch_size: int = 16,
      max_prompt_length: int = 256,
      add_bos: bool = True,
      seed: int = 0,
  ):
    self.members = list(members)
    self.names = [m.name for m in self.members]
    self.batch_size = batch_size
    self.max_prompt_length = max_prompt_length
    self.add_bos = add_bos
    self.seed = seed
    self.calls = collections.Counter()
    self.loads = []
    self._loaded = {}

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'Zoo':
    r = config.route
    members = parse_members(r)
    if len(members) < 2:
      raise UserInputError(
          'route.members needs at least two members, e.g.'
          " 'math=workdir:/runs/math;code=workdir:/runs/code'"
      )
    return cls(
        members,
        batch_size=r.batch_size,
        max_prompt_length=r.max_prompt_length,
        add_bos=r.add_bos,
        seed=config.seed,
    )

  def _member(self, name: str) -> MemberSpec:
    if name not in self.names:
      raise UserInputError(f'zoo member {name!r} is unknown: {self.names}')
    return self.members[self.names.index(name)]

  def _load(self, name: str):
    """(generator, tokenizer, chat template, params count) of a member."""
    if name in self._loaded:
      return self._loaded[name]
    # pylint: disable=g-import-not-at-top
    import jax
    from flaxllm import decode_mode
    # pylint: enable=g-import-not-at-top

    member = self._member(name)
    kind, _, path = member.spec.partition(':')
    if kind == 'workdir':
      if not os.path.isdir(path):
        raise UserInputError(
            f'zoo member {name!r}: workdir {path!r} does not exist; train it'
            ' with --mode=train (e.g. configs/sft.py) or fix route.members'
        )
      source = ml_collections.ConfigDict({'init_from': ''})
    else:
      source = ml_collections.ConfigDict({'init_from': member.spec})
    target, tokenizer = decode_mode.load_target(source, path)
    template = member.chat_template
    if template == 'auto':  # as SFT trains: the tokenizer's, else Alpaca
      template = 'tokenizer' if tokenizer.chat_template else 'alpaca'
    settings = decode_mode.Settings(
        method='sample' if member.temperature > 0 else 'greedy',
        max_new_tokens=member.max_new_tokens,
        batch_size=self.batch_size,
        temperature=member.temperature,
        top_p=member.top_p,
    )
    generator = decode_mode.Generator(
        settings, target, None, tokenizer, seed=self.seed
    )
    num_params = sum(np.size(x) for x in jax.tree.leaves(target.params))
    self._loaded[name] = (generator, tokenizer, template, num_params)
    self.loads.append(name)
    return self._loaded[name]

  def num_params(self, name: str) -> int:
    return self._load(name)[3]

  def generate(self, name: str, texts: Sequence[str]) -> list[dict]:
    """Member `name` answers each text.

    Args:
      name: the member.
      texts: the queries (raw; the member's chat template is applied).

    Returns:
      Per text: 'output', 'num_tokens', 'prompt_tokens' and 'flops' (2 x
      parameters x (prompt + generated) tokens, the forward-pass estimate).
    """
    from flaxllm import decode_mode  # pylint: disable=g-import-not-at-top

    if not texts:
      return []
    generator, tokenizer, template, num_params = self._load(name)
    prompts = decode_mode.encode_prompts(
        tokenizer,
        texts,
        chat_template=template,
        add_bos=False,
        max_prompt_length=sys.maxsize,
    )
    # An over-long prompt keeps its end (the response header), as SFT
    # training truncates it, after the bos.
    bos = []
    if self.add_bos and tokenizer.bos_id is not None:
      bos = [tokenizer.bos_id]
    budget = self.max_prompt_length - len(bos)
    prompts = [bos + p[-budget:] for p in prompts]
    results = generator.generate(prompts)
    self.calls[name] += len(texts)
    return [
        {
            'output': tokenizer.decode(result['tokens']),
            'num_tokens': result['num_tokens'],
            'prompt_tokens': len(prompt),
            'flops': 2.0 * num_params * (len(prompt) + result['num_tokens']),
        }
        for prompt, result in zip(prompts, results)
    ]


def answer_all(zoo, texts: Sequence[str]) -> dict[str, Any]:
  """Every member answers every text (ZOOTER's step 1, and evaluation).

  Returns:
    'outputs' [texts][members] strings and 'flops' float64 [texts, members].
  """
  outputs = [[''] * len(zoo.names) for _ in texts]
  flops = np.zeros((len(texts), len(zoo.names)))
  for column, name in enumerate(zoo.names):
    for row, result in enumerate(zoo.generate(name, texts)):
      outputs[row][column] = result['output']
      flops[row, column] = result['flops']
  return {'outputs': outputs, 'flops': flops}


# =============================================================================
# Rewards and labels
# =============================================================================


def task_scores(
    examples: Sequence[Mapping[str, Any]], outputs: Sequence[str]
) -> np.ndarray:
  """float64 [len(examples)] in [0, 1]: each output's task-grounded score.

  'math' examples: 1 when the GSM8K answer matches (the example's 'answer',
  else its target); 'code': 1 when the output passes the example's 'test'
  (run in the sandbox of flaxllm.eval.humaneval); any other: ROUGE-L F1
  against the target.
  """
  # pylint: disable=g-import-not-at-top
  from rouge_score import rouge_scorer
  from flaxllm.eval import gsm8k
  from flaxllm.eval import humaneval
  # pylint: enable=g-import-not-at-top

  if len(examples) != len(outputs):
    raise UserInputError(f'{len(outputs)} outputs for {len(examples)} examples')
  scores = np.zeros(len(examples))
  code_rows = []
  scorer = rouge_scorer.RougeScorer(['rougeL'])
  for row, (example, output) in enumerate(zip(examples, outputs)):
    kind = example.get('kind', '')
    if kind == 'math':
      reference = example.get('answer', example['tgt'])
      scores[row] = float(gsm8k.is_correct(output, reference))
    elif kind == 'code':
      code_rows.append(row)
    else:
      scores[row] = scorer.score(example['tgt'], output)['rougeL'].fmeasure
  if code_rows:
    problems = [
        {
            'task_id': str(row),
            'prompt': '',
            'test': examples[row]['test'],
            'entry_point': examples[row]['entry_point'],
        }
        for row in code_rows
    ]
    results = humaneval.execute_many(
        problems, [outputs[row] for row in code_rows], timeout_s=5.0
    )
    for row, result in zip(code_rows, results):
      scores[row] = float(result.passed)
  return scores


def score_table(
    examples: Sequence[Mapping[str, Any]], outputs: Sequence[Sequence[str]]
) -> np.ndarray:
  """float64 [examples, members]: task scores of every member's output."""
  columns = [
      task_scores(examples, [row[m] for row in outputs])
      for m in range(len(outputs[0]))
  ]
  return np.stack(columns, axis=1)


def silver_labels(rewards: np.ndarray, temperature: float = 1.0) -> np.ndarray:
  """softmax(rewards / temperature) over members, per query.

  Args:
    rewards: float [queries, members].
    temperature: > 0; 1 is the paper's plain softmax.

  Returns:
    float32 [queries, members], rows summing to 1.
  """
  if temperature <= 0:
    raise UserInputError(f'label temperature {temperature} must be > 0')
  z = np.asarray(rewards, np.float64) / temperature
  z -= z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def tag_labels(
    labels: np.ndarray, tags: Sequence[Sequence[str]]
) -> dict[str, np.ndarray]:
  """s_t: the mean label of the queries tagged t, for every tag t."""
  sums, counts = {}, collections.Counter()
  for label, query_tags in zip(labels, tags):
    for tag in set(query_tags):
      sums[tag] = sums.get(tag, 0.0) + np.asarray(label, np.float64)
      counts[tag] += 1
  return {tag: (sums[tag] / counts[tag]).astype(np.float32) for tag in sums}


def enhance_labels(
    labels: np.ndarray, tags: Sequence[Sequence[str]], beta: float = 0.3
) -> np.ndarray:
  """s*(q) = beta s(q) + (1 - beta) mean_{t in T(q)} s_t (untagged: s(q)).

  Args:
    labels: float [queries, members] silver labels.
    tags: each query's tags.
    beta: weight of the query's own label.

  Returns:
    float32 [queries, members], rows summing to 1.
  """
  if not 0.0 <= beta <= 1.0:
    raise UserInputError(f'beta={beta} must be in [0, 1]')
  if len(tags) != len(labels):
    raise UserInputError(f'{len(tags)} tag sets for {len(labels)} labels')
  prior = tag_labels(labels, tags)
  out = np.asarray(labels, np.float32).copy()
  for row, query_tags in enumerate(tags):
    unique = sorted(set(query_tags))
    if unique:
      mean_tag = np.mean([prior[t] for t in unique], axis=0)
      out[row] = beta * out[row] + (1.0 - beta) * mean_tag
  return out


def kmeans(
    points: np.ndarray, k: int, *, seed: int = 0, iterations: int = 50
) -> np.ndarray:
  """Cluster ids int [points] of Lloyd's k-means with k-means++ seeding."""
  points = np.asarray(points, np.float64)
  k = min(k, len(points))
  rng = np.random.default_rng(seed)
  centers = [points[rng.integers(len(points))]]
  for _ in range(1, k):
    distance = np.min(
        [np.sum((points - c) ** 2, axis=1) for c in centers], axis=0
    )
    total = distance.sum()
    pick = (
        rng.choice(len(points), p=distance / total)
        if total > 0
        else rng.integers(len(points))
    )
    centers.append(points[pick])
  centers = np.stack(centers)
  assign = np.zeros(len(points), np.int64)
  for _ in range(iterations):
    distances = ((points[:, None, :] - centers[None]) ** 2).sum(-1)
    new_assign = distances.argmin(axis=1)
    if _ > 0 and np.array_equal(new_assign, assign):
      break
    assign = new_assign
    for c in range(k):
      if np.any(assign == c):
        centers[c] = points[assign == c].mean(axis=0)
  return assign


def field_tags(examples: Sequence[Mapping[str, Any]], field: str):
  """Each example's tags from a data field (',' separates several)."""
  return [
      [t.strip() for t in str(e.get(field, '')).split(',') if t.strip()]
      for e in examples
  ]


def embed_queries(
    texts: Sequence[str], encoder_spec: str = '', max_length: int = 128
) -> np.ndarray:
  """float32 [texts, embed]: unit-norm mean-pooled embeddings of the router
  encoder (all-MiniLM-L6-v2 by default), for k-means tags."""
  # pylint: disable-next=g-import-not-at-top
  from flaxllm.recipes import zooter_router

  folder = zooter_router.encoder_folder(encoder_spec)
  net, params = zooter_router.pretrained_head(folder, 1)
  text_encoder = zooter_router.TextEncoder.from_folder(folder, max_length)
  vectors = np.concatenate([
      zooter_router.pooled_features(
          net, params, text_encoder.batch(texts[begin : begin + 256])
      )
      for begin in range(0, len(texts), 256)
  ])
  return vectors / np.maximum(
      np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9
  )


def query_tags(
    examples: Sequence[Mapping[str, Any]], route: ml_collections.ConfigDict
) -> list[list[str]]:
  """The tags `route.tags` asks for ([] per query for 'none')."""
  if route.tags == 'none':
    return [[] for _ in examples]
  if route.tags == 'field':
    return field_tags(examples, route.tag_field)
  embeddings = embed_queries(
      [e['src'] for e in examples], route.encoder, route.max_query_length
  )
  clusters = kmeans(embeddings, route.num_clusters)
  return [[f'cluster{c}'] for c in clusters]


# =============================================================================
# Evaluation: routing methods over a score table
# =============================================================================


def oracle_choices(scores: np.ndarray, flops: np.ndarray) -> np.ndarray:
  """Per query the best-scoring member (ties: the cheapest, then first)."""
  best = scores.max(axis=1, keepdims=True)
  cost = np.where(scores >= best, flops, np.inf)
  return cost.argmin(axis=1)


def routing_accuracy(choices: np.ndarray, scores: np.ndarray) -> float:
  """Share of queries routed to a member with the oracle's (best) score."""
  chosen = scores[np.arange(len(scores)), choices]
  return float(np.mean(chosen >= scores.max(axis=1)))


def domain_scores(
    choices: np.ndarray, scores: np.ndarray, domains: Sequence[str]
) -> dict[str, float]:
  """Mean score x 100 of the chosen outputs, per domain and 'all'."""
  chosen = scores[np.arange(len(scores)), choices]
  domains = np.asarray(domains)
  out = {
      d: 100.0 * float(chosen[domains == d].mean())
      for d in sorted(set(domains))
  }
  out['all'] = 100.0 * float(chosen.mean())
  return out


def mean_task_rank(
    table: Mapping[str, Mapping[str, float]], subsets: Sequence[str]
) -> dict[str, tuple[float, float]]:
  """(MTR, %first) of every method over the subsets.

  Each subset ranks the methods by score (1 = best, ties share the average
  rank); MTR is a method's mean rank, %first the share of subsets where it
  ranks first (alone or tied).
  """
  methods = list(table)
  ranks = {m: [] for m in methods}
  firsts = collections.Counter()
  for subset in subsets:
    values = np.array([table[m][subset] for m in methods])
    for m, value in zip(methods, values):
      better = np.sum(values > value + 1e-9)
      tied = np.sum(np.abs(values - value) <= 1e-9)
      ranks[m].append(better + (tied + 1) / 2.0)
      if better == 0:
        firsts[m] += 1
  return {
      m: (float(np.mean(ranks[m])), 100.0 * firsts[m] / len(subsets))
      for m in methods
  }


# =============================================================================
# Building a router from a config (used by --mode=route and experiments)
# =============================================================================


def build_reward_model(
    config: ml_collections.ConfigDict,
    zoo,
    folder: str,
    log: Callable[[str], None] = print,
):
  """Trains the Bradley-Terry reward model on the zoo's answers to
  `route.rm_train` (pairs whose task scores differ) and saves it."""
  # pylint: disable=g-import-not-at-top
  from flaxllm.recipes import reward_model
  from flaxllm.recipes import zooter_router
  # pylint: enable=g-import-not-at-top

  r = config.route
  examples = load_queries(r.rm_train, 'route.rm_train')
  texts = [e['src'] for e in examples]
  answers = answer_all(zoo, texts)
  scores = score_table(examples, answers['outputs'])
  pairs = reward_model.preference_pairs(
      texts,
      answers['outputs'],
      scores,
      max_pairs=r.rm_max_pairs,
      seed=config.seed,
  )
  log(f'reward model: {len(pairs)} preference pairs from {len(texts)} queries')
  enc_folder = zooter_router.encoder_folder(r.encoder)
  net, params = zooter_router.pretrained_head(
      enc_folder, 1, hidden=r.rm_head_hidden, seed=config.seed
  )
  model, losses = reward_model.train_reward_model(
      net,
      params,
      zooter_router.TextEncoder.from_folder(enc_folder, r.rm_max_length),
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
  model.save(folder)
  log(f'reward model: loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}')
  return model


def build_router(
    config: ml_collections.ConfigDict,
    workdir: str,
    zoo=None,
    log: Callable[[str], None] = print,
):
  """ZOOTER end to end: answers, rewards, labels, tags, router (saved).

  Args:
    config: the run config (`route` section).
    workdir: the run folder (router and reward model default there).
    zoo: the zoo (default: built from the config).
    log: progress lines.

  Returns:
    The trained `zooter_router.Router`, saved to route.router or
    workdir/router.
  """
  # pylint: disable=g-import-not-at-top
  from flaxllm.recipes import reward_model
  from flaxllm.recipes import zooter_router
  # pylint: enable=g-import-not-at-top

  r = config.route
  zoo = zoo or Zoo.from_config(config)
  examples = load_queries(r.train)
  texts = [e['src'] for e in examples]
  log(f'zooter: {len(zoo.names)} members answer {len(texts)} queries')
  answers = answer_all(zoo, texts)
  enc_folder = zooter_router.encoder_folder(r.encoder)
  if r.scorer == 'task':
    rewards = score_table(examples, answers['outputs'])
  else:
    rm_folder = r.reward_model or os.path.join(workdir, REWARD_MODEL_DIR)
    if os.path.isdir(rm_folder):
      model = reward_model.load_reward_model(rm_folder, enc_folder)
    else:
      model = build_reward_model(config, zoo, rm_folder, log)
    rewards = np.stack(
        [
            model.score(texts, [row[m] for row in answers['outputs']])
            for m in range(len(zoo.names))
        ],
        axis=1,
    )
  labels = silver_labels(rewards, r.label_temperature)
  labels = enhance_labels(labels, query_tags(examples, r), r.beta)
  net, params = zooter_router.pretrained_head(
      enc_folder, len(zoo.names), hidden=r.router_head_hidden, seed=config.seed
  )
  router, losses = zooter_router.train_router(
      net,
      params,
      zooter_router.TextEncoder.from_folder(enc_folder, r.max_query_length),
      texts,
      labels,
      zoo.names,
      zooter_router.FitSettings(
          steps=r.router_steps,
          learning_rate=r.router_learning_rate,
          weight_decay=r.router_weight_decay,
          train_encoder=r.router_train_encoder,
          seed=config.seed,
      ),
      batch_size=r.router_batch_size,
  )
  folder = r.router or os.path.join(workdir, ROUTER_DIR)
  router.save(
      folder,
      {
          'scorer': r.scorer,
          'tags': r.tags,
          'beta': r.beta,
          'train_queries': len(texts),
          'loss_first': losses[0],
          'loss_last': float(np.mean(losses[-10:])),
      },
  )
  log(
      f'zooter: router trained ({losses[0]:.3f} -> {np.mean(losses[-10:]):.3f}'
      f' soft-label CE), saved to {folder}'
  )
  return router
