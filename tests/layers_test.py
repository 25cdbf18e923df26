"""Tests for flaxllm.models.layers: masks, attention, cache, MLP, positions."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.models import layers

BATCH, LENGTH, EMBED, HEADS, HEAD_DIM = 2, 6, 16, 4, 8


def _attention(**kwargs) -> layers.MultiHeadAttention:
  return layers.MultiHeadAttention(num_heads=HEADS, head_dim=HEAD_DIM, **kwargs)


def _inputs(seed: int = 0, length: int = LENGTH) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), (BATCH, length, EMBED))


def _causal_mask(length: int = LENGTH) -> jax.Array:
  ones = jnp.ones((BATCH, length), jnp.int32)
  return layers.make_attention_mask(ones, ones, causal=True)


class MakeAttentionMaskTest(absltest.TestCase):

  def test_combines_padding_and_causality(self):
    query_mask = jnp.array([[1, 1, 0]])
    key_mask = jnp.array([[1, 0, 1]])
    mask = layers.make_attention_mask(query_mask, key_mask, causal=True)
    expected = np.array([[[
        [True, False, False],
        [True, False, False],
        [False, False, False],
    ]]])
    np.testing.assert_array_equal(mask, expected)

  def test_cross_attention_shape(self):
    mask = layers.make_attention_mask(jnp.ones((3, 2)), jnp.ones((3, 5)))
    chex.assert_shape(mask, (3, 1, 2, 5))
    self.assertTrue(bool(mask.all()))


class MultiHeadAttentionTest(parameterized.TestCase):

  def test_causal_mask_blocks_the_future(self):
    module = _attention()
    inputs = _inputs()
    params = module.init(jax.random.key(1), inputs)
    changed_position = 3
    perturbed = inputs.at[:, changed_position].add(1.0)
    apply = functools.partial(module.apply, params, mask=_causal_mask())
    before, after = apply(inputs), apply(perturbed)
    np.testing.assert_allclose(
        before[:, :changed_position], after[:, :changed_position], atol=1e-6
    )
    self.assertGreater(
        float(
            jnp.abs(
                before[:, changed_position:] - after[:, changed_position:]
            ).max()
        ),
        1e-3,
    )

  def test_key_padding_mask_ignores_pad_keys(self):
    module = _attention()
    inputs = _inputs()
    params = module.init(jax.random.key(1), inputs)
    key_mask = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])
    mask = layers.make_attention_mask(jnp.ones_like(key_mask), key_mask)
    # Garbage at padded positions only.
    noise = jax.random.normal(jax.random.key(2), inputs.shape) * 10
    perturbed = jnp.where(key_mask[..., None] == 0, noise, inputs)
    kv_only = functools.partial(module.apply, params, inputs, mask=mask)
    np.testing.assert_allclose(kv_only(inputs), kv_only(perturbed), atol=1e-5)
    # Without the mask the pad keys do matter.
    unmasked = functools.partial(module.apply, params, inputs)
    self.assertGreater(
        float(jnp.abs(unmasked(inputs) - unmasked(perturbed)).max()), 1e-3
    )

  @parameterized.named_parameters(
      ('multi_head', None), ('grouped_query', 2), ('multi_query', 1)
  )
  def test_cached_decoding_matches_full_causal_pass(self, num_kv_heads):
    module = _attention(num_kv_heads=num_kv_heads)
    inputs = _inputs()
    params = module.init(jax.random.key(1), inputs)['params']
    full = module.apply({'params': params}, inputs, mask=_causal_mask())

    # The creating call sizes the cache from its length (the max length).
    _, variables = module.apply(
        {'params': params}, inputs, decode=True, mutable=['cache']
    )
    cache = variables['cache']
    np.testing.assert_array_equal(cache['cache_index'], [0] * BATCH)
    step_outputs = []
    for position in range(LENGTH):
      output, variables = module.apply(
          {'params': params, 'cache': cache},
          inputs[:, position : position + 1],
          decode=True,
          mutable=['cache'],
      )
      cache = variables['cache']
      step_outputs.append(output)
    np.testing.assert_array_equal(cache['cache_index'], [LENGTH] * BATCH)
    np.testing.assert_allclose(
        jnp.concatenate(step_outputs, axis=1), full, atol=1e-5
    )

  def test_cached_prefill_then_steps_match_full_pass(self):
    module = _attention()
    inputs = _inputs()
    params = module.init(jax.random.key(1), inputs)['params']
    full = module.apply({'params': params}, inputs, mask=_causal_mask())
    _, variables = module.apply(
        {'params': params}, inputs, decode=True, mutable=['cache']
    )
    prefix_length = 4
    prefill, variables = module.apply(
        {'params': params, 'cache': variables['cache']},
        inputs[:, :prefix_length],
        decode=True,
        mutable=['cache'],
    )
    step, _ = module.apply(
        {'params': params, 'cache': variables['cache']},
        inputs[:, prefix_length : prefix_length + 1],
        decode=True,
        mutable=['cache'],
    )
    np.testing.assert_allclose(prefill, full[:, :prefix_length], atol=1e-5)
    np.testing.assert_allclose(
        step, full[:, prefix_length : prefix_length + 1], atol=1e-5
    )

  def test_cross_attention_cache_reuses_encoder_keys(self):
    module = _attention()
    queries, memory = _inputs(0, length=1), _inputs(1, length=5)
    params = module.init(jax.random.key(1), queries, memory)['params']
    expected = module.apply({'params': params}, queries, memory)
    _, variables = module.apply(
        {'params': params}, queries, memory, decode=True, mutable=['cache']
    )
    chex.assert_shape(
        variables['cache']['cached_key'], (BATCH, 5, HEADS, HEAD_DIM)
    )
    # Later calls read the cache: the memory argument no longer matters.
    cached, _ = module.apply(
        {'params': params, 'cache': variables['cache']},
        queries,
        jnp.zeros_like(memory),
        decode=True,
        mutable=['cache'],
    )
    np.testing.assert_allclose(cached, expected, atol=1e-6)

  def test_grouped_query_shapes_and_equivalence_to_repeated_heads(self):
    num_kv_heads = 2
    gqa = _attention(num_kv_heads=num_kv_heads)
    inputs = _inputs()
    gqa_params = gqa.init(jax.random.key(1), inputs)['params']
    chex.assert_shape(
        gqa_params['q_proj']['kernel'].value, (EMBED, HEADS, HEAD_DIM)
    )
    chex.assert_shape(
        gqa_params['k_proj']['kernel'].value, (EMBED, num_kv_heads, HEAD_DIM)
    )
    chex.assert_shape(
        gqa_params['v_proj']['bias'].value, (num_kv_heads, HEAD_DIM)
    )
    # Query head h reads key/value head h // group: repeating the key/value
    # projections gives an equivalent multi-head layer.
    group = HEADS // num_kv_heads
    gqa_params = nn.unbox(gqa_params)
    mha_params = dict(gqa_params)
    for name in ('k_proj', 'v_proj'):
      mha_params[name] = {
          'kernel': jnp.repeat(gqa_params[name]['kernel'], group, axis=1),
          'bias': jnp.repeat(gqa_params[name]['bias'], group, axis=0),
      }
    gqa_output = gqa.apply({'params': gqa_params}, inputs, mask=_causal_mask())
    mha_output = _attention().apply(
        {'params': mha_params}, inputs, mask=_causal_mask()
    )
    chex.assert_shape(gqa_output, (BATCH, LENGTH, EMBED))
    np.testing.assert_allclose(gqa_output, mha_output, atol=1e-5)

  def test_heads_not_multiple_of_kv_heads_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'num_kv_heads=3'):
      _attention(num_kv_heads=3).init(jax.random.key(0), _inputs())

  def test_bfloat16_compute_with_float32_params(self):
    module = _attention(dtype=jnp.bfloat16)
    params = module.init(jax.random.key(1), _inputs())
    output = module.apply(params, _inputs(), mask=_causal_mask())
    self.assertEqual(output.dtype, jnp.bfloat16)
    self.assertEqual(
        params['params']['q_proj']['kernel'].value.dtype, jnp.float32
    )
    reference = _attention().apply(params, _inputs(), mask=_causal_mask())
    np.testing.assert_allclose(output.astype(jnp.float32), reference, atol=5e-2)

  def test_attention_dropout_changes_outputs_when_not_deterministic(self):
    module = _attention(dropout_rate=0.5)
    inputs = _inputs()
    params = module.init(jax.random.key(1), inputs)
    deterministic = module.apply(params, inputs)
    dropped = module.apply(
        params, inputs, deterministic=False, rngs={'dropout': jax.random.key(3)}
    )
    self.assertGreater(float(jnp.abs(deterministic - dropped).max()), 1e-3)

  @absltest.skipIf(jax.default_backend() == 'gpu', 'cuDNN runs on GPUs')
  def test_cudnn_off_gpu_is_a_clear_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'needs a GPU'):
      _attention(attention_impl='cudnn').init(jax.random.key(0), _inputs())

  def test_unknown_attention_impl_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'flash'):
      _attention(attention_impl='flash').init(jax.random.key(0), _inputs())

  def test_params_carry_logical_names(self):
    params = _attention().init(jax.random.key(0), _inputs())['params']
    self.assertEqual(params['q_proj']['kernel'].names, ('embed', 'heads', 'kv'))
    self.assertEqual(params['q_proj']['bias'].names, ('heads', 'kv'))
    self.assertEqual(
        params['out_proj']['kernel'].names, ('heads', 'kv', 'embed')
    )
    self.assertEqual(params['out_proj']['bias'].names, ('embed',))


class MlpTest(parameterized.TestCase):

  @parameterized.parameters('gelu', 'relu', 'silu')
  def test_shapes_and_names(self, activation):
    module = layers.Mlp(hidden_dim=32, activation=activation)
    params = module.init(jax.random.key(0), _inputs())['params']
    self.assertEqual(params['fc1']['kernel'].names, ('embed', 'mlp'))
    self.assertEqual(params['fc2']['kernel'].names, ('mlp', 'embed'))
    chex.assert_shape(
        module.apply({'params': params}, _inputs()), (BATCH, LENGTH, EMBED)
    )

  def test_activations_differ(self):
    inputs = _inputs()
    params = layers.Mlp(hidden_dim=32).init(jax.random.key(0), inputs)
    relu = layers.Mlp(hidden_dim=32, activation='relu').apply(params, inputs)
    gelu = layers.Mlp(hidden_dim=32, activation='gelu').apply(params, inputs)
    self.assertGreater(float(jnp.abs(relu - gelu).max()), 1e-4)

  def test_unknown_activation_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'swish'):
      layers.Mlp(hidden_dim=8, activation='swish').init(
          jax.random.key(0), _inputs()
      )


class PositionsAndNormTest(absltest.TestCase):

  def test_position_p_reads_row_p_plus_offset(self):
    module = layers.LearnedPositionalEmbedding(
        num_positions=10, features=4, offset=2
    )
    params = module.init(jax.random.key(0), jnp.arange(3))['params']
    table = params['embedding'].value
    chex.assert_shape(table, (12, 4))
    self.assertEqual(params['embedding'].names, (None, 'embed'))
    np.testing.assert_array_equal(
        module.apply({'params': params}, jnp.array([[0, 5]])),
        table[jnp.array([[2, 7]])],
    )

  def test_sinusoidal_embedding_matches_the_transformer_table(self):
    positions = np.array([0, 1, 7, 250])
    features = 6
    got = np.asarray(layers.sinusoidal_embedding(positions, features))
    chex.assert_shape(got, (4, 6))
    half = features // 2
    frequencies = 10000.0 ** (-np.arange(half) / half)
    angles = positions[:, None] * frequencies[None, :]
    expected = np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Nearby positions give nearby vectors, distant ones differ.
    self.assertLess(np.abs(got[0] - got[1]).max(), np.abs(got[0] - got[3]).max())

  def test_sinusoidal_embedding_odd_features_and_fractional_times(self):
    got = layers.sinusoidal_embedding(jnp.array([[0.5, 2.0]]), 5)
    chex.assert_shape(got, (1, 2, 5))
    np.testing.assert_array_equal(np.asarray(got[..., -1]), 0.0)
    with self.assertRaisesRegex(errors.UserInputError, 'at least 2'):
      layers.sinusoidal_embedding(jnp.arange(3), 1)

  def test_layer_norm_names_and_normalises(self):
    module = layers.LayerNorm()
    inputs = _inputs() * 3 + 1
    params = module.init(jax.random.key(0), inputs)['params']
    self.assertEqual(params['scale'].names, ('embed',))
    self.assertEqual(params['bias'].names, ('embed',))
    output = module.apply({'params': params}, inputs)
    np.testing.assert_allclose(output.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(output.std(-1), 1.0, atol=1e-3)


if __name__ == '__main__':
  absltest.main()
