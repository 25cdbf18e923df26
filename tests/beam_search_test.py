"""Tests for flaxllm.decoding.beam_search."""

import functools
import itertools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.decoding import beam_search
from flaxllm.decoding import model_steps
from flaxllm.decoding import sampling
from flaxllm.models import encoder_decoder
from tests import decoding_helpers as helpers

PAD, EOS, VOCAB, MAX_LENGTH = 0, 1, 4, 3
PROMPTS = np.array([[2, 3, 2], [3, 0, 0]], np.int32)
PROMPT_LENGTHS = np.array([3, 1], np.int32)


@functools.cache
def _lm():
  return helpers.TinyLM.random(seed=4, head_scale=8.0, vocab_size=VOCAB)


def _brute_force(lm, length_penalty: float):
  """Every finished hypothesis of every row, best first.

  A hypothesis ends at its first EOS or after MAX_LENGTH tokens.

  Returns:
    Per row, a list of (score, tokens padded with PAD to MAX_LENGTH).
  """
  continuations = np.array(
      list(itertools.product(range(VOCAB), repeat=MAX_LENGTH)), np.int32
  )  # [VOCAB ** MAX_LENGTH, MAX_LENGTH]
  results = []
  for prompt, length in zip(PROMPTS, PROMPT_LENGTHS):
    ids = np.concatenate(
        [np.tile(prompt[:length], (len(continuations), 1)), continuations], 1
    )
    log_probs = jax.nn.log_softmax(lm.logits(lm.params, jnp.asarray(ids)))
    token_log_probs = np.take_along_axis(
        np.asarray(log_probs[:, length - 1 : -1]),
        continuations[..., None],
        axis=-1,
    )[
        ..., 0
    ]  # [hypotheses, MAX_LENGTH]
    hypotheses = {}
    for tokens, scores in zip(continuations, token_log_probs):
      size = MAX_LENGTH
      if EOS in tokens:
        size = list(tokens).index(EOS) + 1
      padded = tuple(tokens[:size]) + (PAD,) * (MAX_LENGTH - size)
      hypotheses[padded] = scores[:size].sum() / size**length_penalty
    results.append(
        sorted(((s, t) for t, s in hypotheses.items()), reverse=True)
    )
  return results


@functools.partial(jax.jit, static_argnames=('lm', 'num_beams'))
def _llama_beam_search(params, length_penalty, *, lm, num_beams):
  """Beam search on PROMPTS; the length penalty is traced (one compile)."""
  cache, start = lm.prefill(
      params, PROMPTS, PROMPT_LENGTHS, PROMPTS.shape[1] + MAX_LENGTH
  )
  return beam_search.beam_search(
      lm.step,
      params,
      cache,
      start,
      num_beams=num_beams,
      max_length=MAX_LENGTH,
      eos_id=EOS,
      pad_id=PAD,
      length_penalty=length_penalty,
  )


class BeamSearchTest(parameterized.TestCase):

  @parameterized.parameters(0.0, 1.0, 2.5)
  def test_wide_beam_equals_brute_force_enumeration(self, length_penalty):
    # 16 beams keep every live prefix of a 4-token vocabulary over 3 steps,
    # so the kept hypotheses are exactly the best 16 of all 40.
    lm = _lm()
    num_beams = 16
    result = _llama_beam_search(
        lm.params, length_penalty, lm=lm, num_beams=num_beams
    )
    for row, expected in enumerate(_brute_force(lm, length_penalty)):
      self.assertLen(expected, 40)
      expected = expected[:num_beams]
      np.testing.assert_allclose(
          result.scores[row], [score for score, _ in expected], rtol=1e-4
      )
      np.testing.assert_array_equal(
          result.sequences[row], [tokens for _, tokens in expected]
      )
    # The penalty matters: the best hypotheses differ in length.
    lengths = np.sum(np.cumsum(result.sequences == EOS, -1) == 0, -1)
    self.assertGreater(len(set(lengths[:, :4].ravel().tolist())), 1)

  def test_one_beam_is_greedy(self):
    lm = _lm()
    result = _llama_beam_search(lm.params, 0.0, lm=lm, num_beams=1)

    @jax.jit
    def greedy(params):
      cache, start = lm.prefill(
          params, PROMPTS, PROMPT_LENGTHS, PROMPTS.shape[1] + MAX_LENGTH
      )
      return sampling.sample_decode(
          lm.step,
          params,
          cache,
          start,
          max_length=MAX_LENGTH,
          eos_id=EOS,
          pad_id=PAD,
          temperature=0.0,
      )

    greedy_tokens = greedy(lm.params)
    np.testing.assert_array_equal(result.sequences[:, 0], greedy_tokens)

  def test_bart_beam_scores_match_a_full_forward_pass(self):
    # Rows with different sources: a beam that decoded against another
    # row's source would score differently from a full forward pass.
    config = encoder_decoder.EncoderDecoderConfig(
        vocab_size=VOCAB,
        d_model=16,
        num_heads=2,
        ffn_dim=32,
        max_positions=16,
        dropout_rate=0.0,
        tie_embeddings=False,
    )
    model = encoder_decoder.EncoderDecoder(config)
    inputs = np.array([[2, 3, 2, 3], [3, 3, 2, 0]], np.int32)
    input_mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32)
    params = helpers.random_params(model, 2, inputs, input_mask, inputs)
    # Peaked logits that depend on the source (strong cross-attention).
    params['shared']['embedding'] *= 50.0
    params['lm_head'] *= 50.0
    for layer in ('layers_0', 'layers_1'):
      params['decoder'][layer]['encoder_attn']['out_proj']['kernel'] *= 50.0
    start_id = 2

    @jax.jit
    def run(params):
      state, start = model_steps.encoder_decoder_prefill(
          model,
          params,
          inputs,
          input_mask,
          cache_length=MAX_LENGTH,
          decoder_start_id=start_id,
      )
      return beam_search.beam_search(
          model_steps.encoder_decoder_tokens_to_logits(model),
          params,
          state,
          start,
          num_beams=3,
          max_length=MAX_LENGTH,
          eos_id=EOS,
          pad_id=PAD,
          length_penalty=1.0,
      )

    result = run(params)
    decoder_inputs = np.concatenate(
        [np.full((2, 3, 1), start_id), result.sequences[:, :, :-1]], axis=-1
    ).reshape(6, MAX_LENGTH)
    logits = jax.jit(model.apply)(
        {'params': params},
        np.repeat(inputs, 3, axis=0),
        np.repeat(input_mask, 3, axis=0),
        decoder_inputs,
    )
    sequences = np.asarray(result.sequences).reshape(6, MAX_LENGTH)
    token_log_probs = np.take_along_axis(
        np.asarray(jax.nn.log_softmax(logits)), sequences[..., None], -1
    )[..., 0]
    ends = np.argmax(np.append(sequences == EOS, np.ones((6, 1), bool), 1), 1)
    lengths = np.minimum(ends + 1, MAX_LENGTH)
    real = np.arange(MAX_LENGTH) < lengths[:, None]
    rescored = np.where(real, token_log_probs, 0).sum(-1) / lengths
    np.testing.assert_allclose(result.scores.reshape(6), rescored, rtol=1e-4)

  def test_zero_beams_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'num_beams'):
      beam_search.beam_search(
          _lm().step,
          None,
          None,
          jnp.zeros((1,), jnp.int32),
          num_beams=0,
          max_length=2,
          eos_id=EOS,
          pad_id=PAD,
      )


if __name__ == '__main__':
  absltest.main()
