"""Sentence(-pair) classification and regression on the BERT family.

The network is `flaxllm.models.encoder.Encoder` with a sequence head of
`num_labels` outputs on the pooled [CLS] vector; the dataset decides the
problem (`flaxllm.data.glue.DatasetInfo`): cross-entropy over classes, or
mean squared error on one output for regression (STS-B), as Hugging Face's
sequence classifiers do. Batches come from `flaxllm.data.glue.PairCollator`:

  inputs        int32   [batch, length]  [CLS] a [SEP] (b [SEP]) ids
  input_mask    int32   [batch, length]  1 on real tokens
  token_types   int32   [batch, length]  0 for the first segment, 1 after
  labels        int32 / float32 [batch]  class index or regression target
  example_mask  float32 [batch]          1 on real rows

Metric sums: 'loss_sum' (NLL or squared error), 'correct_sum' (classification)
and 'denominator' (real rows). `predict` gives class ids or values; `evaluate`
scores them with the dataset's GLUE metrics (RTE accuracy, MRPC accuracy and
F1, CoLA Matthews correlation, STS-B Pearson and Spearman), each in its
natural range, plus 'score', their mean (GLUE's per-task score).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import errors
from flaxllm import perturb
from flaxllm.data import glue
from flaxllm.eval import classification_metrics
from flaxllm.models import encoder
from flaxllm.models import pretrained

Batch = dict[str, Any]


def _model_fields(
    config: ml_collections.ConfigDict, info: glue.DatasetInfo | None
) -> dict[str, Any]:
  """config.model without 'family', with the dataset's head filled in.

  Args:
    config: the run config.
    info: the dataset; None leaves num_labels and problem as configured.

  Returns:
    EncoderConfig fields.

  Raises:
    UserInputError: model.num_labels or model.problem contradicts the data.
  """
  fields = config.model.to_dict()
  fields.pop('family', None)
  if info is None:
    return fields
  configured_labels = fields.get('num_labels', 0)
  if configured_labels and configured_labels != info.num_labels:
    raise errors.UserInputError(
        f'model.num_labels={configured_labels} but dataset {info.name} has'
        f' {info.num_labels}; set model.num_labels={info.num_labels} or 0'
    )
  configured_problem = fields.get('problem', info.problem)
  if configured_problem != info.problem:
    raise errors.UserInputError(
        f'model.problem={configured_problem!r} but dataset {info.name} is'
        f" {info.problem}; set model.problem='{info.problem}'"
    )
  fields['num_labels'] = info.num_labels
  fields['problem'] = info.problem
  return fields


class ClassifyTask:
  """Trains and runs a BERT-style classifier or regressor.

  Attributes:
    model: the network.
    model_config: its hyperparameters.
    info: the dataset's labels and metrics.
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      *,
      vocab_size: int,
      pad_id: int,
      info: glue.DatasetInfo,
  ):
    """Builds the task from the experiment config.

    Args:
      config: reads `model` (EncoderConfig fields plus 'family'; num_labels
        0 or absent takes the dataset's), `task.label_smoothing` and
        `data.max_source_length` (the row length).
      vocab_size: the tokenizer's vocabulary size.
      pad_id: the padding id.
      info: the dataset.

    Raises:
      UserInputError: an invalid model config, a head that contradicts the
        data, or rows longer than model.max_positions.
    """
    self.info = info
    fields = _model_fields(config, info)
    if config.get('init_from'):
      # The checkpoint's architecture with a head for this dataset.
      self.model_config = pretrained.model_config(
          config.init_from, encoder.EncoderConfig, fields
      ).replace(num_labels=info.num_labels, problem=info.problem, pooler=True)
      self.model_config.validate()
    else:
      self.model_config = encoder.EncoderConfig.from_dict(
          fields, vocab_size=vocab_size, pad_id=pad_id
      )
    self.model = encoder.Encoder(self.model_config)
    self.label_smoothing = float(config.task.label_smoothing)
    self.max_length = config.data.max_source_length
    self.pad_id = pad_id
    if self.max_length > self.model_config.max_positions:
      raise errors.UserInputError(
          f'data.max_source_length={self.max_length} exceeds'
          f' model.max_positions={self.model_config.max_positions}'
      )

  def load_pretrained(self, spec: str, shardings: Any = None) -> Any:
    """`init_from` weights for the encoder, with a fresh head.

    The body (and the pooler, when the checkpoint has one) come from the
    Hugging Face BERT folder; the classifier (and a missing pooler) start as
    BERT initialises them: normal(0, 0.02) kernels, zero biases. A
    checkpoint's own classifier is not reused: fine-tuning on a new dataset
    wants a new head.

    Args:
      spec: 'hf:/folder' of a BERT checkpoint.
      shardings: the params' target shardings, or None.

    Returns:
      The unboxed params, placed in `shardings`.

    Raises:
      UserInputError: a spec that is not a BERT folder.
    """
    # pylint: disable=g-import-not-at-top
    from flaxllm.models import hf
    from flaxllm.models import hf_bert

    # pylint: enable=g-import-not-at-top
    kind, path = pretrained.parse(spec)
    if kind != 'hf':
      raise errors.UserInputError(
          f"init_from={spec!r}: task 'classify' starts from a BERT folder,"
          " 'hf:/path'"
      )
    state = hf.read_state(path)
    has_pooler = any(
        key.removeprefix('bert.') == 'pooler.dense.weight' for key in state
    )
    params = hf_bert.params_from_hf(
        state, self.model_config.replace(num_labels=0, pooler=has_pooler)
    )
    shapes = nn.unbox(
        jax.eval_shape(self.init, jax.random.key(0), self.dummy_batch(1))
    )
    rng = np.random.default_rng(0)

    def fresh(leaf_path, leaf):
      if jax.tree_util.keystr(leaf_path).endswith("['kernel']"):
        values = rng.normal(0.0, 0.02, leaf.shape)
      else:
        values = np.zeros(leaf.shape)
      return values.astype(leaf.dtype)

    for name in ('pooler', 'classifier'):
      if name not in params:
        params[name] = jax.tree_util.tree_map_with_path(fresh, shapes[name])
    return hf.place(params, shardings)

  @property
  def regression(self) -> bool:
    return self.info.problem == 'regression'

  def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    """A batch of the configured maximum shape, for init and eval_shape.

    Args:
      batch_size: number of rows.

    Returns:
      A batch dict (see the module docstring).
    """
    shape = (batch_size, self.max_length)
    label_dtype = np.float32 if self.regression else np.int32
    return {
        'inputs': np.full(shape, self.pad_id, np.int32),
        'input_mask': np.ones(shape, np.int32),
        'token_types': np.zeros(shape, np.int32),
        'labels': np.zeros((batch_size,), label_dtype),
        'example_mask': np.ones((batch_size,), np.float32),
    }

  def init(self, rng: jax.Array, batch: Batch) -> Any:
    """Initialises the parameters (boxed in nn.LogicallyPartitioned).

    Args:
      rng: PRNG key.
      batch: a batch; only its shapes matter.

    Returns:
      The params tree.
    """
    variables = self.model.init(
        {'params': rng},
        batch['inputs'],
        batch['input_mask'],
        batch['token_types'],
    )
    return variables['params']

  def _logits(
      self, params: Any, batch: Batch, rng: jax.Array | None
  ) -> jax.Array:
    """The head's outputs; dropout on when `rng` is given.

    Returns:
      float32 [batch, num_labels].
    """
    outputs = self.model.apply(
        {'params': params},
        batch['inputs'],
        batch['input_mask'],
        batch['token_types'],
        deterministic=rng is None,
        rngs=None if rng is None else perturb.training_rngs(rng),
    )
    return outputs['logits']

  def _sums(
      self, logits: jax.Array, batch: Batch
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The training-loss sum and the metric sums over real rows.

    Args:
      logits: float32 [batch, num_labels].
      batch: the batch the logits came from.

    Returns:
      (loss sum, {'loss_sum', 'denominator'} plus 'correct_sum' when
      classifying).
    """
    weights = jnp.asarray(batch['example_mask'], jnp.float32)  # [batch]

    def weighted_sum(values):
      # `where` keeps non-finite values of padding rows out of the sums.
      return jnp.sum(jnp.where(weights > 0, values * weights, 0.0))

    if self.regression:
      labels = jnp.asarray(batch['labels'], jnp.float32)  # [batch]
      squared_error = jnp.square(logits[:, 0] - labels)  # [batch]
      loss_sum = weighted_sum(squared_error)
      return loss_sum, {'loss_sum': loss_sum, 'denominator': jnp.sum(weights)}
    labels = jnp.asarray(batch['labels'], jnp.int32)  # [batch]
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # [batch, labels]
    nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    smoothed = (1.0 - self.label_smoothing) * nll - (
        self.label_smoothing * jnp.mean(log_probs, axis=-1)
    )  # [batch]
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    metrics = {
        'loss_sum': weighted_sum(nll),
        'correct_sum': weighted_sum(correct),
        'denominator': jnp.sum(weights),
    }
    return weighted_sum(smoothed), metrics

  def loss_fn(
      self, params: Any, batch: Batch, rng: jax.Array
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Training loss with dropout.

    Args:
      params: unboxed params.
      batch: a training batch.
      rng: PRNG key for dropout (and the `flaxllm.perturb` noise).

    Returns:
      (the mean (label-smoothed) cross-entropy, or the mean squared error,
      over real rows; the metric sums).
    """
    loss_sum, metrics = self._sums(self._logits(params, batch, rng), batch)
    return loss_sum / jnp.maximum(metrics['denominator'], 1.0), metrics

  def eval_metrics(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
    """The metric sums of a deterministic forward pass."""
    return self._sums(self._logits(params, batch, None), batch)[1]

  def predict(
      self, params: Any, batch: Batch, rng: jax.Array | None = None
  ) -> jax.Array:
    """Class ids (int32 [batch]) or regression values (float32 [batch])."""
    del rng  # deterministic
    logits = self._logits(params, batch, None)  # [batch, labels]
    if self.regression:
      return logits[:, 0]
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)

  def decode_outputs(self, rows: np.ndarray) -> list:
    """Predict rows of real examples -> Python ints or floats."""
    rows = np.asarray(rows)
    return (
        [float(v) for v in rows] if self.regression else [int(v) for v in rows]
    )

  def evaluate(
      self, predictions: list, examples: list[dict]
  ) -> dict[str, float]:
    """Scores predictions with the dataset's metrics.

    Args:
      predictions: from `decode_outputs`, one per example.
      examples: the examples predicted, in order, each with its 'label'.

    Returns:
      The dataset's metrics (e.g. {'accuracy', 'f1'} for MRPC) in their
      natural ranges, and 'score', their mean.
    """
    references = [example['label'] for example in examples]
    scores = classification_metrics.compute(
        self.info.metrics, predictions, references
    )
    scores['score'] = float(np.mean(list(scores.values())))
    return scores


# -----------------------------------------------------------------------------
# Registry hooks (see flaxllm.tasks): config keys, validation, construction.
# -----------------------------------------------------------------------------


def task_defaults() -> ml_collections.ConfigDict:
  """The keys `config.task` takes for this task, with their defaults."""
  return ml_collections.ConfigDict({'name': 'classify', 'label_smoothing': 0.0})


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates config.task and config.model without loading data."""
  if not 0.0 <= config.task.get('label_smoothing', 0.0) < 1.0:
    raise errors.UserInputError(
        'config key task.label_smoothing must be in [0, 1)'
    )
  family = config.model.get('family')
  if family != 'encoder':
    raise errors.UserInputError(
        f"config key model.family={family!r} does not fit task 'classify';"
        " use 'encoder'"
    )
  length = config.data.max_source_length
  if config.get('init_from'):
    # The checkpoint fixes the architecture; checked when it is loaded.
    if length < 4:
      raise errors.UserInputError(
          f'data.max_source_length={length} must be >= 4'
      )
    return
  model_config = encoder.EncoderConfig.from_dict(
      _model_fields(config, None),
      vocab_size=config.tokenizer.vocab_size,
      pad_id=0,
  )
  model_config.validate()
  if not 4 <= length <= model_config.max_positions:
    raise errors.UserInputError(
        f'data.max_source_length={length} must be in [4,'
        f' model.max_positions={model_config.max_positions}]'
    )


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
) -> tuple[ClassifyTask, glue.ClassificationData]:
  """Loads the data (training the tokenizer if needed) and builds the task.

  Args:
    config: the run config.
    workdir: where a trained tokenizer is saved (by process 0 only).
    process_index: this process.
    process_count: processes in the job.

  Returns:
    (task, data bundle).
  """
  del process_count  # Every process loads the same examples; iterators split.
  data = glue.ClassificationData.from_config(
      config, workdir, save_tokenizer=process_index == 0
  )
  task = ClassifyTask(
      config,
      vocab_size=data.tokenizer.vocab_size,
      pad_id=data.tokenizer.pad_id,
      info=data.info,
  )
  return task, data
