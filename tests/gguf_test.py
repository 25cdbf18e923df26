"""SmolLM2-135M-Instruct Q4_1 GGUF: our loader vs transformers' loader."""

import functools
import os

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from flaxllm import errors
from flaxllm.models import decoder
from flaxllm.models import gguf

PROMPTS = (
    'The capital of France is',
    (
        '<|im_start|>user\nWhat is the largest planet?<|im_end|>\n'
        '<|im_start|>assistant\n'
    ),
    'def fibonacci(n):\n',
)
NEW_TOKENS = 32
MAX_LENGTH = 80  # The KV cache's length: prompt plus new tokens.
TOLERANCE = 1e-3


@functools.cache
def _ours():
  return gguf.load_gguf(gguf.smollm2_path(), scan_layers=True)


@functools.cache
def _theirs():
  path = gguf.smollm2_path()
  folder, name = os.path.dirname(path), os.path.basename(path)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      folder, gguf_file=name, dtype=torch.float32
  ).eval()
  tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
  return model, tokenizer


def _their_greedy(ids: list[int]) -> list[int]:
  """Greedy continuation by full recomputation (no cache API involved)."""
  model, _ = _theirs()
  ids = list(ids)
  with torch.no_grad():
    for _ in range(NEW_TOKENS):
      logits = model(torch.tensor([ids])).logits[0, -1]
      ids.append(int(logits.argmax()))
  return ids[-NEW_TOKENS:]


@functools.cache
def _decoding_fns(config: decoder.DecoderConfig):
  """(empty KV cache, jitted one-token greedy step) for `config`."""
  model = decoder.Decoder(config)
  shapes = jax.eval_shape(
      functools.partial(model.init, decode=True),
      jax.random.key(0),
      jnp.zeros((1, MAX_LENGTH), jnp.int32),
  )
  cache = jax.tree.map(
      lambda x: jnp.zeros(x.shape, x.dtype), nn.unbox(shapes['cache'])
  )

  @jax.jit
  def step(params, cache, token):
    logits, variables = model.apply(
        {'params': params, 'cache': cache},
        token[None, None],
        decode=True,
        mutable=['cache'],
    )
    return variables['cache'], jnp.argmax(logits[0, -1]).astype(jnp.int32)

  return cache, step


def _our_greedy(
    config: decoder.DecoderConfig, params, ids: list[int]
) -> list[int]:
  """Greedy continuation with the KV cache, one token per jitted step."""
  cache, step = _decoding_fns(config)
  # The prompt goes through the same one-token step (a single compilation).
  for token in ids:
    cache, next_token = step(params, cache, jnp.int32(token))
  generated = [int(next_token)]
  for _ in range(NEW_TOKENS - 1):
    cache, next_token = step(params, cache, next_token)
    generated.append(int(next_token))
  return generated


class GgufTest(absltest.TestCase):

  def test_config(self):
    config, params, tokenizer = _ours()
    self.assertEqual(
        (config.num_layers, config.d_model, config.num_heads),
        (30, 576, 9),
    )
    self.assertEqual((config.kv_heads, config.dim_per_head), (3, 64))
    self.assertTrue(config.tie_embeddings)
    self.assertEqual(config.rope_theta, 100000.0)
    self.assertEqual(
        params['layers']['self_attn']['k_proj']['kernel'].shape,
        (30, 576, 3, 64),
    )
    self.assertEqual((tokenizer.bos_id, tokenizer.eos_id), (1, 2))
    self.assertEqual(tokenizer.vocab_size, config.vocab_size)

  def test_tokenizer_matches_transformers(self):
    _, _, tokenizer = _ours()
    _, their_tokenizer = _theirs()
    for prompt in PROMPTS + ('naïve café 😀  12345\t\n x',):
      self.assertEqual(
          tokenizer.encode(prompt),
          their_tokenizer(prompt, add_special_tokens=False)['input_ids'],
      )

  def test_logits_and_greedy_continuations_match_transformers(self):
    config, params, tokenizer = _ours()
    params = jax.device_put(params)
    model, _ = _theirs()
    ids = tokenizer.encode(PROMPTS[0])
    ours = jax.jit(decoder.Decoder(config).apply)(
        {'params': params}, jnp.asarray([ids], jnp.int32)
    )
    with torch.no_grad():
      theirs = model(torch.tensor([ids])).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=TOLERANCE, rtol=0)
    for prompt in PROMPTS:
      ids = tokenizer.encode(prompt)
      self.assertEqual(
          _our_greedy(config, params, ids), _their_greedy(ids), prompt
      )

  def test_missing_file(self):
    with self.assertRaisesRegex(errors.UserInputError, 'does not exist'):
      gguf.load_gguf('/nonexistent/model.gguf')


if __name__ == '__main__':
  absltest.main()
