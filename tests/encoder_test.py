"""Tests for flaxllm.models.encoder (the BERT-style encoder)."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.models import encoder

VOCAB, BATCH, LENGTH, EMBED = 40, 2, 7, 16
LOGICAL_AXES = {'embed', 'heads', 'kv', 'mlp', 'vocab', 'layers', None}


def _config(**overrides) -> encoder.EncoderConfig:
  fields = dict(
      vocab_size=VOCAB,
      d_model=EMBED,
      num_heads=2,
      ffn_dim=32,
      num_layers=2,
      max_positions=16,
      dropout_rate=0.0,
      attention_dropout=0.0,
  )
  return encoder.EncoderConfig(**{**fields, **overrides})


def _batch(seed: int = 0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, VOCAB, (BATCH, LENGTH)).astype(np.int32)
  mask = np.ones((BATCH, LENGTH), np.int32)
  mask[1, 4:] = 0
  ids[1, 4:] = 0
  return ids, mask


def _unstack_layers(params):
  """Turns scanned params ('layer', leading axis) into layer_0, layer_1."""
  params = dict(params)
  stacked = params.pop('layer')
  num_layers = jax.tree.leaves(stacked)[0].shape[0]
  for index in range(num_layers):
    params[f'layer_{index}'] = jax.tree.map(
        lambda x, index=index: x[index], stacked
    )
  return params


@functools.lru_cache
def _boxed_params():
  """Params of the largest test model (scanned, pooler, 3 labels), boxed.

  Drawn with numpy into the shapes `init` would make: norms and biases get
  random values too, and no init is compiled. The other tests' params are
  cut from these.
  """
  model = encoder.Encoder(_config(num_labels=3, scan_layers=True))
  shapes = jax.eval_shape(model.init, jax.random.key(0), *_batch())
  rng = np.random.default_rng(0)
  return jax.tree.map(
      lambda x: jnp.asarray(0.2 * rng.normal(size=x.shape), x.dtype),
      shapes['params'],
  )


def _params(config):
  """Unboxed params for `config`, cut from `_boxed_params`."""
  params = nn.unbox(_boxed_params())
  if not config.scan_layers:
    params = _unstack_layers(params)
    for index in range(config.num_layers, 2):
      del params[f'layer_{index}']
  if not config.pooler:
    del params['pooler']
  if not config.num_labels:
    del params['classifier']
  return params


@functools.lru_cache
def _forward(config):
  """A jitted forward pass, compiled once per config (and input shape)."""
  return jax.jit(encoder.Encoder(config).apply)


class EncoderTest(parameterized.TestCase):

  def test_output_shapes_and_param_names(self):
    config = _config(num_labels=3)
    params = _params(config)
    outputs = _forward(config)({'params': params}, *_batch())
    chex.assert_shape(outputs['hidden'], (BATCH, LENGTH, EMBED))
    chex.assert_shape(outputs['pooled'], (BATCH, EMBED))
    chex.assert_shape(outputs['logits'], (BATCH, 3))
    self.assertEqual(outputs['logits'].dtype, jnp.float32)
    chex.assert_tree_all_finite(outputs)
    self.assertEqual(
        set(params),
        {'embeddings', 'layer_0', 'layer_1', 'pooler', 'classifier'},
    )
    self.assertEqual(
        set(params['embeddings']),
        {
            'word_embeddings',
            'position_embeddings',
            'token_type_embeddings',
            'LayerNorm',
        },
    )

  def test_every_param_has_logical_axis_names(self):
    params = _boxed_params()
    leaves = jax.tree.leaves(
        params, is_leaf=lambda x: isinstance(x, nn.Partitioned)
    )
    for leaf in leaves:
      self.assertIsInstance(leaf, nn.LogicallyPartitioned)
      self.assertLen(leaf.names, leaf.value.ndim)
      self.assertContainsSubset(set(leaf.names), LOGICAL_AXES)
    layer_specs = jax.tree.leaves(
        nn.get_partition_spec(params)['layer'],
        is_leaf=lambda x: isinstance(x, jax.P),
    )
    self.assertNotEmpty(layer_specs)
    for spec in layer_specs:
      self.assertEqual(spec[0], 'layers')

  def test_layer_norm_uses_config_epsilon(self):
    # Tiny embeddings (variance near 1e-5): BERT's epsilon, 1e-12, still
    # normalises them to unit variance; the shared norm's 1e-5 would not.
    ids, mask = _batch()
    config = _config(num_layers=0, pooler=False)
    params = _params(config)
    embeddings = jax.tree.map(lambda x: 0.01 * x, params['embeddings'])
    embeddings['LayerNorm'] = {
        'scale': jnp.ones(EMBED),
        'bias': jnp.zeros(EMBED),
    }
    params = {'embeddings': embeddings}
    hidden = _forward(config)({'params': params}, ids, mask)['hidden']
    np.testing.assert_allclose(jnp.var(hidden, axis=-1), 1.0, rtol=1e-4)
    hidden = _forward(config.replace(layer_norm_eps=1e-5))(
        {'params': params}, ids, mask
    )['hidden']
    self.assertLess(float(jnp.var(hidden, axis=-1).max()), 0.9)

  def test_padding_does_not_change_real_positions(self):
    config = _config(num_labels=3)
    params = _params(config)
    ids, mask = _batch()
    forward = _forward(config)
    outputs = forward({'params': params}, ids, mask)
    # Other tokens under the padding, and extra padding columns.
    repadded = np.where(mask == 0, 5, ids)
    repadded = np.pad(repadded, ((0, 0), (0, 3)), constant_values=9)
    longer_mask = np.pad(mask, ((0, 0), (0, 3)))
    outputs_repadded = forward({'params': params}, repadded, longer_mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(
        outputs['hidden'][real],
        outputs_repadded['hidden'][:, :LENGTH][real],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        outputs['logits'], outputs_repadded['logits'], atol=1e-5
    )
    # The mask is what protects them: unmasked, the padding matters.
    hidden_unmasked = forward(
        {'params': params}, repadded, np.ones_like(longer_mask)
    )['hidden']
    self.assertGreater(
        float(jnp.abs(outputs['hidden'][1, :4] - hidden_unmasked[1, :4]).max()),
        1e-3,
    )

  def test_token_types_matter(self):
    config = _config(num_labels=3)
    params = _params(config)
    ids, mask = _batch()
    forward = _forward(config)
    default = forward({'params': params}, ids, mask)['hidden']
    zeros = forward({'params': params}, ids, mask, np.zeros_like(ids))['hidden']
    np.testing.assert_allclose(default, zeros, atol=1e-6)
    segments = np.zeros_like(ids)
    segments[:, 3:] = 1
    two_segments = forward({'params': params}, ids, mask, segments)['hidden']
    # Every position's vector moves: the second segment is seen everywhere.
    moved = jnp.abs(default - two_segments).max(axis=-1)  # [batch, length]
    self.assertGreater(float(moved.min()), 1e-4)

  @parameterized.named_parameters(('plain', False), ('remat', True))
  def test_scanned_equals_unrolled(self, remat):
    scanned_config = _config(num_labels=3, scan_layers=True, remat=remat)
    unrolled_config = _config(num_labels=3)
    scanned_params = _params(scanned_config)
    unrolled_params = _unstack_layers(scanned_params)
    # Same tree as an unrolled model's init.
    reference = jax.eval_shape(
        encoder.Encoder(unrolled_config).init, jax.random.key(0), *_batch()
    )['params']
    chex.assert_trees_all_equal_shapes_and_dtypes(
        unrolled_params, nn.unbox(reference)
    )
    batch = _batch()
    chex.assert_trees_all_close(
        _forward(scanned_config)({'params': scanned_params}, *batch),
        _forward(unrolled_config)({'params': unrolled_params}, *batch),
        atol=1e-5,
    )

  def test_remat_with_dropout_gives_same_loss_and_grads(self):
    config = _config(
        num_labels=3, scan_layers=True, dropout_rate=0.1, attention_dropout=0.1
    )
    params = _params(config)
    ids, mask = _batch()

    def loss(params, remat):
      outputs = encoder.Encoder(config.replace(remat=remat)).apply(
          {'params': params},
          ids,
          mask,
          deterministic=False,
          rngs={'dropout': jax.random.key(3)},
      )
      return -jnp.mean(jax.nn.log_softmax(outputs['logits'])[:, 1])

    loss_and_grads = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    plain_loss, plain_grads = loss_and_grads(params, False)
    remat_loss, remat_grads = loss_and_grads(params, True)
    np.testing.assert_allclose(plain_loss, remat_loss, rtol=1e-6)
    chex.assert_trees_all_close(plain_grads, remat_grads, atol=1e-6)

  @parameterized.named_parameters(
      ('classification', 'classification', 5),
      ('regression', 'regression', 1),
  )
  def test_head_shapes(self, problem, num_labels):
    model = encoder.Encoder(_config(num_labels=num_labels, problem=problem))
    variables = jax.eval_shape(model.init, jax.random.key(0), *_batch())
    outputs = jax.eval_shape(model.apply, variables, *_batch())
    self.assertEqual(outputs['logits'].shape, (BATCH, num_labels))
    self.assertEqual(outputs['logits'].dtype, jnp.float32)
    kernel = variables['params']['classifier']['kernel']
    self.assertEqual(kernel.value.shape, (EMBED, num_labels))
    self.assertEqual(kernel.names, ('embed', None))

  def test_no_pooler_no_head(self):
    config = _config(pooler=False)
    outputs = _forward(config)({'params': _params(config)}, *_batch())
    self.assertIsNone(outputs['pooled'])
    self.assertIsNone(outputs['logits'])

  def test_mean_pool_ignores_padding(self):
    hidden = np.random.default_rng(1).normal(size=(BATCH, LENGTH, EMBED))
    _, mask = _batch()
    pooled = encoder.mean_pool(hidden, mask)
    np.testing.assert_allclose(pooled[0], hidden[0].mean(0), rtol=1e-5)
    np.testing.assert_allclose(pooled[1], hidden[1, :4].mean(0), rtol=1e-5)
    garbage = hidden.copy()
    garbage[1, 4:] = 1e3
    np.testing.assert_array_equal(pooled, encoder.mean_pool(garbage, mask))
    empty = encoder.mean_pool(hidden, np.zeros_like(mask))
    np.testing.assert_array_equal(empty, np.zeros((BATCH, EMBED)))

  def test_mean_pooled_sentence_is_independent_of_batch_padding(self):
    config = _config(num_labels=3)
    params = _params(config)
    ids, mask = _batch()
    batched = encoder.mean_pool(
        _forward(config)({'params': params}, ids, mask)['hidden'], mask
    )
    alone = encoder.mean_pool(
        _forward(config)({'params': params}, ids[1:, :4], mask[1:, :4])[
            'hidden'
        ],
        mask[1:, :4],
    )
    np.testing.assert_allclose(batched[1:], alone, atol=1e-5)

  def test_bad_configs_raise_one_line_errors(self):
    with self.assertRaisesRegex(errors.UserInputError, 'unknown encoder'):
      encoder.EncoderConfig.from_dict({'vocab_size': 8, 'hidden_size': 4})
    with self.assertRaisesRegex(errors.UserInputError, 'model.pooler=True'):
      encoder.EncoderConfig.from_dict(
          {'vocab_size': 8, 'num_labels': 2, 'pooler': False}
      )
    with self.assertRaisesRegex(errors.UserInputError, 'model.problem'):
      encoder.EncoderConfig.from_dict({'vocab_size': 8, 'problem': 'rank'})
    with self.assertRaisesRegex(errors.UserInputError, 'divisible'):
      encoder.EncoderConfig.from_dict({'vocab_size': 8, 'd_model': 10})
    config = encoder.EncoderConfig.from_dict(
        {'vocab_size': 8, 'dtype': 'bfloat16'}
    )
    self.assertEqual(config.dtype, jnp.bfloat16)

  def test_too_long_input_raises(self):
    config = _config()
    ids = np.ones((1, 17), np.int32)
    with self.assertRaisesRegex(errors.UserInputError, 'max_positions=16'):
      encoder.Encoder(config).apply({'params': _params(config)}, ids, ids)


if __name__ == '__main__':
  absltest.main()
