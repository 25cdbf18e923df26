"""A reward model: a BERT-family encoder with a scalar head, Bradley-Terry.

The model reads `[CLS] query [SEP] response [SEP]` and gives one score r. It
is trained on preference pairs (query, chosen, rejected) with the
Bradley-Terry loss

    L = -mean log sigmoid(r(q, chosen) - r(q, rejected)),

the negative log-likelihood of P(chosen beats rejected) = sigmoid(r_c - r_r).
ZOOTER can label queries with its rewards (`route.scorer='reward_model'`) and
the reward-model-ranking baseline (RMR: run every member, keep the answer the
model scores highest) uses it. The network and the training loop are the
router's (`flaxllm.recipes.zooter_router.PooledHead` with one output, `fit`).
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from flaxllm.errors import UserInputError
from flaxllm.recipes import zooter_router


def bradley_terry_loss(params, batch, apply) -> jax.Array:
  """-mean log sigmoid(r_chosen - r_rejected) over the batch's pairs.

  Args:
    params: the reward model's params.
    batch: the 'chosen_*' and 'rejected_*' inputs of the pairs (ids / mask /
      token_types int32 [pairs, length], or pooled 'features' float32
      [pairs, embed] with a frozen encoder).
    apply: the network in training mode.

  Returns:
    The scalar loss.
  """
  keys = [k[len('chosen_') :] for k in batch if k.startswith('chosen_')]
  both = {
      key: jnp.concatenate(
          [batch[f'chosen_{key}'], batch[f'rejected_{key}']], axis=0
      )
      for key in keys
  }  # [2 * pairs, ...]
  rewards = apply(params, both)[:, 0].astype(jnp.float32)  # [2 * pairs]
  chosen, rejected = jnp.split(rewards, 2)
  return -jnp.mean(jax.nn.log_sigmoid(chosen - rejected))


class RewardModel:
  """Scores (query, response) pairs with a trained PooledHead."""

  def __init__(
      self,
      net: zooter_router.PooledHead,
      params: Any,
      text_encoder: zooter_router.TextEncoder,
      *,
      batch_size: int = 32,
  ):
    if net.num_outputs != 1:
      raise UserInputError('a reward model has exactly one output')
    self.net = net
    self.params = params
    self.text_encoder = text_encoder
    self.batch_size = batch_size
    self._apply = jax.jit(lambda p, b: net.apply({'params': p}, b)[:, 0])

  def score(
      self, queries: Sequence[str], responses: Sequence[str]
  ) -> np.ndarray:
    """float32 [len(queries)]: the reward of each (query, response) pair."""
    if len(queries) != len(responses):
      raise UserInputError(
          f'reward model got {len(responses)} responses for {len(queries)}'
          ' queries'
      )
    scores = []
    for begin in range(0, len(queries), self.batch_size):
      q = list(queries[begin : begin + self.batch_size])
      r = list(responses[begin : begin + self.batch_size])
      real = len(q)
      q += [q[-1]] * (self.batch_size - real)
      r += [r[-1]] * (self.batch_size - real)
      batch = self.text_encoder.batch(q, r)
      scores.append(np.asarray(self._apply(self.params, batch))[:real])
    return np.concatenate(scores).astype(np.float32)

  def save(self, folder: str) -> None:
    router_like = zooter_router.Router(
        self.net, self.params, self.text_encoder, ['reward']
    )
    router_like.save(folder, {'kind': 'reward_model'})


def load_reward_model(folder: str, tokenizer_folder: str) -> RewardModel:
  """A reward model written by `RewardModel.save`."""
  loaded = zooter_router.load_router(folder, tokenizer_folder)
  return RewardModel(loaded.net, loaded.params, loaded.text_encoder)


def preference_pairs(
    queries: Sequence[str],
    responses: Sequence[Sequence[str]],
    scores: np.ndarray,
    *,
    margin: float = 0.0,
    max_pairs: int = 0,
    seed: int = 0,
) -> list[tuple[str, str, str]]:
  """(query, chosen, rejected) for every member pair whose scores differ.

  Args:
    queries: the queries.
    responses: per query, one response per member.
    scores: float [queries, members] task-grounded (or human) scores.
    margin: keep pairs whose score gap exceeds this.
    max_pairs: keep a random subset of this size (0: all).
    seed: of that subset.

  Returns:
    The pairs.
  """
  pairs = []
  for q, row, row_scores in zip(queries, responses, scores):
    for i in range(len(row)):
      for j in range(len(row)):
        if row_scores[i] - row_scores[j] > margin and row[i] != row[j]:
          pairs.append((q, row[i], row[j]))
  if max_pairs and len(pairs) > max_pairs:
    keep = np.random.default_rng(seed).permutation(len(pairs))[:max_pairs]
    pairs = [pairs[k] for k in sorted(keep)]
  return pairs


def train_reward_model(
    net: zooter_router.PooledHead,
    params: Any,
    text_encoder: zooter_router.TextEncoder,
    pairs: Sequence[tuple[str, str, str]],
    settings: zooter_router.FitSettings,
    *,
    batch_size: int = 8,
) -> tuple[RewardModel, list[float]]:
  """Bradley-Terry training on preference pairs.

  Args:
    net: a PooledHead with one output.
    params: its initial params.
    text_encoder: the encoder's tokenizer.
    pairs: (query, chosen, rejected) triples.
    settings: optimiser settings.
    batch_size: pairs per step.

  Returns:
    (the reward model, per-step losses).

  Raises:
    UserInputError: without pairs (every member scored alike).
  """
  if not pairs:
    raise UserInputError(
        'no preference pairs: every member scored alike on every query; use'
        ' more or harder reward-model queries'
    )
  queries = [p[0] for p in pairs]
  chosen = text_encoder.batch(queries, [p[1] for p in pairs])
  width = chosen['ids'].shape[1]
  rejected = text_encoder.batch(queries, [p[2] for p in pairs])
  if rejected['ids'].shape[1] != width:  # one width for both sides
    width = max(width, rejected['ids'].shape[1])
    chosen = text_encoder.batch(queries, [p[1] for p in pairs], width)
    rejected = text_encoder.batch(queries, [p[2] for p in pairs], width)
  arrays = {f'chosen_{k}': v for k, v in chosen.items()}
  arrays |= {f'rejected_{k}': v for k, v in rejected.items()}
  params, losses = zooter_router.fit(
      net,
      params,
      bradley_terry_loss,
      arrays,
      settings,
      batch_size=batch_size,
      text_prefixes=('chosen_', 'rejected_'),
  )
  return RewardModel(net, params, text_encoder), losses
