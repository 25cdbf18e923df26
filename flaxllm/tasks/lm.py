"""Causal language modelling: next-token loss on packed documents, generation.

Runs the LLaMA-family `Decoder` on the batches of `flaxllm.data.packing`:

  inputs, targets       int32   [batch, length]  a row's tokens, shifted
  target_mask           float32 [batch, length]  loss weight per target
  segment_ids           int32   [batch, length]  document of each token
  positions             int32   [batch, length]  position in its document
  example_mask          float32 [batch]          1 on real rows
  prompt, prompt_length int32   [batch, P], [batch]  (evaluation only)

Packed documents attend only within themselves, so packing changes no
document's loss. With prompts (data.source_field set), `predict` continues
each prompt greedily with the KV cache and `evaluate` scores the continuations
against the targets, as seq2seq does.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import errors
from flaxllm import perturb
from flaxllm.data import chat_templates
from flaxllm.data import packing
from flaxllm.eval import ability_scores
from flaxllm.eval import text_metrics
from flaxllm.models import decoder
from flaxllm.models import pretrained

Batch = dict[str, Any]


def build_model_config(
    config: ml_collections.ConfigDict, *, vocab_size: int, pad_id: int
) -> decoder.DecoderConfig:
  """config.model (or config.init_from's checkpoint) as the model config."""
  return pretrained.run_model_config(
      config, decoder.DecoderConfig, vocab_size=vocab_size, pad_id=pad_id
  )


class LMTask:
  """Trains a decoder-only LM on (optionally packed) documents.

  Attributes:
    model: the network.
    model_config: its hyperparameters.
    length: tokens per row.
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      *,
      vocab_size: int,
      pad_id: int,
      eos_id: int,
  ):
    """Builds the task.

    Args:
      config: reads `model` (or `init_from`), `data.max_source_length`
        (prompt budget), `data.max_target_length` (continuation budget) and
        `data.source_field` (no prompts: no generation).
      vocab_size: the tokenizer's vocabulary size.
      pad_id: padding token id.
      eos_id: end-of-sequence id (stops generation).
    """
    self.model_config = build_model_config(
        config, vocab_size=vocab_size, pad_id=pad_id
    )
    self.model = decoder.Decoder(self.model_config)
    self.max_prompt_length = config.data.max_source_length
    self.max_new_tokens = config.data.max_target_length
    self.length = self.max_prompt_length + self.max_new_tokens
    self.pad_id = pad_id
    self.eos_id = eos_id
    if self.length > self.model_config.max_positions:
      raise errors.UserInputError(
          'rows of data.max_source_length + data.max_target_length ='
          f' {self.length} tokens exceed model.max_positions='
          f'{self.model_config.max_positions}'
      )
    if not config.data.source_field:
      self.predict = None  # No prompts to continue: loss metrics only.

  def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    """A batch of the configured row length, for init and eval_shape."""
    shape = (batch_size, self.length)
    return {
        'inputs': np.full(shape, self.pad_id, np.int32),
        'targets': np.full(shape, self.pad_id, np.int32),
        'target_mask': np.ones(shape, np.float32),
        'segment_ids': np.ones(shape, np.int32),
        'positions': (
            np.broadcast_to(
                np.arange(self.length, dtype=np.int32), shape
            ).copy()
        ),
        'example_mask': np.ones((batch_size,), np.float32),
    }

  def init(self, rng: jax.Array, batch: Batch) -> Any:
    """Boxed params from the shapes of `batch`."""
    return self.model.init(
        {'params': rng},
        batch['inputs'],
        positions=batch['positions'],
        segment_ids=batch['segment_ids'],
    )['params']

  def _logits(
      self, params: Any, batch: Batch, rng: jax.Array | None
  ) -> jax.Array:
    """Logits; a training pass (with `flaxllm.perturb` noise) given `rng`."""
    return self.model.apply(
        {'params': params},
        batch['inputs'],
        positions=batch['positions'],
        segment_ids=batch['segment_ids'],
        rngs=None if rng is None else perturb.training_rngs(rng),
    )  # [batch, length, vocab]

  def token_losses(
      self, params: Any, batch: Batch, rng: jax.Array | None = None
  ) -> tuple[jax.Array, ...]:
    """Per-target NLL, correctness and weight, each float32 [batch, length].

    Args:
      params: params.
      batch: a batch.
      rng: None for evaluation; a training pass's PRNG key otherwise.

    Returns:
      (nll, correct, weights).
    """
    logits = self._logits(params, batch, rng)
    targets = batch['targets']
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    weights = (
        jnp.asarray(batch['target_mask'], jnp.float32)
        * jnp.asarray(batch['example_mask'], jnp.float32)[:, None]
    )
    return nll, correct, weights

  def _metric_sums(
      self, params: Any, batch: Batch, rng: jax.Array | None
  ) -> dict[str, jax.Array]:
    """float32 sums 'loss_sum', 'correct_sum' and 'denominator'."""
    nll, correct, weights = self.token_losses(params, batch, rng)

    def weighted_sum(values):
      return jnp.sum(jnp.where(weights > 0, values * weights, 0.0))

    return {
        'loss_sum': weighted_sum(nll),
        'correct_sum': weighted_sum(correct),
        'denominator': jnp.sum(weights),
    }

  def eval_metrics(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
    """float32 sums 'loss_sum', 'correct_sum' and 'denominator'."""
    return self._metric_sums(params, batch, None)

  def loss_fn(
      self, params: Any, batch: Batch, rng: jax.Array
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean next-token NLL over weighted targets, with the metric sums."""
    # The LLaMA family has no dropout; rng keys the `flaxllm.perturb` noise.
    metrics = self._metric_sums(params, batch, rng)
    return metrics['loss_sum'] / jnp.maximum(metrics['denominator'], 1.0), (
        metrics
    )

  def predict(
      self, params: Any, batch: Batch, rng: jax.Array | None = None
  ) -> jax.Array:
    """Greedy continuations of the batch's prompts.

    All rows step together one token at a time through the KV cache: while a
    row is inside its prompt it is fed its prompt tokens, afterwards its own
    argmax, so prompts of different lengths need no padding inside the cache.

    Args:
      params: params.
      batch: needs 'prompt' [batch, P] and 'prompt_length' [batch] (>= 1).
      rng: unused; greedy decoding is deterministic.

    Returns:
      int32 [batch, max_new_tokens]: each row's continuation, eos included,
      `pad_id` after it.
    """
    del rng
    prompt = jnp.asarray(batch['prompt'], jnp.int32)  # [batch, P]
    prompt_length = jnp.asarray(batch['prompt_length'], jnp.int32)  # [batch]
    batch_size, max_prompt = prompt.shape
    total = max_prompt + self.max_new_tokens
    _, variables = self.model.apply(
        {'params': params},
        jnp.zeros((batch_size, total), jnp.int32),
        decode=True,
        mutable=['cache'],
    )
    rows = jnp.arange(batch_size)

    def step(carry, t):
      cache, token, done, outputs = carry
      logits, updated = self.model.apply(
          {'params': params, 'cache': cache},
          token[:, None],
          decode=True,
          mutable=['cache'],
      )
      chosen = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)  # [batch]
      in_prompt = t + 1 < prompt_length  # [batch]
      forced = prompt[:, jnp.minimum(t + 1, max_prompt - 1)]
      index = t + 1 - prompt_length  # continuation index of `chosen`
      writes = (~in_prompt) & (index < self.max_new_tokens)
      value = jnp.where(done, self.pad_id, chosen)
      safe_index = jnp.clip(index, 0, self.max_new_tokens - 1)
      outputs = outputs.at[rows, safe_index].set(
          jnp.where(writes, value, outputs[rows, safe_index])
      )
      done = done | (writes & (chosen == self.eos_id))
      next_token = jnp.where(in_prompt, forced, chosen)
      return (updated['cache'], next_token, done, outputs), None

    init = (
        variables['cache'],
        prompt[:, 0],
        jnp.zeros((batch_size,), jnp.bool_),
        jnp.full((batch_size, self.max_new_tokens), self.pad_id, jnp.int32),
    )
    (_, _, _, outputs), _ = jax.lax.scan(step, init, jnp.arange(total - 1))
    return outputs

  def evaluate(
      self, predictions: list[str], examples: list[dict]
  ) -> dict[str, float]:
    """Continuation scores against the examples' targets.

    Examples with a 'kind' (math, code, general) are scored by their
    ability's checker (`flaxllm.eval.ability_scores`); the rest by BLEU and
    ROUGE-L.
    """
    if any('kind' in example for example in examples):
      return ability_scores.score_by_kind(predictions, examples)
    references = [example['tgt'] for example in examples]
    return {
        'bleu': text_metrics.corpus_bleu(predictions, references),
        'rougeL': text_metrics.rouge_l(predictions, references),
    }


# -----------------------------------------------------------------------------
# Registry hooks (see flaxllm.tasks).
# -----------------------------------------------------------------------------


def task_defaults() -> ml_collections.ConfigDict:
  """The keys `config.task` takes for this task, with their defaults."""
  return ml_collections.ConfigDict({
      'name': 'lm',
      # Pack several documents per row in training (segment ids keep them
      # apart); False puts one document per row.
      'pack': True,
      # 'all': every token is a target; 'target': only the response + eos.
      'loss_on': 'all',
      # Text between a prompt and its response (unused with a template).
      'separator': '\n',
      # Prompt format: 'none', 'alpaca', 'tokenizer' (its chat template) or
      # 'auto' (the tokenizer's when it has one, else Alpaca's).
      'chat_template': 'none',
  })


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates config.task and config.model without building anything."""
  template = config.task.get('chat_template', 'none')
  if template not in chat_templates.TEMPLATES:
    raise errors.UserInputError(
        f'config key task.chat_template={template!r}; use one of'
        f' {chat_templates.TEMPLATES}'
    )
  if config.task.get('loss_on', 'all') not in packing.LOSS_ON:
    raise errors.UserInputError(
        f'config key task.loss_on={config.task.loss_on!r}; use one of'
        f' {packing.LOSS_ON}'
    )
  family = config.model.get('family')
  if family != 'decoder':
    raise errors.UserInputError(
        f"config key model.family={family!r} does not fit task 'lm'; use"
        " 'decoder'"
    )
  if config.get('init_from'):
    return  # The checkpoint fixes the architecture; checked when loaded.
  model_config = build_model_config(
      config, vocab_size=config.tokenizer.vocab_size, pad_id=1
  )
  length = config.data.max_source_length + config.data.max_target_length
  if length > model_config.max_positions:
    raise errors.UserInputError(
        f'rows of data.max_source_length + data.max_target_length = {length}'
        f' exceed model.max_positions={model_config.max_positions}; raise'
        ' model.max_positions or shorten the data lengths'
    )


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
) -> tuple[LMTask, Any]:
  """Loads the data (training the tokenizer if needed) and builds the task."""
  del process_count
  from flaxllm.data import lm_data  # pylint: disable=g-import-not-at-top

  data = lm_data.LMData.from_config(
      config, workdir, save_tokenizer=process_index == 0
  )
  task = LMTask(
      config,
      vocab_size=data.tokenizer.vocab_size,
      pad_id=data.tokenizer.pad_id,
      eos_id=data.tokenizer.eos_id,
  )
  return task, data
