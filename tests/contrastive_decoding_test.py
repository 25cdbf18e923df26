"""Tests for flaxllm.decoding.contrastive (CD and SCD) and early_exit."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.decoding import contrastive
from flaxllm.decoding import early_exit
from tests import decoding_helpers as helpers

PAD = helpers.PAD
PROMPTS, PROMPT_LENGTHS = helpers.PROMPTS, helpers.PROMPT_LENGTHS
DRAWS = 4000


@functools.cache
def _expert_and_amateur(amateur_kind: str):
  """The expert and an amateur.

  Args:
    amateur_kind: 'early_exit' (the expert's first layer of two, close to
      the expert) or 'other' (a blend with another random model, which
      disagrees with the expert more often).

  Returns:
    (expert, amateur) TinyLMs.
  """
  expert, other = helpers.target_and_draft()
  if amateur_kind == 'other':
    return expert, other
  amateur = helpers.TinyLM(
      *early_exit.early_exit_model(
          expert.model.config, expert.params, num_layers=1
      )
  )
  return expert, amateur


def _prefill_both(expert, amateur, params, prompts, lengths, cache_length):
  expert_cache, start = expert.prefill(
      params[0], prompts, lengths, cache_length
  )
  amateur_cache, _ = amateur.prefill(params[1], prompts, lengths, cache_length)
  return expert_cache, amateur_cache, start


class ContrastiveScoresTest(parameterized.TestCase):

  @parameterized.parameters(
      ('original', 0.1, 0.0, 1.0),
      ('improved', 0.1, 0.5, 1.0),
      ('improved', 0.3, 1.0, 0.5),
      ('improved', 0.0, 0.0, 1.0),
  )
  def test_matches_the_formulas(self, form, alpha, beta, amateur_temperature):
    rng = np.random.default_rng(0)
    expert_logits = rng.normal(0, 3, (4, 9))
    amateur_logits = rng.normal(0, 3, (4, 9))
    scores = contrastive.contrastive_scores(
        jnp.asarray(expert_logits),
        jnp.asarray(amateur_logits),
        alpha=alpha,
        beta=beta,
        form=form,
        amateur_temperature=amateur_temperature,
    )

    def log_softmax(x):
      x = x - x.max(-1, keepdims=True)
      return x - np.log(np.exp(x).sum(-1, keepdims=True))

    log_expert = log_softmax(expert_logits)
    log_amateur = log_softmax(amateur_logits / amateur_temperature)
    if form == 'original':
      expected = log_expert - log_amateur
    else:
      expected = (1 + beta) * log_expert - beta * log_amateur
    expert_probs = np.exp(log_expert)
    plausible = expert_probs >= alpha * expert_probs.max(-1, keepdims=True)
    expected = np.where(plausible, expected, -np.inf)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    if alpha > 0:
      self.assertFalse(np.all(plausible))

  def test_alpha_beta_zero_gives_the_expert_distribution(self):
    logits = jnp.array([[2.0, -1.0, 0.5]])
    scores = contrastive.contrastive_scores(
        logits, jnp.array([[5.0, 0.0, 0.0]]), alpha=0.0, beta=0.0
    )
    np.testing.assert_allclose(
        jax.nn.softmax(scores), jax.nn.softmax(logits), atol=1e-6
    )

  @parameterized.parameters(
      dict(form='best'),
      dict(alpha=1.5),
      dict(beta=-1.0),
      dict(amateur_temperature=0.0),
  )
  def test_bad_settings_are_user_errors(self, **overrides):
    settings = dict(
        alpha=0.1, beta=0.5, form='improved', amateur_temperature=1.0
    )
    settings.update(overrides)
    with self.assertRaises(errors.UserInputError):
      contrastive.check_contrast(**settings)


class EarlyExitTest(absltest.TestCase):

  def test_scanned_and_unrolled_targets_give_the_same_amateur(self):
    expert, amateur = _expert_and_amateur('early_exit')
    config = expert.model.config
    scanned_config = config.replace(scan_layers=True)
    stacked = {
        name: value
        for name, value in expert.params.items()
        if not name.startswith('layers_')
    }
    stacked['layers'] = jax.tree.map(
        lambda *layers: jnp.stack(layers),
        *(expert.params[f'layers_{i}'] for i in range(config.num_layers)),
    )
    scanned_model, scanned_params = early_exit.early_exit_model(
        scanned_config, stacked, num_layers=1
    )
    ids = jnp.asarray(PROMPTS)
    amateur_logits = amateur.logits(amateur.params, ids)
    np.testing.assert_allclose(
        jax.jit(scanned_model.apply)({'params': scanned_params}, ids),
        amateur_logits,
        atol=1e-5,
    )
    # It shares the target's arrays and differs from the full target.
    self.assertIs(amateur.params['lm_head'], expert.params['lm_head'])
    self.assertNotIn('layers_1', amateur.params)
    self.assertGreater(
        float(
            jnp.abs(expert.logits(expert.params, ids) - amateur_logits).max()
        ),
        1.0,
    )

  def test_num_layers_out_of_range_is_a_user_error(self):
    expert, _ = _expert_and_amateur('early_exit')
    with self.assertRaisesRegex(errors.UserInputError, 'num_layers=2'):
      early_exit.early_exit_config(expert.model.config, 2)


class GreedySpeculativeContrastiveTest(absltest.TestCase):

  def test_greedy_scd_equals_greedy_cd(self):
    expert, amateur = _expert_and_amateur('other')
    max_length, gamma = 12, 3
    settings = dict(alpha=0.1, beta=0.5, form='improved')
    cache_length = PROMPTS.shape[1] + max_length + gamma + 1

    @jax.jit
    def run(params):
      expert_cache, amateur_cache, start = _prefill_both(
          expert, amateur, params, PROMPTS, PROMPT_LENGTHS, cache_length
      )
      common = dict(
          max_length=max_length,
          eos_id=None,
          pad_id=PAD,
          temperature=0.0,
          **settings,
      )
      cd = contrastive.contrastive_decode(
          expert.step,
          params[0],
          expert_cache,
          amateur.step,
          params[1],
          amateur_cache,
          start,
          **common,
      )
      scd = contrastive.speculative_contrastive_decode(
          expert.step,
          params[0],
          expert_cache,
          amateur.step,
          params[1],
          amateur_cache,
          start,
          gamma=gamma,
          **common,
      )
      return cd, scd

    cd, scd = run((expert.params, amateur.params))
    np.testing.assert_array_equal(scd.tokens, cd)
    # Some drafts were accepted and some rejected, unevenly across rows.
    accepted = np.asarray(scd.accepted)
    self.assertGreater(accepted.sum(), 0)
    self.assertLess(accepted.sum(), gamma * np.asarray(scd.target_calls).sum())
    self.assertGreater(len(set(accepted.tolist())), 1)


def _exact_cd_joint(expert, amateur, prompt, **settings) -> np.ndarray:
  """P(x1, x2) of one-step CD sampling, from full forward passes."""

  def next_token_probs(ids):
    scores = contrastive.contrastive_scores(
        expert.logits(expert.params, ids),
        amateur.logits(amateur.params, ids),
        **settings,
    )
    return jax.nn.softmax(scores, axis=-1)

  return helpers.two_token_joint(next_token_probs, prompt)


class SpeculativeContrastiveSamplingTest(absltest.TestCase):

  def _sample(self, amateur_kind, gamma, seed, with_cd, **settings):
    """(CD samples or None, SCD output), DRAWS rows on prompt 0, 2 tokens."""
    expert, amateur = _expert_and_amateur(amateur_kind)
    prompt = PROMPTS[0]

    @jax.jit
    def run(params, rng):
      prompts = jnp.tile(jnp.asarray(prompt), (DRAWS, 1))
      lengths = jnp.full((DRAWS,), len(prompt), jnp.int32)
      expert_cache, amateur_cache, start = _prefill_both(
          expert, amateur, params, prompts, lengths, len(prompt) + 2 + gamma
      )
      cd_rng, scd_rng = jax.random.split(rng)
      common = dict(max_length=2, eos_id=None, pad_id=PAD, **settings)
      cd = None
      if with_cd:
        cd = contrastive.contrastive_decode(
            expert.step,
            params[0],
            expert_cache,
            amateur.step,
            params[1],
            amateur_cache,
            start,
            rng=cd_rng,
            **common,
        )
      scd = contrastive.speculative_contrastive_decode(
          expert.step,
          params[0],
          expert_cache,
          amateur.step,
          params[1],
          amateur_cache,
          start,
          gamma=gamma,
          rng=scd_rng,
          **common,
      )
      return cd, scd

    return run((expert.params, amateur.params), jax.random.key(seed))

  def test_scd_and_cd_sample_the_contrastive_distribution(self):
    settings = dict(alpha=0.1, beta=0.5, form='improved')
    # gamma = 1 over two tokens: the second token is a bonus drawn from p_c
    # after the extra amateur call whenever the first draft is accepted.
    cd, scd = self._sample(
        'early_exit', gamma=1, seed=0, with_cd=True, **settings
    )
    expert, amateur = _expert_and_amateur('early_exit')
    exact = _exact_cd_joint(expert, amateur, PROMPTS[0], **settings)
    self.assertGreater(
        helpers.chi_square_pvalue(np.asarray(scd.tokens), exact), 1e-3
    )
    self.assertGreater(helpers.chi_square_pvalue(np.asarray(cd), exact), 1e-3)
    # Some rows had their draft rejected (two rounds), others accepted it
    # and drew the bonus token (one round).
    self.assertBetween(np.mean(scd.target_calls == 2), 0.01, 0.99)
    # The test has power: the expert's own distribution is rejected.
    expert_only = _exact_cd_joint(
        expert, amateur, PROMPTS[0], alpha=0.0, beta=0.0
    )
    self.assertLess(
        helpers.chi_square_pvalue(np.asarray(scd.tokens), expert_only), 1e-6
    )

  def test_scd_without_contrast_samples_the_expert_distribution(self):
    _, scd = self._sample(
        'other', gamma=2, seed=1, with_cd=False, alpha=0.0, beta=0.0
    )
    expert, amateur = _expert_and_amateur('other')
    exact = _exact_cd_joint(expert, amateur, PROMPTS[0], alpha=0.0, beta=0.0)
    self.assertGreater(
        helpers.chi_square_pvalue(np.asarray(scd.tokens), exact), 1e-3
    )


if __name__ == '__main__':
  absltest.main()
