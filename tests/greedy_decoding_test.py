"""Tests for flaxllm.decoding.greedy."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm.decoding import greedy
from flaxllm.tasks import seq2seq

PAD, EOS = 0, 1
# Token t is always followed by NEXT_TOKEN[t]: 2 -> 3 -> 4 -> eos, 5 -> 5 ...
NEXT_TOKEN = jnp.array([0, 1, 3, 4, 1, 5])


def _table_tokens_to_logits(next_token, ids, step_count):
  """A 'model' whose params are a transition table; counts its calls."""
  logits = 10.0 * jax.nn.one_hot(next_token[ids[:, 0]], len(next_token))
  return logits, step_count + 1


class GreedyDecodeTest(absltest.TestCase):

  def test_follows_transition_table_with_eos_stop_and_pad_fill(self):
    decode = jax.jit(
        lambda start_ids: greedy.greedy_decode(
            _table_tokens_to_logits,
            NEXT_TOKEN,
            jnp.zeros((), jnp.int32),
            start_ids,
            max_length=5,
            eos_id=EOS,
            pad_id=PAD,
        )
    )
    output = decode(jnp.array([2, 4, 5], jnp.int32))
    self.assertEqual(output.dtype, jnp.int32)
    np.testing.assert_array_equal(
        output,
        [
            [3, 4, 1, PAD, PAD],  # three steps to eos
            [1, PAD, PAD, PAD, PAD],  # eos at once
            [5, 5, 5, 5, 5],  # never ends: cut at max_length
        ],
    )

  def test_stops_early_once_every_row_has_emitted_eos(self):
    model_calls = []

    def counting_tokens_to_logits(params, ids, cache):
      jax.debug.callback(lambda: model_calls.append(1))
      return _table_tokens_to_logits(params, ids, cache)

    output = jax.jit(
        lambda start_ids: greedy.greedy_decode(
            counting_tokens_to_logits,
            NEXT_TOKEN,
            jnp.zeros((), jnp.int32),
            start_ids,
            max_length=8,
            eos_id=EOS,
            pad_id=PAD,
        )
    )(jnp.array([2, 3], jnp.int32))
    jax.effects_barrier()
    np.testing.assert_array_equal(
        output, [[3, 4, 1] + [PAD] * 5, [4, 1] + [PAD] * 6]
    )
    self.assertLen(model_calls, 3)


def _tiny_task(eos_id: int) -> seq2seq.Seq2SeqTask:
  config = ml_collections.ConfigDict({
      'model': {
          'family': 'encoder_decoder',
          'd_model': 16,
          'num_heads': 2,
          'ffn_dim': 32,
          'max_positions': 16,
      },
      'task': {'label_smoothing': 0.0},
      'data': {'max_source_length': 6, 'max_target_length': 7},
  })
  return seq2seq.Seq2SeqTask(
      config, vocab_size=12, pad_id=PAD, eos_id=eos_id, decoder_start_id=2
  )


def _uncached_greedy(task, params, inputs, input_mask, eos_id):
  """Reference: re-runs the whole decoder on the prefix at every step.

  The prefix is right-padded to a fixed length so one compiled forward pass
  serves all steps; causal masking makes the padding irrelevant.
  """
  batch_size, length = inputs.shape[0], task.max_target_length
  forward = jax.jit(task.model.apply)
  decoder_inputs = np.full((batch_size, length), PAD, np.int32)
  decoder_inputs[:, 0] = task.decoder_start_id
  finished = np.zeros(batch_size, bool)
  output = np.full((batch_size, length), PAD, np.int32)
  for step in range(length):
    logits = forward({'params': params}, inputs, input_mask, decoder_inputs)
    next_ids = np.where(finished, PAD, np.argmax(logits[:, step], axis=-1))
    output[:, step] = next_ids
    finished |= next_ids == eos_id
    if step + 1 < length:
      decoder_inputs[:, step + 1] = next_ids
  return output


class TaskGreedyTest(absltest.TestCase):

  def test_cached_greedy_equals_uncached_greedy(self):
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, 12, (3, 6)).astype(np.int32)
    input_mask = np.ones((3, 6), np.int32)
    input_mask[1, 3:] = 0
    input_mask[2, 5:] = 0
    task = _tiny_task(eos_id=EOS)
    params = task.init(jax.random.key(1), task.dummy_batch(1))
    # Use as eos a token the model emits mid-sequence in row 0, so the eos
    # stop and the pad fill are exercised.
    free_run = _uncached_greedy(task, params, inputs, input_mask, eos_id=-1)
    eos_id = int(free_run[0, 2])
    task = _tiny_task(eos_id=eos_id)
    expected = _uncached_greedy(task, params, inputs, input_mask, eos_id)
    predictions = jax.jit(task.predict)(
        params, {'inputs': inputs, 'input_mask': input_mask}
    )
    np.testing.assert_array_equal(predictions, expected)
    self.assertEqual(predictions.shape, (3, task.max_target_length))
    self.assertEqual(int(predictions[0, 3]), PAD)


if __name__ == '__main__':
  absltest.main()
