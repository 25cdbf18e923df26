"""Sequence-to-sequence task: teacher-forced cross-entropy, greedy or beam search.

The trainer drives a task through `init`, `loss_fn`, `eval_metrics`, `predict`
and `evaluate`; this one wraps `EncoderDecoder`. Batches hold:

  inputs          int32   [batch, src]  source tokens
  input_mask      int32   [batch, src]  1 on real source tokens
  decoder_inputs  int32   [batch, tgt]  decoder_start + targets shifted right
  targets         int32   [batch, tgt]  target tokens, eos included
  target_mask     float32 [batch, tgt]  1 on real target tokens
  example_mask    float32 [batch]       1 on real rows, 0 on padding rows

Metrics are sums ('loss_sum', 'correct_sum', 'denominator') so the trainer can
add them over microbatches and hosts before dividing. `predict` decodes
greedily, or with `flaxllm.decoding.beam_search` when config.predict.beam_size
> 1 (score log p / len ** predict.length_penalty), up to
predict.max_decode_len tokens (0: data.max_target_length); `evaluate` gives
corpus BLEU and ROUGE-1/2/L.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import errors
from flaxllm import perturb
from flaxllm.decoding import beam_search as beam_search_lib
from flaxllm.decoding import greedy
from flaxllm.decoding import model_steps
from flaxllm.eval import text_metrics
from flaxllm.models import encoder_decoder
from flaxllm.models import pretrained

Batch = dict[str, Any]


def build_model_config(
    config: ml_collections.ConfigDict, *, vocab_size: int, pad_id: int
) -> encoder_decoder.EncoderDecoderConfig:
  """config.model (or config.init_from's checkpoint) as the model config."""
  return pretrained.run_model_config(
      config, encoder_decoder.EncoderDecoderConfig, vocab_size=vocab_size, pad_id=pad_id
  )


def decoding_options(
    config: ml_collections.ConfigDict,
) -> tuple[int, float, int]:
  """(beam size, length penalty, max decode length) of config.predict.

  A config without these keys decodes greedily up to data.max_target_length.

  Raises:
    UserInputError: a beam size below 1 or a negative max_decode_len.
  """
  predict = config.get('predict') or {}
  beam_size = int(predict.get('beam_size', 1))
  length_penalty = float(predict.get('length_penalty', 1.0))
  max_decode_len = int(predict.get('max_decode_len', 0))
  if beam_size < 1:
    raise errors.UserInputError(
        f'config key predict.beam_size={beam_size} must be >= 1 (1: greedy)'
    )
  if max_decode_len < 0:
    raise errors.UserInputError(
        f'config key predict.max_decode_len={max_decode_len} must be >= 0'
        ' (0: data.max_target_length)'
    )
  return (
      beam_size,
      length_penalty,
      max_decode_len or int(config.data.max_target_length),
  )


class Seq2SeqTask:
  """Trains and runs a BART-style encoder-decoder on (source, target) pairs.

  Attributes:
    model: the network.
    model_config: its hyperparameters.
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      *,
      vocab_size: int,
      pad_id: int,
      eos_id: int,
      decoder_start_id: int,
  ):
    """Builds the task from the experiment config.

    Args:
      config: reads `model` (EncoderDecoderConfig fields, plus 'family'),
        `task.label_smoothing`, `data.max_source_length`,
        `data.max_target_length` and, when present, `predict.beam_size`,
        `predict.length_penalty` and `predict.max_decode_len`.
      vocab_size: the tokenizer's vocabulary size.
      pad_id: padding token id.
      eos_id: end-of-sequence token id (stops generation).
      decoder_start_id: first decoder input token.

    Raises:
      UserInputError: on an invalid model config, a beam size below 1 or
        lengths beyond model.max_positions.
    """
    self.model_config = build_model_config(
        config, vocab_size=vocab_size, pad_id=pad_id
    )
    self.model = encoder_decoder.EncoderDecoder(self.model_config)
    self.label_smoothing = float(config.task.label_smoothing)
    self.max_source_length = config.data.max_source_length
    self.max_target_length = config.data.max_target_length
    self.pad_id = pad_id
    self.eos_id = eos_id
    self.decoder_start_id = decoder_start_id
    self.beam_size, self.length_penalty, self.max_decode_length = (
        decoding_options(config)
    )
    for key, length in (
        ('data.max_source_length', self.max_source_length),
        ('data.max_target_length', self.max_target_length),
        ('predict.max_decode_len', self.max_decode_length),
    ):
      if length > self.model_config.max_positions:
        raise errors.UserInputError(
            f'{key}={length} exceeds'
            f' model.max_positions={self.model_config.max_positions}'
        )

  def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    """A batch of the configured maximum shapes, for init and eval_shape.

    Args:
      batch_size: number of rows.

    Returns:
      A batch dict (see the module docstring) of pad tokens and full masks.
    """
    source_shape = (batch_size, self.max_source_length)
    target_shape = (batch_size, self.max_target_length)
    return {
        'inputs': np.full(source_shape, self.pad_id, np.int32),
        'input_mask': np.ones(source_shape, np.int32),
        'decoder_inputs': np.full(target_shape, self.pad_id, np.int32),
        'targets': np.full(target_shape, self.pad_id, np.int32),
        'target_mask': np.ones(target_shape, np.float32),
        'example_mask': np.ones((batch_size,), np.float32),
    }

  def init(self, rng: jax.Array, batch: Batch) -> Any:
    """Initialises the parameters.

    Args:
      rng: PRNG key.
      batch: a batch (only its shapes matter), e.g. `dummy_batch(1)`.

    Returns:
      The params tree, still boxed in `nn.LogicallyPartitioned`.
    """
    variables = self.model.init(
        {'params': rng},
        batch['inputs'],
        batch['input_mask'],
        batch['decoder_inputs'],
    )
    return variables['params']

  def loss_fn(
      self, params: Any, batch: Batch, rng: jax.Array
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Training loss with dropout.

    Args:
      params: unboxed params.
      batch: a training batch.
      rng: PRNG key for dropout (and the `flaxllm.perturb` noise).

    Returns:
      (loss, metrics): the mean (label-smoothed) token cross-entropy over real
      target tokens of real rows, and the float32 sums 'loss_sum' (unsmoothed
      NLL), 'correct_sum' and 'denominator'.
    """
    logits = self.model.apply(
        {'params': params},
        batch['inputs'],
        batch['input_mask'],
        batch['decoder_inputs'],
        deterministic=False,
        rngs=perturb.training_rngs(rng),
    )
    smoothed_sum, metrics = self._token_sums(logits, batch)
    loss = smoothed_sum / jnp.maximum(metrics['denominator'], 1.0)
    return loss, metrics

  def eval_metrics(self, params: Any, batch: Batch) -> dict[str, jax.Array]:
    """The sums of `loss_fn`'s metrics from a deterministic forward pass.

    Args:
      params: unboxed params.
      batch: an evaluation batch.

    Returns:
      float32 scalars 'loss_sum', 'correct_sum' and 'denominator'.
    """
    logits = self.model.apply(
        {'params': params},
        batch['inputs'],
        batch['input_mask'],
        batch['decoder_inputs'],
    )
    _, metrics = self._token_sums(logits, batch)
    return metrics

  def _token_sums(
      self, logits: jax.Array, batch: Batch
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Sums the per-token losses over real target tokens of real rows.

    Args:
      logits: float32 [batch, tgt, vocab].
      batch: the batch the logits came from.

    Returns:
      (label-smoothed loss sum, metrics dict of float32 sums).
    """
    targets = batch['targets']  # [batch, tgt]
    weights = (
        jnp.asarray(batch['target_mask'], jnp.float32)
        * jnp.asarray(batch['example_mask'], jnp.float32)[:, None]
    )  # [batch, tgt]
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # [batch, tgt, vocab]
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    # Label smoothing spreads `label_smoothing` of the target mass uniformly
    # over the vocabulary (the true class included), as fairseq does.
    smoothed = (1.0 - self.label_smoothing) * nll - (
        self.label_smoothing * jnp.mean(log_probs, axis=-1)
    )  # [batch, tgt]
    correct = jnp.argmax(logits, axis=-1) == targets  # [batch, tgt]

    def weighted_sum(values):
      # `where` keeps non-finite values at padding out of the sums.
      return jnp.sum(jnp.where(weights > 0, values * weights, 0.0))

    metrics = {
        'loss_sum': weighted_sum(nll),
        'correct_sum': weighted_sum(correct.astype(jnp.float32)),
        'denominator': jnp.sum(weights),
    }
    return weighted_sum(smoothed), metrics

  def _prefill(self, params: Any, batch: Batch) -> tuple[Any, jax.Array]:
    """Encodes the source once; the decoding state and the start tokens."""
    return model_steps.encoder_decoder_prefill(
        self.model,
        params,
        jnp.asarray(batch['inputs']),  # [batch, src]
        jnp.asarray(batch['input_mask']),  # [batch, src]
        cache_length=self.max_decode_length,
        decoder_start_id=self.decoder_start_id,
    )

  def beam_search(
      self,
      params: Any,
      batch: Batch,
      *,
      num_beams: int | None = None,
      length_penalty: float | None = None,
  ) -> beam_search_lib.BeamSearchOutput:
    """Every row's `num_beams` best hypotheses and their scores.

    Args:
      params: params (boxed or not).
      batch: needs 'inputs' and 'input_mask'.
      num_beams: hypotheses per row; None for `predict.beam_size`.
      length_penalty: alpha of log p / len ** alpha; None for
        `predict.length_penalty`.

    Returns:
      sequences int32 [batch, beams, max_decode_length] (best first, decoder
      start not included, `pad_id` after eos) and their float32 [batch,
      beams] length-penalised log-probabilities.
    """
    state, start_ids = self._prefill(params, batch)
    return beam_search_lib.beam_search(
        model_steps.encoder_decoder_tokens_to_logits(self.model),
        params,
        state,
        start_ids,
        num_beams=self.beam_size if num_beams is None else num_beams,
        max_length=self.max_decode_length,
        eos_id=self.eos_id,
        pad_id=self.pad_id,
        length_penalty=(
            self.length_penalty if length_penalty is None else length_penalty
        ),
    )

  def predict(
      self, params: Any, batch: Batch, rng: jax.Array | None = None
  ) -> jax.Array:
    """Greedy (beam_size 1) or beam-search generation with the KV cache.

    Args:
      params: params (boxed or not).
      batch: needs 'inputs' and 'input_mask'.
      rng: unused; both searches are deterministic.

    Returns:
      int32 [batch, max_decode_length] generated ids (decoder start not
      included), `pad_id` after each row's eos: the greedy output, or the
      best hypothesis of the beam.
    """
    del rng
    if self.beam_size > 1:
      return self.beam_search(params, batch).sequences[:, 0]
    state, start_ids = self._prefill(params, batch)
    return greedy.greedy_decode(
        model_steps.encoder_decoder_tokens_to_logits(self.model),
        params,
        state,
        start_ids,
        max_length=self.max_decode_length,
        eos_id=self.eos_id,
        pad_id=self.pad_id,
    )

  def evaluate(
      self, predictions: list[str], examples: list[dict]
  ) -> dict[str, float]:
    """Scores decoded predictions against the examples' targets.

    Args:
      predictions: detokenized model outputs.
      examples: the examples predicted, in order, each with its 'tgt'.

    Returns:
      {'bleu': sacreBLEU corpus BLEU, 'rouge1', 'rouge2', 'rougeL': mean
      ROUGE-N / ROUGE-L F1 x 100}.
    """
    references = [example['tgt'] for example in examples]
    return {
        'bleu': text_metrics.corpus_bleu(predictions, references),
        **text_metrics.rouge(predictions, references),
    }


# -----------------------------------------------------------------------------
# Registry hooks (see flaxllm.tasks): config keys, validation, construction.
# -----------------------------------------------------------------------------


def task_defaults() -> ml_collections.ConfigDict:
  """The keys `config.task` takes for this task, with their defaults."""
  return ml_collections.ConfigDict({'name': 'seq2seq', 'label_smoothing': 0.0})


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates config.task and config.model without building anything."""
  if not 0.0 <= config.task.get('label_smoothing', 0.0) < 1.0:
    raise errors.UserInputError(
        'config key task.label_smoothing must be in [0, 1)'
    )
  family = config.model.get('family')
  if family != 'encoder_decoder':
    raise errors.UserInputError(
        f"config key model.family={family!r} does not fit task 'seq2seq'; use"
        " 'encoder_decoder'"
    )
  _, _, max_decode_length = decoding_options(config)
  if config.get('init_from'):
    return  # The checkpoint fixes the architecture; checked when loaded.
  model_config = build_model_config(
      config, vocab_size=config.tokenizer.vocab_size, pad_id=1
  )
  for key, length in (
      ('data.max_source_length', config.data.max_source_length),
      ('data.max_target_length', config.data.max_target_length),
      ('predict.max_decode_len', max_decode_length),
  ):
    if length > model_config.max_positions:
      raise errors.UserInputError(
          f'{key}={length} exceeds model.max_positions='
          f'{model_config.max_positions}; raise model.max_positions or lower'
          f' {key}'
      )


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
) -> tuple[Seq2SeqTask, Any]:
  """Loads the data (training the tokenizer if needed) and builds the task.

  Args:
    config: the run config.
    workdir: where the tokenizer is saved (by process 0 only).
    process_index: this process.
    process_count: processes in the job.

  Returns:
    (task, data bundle).
  """
  del process_count  # Every process loads the same examples; iterators split.
  from flaxllm.data import pipeline  # pylint: disable=g-import-not-at-top

  data = pipeline.Seq2SeqData.from_config(
      config, workdir, save_tokenizer=process_index == 0
  )
  tokenizer = data.tokenizer
  task = Seq2SeqTask(
      config,
      vocab_size=tokenizer.vocab_size,
      pad_id=tokenizer.pad_id,
      eos_id=tokenizer.eos_id,
      decoder_start_id=tokenizer.eos_id,
  )
  return task, data
