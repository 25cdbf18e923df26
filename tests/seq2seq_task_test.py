"""Tests for flaxllm.tasks.seq2seq."""

from absl.testing import absltest
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from flaxllm import errors
from flaxllm.tasks import seq2seq

VOCAB, PAD, EOS, START = 16, 1, 2, 0
SRC, TGT = 6, 5


def _task(
    label_smoothing: float = 0.0, dropout_rate: float = 0.1, **data
) -> seq2seq.Seq2SeqTask:
  config = ml_collections.ConfigDict({
      'model': {
          'family': 'encoder_decoder',
          'd_model': 32,
          'num_heads': 2,
          'ffn_dim': 64,
          'encoder_layers': 1,
          'decoder_layers': 1,
          'max_positions': 16,
          'dropout_rate': dropout_rate,
      },
      'task': {'label_smoothing': label_smoothing},
      'data': {'max_source_length': SRC, 'max_target_length': TGT, **data},
  })
  return seq2seq.Seq2SeqTask(
      config, vocab_size=VOCAB, pad_id=PAD, eos_id=EOS, decoder_start_id=START
  )


def _batch(batch_size: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
  """Random pairs with right padding; row i has a target of TGT - i tokens."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(3, VOCAB, (batch_size, SRC)).astype(np.int32)
  input_mask = np.ones((batch_size, SRC), np.int32)
  targets = rng.integers(3, VOCAB, (batch_size, TGT)).astype(np.int32)
  target_mask = np.ones((batch_size, TGT), np.float32)
  for row in range(batch_size):
    target_length = max(TGT - row, 1)
    targets[row, target_length - 1] = EOS
    targets[row, target_length:] = PAD
    target_mask[row, target_length:] = 0.0
    input_mask[row, SRC - row % SRC :] = 0
  inputs[input_mask == 0] = PAD
  decoder_inputs = np.concatenate(
      [np.full((batch_size, 1), START, np.int32), targets[:, :-1]], axis=1
  )
  return {
      'inputs': inputs,
      'input_mask': input_mask,
      'decoder_inputs': decoder_inputs,
      'targets': targets,
      'target_mask': target_mask,
      'example_mask': np.ones((batch_size,), np.float32),
  }


def _params(task):
  return nn.unbox(task.init(jax.random.key(0), task.dummy_batch(2)))


class Seq2SeqTaskTest(absltest.TestCase):

  def test_init_returns_boxed_params_of_dummy_batch_shapes(self):
    task = _task()
    batch = task.dummy_batch(3)
    chex.assert_shape(batch['inputs'], (3, SRC))
    chex.assert_shape(batch['targets'], (3, TGT))
    chex.assert_shape(batch['example_mask'], (3,))
    params = task.init(jax.random.key(0), batch)
    self.assertIsInstance(
        params['shared']['embedding'], nn.LogicallyPartitioned
    )
    chex.assert_shape(params['shared']['embedding'].value, (VOCAB, 32))

  def test_loss_is_finite_and_gradients_nonzero(self):
    task = _task()
    params = _params(task)
    (loss, metrics), grads = jax.jit(
        jax.value_and_grad(task.loss_fn, has_aux=True)
    )(params, _batch(), jax.random.key(1))
    self.assertTrue(np.isfinite(loss))
    self.assertGreater(float(loss), 0.0)
    chex.assert_tree_all_finite(grads)
    self.assertGreater(float(optax.tree.norm(grads)), 0.0)
    # Every weight matrix gets a gradient.
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
      if grad.ndim >= 2:
        self.assertGreater(float(jnp.abs(grad).max()), 0.0, msg=str(path))
    self.assertEqual(
        float(metrics['denominator']), float(_batch()['target_mask'].sum())
    )

  def test_padding_rows_and_positions_do_not_change_the_loss(self):
    task = _task()
    params = _params(task)
    loss_fn = jax.jit(task.loss_fn)
    rng = jax.random.key(1)
    batch = _batch()
    batch['example_mask'][3] = 0.0
    loss, metrics = loss_fn(params, batch, rng)

    # Other content in the padding row and under the masks (same shapes, so
    # the same dropout masks).
    garbage = _batch(seed=5)
    altered = {key: value.copy() for key, value in batch.items()}
    for key in ('inputs', 'decoder_inputs', 'targets'):
      altered[key][3] = garbage[key][3]
    altered['targets'] = np.where(
        batch['target_mask'] == 0, garbage['targets'], altered['targets']
    )
    altered_loss, altered_metrics = loss_fn(params, altered, rng)
    np.testing.assert_allclose(altered_loss, loss, rtol=1e-6)
    chex.assert_trees_all_close(altered_metrics, metrics, rtol=1e-6)
    self.assertEqual(
        float(metrics['denominator']), float(batch['target_mask'][:3].sum())
    )

  def test_padding_row_appended_does_not_change_eval_metrics(self):
    task = _task(dropout_rate=0.0)
    params = _params(task)
    batch = _batch(batch_size=3)
    padded = {
        key: np.concatenate([value, _batch(batch_size=4)[key][3:]])
        for key, value in batch.items()
    }
    padded['example_mask'][3] = 0.0
    eval_metrics = jax.jit(task.eval_metrics)
    chex.assert_trees_all_close(
        eval_metrics(params, padded), eval_metrics(params, batch), rtol=1e-6
    )
    loss_fn = jax.jit(task.loss_fn)
    np.testing.assert_allclose(
        loss_fn(params, padded, jax.random.key(0))[0],
        loss_fn(params, batch, jax.random.key(0))[0],
        rtol=1e-6,
    )

  def test_metrics_are_sums_and_label_smoothing_only_changes_the_loss(self):
    plain, smoothed = _task(dropout_rate=0.0), _task(0.1, dropout_rate=0.0)
    params = _params(plain)
    batch = _batch()
    rng = jax.random.key(0)
    plain_loss, plain_metrics = plain.loss_fn(params, batch, rng)
    smoothed_loss, smoothed_metrics = smoothed.loss_fn(params, batch, rng)
    eval_metrics = plain.eval_metrics(params, batch)
    chex.assert_trees_all_close(plain_metrics, eval_metrics, rtol=1e-6)
    chex.assert_trees_all_close(smoothed_metrics, eval_metrics, rtol=1e-6)
    np.testing.assert_allclose(
        plain_loss,
        eval_metrics['loss_sum'] / eval_metrics['denominator'],
        rtol=1e-6,
    )
    self.assertGreater(abs(float(smoothed_loss - plain_loss)), 1e-4)
    self.assertBetween(
        float(eval_metrics['correct_sum']),
        0.0,
        float(eval_metrics['denominator']),
    )

  def test_tiny_model_overfits_four_pairs(self):
    task = _task(dropout_rate=0.0)
    params = _params(task)
    batch = _batch()
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, rng):
      (loss, _), grads = jax.value_and_grad(task.loss_fn, has_aux=True)(
          params, batch, rng
      )
      updates, opt_state = optimizer.update(grads, opt_state)
      return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for step in range(100):
      params, opt_state, loss = train_step(
          params, opt_state, jax.random.key(step)
      )
      losses.append(float(loss))
    self.assertLess(losses[-1], 0.5 * losses[0])
    metrics = task.eval_metrics(params, batch)
    self.assertGreater(
        float(metrics['correct_sum']), 0.9 * float(metrics['denominator'])
    )

  def test_predict_shape_and_dtype(self):
    task = _task()
    params = _params(task)
    predictions = jax.jit(task.predict)(params, _batch(batch_size=2))
    self.assertEqual(predictions.dtype, jnp.int32)
    chex.assert_shape(predictions, (2, TGT))

  def test_evaluate(self):
    task = _task()
    sentences = ['the cat sat on the mat', 'a quick brown fox jumps']
    scores = task.evaluate(sentences, [{'tgt': s} for s in sentences])
    self.assertAlmostEqual(scores['bleu'], 100.0, places=4)
    self.assertAlmostEqual(scores['rougeL'], 100.0, places=4)
    scores = task.evaluate(
        ['the dog ran off'], [{'tgt': 'a quick brown fox jumps'}]
    )
    self.assertLess(scores['bleu'], 1.0)

  def test_lengths_beyond_max_positions_are_user_errors(self):
    with self.assertRaisesRegex(errors.UserInputError, 'max_target_length'):
      _task(max_target_length=40)

  def test_unknown_model_key_is_a_user_error(self):
    config = ml_collections.ConfigDict({
        'model': {'family': 'encoder_decoder', 'hidden_size': 8},
        'task': {'label_smoothing': 0.0},
        'data': {'max_source_length': 4, 'max_target_length': 4},
    })
    with self.assertRaisesRegex(errors.UserInputError, 'hidden_size'):
      seq2seq.Seq2SeqTask(
          config, vocab_size=8, pad_id=PAD, eos_id=EOS, decoder_start_id=START
      )


if __name__ == '__main__':
  absltest.main()
