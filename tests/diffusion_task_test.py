"""Tests for flaxllm.tasks.diffusion and flaxllm.diffusion.losses."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from flaxllm import errors
from flaxllm.diffusion import losses
from flaxllm.diffusion import schedules
from flaxllm.tasks import diffusion

VOCAB, PAD, EOS, BOS = 16, 1, 2, 0
SRC, TGT, BATCH = 6, 5, 8
STEPS, BIN_STEPS, EVERY = 20, 5, 3


class _WordTokenizer:
  """Decodes id i > 2 as 'w<i>' and drops the special ids."""

  def decode_batch(self, rows):
    return [' '.join(f'w{i}' for i in row if i > 2) for row in rows]


def _config(model=None, data=None, **task) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      'seed': 0,
      'model': {
          'family': 'diffusion',
          'd_model': 32,
          'num_heads': 2,
          'ffn_dim': 64,
          'encoder_layers': 1,
          'decoder_layers': 1,
          'max_positions': 8,
          'dropout_rate': 0.0,
          'embedding_dim': 8,
          **(model or {}),
      },
      'task': {
          'name': 'diffusion',
          'diffusion_steps': STEPS,
          'sampling_steps': STEPS,
          'bin_steps': BIN_STEPS,
          'adaptive_every': EVERY,
          **task,
      },
      'data': {
          'max_source_length': SRC,
          'max_target_length': TGT,
          **(data or {}),
      },
      'tokenizer': {'vocab_size': VOCAB},
  })


def _task(**task) -> diffusion.DiffusionTask:
  return diffusion.DiffusionTask(
      _config(**task),
      vocab_size=VOCAB,
      pad_id=PAD,
      eos_id=EOS,
      bos_id=BOS,
      tokenizer=_WordTokenizer(),
  )


def _batch() -> dict[str, np.ndarray]:
  """A copy task: the target repeats the first tokens of the source.

  Row r has a target of 1 + r % (TGT - 1) tokens plus EOS; the last row is
  a padding row (example_mask 0).
  """
  rng = np.random.default_rng(0)
  inputs = rng.integers(3, VOCAB, (BATCH, SRC)).astype(np.int32)
  targets = np.full((BATCH, TGT), PAD, np.int32)
  target_mask = np.zeros((BATCH, TGT), np.float32)
  for row in range(BATCH):
    length = 1 + row % (TGT - 1)
    targets[row, :length] = inputs[row, :length]
    targets[row, length] = EOS
    target_mask[row, : length + 1] = 1.0
  example_mask = np.ones((BATCH,), np.float32)
  example_mask[-1] = 0.0
  return {
      'inputs': inputs,
      'input_mask': np.ones((BATCH, SRC), np.int32),
      'decoder_inputs': targets,
      'targets': targets,
      'target_mask': target_mask,
      'example_mask': example_mask,
  }


class DiffusionTaskTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    task = cls.task = _task()
    cls.params = nn.unbox(jax.jit(task.init)(jax.random.key(0), _batch()))
    optimizer = optax.adam(3e-2)
    cls.optimizer = optimizer

    def train_step(params, opt_state, task_state, batch, rng, step):
      (loss, metrics), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
          params, batch, rng, task_state
      )
      updates, opt_state = optimizer.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      task_state = task.update_task_state(
          task_state, metrics['observations'], step
      )
      return params, opt_state, task_state, loss, metrics

    # One compiled step serves every test that needs the loss (staticmethod:
    # a function stored on the class must not bind the test case).
    cls.train_step = staticmethod(jax.jit(train_step))
    cls.update = staticmethod(jax.jit(task.update_task_state))

  def _metrics(self, batch, rng=1):
    state = self.task.init_task_state()
    _, _, _, loss, metrics = self.train_step(
        self.params,
        self.optimizer.init(self.params),
        state,
        batch,
        jax.random.key(rng),
        jnp.int32(1),
    )
    return loss, metrics

  def test_task_state_is_a_plain_dict_of_float32_arrays(self):
    state = self.task.init_task_state()
    self.assertIs(type(state), dict)
    self.assertEqual(
        {key: value.shape for key, value in state.items()},
        {
            'alphas_cumprod': (STEPS, TGT + 1),
            'loss_sums': (STEPS // BIN_STEPS, TGT + 1),
            'loss_counts': (STEPS // BIN_STEPS, TGT + 1),
        },
    )
    for value in state.values():
      self.assertIsInstance(value, jax.Array)
      self.assertEqual(value.dtype, jnp.float32)
    np.testing.assert_allclose(
        state['alphas_cumprod'][:, 0],
        schedules.base_alphas_cumprod('sqrt', STEPS, 1)[:, 0],
        rtol=1e-6,
    )

  def test_init_returns_boxed_params_of_the_dummy_batch(self):
    boxed = jax.eval_shape(
        self.task.init, jax.random.key(0), self.task.dummy_batch(2)
    )
    embedding = boxed['word_embedding']['embedding']
    self.assertIsInstance(embedding, nn.LogicallyPartitioned)
    self.assertEqual(embedding.value.shape, (VOCAB, 8))
    self.assertEqual(self.task.dummy_batch(3)['example_mask'].shape, (3,))

  def test_loss_metrics_are_sums_over_real_rows_with_observations(self):
    batch = _batch()
    loss, metrics = self._metrics(batch)
    real_rows = batch['example_mask'].sum()
    self.assertEqual(float(metrics['denominator']), real_rows)
    self.assertAlmostEqual(
        float(loss), float(metrics['loss_sum']) / real_rows, places=5
    )
    self.assertAlmostEqual(
        float(metrics['loss_sum']),
        float(metrics['mse_sum'] + metrics['nll_sum'] + metrics['prior_sum']),
        places=3,
    )
    counts = np.asarray(metrics['observations']['loss_counts'])
    self.assertEqual(counts.shape, (STEPS // BIN_STEPS, TGT + 1))
    # Per position: BOS, then the real target tokens (EOS included), of the
    # real rows only.
    token_mask = (
        np.concatenate([np.ones((BATCH, 1)), batch['target_mask']], axis=1)
        * batch['example_mask'][:, None]
    )
    np.testing.assert_array_equal(counts.sum(axis=0), token_mask.sum(axis=0))

  def test_padding_rows_do_not_change_the_sums(self):
    batch = _batch()
    _, metrics = self._metrics(batch)
    altered = {key: value.copy() for key, value in batch.items()}
    altered['inputs'][-1] = 3
    altered['targets'][-1] = 4
    _, altered_metrics = self._metrics(altered)
    for key in ('loss_sum', 'mse_sum', 'nll_sum', 'denominator'):
      self.assertAlmostEqual(
          float(metrics[key]), float(altered_metrics[key]), places=4
      )

  def test_eval_metrics_are_deterministic_and_carry_no_observations(self):
    eval_metrics = jax.jit(self.task.eval_metrics)
    first = eval_metrics(self.params, _batch(), self.task.init_task_state())
    second = eval_metrics(self.params, _batch(), self.task.init_task_state())
    self.assertNotIn('observations', first)
    for key in first:
      self.assertEqual(float(first[key]), float(second[key]))

  def test_loss_falls_over_a_few_dozen_optimizer_steps(self):
    params, task_state = self.params, self.task.init_task_state()
    opt_state = self.optimizer.init(params)
    history = []
    for step in range(1, 26):
      params, opt_state, task_state, loss, _ = self.train_step(
          params,
          opt_state,
          task_state,
          _batch(),
          jax.random.key(step),
          jnp.int32(step),
      )
      history.append(float(loss))
    self.assertTrue(np.all(np.isfinite(history)))
    self.assertLess(np.mean(history[-5:]), 0.7 * np.mean(history[:5]))
    # The adaptive schedule re-fitted (steps 9, 12, ...) and kept BOS.
    table = task_state['alphas_cumprod']
    initial = self.task.init_task_state()['alphas_cumprod']
    self.assertGreater(float(jnp.abs(table - initial).max()), 1e-3)
    np.testing.assert_array_equal(table[:, 0], initial[:, 0])

  def test_update_task_state_refits_from_step_3s_and_only_when_adaptive(self):
    observations = {
        'loss_sums': jnp.tile(
            jnp.linspace(0.0, 1.0, STEPS // BIN_STEPS)[:, None] ** 3,
            (1, TGT + 1),
        ),
        'loss_counts': jnp.ones((STEPS // BIN_STEPS, TGT + 1)),
    }
    adaptive_off = jax.jit(_task(adaptive_schedule=False).update_task_state)
    for update, expected_first_change in (
        (self.update, 3 * EVERY),
        (adaptive_off, None),
    ):
      state = self.task.init_task_state()
      first_change = None
      for step in range(1, 3 * EVERY + 2):
        new_state = update(state, observations, jnp.int32(step))
        if first_change is None and not np.array_equal(
            new_state['alphas_cumprod'], state['alphas_cumprod']
        ):
          first_change = step
        state = new_state
      self.assertEqual(first_change, expected_first_change)

  def test_predict_returns_ids_with_pad_after_the_first_eos(self):
    state = self.task.init_task_state()
    ids = jax.jit(self.task.predict)(
        self.params, _batch(), jax.random.key(2), state
    )
    self.assertEqual(ids.shape, (BATCH, TGT))
    self.assertEqual(ids.dtype, jnp.int32)
    ids = np.asarray(ids)
    for row in ids:
      ends = np.flatnonzero((row == EOS) | (row == PAD))
      if ends.size:
        self.assertTrue(np.all(row[ends[0] + 1 :] == PAD))

  def test_predict_with_candidates_gives_each_row_n_samples(self):
    task = _task(mbr_candidates=3, sampling_steps=4, sampler='ddim')
    ids = jax.eval_shape(task.predict, self.params, _batch(), jax.random.key(2))
    self.assertEqual(ids.shape, (BATCH, 3, TGT))

  def test_decode_outputs_picks_each_rows_mbr_candidate(self):
    rows = np.array([
        [[3, 4, 5, 6, 2], [3, 4, 5, 7, 2], [3, 4, 8, 7, 2]],
        [[10, 11, 2, 1, 1], [7, 7, 8, 9, 2], [7, 7, 8, 9, 2]],
    ])
    predictions = self.task.decode_outputs(rows)
    # Row 0: the middle candidate shares the most n-grams with the others.
    self.assertEqual(predictions, ['w3 w4 w5 w7', 'w7 w7 w8 w9'])
    self.assertEqual(
        predictions[0].candidates, ('w3 w4 w5 w6', 'w3 w4 w5 w7', 'w3 w4 w8 w7')
    )
    self.assertEqual(
        self.task.decode_outputs(rows[:, 0]), ['w3 w4 w5 w6', 'w10 w11']
    )

  def test_evaluate_reports_bleu_rouge_dist_and_self_bleu(self):
    examples = [
        {'src': 'a', 'tgt': 'how do i learn python fast'},
        {'src': 'b', 'tgt': 'why is the sky blue'},
    ]
    exact = self.task.evaluate([e['tgt'] for e in examples], examples)
    self.assertAlmostEqual(exact['bleu'], 100.0, places=3)
    self.assertAlmostEqual(exact['sentence_bleu'], 100.0, places=3)
    self.assertAlmostEqual(exact['rougeL'], 100.0, places=3)
    self.assertAlmostEqual(exact['dist_1'], 100.0, places=3)
    self.assertNotIn('self_bleu', exact)
    with_candidates = [
        diffusion.MbrPrediction(e['tgt'], (e['tgt'], e['tgt'] + ' now'))
        for e in examples
    ]
    scores = self.task.evaluate(with_candidates, examples)
    self.assertBetween(scores['self_bleu'], 50.0, 99.9)


class SelfConditioningLossTest(absltest.TestCase):
  """`losses.diffusion_loss_terms` with a two-parameter toy denoiser.

  x̂0 = a x_t + b s, s the self-condition. With the first pass under
  stop_gradient, s = a' x_t with a' constant, so dL/db = a dL/da; a first
  pass that passed gradient would give dL/da = (1 + b) dL/db / a instead.
  """

  @staticmethod
  @functools.partial(jax.jit, static_argnums=2)
  def _loss(params, rng, probability):
    length, dim = 4, 3
    embedding = jax.random.normal(jax.random.key(9), (VOCAB, dim))
    ids = jnp.array([[3, 4, 5, 2], [6, 7, 2, 1]])
    terms = losses.diffusion_loss_terms(
        denoise_fn=lambda x, t, s, r: params['a'] * x + params['b'] * s,
        logits_fn=lambda x: x @ embedding.T,
        target_embeddings=embedding[ids],
        target_ids=ids,
        schedule=schedules.make_schedule('sqrt', 10, length),
        timesteps=jnp.array([4, 7]),
        rng=rng,
        self_condition_prob=probability,
    )
    return jnp.mean(terms['loss']), terms

  def test_first_pass_gets_no_gradient(self):
    params = {'a': jnp.float32(0.5), 'b': jnp.float32(1.0)}
    grads, _ = jax.grad(self._loss, has_aux=True)(
        params, jax.random.key(0), 1.0
    )
    self.assertGreater(abs(float(grads['b'])), 1e-4)  # the pass did run
    self.assertAlmostEqual(float(grads['b']), 0.5 * float(grads['a']), places=5)

  def test_without_self_conditioning_the_input_is_zero(self):
    params = {'a': jnp.float32(0.5), 'b': jnp.float32(1.0)}
    grads, _ = jax.grad(self._loss, has_aux=True)(
        params, jax.random.key(0), 0.0
    )
    self.assertEqual(float(grads['b']), 0.0)

  def test_one_coin_per_batch(self):
    params = {'a': jnp.float32(0.5), 'b': jnp.float32(1.0)}
    outcomes = set()
    for seed in range(12):
      _, terms = self._loss(params, jax.random.key(seed), 0.5)
      # Rows whose prediction differs from a x_t were self-conditioned.
      without = self._loss(
          {'a': params['a'], 'b': jnp.float32(0.0)},
          jax.random.key(seed),
          0.5,
      )[1]
      conditioned = np.any(
          np.asarray(terms['x_start_prediction'])
          != np.asarray(without['x_start_prediction']),
          axis=(1, 2),
      )
      self.assertIn(tuple(conditioned), {(True, True), (False, False)})
      outcomes.add(bool(conditioned[0]))
    self.assertEqual(outcomes, {True, False})


class CheckConfigTest(parameterized.TestCase):

  def test_the_defaults_validate(self):
    diffusion.check_config(_config())

  @parameterized.named_parameters(
      ('schedule', {'schedule': 'quadratic'}, 'task.schedule'),
      ('sampler', {'sampler': 'plms'}, 'task.sampler'),
      ('bins', {'bin_steps': 3}, 'task.bin_steps'),
      ('sampling_steps', {'sampling_steps': 21}, 'task.sampling_steps'),
      ('probability', {'self_condition_prob': 1.5}, 'self_condition_prob'),
      ('bool', {'adaptive_schedule': 'yes'}, 'task.adaptive_schedule'),
      ('candidates', {'mbr_candidates': 0}, 'task.mbr_candidates'),
  )
  def test_bad_task_values_are_user_errors(self, task, message):
    with self.assertRaisesRegex(errors.UserInputError, message):
      diffusion.check_config(_config(**task))

  def test_wrong_family_and_short_max_positions_are_user_errors(self):
    with self.assertRaisesRegex(errors.UserInputError, 'model.family'):
      diffusion.check_config(_config(model={'family': 'encoder_decoder'}))
    # The diffused target needs max_target_length + 1 positions.
    with self.assertRaisesRegex(errors.UserInputError, 'max_positions'):
      diffusion.check_config(_config(data={'max_target_length': 8}))


if __name__ == '__main__':
  absltest.main()
