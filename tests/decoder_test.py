"""Tests for flaxllm.models.decoder (the LLaMA-style model)."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.models import decoder
from flaxllm.models import layers

VOCAB, BATCH, LENGTH = 37, 2, 9
LOGICAL_AXES = {'batch', 'length', 'embed', 'heads', 'kv', 'mlp', 'vocab'}


def _config(**overrides) -> decoder.DecoderConfig:
  fields = dict(
      vocab_size=VOCAB,
      d_model=16,
      num_heads=4,
      num_kv_heads=2,
      ffn_dim=32,
      num_layers=2,
      max_positions=32,
      rope_theta=100.0,
  )
  return decoder.DecoderConfig.from_dict({**fields, **overrides})


def _ids(seed: int = 0, length: int = LENGTH) -> jax.Array:
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(0, VOCAB, (BATCH, length)), jnp.int32)


class _Jitted:
  """A Decoder whose `apply` is jitted (eager is slow)."""

  def __init__(self, config: decoder.DecoderConfig):
    self.module = decoder.Decoder(config)
    self.apply = jax.jit(
        self.module.apply, static_argnames=('decode', 'mutable')
    )

  def shapes(self, **kwargs):
    """The variables' shapes (boxed), without running the initializers."""
    return jax.eval_shape(
        functools.partial(self.module.init, **kwargs), jax.random.key(0), _ids()
    )


@functools.cache
def _base_params():
  """Random params of `_config()`, initialised once (init compiles slowly)."""
  return decoder.Decoder(_config()).init(jax.random.key(0), _ids())['params']


def _init(config: decoder.DecoderConfig):
  """The model and `_base_params` (restacked or untied to fit `config`)."""
  params = nn.unbox(_base_params())
  if config.tie_embeddings:
    params = {k: v for k, v in params.items() if k != 'lm_head'}
  if config.scan_layers:
    layer_names = [f'layers_{i}' for i in range(config.num_layers)]
    params = {k: v for k, v in params.items() if k not in layer_names}
    params['layers'] = jax.tree.map(
        lambda *xs: jnp.stack(xs), *(_base_params()[n] for n in layer_names)
    )
    params['layers'] = nn.unbox(params['layers'])
  return _Jitted(config), params


class DecoderTest(parameterized.TestCase):

  def test_gqa_shapes_and_axis_names(self):
    model = _Jitted(_config())
    boxed = model.shapes()['params']
    params = nn.unbox(boxed)
    attention = params['layers_0']['self_attn']
    self.assertEqual(attention['q_proj']['kernel'].shape, (16, 4, 4))
    self.assertEqual(attention['k_proj']['kernel'].shape, (16, 2, 4))
    self.assertEqual(attention['v_proj']['kernel'].shape, (16, 2, 4))
    self.assertEqual(attention['out_proj']['kernel'].shape, (4, 4, 16))
    self.assertEqual(params['lm_head'].shape, (16, VOCAB))
    for leaf in jax.tree.leaves(
        boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned)
    ):
      self.assertIsInstance(leaf, nn.Partitioned)
      self.assertLessEqual(set(leaf.names), LOGICAL_AXES)
    logits = jax.eval_shape(model.module.apply, {'params': params}, _ids())
    self.assertEqual(logits.shape, (BATCH, LENGTH, VOCAB))
    self.assertEqual(logits.dtype, jnp.float32)

  def test_tied_head_has_no_lm_head(self):
    model = _Jitted(_config(tie_embeddings=True, head_dim=8))
    params = nn.unbox(model.shapes()['params'])
    self.assertNotIn('lm_head', params)
    self.assertEqual(
        params['layers_0']['self_attn']['q_proj']['kernel'].shape, (16, 4, 8)
    )

  def test_causal(self):
    model, params = _init(_config())
    ids = _ids()
    changed = ids.at[:, 5:].set((ids[:, 5:] + 1) % VOCAB)
    logits = model.apply({'params': params}, ids)
    logits_changed = model.apply({'params': params}, changed)
    np.testing.assert_allclose(logits[:, :5], logits_changed[:, :5], atol=1e-6)
    self.assertGreater(np.abs(logits[:, 5:] - logits_changed[:, 5:]).max(), 0)

  def test_packed_documents_match_separate_runs(self):
    model, params = _init(_config())
    ids = _ids()
    segment_ids = jnp.array(
        [[1, 1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 2, 2, 2, 3, 3, 3, 0]]
    )
    packed = model.apply({'params': params}, ids, segment_ids=segment_ids)
    for row in range(BATCH):
      segments = np.asarray(segment_ids[row])
      for segment in set(segments.tolist()) - {0}:
        (where,) = np.nonzero(segments == segment)
        alone = model.apply({'params': params}, ids[row : row + 1, where])
        np.testing.assert_allclose(packed[row, where], alone[0], atol=1e-5)
    # Without segment ids the second document does see the first.
    unpacked = model.apply({'params': params}, ids)
    self.assertGreater(np.abs(unpacked[0, 4:] - packed[0, 4:]).max(), 1e-3)

  @parameterized.parameters(False, True)
  def test_cached_decoding_matches_full_pass(self, scan_layers):
    config = _config(
        scan_layers=scan_layers,
        rope_scaling={'rope_type': 'linear', 'factor': 2.0},
    )
    model, params = _init(config)
    ids = _ids(length=LENGTH)
    full = model.apply({'params': params}, ids)
    cache = jax.tree.map(
        lambda x: jnp.zeros(x.shape, x.dtype),
        model.shapes(decode=True)['cache'],
    )
    prefill = 4
    logits, variables = model.apply(
        {'params': params, 'cache': cache},
        ids[:, :prefill],
        decode=True,
        mutable=('cache',),
    )
    steps = [logits]
    for index in range(prefill, LENGTH):
      logits, variables = model.apply(
          {'params': params, 'cache': variables['cache']},
          ids[:, index : index + 1],
          decode=True,
          mutable=('cache',),
      )
      steps.append(logits)
    np.testing.assert_allclose(
        jnp.concatenate(steps, axis=1), full, atol=1e-5, rtol=0
    )

  @parameterized.parameters(False, True)
  def test_scan_matches_unrolled(self, remat):
    model, params = _init(_config())
    scanned, scan_params = _init(_config(scan_layers=True, remat=remat))
    expected = nn.unbox(scanned.shapes()['params'])
    self.assertEqual(
        jax.tree.map(jnp.shape, scan_params), jax.tree.map(jnp.shape, expected)
    )
    np.testing.assert_allclose(
        scanned.apply({'params': scan_params}, _ids()),
        model.apply({'params': params}, _ids()),
        atol=1e-5,
    )

  def test_bfloat16_compute(self):
    model, params = _init(_config(dtype='bfloat16'))
    logits = model.apply({'params': params}, _ids())
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertTrue(np.isfinite(np.asarray(logits)).all())

  def test_rope_is_relative(self):
    # q.k after rotation depends only on the position difference.
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
    inv_freq, _ = layers.rope_frequencies(8, 100.0)
    dot = lambda i, j: jnp.sum(
        layers.apply_rope(q, jnp.array([[i]]), inv_freq)
        * layers.apply_rope(k, jnp.array([[j]]), inv_freq)
    )
    np.testing.assert_allclose(dot(3, 1), dot(9, 7), rtol=1e-5)

  def test_invalid_configs(self):
    with self.assertRaisesRegex(errors.UserInputError, 'num_kv_heads'):
      _config(num_kv_heads=3)
    with self.assertRaisesRegex(errors.UserInputError, 'rope_type'):
      _config(rope_scaling={'rope_type': 'bogus'})
    with self.assertRaisesRegex(errors.UserInputError, 'unknown'):
      _config(n_layers=3)


if __name__ == '__main__':
  absltest.main()
