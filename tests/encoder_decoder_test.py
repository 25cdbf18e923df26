"""Tests for flaxllm.models.encoder_decoder (the BART-style model)."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.models import encoder_decoder

VOCAB, BATCH, SRC, TGT = 40, 2, 7, 5
LOGICAL_AXES = {'batch', 'length', 'embed', 'heads', 'kv', 'mlp', 'vocab'}


def _config(**overrides) -> encoder_decoder.EncoderDecoderConfig:
  fields = dict(
      vocab_size=VOCAB,
      d_model=16,
      num_heads=2,
      ffn_dim=32,
      max_positions=16,
      dropout_rate=0.0,
  )
  return encoder_decoder.EncoderDecoderConfig(**{**fields, **overrides})


def _batch(seed: int = 0):
  rng = np.random.default_rng(seed)
  inputs = rng.integers(3, VOCAB, (BATCH, SRC)).astype(np.int32)
  input_mask = np.ones((BATCH, SRC), np.int32)
  input_mask[1, 4:] = 0
  decoder_inputs = rng.integers(3, VOCAB, (BATCH, TGT)).astype(np.int32)
  return inputs, input_mask, decoder_inputs


@functools.lru_cache
def _init(config):
  model = encoder_decoder.EncoderDecoder(config)
  params = jax.jit(model.init)(jax.random.key(0), *_batch())['params']
  return model, params


@functools.lru_cache
def _forward(config):
  """A jitted teacher-forced forward pass, compiled once per config."""
  return jax.jit(encoder_decoder.EncoderDecoder(config).apply)


def _unstack_layers(params):
  """Turns scanned params ('layers', leading axis) into layers_0, layers_1."""
  unrolled = {}
  for name, subtree in params.items():
    if name == 'layers':
      num_layers = jax.tree.leaves(subtree)[0].shape[0]
      for index in range(num_layers):
        unrolled[f'layers_{index}'] = jax.tree.map(
            lambda x, index=index: x[index], subtree
        )
    elif isinstance(subtree, dict):
      unrolled[name] = _unstack_layers(subtree)
    else:
      unrolled[name] = subtree
  return unrolled


class EncoderDecoderTest(parameterized.TestCase):

  def test_output_shapes_and_dtypes(self):
    model, params = _init(_config())
    inputs, input_mask, decoder_inputs = _batch()
    encoded = model.apply(
        {'params': params}, inputs, input_mask, method=model.encode
    )
    chex.assert_shape(encoded, (BATCH, SRC, 16))
    logits = _forward(model.config)(
        {'params': params}, inputs, input_mask, decoder_inputs
    )
    chex.assert_shape(logits, (BATCH, TGT, VOCAB))
    self.assertEqual(logits.dtype, jnp.float32)
    chex.assert_tree_all_finite(logits)

  def test_source_padding_does_not_change_logits(self):
    model, params = _init(_config())
    inputs, input_mask, decoder_inputs = _batch()
    forward = _forward(model.config)
    logits = forward({'params': params}, inputs, input_mask, decoder_inputs)
    # Other tokens under the padding, and extra padding columns.
    repadded = np.where(input_mask == 0, 5, inputs)
    repadded = np.pad(repadded, ((0, 0), (0, 3)), constant_values=9)
    longer_mask = np.pad(input_mask, ((0, 0), (0, 3)))
    logits_repadded = forward(
        {'params': params}, repadded, longer_mask, decoder_inputs
    )
    np.testing.assert_allclose(logits, logits_repadded, atol=1e-5)
    # The mask is what protects them: unmasked, the padding matters.
    logits_unmasked = forward(
        {'params': params}, repadded, np.ones_like(longer_mask), decoder_inputs
    )
    self.assertGreater(float(jnp.abs(logits - logits_unmasked).max()), 1e-4)

  def test_decoder_is_causal(self):
    model, params = _init(_config())
    inputs, input_mask, decoder_inputs = _batch()
    changed_position = 2
    perturbed = decoder_inputs.copy()
    perturbed[:, changed_position] = (
        perturbed[:, changed_position] + 1
    ) % VOCAB
    forward = _forward(model.config)
    before = forward({'params': params}, inputs, input_mask, decoder_inputs)
    after = forward({'params': params}, inputs, input_mask, perturbed)
    np.testing.assert_allclose(
        before[:, :changed_position], after[:, :changed_position], atol=1e-6
    )
    self.assertGreater(
        float(
            jnp.abs(
                before[:, changed_position] - after[:, changed_position]
            ).max()
        ),
        1e-4,
    )

  @parameterized.named_parameters(
      ('post_ln', False, False), ('pre_ln_remat', True, True)
  )
  def test_scanned_equals_unrolled(self, pre_ln, remat):
    scanned_model, scanned_params = _init(
        _config(pre_ln=pre_ln, scan_layers=True, remat=remat)
    )
    scanned_params = nn.unbox(scanned_params)
    unrolled_params = _unstack_layers(scanned_params)
    # Same tree structure as a freshly initialised unrolled model.
    reference_params = nn.unbox(_init(_config(pre_ln=pre_ln))[1])
    chex.assert_trees_all_equal_shapes(unrolled_params, reference_params)
    batch = _batch()
    np.testing.assert_allclose(
        _forward(scanned_model.config)({'params': scanned_params}, *batch),
        _forward(_config(pre_ln=pre_ln))({'params': unrolled_params}, *batch),
        atol=1e-5,
    )

  def test_remat_gives_same_loss_and_grads(self):
    config = _config(dropout_rate=0.1, scan_layers=True)
    _, params = _init(config)
    params = nn.unbox(params)
    inputs, input_mask, decoder_inputs = _batch()

    def loss(params, remat):
      logits = encoder_decoder.EncoderDecoder(
          config.replace(remat=remat)
      ).apply(
          {'params': params},
          inputs,
          input_mask,
          decoder_inputs,
          deterministic=False,
          rngs={'dropout': jax.random.key(7)},
      )
      return -jnp.mean(jax.nn.log_softmax(logits)[..., 3])

    loss_and_grads = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    plain_loss, plain_grads = loss_and_grads(params, False)
    remat_loss, remat_grads = loss_and_grads(params, True)
    np.testing.assert_allclose(plain_loss, remat_loss, rtol=1e-6)
    chex.assert_trees_all_close(plain_grads, remat_grads, atol=1e-6)

  def test_scanned_cached_decoding_matches_teacher_forcing(self):
    # The unrolled model's cache is checked through the task's greedy search.
    model, params = _init(_config(scan_layers=True))
    inputs, input_mask, decoder_inputs = _batch()
    full = model.apply({'params': params}, inputs, input_mask, decoder_inputs)
    encoded = model.apply(
        {'params': params}, inputs, input_mask, method=model.encode
    )
    max_length = 8
    _, variables = model.apply(
        {'params': params},
        encoded,
        input_mask,
        jnp.zeros((BATCH, max_length), jnp.int32),
        decode=True,
        mutable=['cache'],
        method=model.decode,
    )
    decode_step = jax.jit(
        functools.partial(
            model.apply, decode=True, mutable=['cache'], method=model.decode
        )
    )
    step_logits = []
    for position in range(TGT):
      logits, variables = decode_step(
          {'params': params, 'cache': variables['cache']},
          encoded,
          input_mask,
          decoder_inputs[:, position : position + 1],
      )
      step_logits.append(logits)
    np.testing.assert_allclose(
        jnp.concatenate(step_logits, axis=1), full, atol=1e-5
    )

  def test_bfloat16_compute_with_float32_params(self):
    model, params = _init(_config(dtype=jnp.bfloat16))
    for leaf in jax.tree.leaves(nn.unbox(params)):
      self.assertEqual(leaf.dtype, jnp.float32)
    logits = _forward(model.config)({'params': params}, *_batch())
    self.assertEqual(logits.dtype, jnp.float32)
    chex.assert_tree_all_finite(logits)
    reference = _forward(_config())({'params': params}, *_batch())
    np.testing.assert_allclose(logits, reference, atol=0.1)

  @parameterized.named_parameters(('unrolled', False), ('scanned', True))
  def test_every_param_is_logically_partitioned(self, scan_layers):
    config = _config(scan_layers=scan_layers, tie_embeddings=False, pre_ln=True)
    params = jax.eval_shape(
        encoder_decoder.EncoderDecoder(config).init,
        jax.random.key(0),
        *_batch(),
    )['params']
    leaves = jax.tree.leaves(
        params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned)
    )
    self.assertNotEmpty(leaves)
    for leaf in leaves:
      self.assertIsInstance(leaf, nn.LogicallyPartitioned)
      self.assertLen(leaf.names, len(leaf.value.shape))
      allowed = LOGICAL_AXES | {None} | ({'layers'} if scan_layers else set())
      self.assertContainsSubset(set(leaf.names), allowed)
    if scan_layers:
      kernel = params['encoder']['layers']['self_attn']['q_proj']['kernel']
      self.assertEqual(kernel.names, ('layers', 'embed', 'heads', 'kv'))

  def test_hugging_face_like_param_names(self):
    config = _config(tie_embeddings=False, pre_ln=True)
    params = jax.eval_shape(
        encoder_decoder.EncoderDecoder(config).init,
        jax.random.key(0),
        *_batch(),
    )['params']
    self.assertContainsSubset(
        {'shared', 'encoder', 'decoder', 'final_logits_bias', 'lm_head'},
        set(params),
    )
    self.assertContainsSubset(
        {'embed_positions', 'layernorm_embedding', 'layer_norm', 'layers_1'},
        set(params['encoder']),
    )
    self.assertContainsSubset(
        {
            'self_attn',
            'self_attn_layer_norm',
            'encoder_attn',
            'encoder_attn_layer_norm',
            'mlp',
            'final_layer_norm',
        },
        set(params['decoder']['layers_0']),
    )
    chex.assert_shape(params['final_logits_bias'].value, (VOCAB,))
    chex.assert_shape(
        params['encoder']['embed_positions']['embedding'].value, (16 + 2, 16)
    )

  def test_final_logits_bias_is_added(self):
    model, params = _init(_config())
    params = nn.unbox(params)
    bias = jnp.arange(VOCAB, dtype=jnp.float32)
    logits = _forward(model.config)({'params': params}, *_batch())
    biased = _forward(model.config)(
        {'params': {**params, 'final_logits_bias': bias}}, *_batch()
    )
    np.testing.assert_allclose(
        biased - logits, jnp.broadcast_to(bias, logits.shape), atol=1e-4
    )


class EncoderDecoderConfigTest(absltest.TestCase):

  def test_from_dict_reads_dtype_names(self):
    config = encoder_decoder.EncoderDecoderConfig.from_dict(
        {'d_model': 32, 'dtype': 'bfloat16'}, vocab_size=11
    )
    self.assertEqual(config.dtype, jnp.bfloat16)
    self.assertEqual(config.param_dtype, jnp.float32)
    self.assertEqual((config.vocab_size, config.d_model), (11, 32))

  def test_unknown_key_is_named(self):
    with self.assertRaisesRegex(errors.UserInputError, 'n_layers'):
      encoder_decoder.EncoderDecoderConfig.from_dict(
          {'n_layers': 3}, vocab_size=11
      )

  def test_unknown_dtype_name(self):
    with self.assertRaisesRegex(errors.UserInputError, 'float8'):
      encoder_decoder.EncoderDecoderConfig.from_dict(
          {'dtype': 'float8'}, vocab_size=11
      )

  def test_heads_must_divide_d_model(self):
    with self.assertRaisesRegex(errors.UserInputError, 'not divisible'):
      encoder_decoder.EncoderDecoderConfig.from_dict(
          {'d_model': 30, 'num_heads': 4}, vocab_size=11
      )


if __name__ == '__main__':
  absltest.main()
