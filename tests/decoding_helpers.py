"""Tiny LLaMA-family models and statistics shared by the decoding tests."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from flaxllm.decoding import model_steps
from flaxllm.models import decoder

VOCAB, PAD = 8, 0
# Right-padded prompts of lengths 4, 2 and 1.
PROMPTS = np.array([[3, 4, 5, 6], [7, 2, 0, 0], [5, 0, 0, 0]], np.int32)
PROMPT_LENGTHS = np.array([4, 2, 1], np.int32)


def random_params(model: nn.Module, seed: int, *init_args) -> dict:
  """Params drawn in numpy: N(0, 0.02^2) weights, unit norm scales.

  Much faster than compiling `model.init` on CPU.

  Args:
    model: the module.
    seed: numpy seed.
    *init_args: example inputs of `model.init`.

  Returns:
    The unboxed params tree.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), *init_args)['params']
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if jax.tree_util.keystr(path).endswith("['scale']"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.asarray(rng.normal(0.0, 0.02, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, nn.unbox(shapes))


class TinyLM:
  """A LLaMA-family model, its params and its helpers.

  Attributes:
    model: the `decoder.Decoder`.
    params: unboxed params.
    step: its `tokens_to_logits`.
  """

  def __init__(self, model: decoder.Decoder, params):
    self.model, self.params = model, params
    self.step = model_steps.decoder_tokens_to_logits(model)
    self._apply = jax.jit(model.apply)

  @classmethod
  def random(
      cls,
      seed: int,
      head_scale: float,
      vocab_size: int = VOCAB,
      scan_layers: bool = False,
  ) -> 'TinyLM':
    """A random 2-layer model with peaked next-token distributions.

    Args:
      seed: numpy seed of the params.
      head_scale: multiplies the LM head (random init is nearly uniform).
      vocab_size: the vocabulary size.
      scan_layers: stack the layers under nn.scan.

    Returns:
      The model.
    """
    config = decoder.DecoderConfig.from_dict(
        dict(
            vocab_size=vocab_size,
            scan_layers=scan_layers,
            d_model=16,
            num_heads=4,
            num_kv_heads=2,
            ffn_dim=32,
            num_layers=2,
            max_positions=64,
            rope_theta=100.0,
        )
    )
    model = decoder.Decoder(config)
    params = random_params(model, seed, jnp.zeros((1, 4), jnp.int32))
    params['lm_head'] *= head_scale
    return cls(model, params)

  def prefill(self, params, prompts, lengths, cache_length: int):
    return model_steps.decoder_prefill(
        self.model, params, prompts, lengths, cache_length=cache_length
    )

  def logits(self, params, ids) -> jax.Array:
    """Uncached logits [batch, length, vocab] (jitted)."""
    return self._apply({'params': params}, ids)


def blend(first, second, weight: float):
  """Params (1 - weight) * first + weight * second."""
  return jax.tree.map(lambda a, b: (1 - weight) * a + weight * b, first, second)


@functools.cache
def target_and_draft():
  """A target and a draft that agrees with it only part of the time."""
  target = TinyLM.random(seed=0, head_scale=25.0)
  other = TinyLM.random(seed=1, head_scale=25.0)
  return target, TinyLM(target.model, blend(target.params, other.params, 0.6))


def two_token_joint(next_token_probs, prompt: np.ndarray) -> np.ndarray:
  """Exact P(x1, x2 | prompt) [vocab, vocab] from a next-token function.

  Args:
    next_token_probs: ids [batch, length] -> probabilities [batch, length,
      vocab] of the token after each position (full recomputation).
    prompt: int [length].

  Returns:
    float64 [vocab, vocab].
  """
  ids = np.concatenate(
      [np.tile(prompt, (VOCAB, 1)), np.arange(VOCAB)[:, None]], axis=1
  )  # [vocab, length + 1]: the prompt then each first token
  probs = np.asarray(next_token_probs(jnp.asarray(ids, jnp.int32)), np.float64)
  first = probs[0, -2]  # [vocab]
  return first[:, None] * probs[:, -1]  # [vocab, vocab]


def chi_square_pvalue(samples: np.ndarray, probs: np.ndarray) -> float:
  """Goodness of fit of (x1, x2) samples to a joint distribution.

  Cells expected below 5 are pooled into one cell.

  Args:
    samples: int [draws, 2].
    probs: [vocab, vocab] exact probabilities.

  Returns:
    The chi-square test's p-value.
  """
  counts = np.zeros(probs.size)
  np.add.at(counts, samples[:, 0] * VOCAB + samples[:, 1], 1)
  expected = probs.reshape(-1) * len(samples)
  small = expected < 5
  observed = np.append(counts[~small], counts[small].sum())
  expected = np.append(expected[~small], expected[small].sum())
  if expected[-1] == 0:
    observed, expected = observed[:-1], expected[:-1]
  expected *= observed.sum() / expected.sum()
  return float(stats.chisquare(observed, expected).pvalue)
