"""SeqDiffuSeq task: continuous diffusion over word embeddings for seq2seq.

Wraps `diffusion.denoiser.SeqDiffuSeqDenoiser` on `pipeline.Seq2SeqData`
batches (see `tasks.seq2seq` for the batch keys). The diffused sequence is
BOS + the target tokens + EOS, padded: length L = data.max_target_length + 1,
with the BOS at position 0 as in the authors' data, whose schedule the
adaptive update leaves alone.

The task is stateful. Its task state, kept in the train state and saved in
checkpoints, is a plain dict of float32 arrays:

  alphas_cumprod  [T, L]      the noise schedule ᾱ (every other coefficient
                              is derived from it inside the jitted step)
  loss_sums       [T/K, L]    H, the adaptive schedule's loss sums per
  loss_counts     [T/K, L]    (time bin, position), and N, their counts

`loss_fn` returns the batch's (bin, position) sums as 'observations';
`update_task_state` adds them to H and N and, with task.adaptive_schedule,
re-fits ᾱ every task.adaptive_every steps from 3 x that on.

`predict` samples with task.sampler over task.sampling_steps steps and
returns token ids [batch, max_target_length] (BOS dropped, pad after the
first EOS); with task.mbr_candidates = n > 1 it returns [batch, n,
max_target_length] and `decode_outputs` picks one text per row by MBR.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import errors
from flaxllm import perturb
from flaxllm.diffusion import denoiser
from flaxllm.diffusion import losses
from flaxllm.diffusion import sampler as sampler_lib
from flaxllm.diffusion import schedules
from flaxllm.eval import diversity
from flaxllm.eval import text_metrics

Batch = dict[str, Any]
TaskState = dict[str, jax.Array]
MODEL_FAMILY = 'diffusion'


class MbrPrediction(str):
  """A text chosen by MBR that also carries every candidate it beat.

  It is a `str`, so it prints, compares and serialises as the chosen text;
  `evaluate` reads `candidates` for self-BLEU.
  """

  candidates: tuple[str, ...]

  def __new__(cls, text: str, candidates: tuple[str, ...] = ()):
    prediction = super().__new__(cls, text)
    prediction.candidates = tuple(candidates)
    return prediction


def _model_config(
    config: ml_collections.ConfigDict, vocab_size: int, pad_id: int
) -> denoiser.DiffusionModelConfig:
  """Builds config.model into a validated `DiffusionModelConfig`."""
  family = config.model.get('family')
  if family != MODEL_FAMILY:
    raise errors.UserInputError(
        f'config key model.family={family!r} does not fit task'
        f" 'diffusion'; use {MODEL_FAMILY!r}"
    )
  fields = config.model.to_dict()
  fields.pop('family')
  return denoiser.DiffusionModelConfig.from_dict(
      fields, vocab_size=vocab_size, pad_id=pad_id
  )


class DiffusionTask:
  """Trains and samples the SeqDiffuSeq denoiser on (source, target) pairs.

  Attributes:
    model: the network.
    model_config: its hyperparameters.
    length: L, the diffused sequence length (max_target_length + 1).
    num_bins: time bins of the adaptive schedule's statistics.
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      *,
      vocab_size: int,
      pad_id: int,
      eos_id: int,
      bos_id: int,
      tokenizer: Any = None,
  ):
    """Builds the task from the experiment config.

    Args:
      config: reads `model` (DiffusionModelConfig fields plus 'family'),
        `task` (see `task_defaults`), `data.max_source_length`,
        `data.max_target_length` and `seed`.
      vocab_size: the tokenizer's vocabulary size.
      pad_id: padding token id.
      eos_id: end-of-sequence token id.
      bos_id: the id at position 0 of every diffused sequence.
      tokenizer: decodes predictions (`decode_outputs`); may be None when
        only training.

    Raises:
      UserInputError: on an invalid config.
    """
    check_config(config, vocab_size=vocab_size)
    task = _task_settings(config)
    self.model_config = _model_config(config, vocab_size, pad_id)
    self.diffusion_steps = int(task.diffusion_steps)
    self.model = denoiser.SeqDiffuSeqDenoiser(
        self.model_config, diffusion_steps=self.diffusion_steps
    )
    self.sampling_steps = int(task.sampling_steps)
    self.schedule_name = task.schedule
    self.adaptive_schedule = bool(task.adaptive_schedule)
    self.adaptive_every = int(task.adaptive_every)
    self.bin_steps = int(task.bin_steps)
    self.self_condition_prob = (
        float(task.self_condition_prob) if task.self_conditioning else 0.0
    )
    self.self_conditioning = bool(task.self_conditioning)
    self.sampler = task.sampler
    self.ddim_eta = float(task.ddim_eta)
    self.mbr_candidates = int(task.mbr_candidates)
    self.log_variance_quirk = bool(task.log_variance_quirk)
    self.max_source_length = config.data.max_source_length
    self.max_target_length = config.data.max_target_length
    self.length = self.max_target_length + 1
    self.num_bins = self.diffusion_steps // self.bin_steps
    self.seed = int(config.get('seed', 0))
    self.pad_id, self.eos_id, self.bos_id = pad_id, eos_id, bos_id
    self.tokenizer = tokenizer

  # ---------------------------------------------------------------------------
  # Shapes, parameters and task state.
  # ---------------------------------------------------------------------------

  def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    """A batch of the configured maximum shapes, for init and eval_shape.

    Args:
      batch_size: number of rows.

    Returns:
      The keys of a `Seq2SeqData` batch: pad tokens, full masks.
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
    batch_size = batch['inputs'].shape[0]
    latents = jnp.zeros(
        (batch_size, self.length, self.model_config.embedding_dim), jnp.float32
    )
    variables = self.model.init(
        {'params': rng},
        batch['inputs'],
        batch['input_mask'],
        latents,
        jnp.zeros((batch_size,), jnp.int32),
        latents,
    )
    return variables['params']

  def init_task_state(self) -> TaskState:
    """The base schedule's ᾱ and the statistics' prior (float32 arrays)."""
    table = schedules.base_alphas_cumprod(
        self.schedule_name, self.diffusion_steps, self.length
    )
    return {
        'alphas_cumprod': jnp.asarray(table, jnp.float32),
        **schedules.prior_statistics(self.num_bins, self.length),
    }

  def noise_schedule(
      self, task_state: TaskState | None
  ) -> schedules.NoiseSchedule:
    """The schedule of a task state (the base schedule for None)."""
    if task_state is None:
      task_state = self.init_task_state()
    return schedules.from_alphas_cumprod(task_state['alphas_cumprod'])

  def update_task_state(
      self, task_state: TaskState, observations: TaskState, step: jax.Array
  ) -> TaskState:
    """Adds a step's loss statistics; re-fits ᾱ on update steps (jittable).

    Args:
      task_state: the current state.
      observations: 'loss_sums' and 'loss_counts' of the step's batch
        (summed over microbatches and hosts).
      step: the optimizer step just completed.  # int32 scalar

    Returns:
      The new state.
    """
    statistics = {
        key: task_state[key] + observations[key]
        for key in ('loss_sums', 'loss_counts')
    }
    table = task_state['alphas_cumprod']
    if self.adaptive_schedule:
      table, statistics = schedules.maybe_update(
          table,
          statistics,
          step,
          every=self.adaptive_every,
          bin_steps=self.bin_steps,
      )
    return {'alphas_cumprod': table, **statistics}

  # ---------------------------------------------------------------------------
  # Losses.
  # ---------------------------------------------------------------------------

  def _diffusion_targets(self, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """BOS + targets, and the mask of their real tokens in real rows.

    Returns:
      ids int32 [batch, L]; token mask float32 [batch, L].
    """
    targets = jnp.asarray(batch['targets'], jnp.int32)  # [batch, tgt]
    batch_size = targets.shape[0]
    ids = jnp.concatenate(
        [jnp.full((batch_size, 1), self.bos_id, jnp.int32), targets], axis=1
    )
    token_mask = jnp.concatenate(
        [
            jnp.ones((batch_size, 1), jnp.float32),
            jnp.asarray(batch['target_mask'], jnp.float32),
        ],
        axis=1,
    )
    example_mask = jnp.asarray(batch['example_mask'], jnp.float32)
    return ids, token_mask * example_mask[:, None]

  def _loss_terms(
      self,
      params: Any,
      batch: Batch,
      rng: jax.Array,
      task_state: TaskState | None,
      deterministic: bool,
  ) -> tuple[dict[str, jax.Array], jax.Array, jax.Array, jax.Array]:
    """Runs `losses.diffusion_loss_terms` on a batch.

    Returns:
      (terms, timesteps [batch], token mask [batch, L], row mask [batch]).
    """
    model = self.model
    variables = {'params': params}
    time_rng, encoder_rng, loss_rng = jax.random.split(rng, 3)
    input_mask = batch['input_mask']
    ids, token_mask = self._diffusion_targets(batch)
    timesteps = jax.random.randint(
        time_rng, (ids.shape[0],), 0, self.diffusion_steps, jnp.int32
    )

    def rngs(key):  # training passes also key the `flaxllm.perturb` noise
      return {'dropout': key} if deterministic else perturb.training_rngs(key)

    encoded = model.apply(
        variables,
        batch['inputs'],
        input_mask,
        deterministic=deterministic,
        rngs=rngs(encoder_rng),
        method=denoiser.SeqDiffuSeqDenoiser.encode,
    )

    def denoise_fn(noisy, times, self_condition, dropout_rng):
      return model.apply(
          variables,
          encoded,
          input_mask,
          noisy,
          times,
          self_condition,
          deterministic=deterministic,
          rngs=rngs(dropout_rng),
          method=denoiser.SeqDiffuSeqDenoiser.denoise,
      )

    def logits_fn(x):
      return model.apply(
          variables, x, method=denoiser.SeqDiffuSeqDenoiser.logits
      )

    terms = losses.diffusion_loss_terms(
        denoise_fn=denoise_fn,
        logits_fn=logits_fn,
        target_embeddings=model.apply(
            variables, ids, method=denoiser.SeqDiffuSeqDenoiser.embed
        ),
        target_ids=ids,
        schedule=self.noise_schedule(task_state),
        timesteps=timesteps,
        rng=loss_rng,
        self_condition_prob=self.self_condition_prob,
    )
    row_mask = jnp.asarray(batch['example_mask'], jnp.float32)
    return terms, timesteps, token_mask, row_mask

  @staticmethod
  def _row_sums(
      terms: dict[str, jax.Array], row_mask: jax.Array
  ) -> dict[str, jax.Array]:
    """Sums the per-row terms over real rows ('<term>_sum', 'denominator')."""

    def weighted_sum(values):
      # `where` keeps non-finite values of padding rows out of the sums.
      return jnp.sum(jnp.where(row_mask > 0, values * row_mask, 0.0))

    return {
        'loss_sum': weighted_sum(terms['loss']),
        'mse_sum': weighted_sum(terms['mse']),
        'nll_sum': weighted_sum(terms['nll']),
        'prior_sum': weighted_sum(terms['prior']),
        'denominator': jnp.sum(row_mask),
    }

  def loss_fn(
      self,
      params: Any,
      batch: Batch,
      rng: jax.Array,
      task_state: TaskState | None = None,
  ) -> tuple[jax.Array, dict[str, Any]]:
    """Training loss with dropout, averaged over real rows.

    Args:
      params: unboxed params.
      batch: a training batch.
      rng: PRNG key (time steps, noise, the self-conditioning coin, dropout).
      task_state: the current schedule and statistics (None: base schedule).

    Returns:
      (loss, metrics): the mean of mse + nll + prior over real rows, and the
      float32 sums 'loss_sum', 'mse_sum', 'nll_sum', 'prior_sum',
      'denominator' (real rows), plus 'observations': the batch's
      {'loss_sums', 'loss_counts'} per (time bin, position), pad tokens and
      padding rows excluded.
    """
    terms, timesteps, token_mask, row_mask = self._loss_terms(
        params, batch, rng, task_state, deterministic=False
    )
    metrics = self._row_sums(terms, row_mask)
    metrics['observations'] = schedules.loss_statistics(
        jax.lax.stop_gradient(terms['per_token_mse']),
        token_mask,
        timesteps,
        num_bins=self.num_bins,
        bin_steps=self.bin_steps,
    )
    loss = metrics['loss_sum'] / jnp.maximum(metrics['denominator'], 1.0)
    return loss, metrics

  def eval_metrics(
      self, params: Any, batch: Batch, task_state: TaskState | None = None
  ) -> dict[str, jax.Array]:
    """`loss_fn`'s sums without dropout, with a fixed key (comparable runs).

    Args:
      params: unboxed params.
      batch: an evaluation batch.
      task_state: the current schedule (None: base schedule).

    Returns:
      float32 scalars 'loss_sum', 'mse_sum', 'nll_sum', 'prior_sum',
      'denominator'.
    """
    terms, _, _, row_mask = self._loss_terms(
        params,
        batch,
        jax.random.PRNGKey(self.seed),
        task_state,
        deterministic=True,
    )
    return self._row_sums(terms, row_mask)

  # ---------------------------------------------------------------------------
  # Sampling and evaluation.
  # ---------------------------------------------------------------------------

  def predict(
      self,
      params: Any,
      batch: Batch,
      rng: jax.Array | None = None,
      task_state: TaskState | None = None,
  ) -> jax.Array:
    """Samples targets for a batch of sources (jittable).

    Args:
      params: params (boxed or not).
      batch: needs 'inputs' and 'input_mask'.
      rng: PRNG key of the samples; None uses config.seed.
      task_state: the schedule to sample with (None: base schedule).

    Returns:
      int32 [batch, max_target_length] token ids (BOS dropped, pad after
      the first EOS), or [batch, n, max_target_length] with
      task.mbr_candidates = n > 1.
    """
    if rng is None:
      rng = jax.random.PRNGKey(self.seed)
    model = self.model
    variables = {'params': params}
    input_mask = jnp.asarray(batch['input_mask'])  # [batch, src]
    batch_size = input_mask.shape[0]
    candidates = self.mbr_candidates
    encoded = model.apply(
        variables,
        jnp.asarray(batch['inputs']),
        input_mask,
        method=denoiser.SeqDiffuSeqDenoiser.encode,
    )  # [batch, src, d]
    # Candidates of a row are adjacent: row r, candidate c is r * n + c.
    encoded = jnp.repeat(encoded, candidates, axis=0)
    input_mask = jnp.repeat(input_mask, candidates, axis=0)

    def denoise_fn(noisy, times, self_condition):
      return model.apply(
          variables,
          encoded,
          input_mask,
          noisy,
          times,
          self_condition,
          method=denoiser.SeqDiffuSeqDenoiser.denoise,
      )

    timesteps = None
    if self.sampling_steps < self.diffusion_steps:
      timesteps = schedules.spaced_timesteps(
          self.diffusion_steps, self.sampling_steps
      )
    latents = sampler_lib.sample(
        denoise_fn,
        self.noise_schedule(task_state),
        (
            batch_size * candidates,
            self.length,
            self.model_config.embedding_dim,
        ),
        rng,
        timesteps=timesteps,
        sampler=self.sampler,
        eta=self.ddim_eta,
        self_conditioning=self.self_conditioning,
        log_variance_quirk=self.log_variance_quirk,
    )  # [batch * n, L, emb_dim]
    logits = model.apply(
        variables, latents, method=denoiser.SeqDiffuSeqDenoiser.logits
    )
    ids = sampler_lib.round_to_ids(logits)[:, 1:]  # [batch * n, tgt]
    ids = sampler_lib.truncate_after_end(ids, self.eos_id, self.pad_id)
    if candidates > 1:
      ids = ids.reshape(batch_size, candidates, self.max_target_length)
    return ids

  def decode_outputs(self, rows: np.ndarray) -> list[str]:
    """Turns `predict` rows of real examples into texts (MBR over candidates).

    Args:
      rows: int [examples, tgt], or [examples, n, tgt] with candidates.

    Returns:
      One text per example; with candidates an `MbrPrediction` (a str)
      holding the MBR choice and every candidate.
    """
    if self.tokenizer is None:
      raise errors.UserInputError(
          'the diffusion task has no tokenizer to decode predictions with;'
          ' build it with build() or pass tokenizer='
      )
    rows = np.asarray(rows)
    if rows.ndim == 2:
      return self.tokenizer.decode_batch(rows.tolist())
    examples, candidates, length = rows.shape
    texts = self.tokenizer.decode_batch(rows.reshape(-1, length).tolist())
    predictions = []
    for start in range(0, examples * candidates, candidates):
      group = texts[start : start + candidates]
      chosen = group[diversity.mbr_select(group)]
      predictions.append(MbrPrediction(chosen, group))
    return predictions

  def evaluate(
      self, predictions: list[str], examples: list[dict]
  ) -> dict[str, float]:
    """Scores predictions against the examples' targets (all on 0-100).

    Args:
      predictions: one text per example (from `decode_outputs`).
      examples: the split's examples, in order, with 'tgt'.

    Returns:
      'bleu' (sacreBLEU corpus), 'sentence_bleu' (DiffuSeq's NLTK average),
      'rougeL', 'dist_1'; 'self_bleu' (mean pairwise BLEU of each example's
      candidates) when predictions carry MBR candidates.
    """
    references = [example['tgt'] for example in examples]
    texts = [str(prediction) for prediction in predictions]
    metrics = {
        'bleu': text_metrics.corpus_bleu(texts, references),
        'sentence_bleu': 100 * diversity.mean_sentence_bleu(texts, references),
        'rougeL': text_metrics.rouge_l(texts, references),
        'dist_1': 100 * diversity.distinct_n(texts, 1),
    }
    candidate_sets = [getattr(p, 'candidates', ()) for p in predictions]
    if all(len(candidates) > 1 for candidates in candidate_sets):
      metrics['self_bleu'] = 100 * float(
          np.mean([diversity.self_bleu(c) for c in candidate_sets])
      )
    return metrics


# -----------------------------------------------------------------------------
# Registry hooks (see flaxllm.tasks): config keys, validation, construction.
# -----------------------------------------------------------------------------


def task_defaults() -> ml_collections.ConfigDict:
  """The keys `config.task` takes for this task, with their defaults."""
  return ml_collections.ConfigDict({
      'name': 'diffusion',
      'diffusion_steps': 2000,  # T
      'sampling_steps': 2000,  # K <= T steps visited when sampling
      'schedule': 'sqrt',  # base schedule: 'sqrt' | 'linear' | 'cosine'
      'adaptive_schedule': True,
      'adaptive_every': 20_000,  # S: re-fit at steps 3S, 4S, ...
      'bin_steps': 20,  # time steps per loss-statistics bin
      'self_conditioning': True,
      'self_condition_prob': 0.5,
      'sampler': 'ddpm',  # 'ddpm' | 'ddim'
      'ddim_eta': 0.0,
      'mbr_candidates': 1,  # n > 1: sample n per source, pick by MBR
      'log_variance_quirk': False,  # the authors' flattened log variance
  })


def _task_settings(
    config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """config.task over `task_defaults` (keys a config leaves out default)."""
  # Plain dicts: a ConfigDict update would refuse a value of another type
  # before check_config can name the key.
  return ml_collections.ConfigDict(
      {**task_defaults().to_dict(), **config.task.to_dict()}
  )


def check_config(
    config: ml_collections.ConfigDict, vocab_size: int | None = None
) -> None:
  """Validates config.task and config.model without building anything.

  Args:
    config: the run config.
    vocab_size: the real vocabulary size; default config.tokenizer.vocab_size.

  Raises:
    UserInputError: naming the first bad key.
  """
  task = _task_settings(config)
  for key in ('adaptive_schedule', 'self_conditioning', 'log_variance_quirk'):
    if not isinstance(task[key], bool):
      raise errors.UserInputError(
          f'config key task.{key} must be True or False, got {task[key]!r}'
      )
  steps = task.diffusion_steps
  if int(steps) != steps or steps < 2:
    raise errors.UserInputError(
        f'config key task.diffusion_steps={steps} must be an integer >= 2'
    )
  schedules.base_betas(task.schedule, int(steps))
  schedules.spaced_timesteps(int(steps), int(task.sampling_steps))
  schedules.check_adaptive_shapes(int(steps), int(task.bin_steps))
  sampler_lib.check_sampler(task.sampler, task.ddim_eta)
  if task.adaptive_every < 1:
    raise errors.UserInputError(
        f'config key task.adaptive_every={task.adaptive_every} must be >= 1'
    )
  if not 0.0 <= task.self_condition_prob <= 1.0:
    raise errors.UserInputError(
        'config key task.self_condition_prob must be in [0, 1]'
    )
  if task.mbr_candidates < 1:
    raise errors.UserInputError(
        f'config key task.mbr_candidates={task.mbr_candidates} must be >= 1'
    )
  if vocab_size is None:
    vocab_size = config.tokenizer.vocab_size
  model_config = _model_config(config, vocab_size, pad_id=1)
  for key, length in (
      ('max_source_length', config.data.max_source_length),
      ('max_target_length', config.data.max_target_length + 1),
  ):
    if length > model_config.max_positions:
      raise errors.UserInputError(
          f'data.{key}={config.data[key]} needs {length} positions, over'
          f' model.max_positions={model_config.max_positions} (the diffused'
          ' target adds a BOS); raise model.max_positions or lower'
          f' data.{key}'
      )


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
) -> tuple[DiffusionTask, Any]:
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
  task = DiffusionTask(
      config,
      vocab_size=tokenizer.vocab_size,
      pad_id=tokenizer.pad_id,
      eos_id=tokenizer.eos_id,
      bos_id=tokenizer.bos_id,
      tokenizer=tokenizer,
  )
  return task, data
