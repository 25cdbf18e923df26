"""Tests for flaxllm.decoding.speculative (draft-and-verify decoding)."""

import functools

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from flaxllm import errors
from flaxllm.decoding import model_steps
from flaxllm.decoding import processors
from flaxllm.decoding import sampling
from flaxllm.decoding import speculative
from flaxllm.models import decoder

# pylint: disable=g-importing-member
from tests.decoding_helpers import VOCAB, PAD, PROMPTS, PROMPT_LENGTHS, target_and_draft, two_token_joint, chi_square_pvalue

MAX_LENGTH = 12


@functools.cache
def _target_greedy() -> np.ndarray:
  """The target's own greedy output on PROMPTS, no EOS (cached sampler)."""
  target, _ = target_and_draft()
  cache, start = target.prefill(
      target.params, PROMPTS, PROMPT_LENGTHS, PROMPTS.shape[1] + MAX_LENGTH
  )
  run = jax.jit(
      functools.partial(
          sampling.sample_decode,
          target.step,
          max_length=MAX_LENGTH,
          eos_id=None,
          pad_id=PAD,
          temperature=0.0,
      )
  )
  return np.asarray(run(target.params, cache, start))


def cut_at_eos(tokens: np.ndarray, eos_id: int) -> np.ndarray:
  """Each row up to and including its first EOS, then PAD."""
  after_eos = np.cumsum(tokens == eos_id, axis=1) - (tokens == eos_id) > 0
  return np.where(after_eos, PAD, tokens)


@functools.partial(
    jax.jit,
    static_argnames=(
        'target',
        'draft',
        'max_length',
        'eos_id',
        'gamma',
        'adaptive_gamma',
        'initial_gamma',
    ),
)
def _speculative_greedy(
    target_params,
    draft_params,
    *,
    target,
    draft,
    max_length,
    eos_id,
    gamma,
    adaptive_gamma=False,
    initial_gamma=None,
):
  cache_length = PROMPTS.shape[1] + max_length + gamma + 1
  target_cache, start = target.prefill(
      target_params, PROMPTS, PROMPT_LENGTHS, cache_length
  )
  draft_cache, _ = draft.prefill(
      draft_params, PROMPTS, PROMPT_LENGTHS, cache_length
  )
  return speculative.speculative_decode(
      target.step,
      target_params,
      target_cache,
      draft.step,
      draft_params,
      draft_cache,
      start,
      max_length=max_length,
      eos_id=eos_id,
      pad_id=PAD,
      gamma=gamma,
      adaptive_gamma=adaptive_gamma,
      initial_gamma=initial_gamma,
      temperature=0.0,
  )


def _table_step(next_token):
  """A 'model' over a transition table; its cache only holds lengths."""

  def tokens_to_logits(params, ids, cache):
    del params
    return 10.0 * jax.nn.one_hot(next_token[ids], len(next_token)), cache

  return tokens_to_logits


def _table_speculative(draft_next, max_length, gamma, initial_gamma):
  """Greedy speculative decoding of target t -> t + 1 (mod 8), one row."""
  target_next = (jnp.arange(VOCAB) + 1) % VOCAB
  cache = {'position_index': jnp.zeros((1,), jnp.int32)}
  return jax.jit(
      lambda: speculative.speculative_decode(
          _table_step(target_next),
          None,
          cache,
          _table_step(draft_next),
          None,
          cache,
          jnp.array([2], jnp.int32),
          max_length=max_length,
          eos_id=None,
          pad_id=PAD,
          gamma=gamma,
          adaptive_gamma=True,
          initial_gamma=initial_gamma,
          temperature=0.0,
      )
  )()


class GreedySpeculativeTest(absltest.TestCase):

  def test_equals_target_greedy_with_ragged_acceptance_and_eos(self):
    target, draft = target_and_draft()
    free_run = _target_greedy()
    # An eos that row 0 emits mid-sequence exercises the stop and pad fill.
    eos_id = int(free_run[0, 5])
    expected = cut_at_eos(free_run, eos_id)
    result = _speculative_greedy(
        target.params,
        draft.params,
        target=target,
        draft=draft,
        max_length=MAX_LENGTH,
        eos_id=eos_id,
        gamma=3,
    )
    np.testing.assert_array_equal(result.tokens, expected)
    self.assertEqual(int(expected[0, -1]), PAD)
    ends_at_eos = np.any(free_run == eos_id, axis=1)
    self.assertTrue(ends_at_eos[0])
    np.testing.assert_array_equal(
        result.num_tokens,
        np.where(
            ends_at_eos, np.argmax(free_run == eos_id, axis=1) + 1, MAX_LENGTH
        ),
    )
    # Acceptance is ragged: rows accept different numbers of drafts, and
    # some drafts are rejected.
    accepted = np.asarray(result.accepted)
    self.assertGreater(len(set(accepted.tolist())), 1)
    self.assertTrue(np.all(result.num_tokens <= accepted + result.target_calls))
    self.assertTrue(np.any(result.target_calls > 1))
    self.assertGreater(accepted.sum(), 0)
    self.assertLess(accepted.sum(), 3 * np.asarray(result.target_calls).sum())

  def test_adaptive_gamma_equals_target_greedy(self):
    target, draft = target_and_draft()
    result = _speculative_greedy(
        target.params,
        draft.params,
        target=target,
        draft=draft,
        max_length=MAX_LENGTH,
        eos_id=None,
        gamma=4,
        adaptive_gamma=True,
        initial_gamma=2,
    )
    np.testing.assert_array_equal(result.tokens, _target_greedy())
    self.assertTrue(np.all((result.gamma >= 1) & (result.gamma <= 4)))

  def test_adaptive_gamma_grows_by_two_on_full_acceptance(self):
    # The draft is the target: every draft is accepted. Rounds draft
    # 1, 3, 5 tokens and emit 2, 4, 6; each also feeds the draft its last
    # draft (the call the next round would make).
    result = _table_speculative(
        (jnp.arange(VOCAB) + 1) % VOCAB,
        max_length=12,
        gamma=5,
        initial_gamma=1,
    )
    np.testing.assert_array_equal(
        result.tokens, [[(3 + i) % VOCAB for i in range(12)]]
    )
    self.assertEqual(int(result.target_calls[0]), 3)
    self.assertEqual(int(result.draft_calls[0]), (1 + 1) + (3 + 1) + (5 + 1))
    self.assertEqual(int(result.accepted[0]), 1 + 3 + 5)
    self.assertEqual(int(result.gamma[0]), 5)

  def test_adaptive_gamma_shrinks_by_one_on_rejection(self):
    # The draft is always wrong: one token per round, gamma 4, 3, 2, 1, 1.
    result = _table_speculative(
        (jnp.arange(VOCAB) + 2) % VOCAB,
        max_length=6,
        gamma=5,
        initial_gamma=4,
    )
    np.testing.assert_array_equal(result.tokens, [[3, 4, 5, 6, 7, 0]])
    self.assertEqual(int(result.target_calls[0]), 6)
    self.assertEqual(int(result.draft_calls[0]), 4 + 3 + 2 + 1 + 1 + 1)
    self.assertEqual(int(result.accepted[0]), 0)
    self.assertEqual(int(result.gamma[0]), 1)

  def test_bad_gamma_is_a_user_error(self):
    target, _ = target_and_draft()
    with self.assertRaisesRegex(errors.UserInputError, 'gamma'):
      speculative.speculative_decode(
          target.step,
          None,
          None,
          target.step,
          None,
          None,
          jnp.zeros((1,), jnp.int32),
          max_length=2,
          eos_id=None,
          pad_id=PAD,
          gamma=0,
          temperature=0.0,
      )


class SpeculativeSamplingTest(absltest.TestCase):

  def test_samples_follow_the_target_distribution(self):
    target, draft = target_and_draft()
    draws, temperature, top_k = 4000, 0.9, 6
    prompt = PROMPTS[0]

    @jax.jit
    def run(target_params, draft_params, rng):
      prompts = jnp.tile(jnp.asarray(prompt), (draws, 1))
      lengths = jnp.full((draws,), len(prompt), jnp.int32)
      cache_length = len(prompt) + 2 + 2
      target_cache, start = target.prefill(
          target_params, prompts, lengths, cache_length
      )
      draft_cache, _ = draft.prefill(
          draft_params, prompts, lengths, cache_length
      )
      # gamma = 1 over two tokens: the second is a bonus token whenever the
      # first draft is accepted, a fresh round's draft otherwise.
      return speculative.speculative_decode(
          target.step,
          target_params,
          target_cache,
          draft.step,
          draft_params,
          draft_cache,
          start,
          max_length=2,
          eos_id=None,
          pad_id=PAD,
          gamma=1,
          rng=rng,
          temperature=temperature,
          top_k=top_k,
      )

    result = run(target.params, draft.params, jax.random.key(0))
    samples = np.asarray(result.tokens)

    def probs_of(model):
      def next_token_probs(ids):
        return jax.nn.softmax(
            processors.filter_logits(
                model.logits(model.params, ids),
                temperature=temperature,
                top_k=top_k,
            )
        )

      return two_token_joint(next_token_probs, prompt)

    self.assertGreater(chi_square_pvalue(samples, probs_of(target)), 1e-3)
    # The test has power: the draft's own distribution is rejected.
    self.assertLess(chi_square_pvalue(samples, probs_of(draft)), 1e-6)
    # Both accepted and rejected drafts occurred.
    accepted = np.asarray(result.accepted)
    self.assertBetween(accepted.mean(), 0.05, 0.95)


if __name__ == '__main__':
  absltest.main()
