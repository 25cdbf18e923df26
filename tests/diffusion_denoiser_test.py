"""Tests for flaxllm.diffusion.denoiser (the SeqDiffuSeq network)."""

from absl.testing import absltest
import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm import errors
from flaxllm.diffusion import denoiser

VOCAB, EMBED, SRC, TGT, BATCH = 24, 8, 5, 6, 2


def _config(**overrides) -> denoiser.DiffusionModelConfig:
  fields = dict(
      vocab_size=VOCAB,
      d_model=32,
      num_heads=4,
      ffn_dim=64,
      encoder_layers=1,
      decoder_layers=2,
      max_positions=16,
      dropout_rate=0.0,
      embedding_dim=EMBED,
  )
  fields.update(overrides)
  return denoiser.DiffusionModelConfig.from_dict(fields)


def _inputs(seed: int = 0):
  rng = np.random.default_rng(seed)
  inputs = rng.integers(3, VOCAB, (BATCH, SRC)).astype(np.int32)
  input_mask = np.ones((BATCH, SRC), np.int32)
  input_mask[1, 3:] = 0
  noisy = rng.normal(size=(BATCH, TGT, EMBED)).astype(np.float32)
  self_condition = rng.normal(size=(BATCH, TGT, EMBED)).astype(np.float32)
  timesteps = np.array([3, 70], np.int32)
  return inputs, input_mask, noisy, timesteps, self_condition


def _model_and_params(**overrides):
  model = denoiser.SeqDiffuSeqDenoiser(
      _config(**overrides), diffusion_steps=100
  )
  params = model.init(jax.random.key(0), *_inputs())['params']
  return model, params


class DenoiserTest(absltest.TestCase):

  def test_decoder_is_non_causal(self):
    model, params = _model_and_params()
    inputs, input_mask, noisy, timesteps, self_condition = _inputs()
    x_start, _ = model.apply({'params': params}, *_inputs())
    changed = noisy.copy()
    changed[:, -1] += 10.0  # only the last target position
    x_changed, _ = model.apply(
        {'params': params},
        inputs,
        input_mask,
        changed,
        timesteps,
        self_condition,
    )
    first_position_change = jnp.abs(x_changed[:, 0] - x_start[:, 0]).max()
    # A causal decoder would leave position 0 exactly unchanged.
    self.assertGreater(float(first_position_change), 1e-6)

  def test_padded_source_tokens_do_not_change_the_prediction(self):
    model, params = _model_and_params()
    inputs, input_mask, noisy, timesteps, self_condition = _inputs()
    x_start, _ = model.apply({'params': params}, *_inputs())
    altered = inputs.copy()
    altered[1, 3:] = (altered[1, 3:] + 5) % VOCAB  # under the mask
    x_altered, _ = model.apply(
        {'params': params},
        altered,
        input_mask,
        noisy,
        timesteps,
        self_condition,
    )
    np.testing.assert_allclose(x_altered, x_start, atol=1e-8)
    altered[0, 0] = (altered[0, 0] + 5) % VOCAB  # a real token
    x_real_change, _ = model.apply(
        {'params': params},
        altered,
        input_mask,
        noisy,
        timesteps,
        self_condition,
    )
    self.assertGreater(float(jnp.abs(x_real_change - x_start).max()), 1e-7)

  def test_time_and_self_condition_both_reach_the_prediction(self):
    model, params = _model_and_params()
    inputs, input_mask, noisy, timesteps, self_condition = _inputs()
    x_start, _ = model.apply({'params': params}, *_inputs())
    for changed in (
        (inputs, input_mask, noisy, timesteps + 20, self_condition),
        (inputs, input_mask, noisy, timesteps, self_condition * 0.0),
    ):
      x_changed, _ = model.apply({'params': params}, *changed)
      self.assertGreater(float(jnp.abs(x_changed - x_start).max()), 1e-4)

  def test_rounding_head_is_tied_to_the_word_embedding(self):
    model, params = _model_and_params()
    self.assertNotIn('lm_head', params)
    embedding = nn.unbox(params['word_embedding']['embedding'])
    bias = nn.unbox(params['logits_bias'])
    x = jax.random.normal(jax.random.key(3), (BATCH, TGT, EMBED))
    logits = model.apply(
        {'params': params}, x, method=denoiser.SeqDiffuSeqDenoiser.logits
    )
    np.testing.assert_allclose(
        logits, jnp.einsum('ble,ve->blv', x, embedding) + bias, atol=1e-5
    )

    # The head's gradient lands on the embedding table.
    def head_loss(table):
      tied = {**params, 'word_embedding': {'embedding': table}}
      return model.apply(
          {'params': tied}, x, method=denoiser.SeqDiffuSeqDenoiser.logits
      ).sum()

    self.assertGreater(float(jnp.abs(jax.grad(head_loss)(embedding)).max()), 0)

  def test_untied_head_has_its_own_kernel(self):
    model, params = _model_and_params(tie_embeddings=False)
    self.assertEqual(nn.unbox(params['lm_head']).shape, (EMBED, VOCAB))
    x = jax.random.normal(jax.random.key(3), (BATCH, TGT, EMBED))
    logits = model.apply(
        {'params': params}, x, method=denoiser.SeqDiffuSeqDenoiser.logits
    )
    embedding = nn.unbox(params['word_embedding']['embedding'])
    tied = jnp.einsum('ble,ve->blv', x, embedding)
    self.assertGreater(float(jnp.abs(logits - tied).max()), 1e-3)

  def test_encoding_once_then_denoising_matches_the_full_call(self):
    model, params = _model_and_params()
    inputs, input_mask, noisy, timesteps, self_condition = _inputs()
    x_start, _ = model.apply({'params': params}, *_inputs())
    encoded = model.apply(
        {'params': params},
        inputs,
        input_mask,
        method=denoiser.SeqDiffuSeqDenoiser.encode,
    )
    for _ in range(2):  # the encoder output is reused across steps
      x_step = model.apply(
          {'params': params},
          encoded,
          input_mask,
          noisy,
          timesteps,
          self_condition,
          method=denoiser.SeqDiffuSeqDenoiser.denoise,
      )
      np.testing.assert_allclose(x_step, x_start, atol=1e-6)

  def test_scanned_remat_layers_stack_params_and_keep_output_shapes(self):
    # Shapes only (eval_shape traces without compiling).
    model = denoiser.SeqDiffuSeqDenoiser(
        _config(scan_layers=True, remat=True), diffusion_steps=100
    )
    params = jax.eval_shape(
        lambda rng: model.init(rng, *_inputs())['params'], jax.random.key(0)
    )
    layer_kernel = params['decoder']['layers']['self_attn']['q_proj']['kernel']
    self.assertEqual(layer_kernel.value.shape[0], 2)  # decoder_layers
    self.assertEqual(layer_kernel.names[0], 'layers')
    x_start, logits = jax.eval_shape(
        lambda p: model.apply({'params': p}, *_inputs()), params
    )
    self.assertEqual(x_start.shape, (BATCH, TGT, EMBED))
    self.assertEqual(logits.shape, (BATCH, TGT, VOCAB))

  def test_every_parameter_carries_logical_axis_names(self):
    _, params = _model_and_params()
    flat = traverse_util.flatten_dict(
        params, is_leaf=lambda _, v: isinstance(v, nn.LogicallyPartitioned)
    )
    for path, leaf in flat.items():
      self.assertIsInstance(leaf, nn.LogicallyPartitioned, msg=str(path))
      self.assertLen(leaf.names, leaf.value.ndim, msg=str(path))
    self.assertEqual(
        flat[('word_embedding', 'embedding')].names, ('vocab', None)
    )

  def test_logical_names_map_to_even_shards_of_a_three_axis_mesh(self):
    mesh = jax.make_mesh(
        (2, 2, 2),
        ('data', 'fsdp', 'tensor'),
        axis_types=(jax.sharding.AxisType.Auto,) * 3,
    )
    rules = (
        ('batch', ('data', 'fsdp')),
        ('vocab', 'tensor'),
        ('mlp', 'tensor'),
        ('heads', 'tensor'),
        ('embed', 'fsdp'),
        ('kv', None),
        ('length', None),
    )
    model = denoiser.SeqDiffuSeqDenoiser(_config(), diffusion_steps=100)
    abstract = jax.eval_shape(
        lambda rng: model.init(rng, *_inputs())['params'], jax.random.key(0)
    )
    shardings = nn.logical_to_mesh_sharding(
        nn.get_partition_spec(abstract), mesh, rules
    )
    flat_shardings = traverse_util.flatten_dict(shardings)
    flat_shapes = traverse_util.flatten_dict(nn.unbox(abstract))
    for path, sharding in flat_shardings.items():
      shape = flat_shapes[path].shape
      for size, axes in zip(shape, sharding.spec):
        axes = (axes,) if isinstance(axes, str) else axes or ()
        shards = int(np.prod([mesh.shape[axis] for axis in axes]))
        self.assertEqual(size % shards, 0, msg=str(path))
    spec = jax.sharding.PartitionSpec
    for path, expected in (
        (('decoder', 'time_fc1', 'kernel'), spec('fsdp', 'tensor')),
        (('word_embedding', 'embedding'), spec('tensor', None)),
        (
            ('decoder', 'output_projection', 'fc2', 'kernel'),
            spec('tensor', None),
        ),
    ):
      self.assertEqual(flat_shardings[path].spec, expected, msg=str(path))

  def test_fan_in_encoder_input_init_lifts_tokens_to_the_position_scale(self):
    # The runlocal widths: a 128-d embedding into a d-128 encoder.
    ratios = {}
    for init in ('normal', 'fan_in'):
      model = denoiser.SeqDiffuSeqDenoiser(
          _config(
              vocab_size=512,
              d_model=128,
              embedding_dim=128,
              decoder_layers=1,
              encoder_input_init=init,
          ),
          diffusion_steps=100,
      )
      ids = jnp.arange(512, dtype=jnp.int32)[None, :]  # [1, vocab]
      params = model.init(
          jax.random.key(0),
          ids[:, :SRC],
          jnp.ones((1, SRC), jnp.int32),
          jnp.zeros((1, TGT, 128)),
          jnp.zeros((1,), jnp.int32),
          jnp.zeros((1, TGT, 128)),
      )['params']
      tokens = model.apply(
          {'params': params},
          ids,
          method=lambda m, ids: m.encoder_input(ids),
      )[0]  # [vocab, d]
      token_std = float(jnp.std(tokens - tokens.mean(axis=0)))
      positions = nn.unbox(params['encoder']['embed_positions']['embedding'])
      ratios[init] = token_std / float(jnp.std(positions))
    # The spec's init: the token signal is an order of magnitude weaker.
    self.assertLess(ratios['normal'], 0.1)
    self.assertBetween(ratios['fan_in'], 0.5, 2.0)

  def test_unknown_encoder_input_init_is_rejected(self):
    with self.assertRaisesRegex(errors.UserInputError, 'encoder_input_init'):
      _config(encoder_input_init='xavier')

  def test_scaled_embeddings_are_rejected(self):
    with self.assertRaisesRegex(errors.UserInputError, 'scale_embedding'):
      _config(scale_embedding=True)


if __name__ == '__main__':
  absltest.main()
