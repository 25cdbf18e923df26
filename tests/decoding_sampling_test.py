"""Tests for flaxllm.decoding.sampling, processors and model_steps."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from flaxllm import errors
from flaxllm.decoding import model_steps
from flaxllm.decoding import processors
from flaxllm.decoding import sampling
from flaxllm.models import encoder_decoder
from tests import decoding_helpers as helpers

PAD, EOS = 0, 1
# Token t is followed by NEXT_TOKEN[t]: 2 -> 3 -> 4 -> 5 -> 6 -> 7 -> eos,
# and 8 <-> 9 forever.
NEXT_TOKEN = jnp.array([0, 1, 3, 4, 5, 6, 7, 1, 9, 8])


def _table_step(next_token, ids, cache):
  """A 'model' whose params are a transition table."""
  return 10.0 * jax.nn.one_hot(next_token[ids], len(next_token)), cache


def _table_decode(start_ids, max_length=6, **kwargs):
  return jax.jit(
      functools.partial(
          sampling.sample_decode,
          _table_step,
          NEXT_TOKEN,
          None,
          max_length=max_length,
          eos_id=EOS,
          pad_id=PAD,
          temperature=0.0,
          **kwargs,
      )
  )(jnp.asarray(start_ids, jnp.int32))


class MaskTest(parameterized.TestCase):

  @parameterized.parameters(1, 3, 9, 10, 0)
  def test_top_k_keeps_exactly_the_k_largest(self, k):
    logits = np.random.default_rng(0).normal(size=(4, 10))
    mask = np.asarray(processors.top_k_mask(jnp.asarray(logits), k))
    ranks = np.argsort(np.argsort(-logits, axis=-1), axis=-1)
    np.testing.assert_array_equal(mask, ranks < (k or 10))

  @parameterized.parameters(0.05, 0.3, 0.5, 0.9, 0.999, 1.0)
  def test_top_p_keeps_the_smallest_set_reaching_p(self, p):
    logits = np.random.default_rng(1).normal(0, 2, size=(5, 12))
    mask = np.asarray(processors.top_p_mask(jnp.asarray(logits), p))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for row in range(len(probs)):
      order = np.argsort(-probs[row])
      cumulative = np.cumsum(probs[row, order])
      size = int(np.searchsorted(cumulative, p - 1e-6)) + 1 if p < 1 else 12
      expected = np.zeros(12, bool)
      expected[order[:size]] = True
      np.testing.assert_array_equal(mask[row], expected)

  def test_filter_applies_temperature_then_top_k_then_top_p(self):
    logits = jnp.log(jnp.array([[0.4, 0.3, 0.2, 0.1]]))
    # Temperature 1: top-3 keeps {0, 1, 2}; the nucleus of 0.7 within the
    # (renormalised) top 3 is {0, 1}.
    filtered = processors.filter_logits(logits, top_k=3, top_p=0.7)
    np.testing.assert_array_equal(jnp.isfinite(filtered), [[1, 1, 0, 0]])
    hot = processors.filter_logits(logits, temperature=0.5)
    np.testing.assert_allclose(hot, logits / 0.5, rtol=1e-6)

  @parameterized.parameters(
      dict(temperature=-1.0),
      dict(top_k=-2),
      dict(top_p=0.0),
      dict(top_p=1.5),
  )
  def test_bad_sampling_settings_are_user_errors(self, **overrides):
    settings = dict(temperature=1.0, top_k=0, top_p=1.0)
    settings.update(overrides)
    with self.assertRaises(errors.UserInputError):
      processors.check_sampling(**settings)


class StopTest(absltest.TestCase):

  def test_per_row_stop_sequences_and_eos_pad_the_rest(self):
    stops = processors.stop_sequences_array([
        [[4, 5]],  # hit after 3, 4, 5
        [[9], [6, 8]],  # never hit: the row ends at eos
        [[9, 8, 9]],  # hit on the third token
    ])
    self.assertEqual(stops.shape, (3, 2, 3))
    output = _table_decode([2, 3, 8], stop_sequences=jnp.asarray(stops))
    np.testing.assert_array_equal(
        output,
        [
            [3, 4, 5, PAD, PAD, PAD],
            [4, 5, 6, 7, EOS, PAD],
            [9, 8, 9, PAD, PAD, PAD],
        ],
    )

  def test_shared_stop_sequences_and_max_length(self):
    stops = processors.stop_sequences_array([[5], [7, 7]])
    output = _table_decode([2, 4, 8], stop_sequences=jnp.asarray(stops))
    np.testing.assert_array_equal(
        output,
        [
            [3, 4, 5, PAD, PAD, PAD],
            [5, PAD, PAD, PAD, PAD, PAD],
            [9, 8, 9, 8, 9, 8],  # no stop: cut at max_length
        ],
    )

  def test_empty_stop_sequence_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'stop sequence'):
      processors.stop_sequences_array([[3], []])


class ProcessorTest(absltest.TestCase):

  def test_allowed_tokens_constrain_the_output(self):
    lm = helpers.TinyLM.random(seed=0, head_scale=25.0)
    vocab = helpers.VOCAB

    def allowed_fn(tokens, step):
      # Even tokens only, and after three tokens only eos (a closed set).
      del tokens
      even = jnp.arange(vocab) % 2 == 0
      only_eos = jnp.arange(vocab) == EOS
      return jnp.broadcast_to(jnp.where(step < 3, even, only_eos), (3, vocab))

    @jax.jit
    def run(params):
      cache, start = lm.prefill(
          params, helpers.PROMPTS, helpers.PROMPT_LENGTHS, 10
      )
      return sampling.sample_decode(
          lm.step,
          params,
          cache,
          start,
          max_length=5,
          eos_id=EOS,
          pad_id=PAD,
          temperature=0.0,
          processors=[processors.allowed_tokens(allowed_fn)],
      )

    output = np.asarray(run(lm.params))
    self.assertTrue(np.all(output[:, :3] % 2 == 0))
    np.testing.assert_array_equal(output[:, 3:], [[EOS, PAD]] * 3)

  def test_min_length_forbids_eos_among_the_first_tokens(self):
    forbid = processors.min_length(EOS, 2)
    logits = jnp.array([[0.5, 3.0, 1.0]])
    tokens = jnp.zeros((1, 4), jnp.int32)
    for step, eos_score in ((0, -np.inf), (1, -np.inf), (2, 3.0)):
      np.testing.assert_array_equal(
          forbid(logits, tokens, jnp.int32(step)), [[0.5, eos_score, 1.0]]
      )
    # In the loop: 7 -> eos would end the row at once.
    output = _table_decode([7], max_length=3, processors=[forbid])
    self.assertNotIn(EOS, np.asarray(output)[0, :2].tolist())

  def test_repetition_penalty_scales_generated_tokens_only(self):
    penalise = processors.repetition_penalty(2.0)
    logits = jnp.array([[2.0, -2.0, 1.0, 3.0]])
    tokens = jnp.array([[0, 1, 3, PAD]])
    # Step 2: tokens 0 and 1 were generated, token 3 not yet.
    np.testing.assert_allclose(
        penalise(logits, tokens, jnp.int32(2)), [[1.0, -4.0, 1.0, 3.0]]
    )


class TemperatureSamplingTest(absltest.TestCase):

  def test_samples_follow_the_filtered_distribution(self):
    logits = jnp.log(jnp.array([0.05, 0.3, 0.25, 0.2, 0.15, 0.05]))
    draws, temperature = 5000, 0.8
    step = lambda params, ids, cache: (
        jnp.broadcast_to(logits, (ids.shape[0], len(logits))),
        cache,
    )

    def sample(**settings):
      return np.asarray(
          jax.jit(
              functools.partial(
                  sampling.sample_decode,
                  step,
                  None,
                  None,
                  max_length=1,
                  eos_id=None,
                  pad_id=PAD,
                  temperature=temperature,
                  **settings,
              )
          )(jnp.zeros((draws,), jnp.int32), rng=jax.random.key(0))
      )[:, 0]

    counts = np.bincount(sample(), minlength=6)
    expected = np.asarray(jax.nn.softmax(logits / temperature)) * draws
    self.assertGreater(stats.chisquare(counts, expected).pvalue, 1e-3)
    # top_k=2 at temperature 0.8 keeps tokens 1 and 2 only.
    kept = sample(top_k=2)
    self.assertEqual(set(kept.tolist()), {1, 2})
    # The nucleus of 0.5: 0.3 + 0.25 already covers it (at T=0.8 even more).
    self.assertEqual(set(sample(top_p=0.5).tolist()), {1, 2})

  def test_sampling_without_rng_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'rng'):
      sampling.sample_decode(
          _table_step,
          NEXT_TOKEN,
          None,
          jnp.zeros((1,), jnp.int32),
          max_length=1,
          eos_id=EOS,
          pad_id=PAD,
          temperature=1.0,
      )


def _uncached_argmax(forward, sequences, ends, max_length: int) -> np.ndarray:
  """Greedy tokens by recomputing the model on the whole prefix every step.

  Args:
    forward: int [batch, width] -> logits [batch, width, vocab], causal, so
      what follows a row's prefix does not matter (one compiled shape).
    sequences: int [batch, width], each row's prefix then room for
      `max_length` tokens.
    ends: int [batch], each row's prefix length.
    max_length: tokens to generate.

  Returns:
    int [batch, max_length].
  """
  sequences, rows = np.array(sequences), np.arange(len(ends))
  for step in range(max_length):
    logits = np.asarray(forward(sequences))[rows, ends + step - 1]
    sequences[rows, ends + step] = np.argmax(logits, axis=-1)
  return sequences[rows[:, None], ends[:, None] + np.arange(max_length)]


class ModelStepsTest(absltest.TestCase):

  def test_ragged_llama_prompts_decode_like_full_recomputation(self):
    lm = helpers.TinyLM.random(seed=3, head_scale=10.0)
    prompts, lengths, max_length = helpers.PROMPTS, helpers.PROMPT_LENGTHS, 6

    @jax.jit
    def cached(params):
      cache, start = lm.prefill(
          params, prompts, lengths, prompts.shape[1] + max_length
      )
      return sampling.sample_decode(
          lm.step,
          params,
          cache,
          start,
          max_length=max_length,
          eos_id=None,
          pad_id=PAD,
          temperature=0.0,
      )

    sequences = np.pad(prompts, [(0, 0), (0, max_length)])
    expected = _uncached_argmax(
        lambda ids: lm.logits(lm.params, ids), sequences, lengths, max_length
    )
    np.testing.assert_array_equal(cached(lm.params), expected)

  def test_bart_decodes_like_full_recomputation(self):
    config = encoder_decoder.EncoderDecoderConfig(
        vocab_size=12,
        d_model=16,
        num_heads=2,
        ffn_dim=32,
        max_positions=16,
        dropout_rate=0.0,
    )
    model = encoder_decoder.EncoderDecoder(config)
    rng = np.random.default_rng(0)
    inputs = rng.integers(3, 12, (3, 6)).astype(np.int32)
    input_mask = np.ones((3, 6), np.int32)
    input_mask[1, 3:] = 0
    params = helpers.random_params(model, 0, inputs, input_mask, inputs)
    max_length, start_id = 5, 2

    @jax.jit
    def cached(params):
      state, start = model_steps.encoder_decoder_prefill(
          model,
          params,
          inputs,
          input_mask,
          cache_length=max_length,
          decoder_start_id=start_id,
      )
      return sampling.sample_decode(
          model_steps.encoder_decoder_tokens_to_logits(model),
          params,
          state,
          start,
          max_length=max_length,
          eos_id=None,
          pad_id=PAD,
          temperature=0.0,
      )

    apply = jax.jit(model.apply)
    sequences = np.zeros((3, max_length + 1), np.int32)
    sequences[:, 0] = start_id
    expected = _uncached_argmax(
        lambda ids: apply({'params': params}, inputs, input_mask, ids),
        sequences,
        np.ones(3, int),
        max_length,
    )
    np.testing.assert_array_equal(cached(params), expected)


if __name__ == '__main__':
  absltest.main()
