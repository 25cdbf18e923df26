"""HyPe and NEFTune noise: where it lands, its scale, and when it is absent."""

import contextlib
import os
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import configuration
from flaxllm import perturb
from flaxllm import train
from flaxllm.data import glue
from flaxllm.errors import UserInputError
from flaxllm.models import decoder
from flaxllm.models import encoder
from flaxllm.models import encoder_decoder
from flaxllm.tasks import classify
from flaxllm.tasks import lm
from tests import run_helpers

VOCAB, BATCH, LENGTH, WIDTH = 40, 4, 16, 32


def _settings(**perturb_keys) -> perturb.Settings:
  config = configuration.default_config()
  config.perturb.update(perturb_keys)
  return perturb.Settings.from_config(config)


def _ids(seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(2, VOCAB, (BATCH, LENGTH)), jnp.int32)


def _bert(num_layers=3, **fields) -> encoder.Encoder:
  return encoder.Encoder(
      encoder.EncoderConfig(
          vocab_size=VOCAB,
          d_model=WIDTH,
          num_heads=2,
          ffn_dim=64,
          num_layers=num_layers,
          max_positions=LENGTH,
          num_labels=2,
          **fields,
      )
  )


def _model_and_args(family: str, scan: bool, num_layers=3):
  """(model, positional args, keyword args) of a tiny model of `family`."""
  ids, mask = _ids(), jnp.ones((BATCH, LENGTH), jnp.int32)
  if family == 'encoder':
    return _bert(num_layers, scan_layers=scan), (ids, mask), {}
  if family == 'decoder':
    model = decoder.Decoder(
        decoder.DecoderConfig(
            vocab_size=VOCAB,
            d_model=WIDTH,
            num_heads=2,
            ffn_dim=64,
            num_layers=num_layers,
            scan_layers=scan,
        )
    )
    return model, (ids,), {}
  model = encoder_decoder.EncoderDecoder(
      encoder_decoder.EncoderDecoderConfig(
          vocab_size=VOCAB,
          d_model=WIDTH,
          num_heads=2,
          ffn_dim=64,
          encoder_layers=num_layers,
          decoder_layers=num_layers,
          max_positions=LENGTH,
          scan_layers=scan,
      )
  )
  return model, (ids, mask, ids), {}


@contextlib.contextmanager
def _recorded(function_name: str):
  """Records every array `perturb.<function_name>` returns, scanned or not."""
  draws = []
  original = getattr(perturb, function_name)

  def recording(*args, **kwargs):
    noise = original(*args, **kwargs)
    jax.debug.callback(lambda n: draws.append(np.asarray(n)), noise)
    return noise

  with mock.patch.object(perturb, function_name, recording):
    yield draws
  jax.effects_barrier()


def _init(model, args, kwargs):
  return jax.jit(lambda: model.init(jax.random.key(0), *args, **kwargs))()


def _apply(model, params, args, kwargs, settings, seed=1):
  """A jitted training forward pass, traced inside the perturbation."""

  def forward(params, rng):  # a new function: jit's cache can't reuse a trace
    return model.apply(params, *args, **kwargs, rngs=perturb.training_rngs(rng))

  with perturb.perturbation(settings):
    return jax.jit(forward)(params, jax.random.key(seed))


def _noise_landed_on_bert_layers(model, params, settings):
  """Per layer: its (noised) input minus what the layer before handed it."""
  handed, received = [], []

  def record(next_fun, args, kwargs, context):
    output = next_fun(*args, **kwargs)
    if context.method_name == '__call__':
      if isinstance(context.module, encoder.Embeddings):
        handed.append(np.asarray(output))
      elif isinstance(context.module, encoder.EncoderLayer):
        received.append(np.asarray(args[0]))
        handed.append(np.asarray(output[0]))
    return output

  ids, mask = _ids(), jnp.ones((BATCH, LENGTH), jnp.int32)
  with perturb.perturbation(settings), nn.intercept_methods(record):
    model.apply(
        params, ids, mask, rngs=perturb.training_rngs(jax.random.key(1))
    )
  return [got - sent for got, sent in zip(received, handed)]


class HyPeNoiseTest(parameterized.TestCase):

  def test_noise_has_the_configured_distribution(self):
    shape = (64, 64, 8)
    for distribution, mean, std, low in (
        ('normal', 0.0, 0.1, None),
        ('uniform', 0.0, 0.1 / np.sqrt(3.0), -0.1),
        ('uniform_positive', 0.05, 0.1 / np.sqrt(12.0), 0.0),
    ):
      noise = np.asarray(
          perturb.sample_noise(jax.random.key(0), shape, distribution, 0.1)
      )
      self.assertEqual(noise.dtype, np.float32)
      self.assertAlmostEqual(noise.mean(), mean, delta=0.002, msg=distribution)
      self.assertAlmostEqual(noise.std(), std, delta=0.02 * std)
      if low is not None:
        self.assertGreaterEqual(noise.min(), low)
        self.assertLessEqual(noise.max(), 0.1)
        self.assertLess(noise.min(), low + 0.001)

  def test_chosen_layer_inputs_receive_their_own_draws(self):
    model = _bert(num_layers=3)
    params = _init(model, (_ids(), jnp.ones((BATCH, LENGTH))), {})
    for layers, chosen in (
        ('all', (True, True, True)),
        ('top:1', (False, False, True)),
        ('bottom:2', (True, True, False)),
    ):
      settings = _settings(kind='hype', sigma=0.1, layers=layers)
      with _recorded('sample_noise') as draws:
        landed = _noise_landed_on_bert_layers(model, params, settings)
      # One draw per chosen layer input (layer 0's is the embedding output,
      # and the last layer's output gets none), each landing where drawn.
      self.assertLen(draws, sum(chosen))
      drawn = iter(draws)
      for added, is_chosen in zip(landed, chosen):
        if is_chosen:
          np.testing.assert_allclose(added, next(drawn), atol=1e-6)
        else:
          np.testing.assert_array_equal(added, 0.0)
      for i, first in enumerate(draws):
        for second in draws[i + 1 :]:
          self.assertFalse(np.allclose(first, second))

  @parameterized.parameters('decoder', 'encoder_decoder')
  def test_scanned_layers_draw_fresh_noise_per_layer_and_step(self, family):
    model, args, kwargs = _model_and_args(family, scan=True, num_layers=2)
    params = _init(model, args, kwargs)
    # With attention_output each layer also noises its feed-forward input.
    settings = _settings(kind='hype', sigma=1.0, attention_output=True)
    with _recorded('sample_noise') as draws:
      _apply(model, params, args, kwargs, settings, seed=1)
    with _recorded('sample_noise') as next_step:
      _apply(model, params, args, kwargs, settings, seed=2)
    stacks = 2 if family == 'encoder_decoder' else 1
    self.assertLen(draws, 2 * 2 * stacks)
    for i, first in enumerate(draws):
      self.assertFalse(np.allclose(first, next_step[i]))
      for second in draws[i + 1 :]:
        self.assertFalse(np.allclose(first, second))
    with self.assertRaisesRegex(UserInputError, 'scan_layers=False'):
      _apply(
          model, params, args, kwargs, _settings(kind='hype', layers='top:1')
      )

  def test_tiny_noise_survives_in_bfloat16(self):
    # Unit: the sum is formed in float32 and rounded once. bf16 zeros take
    # the noise itself, small values move, and values near 1 (ulp 2^-7) keep
    # their value: exactly what float32 addition rounded to bf16 gives.
    hidden = jnp.asarray(
        np.repeat([0.0, 1e-4, 1.0], 4096).reshape(3, 4096), jnp.bfloat16
    )
    noise = perturb.sample_noise(
        jax.random.key(0), hidden.shape, 'normal', 1e-5
    )
    noised = perturb.add_in_float32(hidden, noise)
    self.assertEqual(noised.dtype, jnp.bfloat16)
    want = (hidden.astype(jnp.float32) + noise).astype(jnp.bfloat16)
    np.testing.assert_array_equal(noised, want)
    np.testing.assert_array_equal(noised[0], noise.astype(jnp.bfloat16)[0])
    self.assertAlmostEqual(
        float(jnp.std(noised[0].astype(jnp.float32))), 1e-5, delta=5e-7
    )
    self.assertGreater(float(jnp.mean(noised[1] != hidden[1])), 0.1)
    np.testing.assert_array_equal(noised[2], hidden[2])
    # Model: a bf16 BERT's loss moves, by little, under sigma = 1e-4.
    model = _bert(dtype=jnp.bfloat16, dropout_rate=0.0, attention_dropout=0.0)
    ids, mask = _ids(), jnp.ones((BATCH, LENGTH), jnp.int32)
    params = _init(model, (ids, mask), {})

    def clean_and_noised(params, rng):
      clean = model.apply(params, ids, mask)['logits']
      with perturb.perturbation(_settings(kind='hype', sigma=1e-4)):
        outputs = model.apply(
            params, ids, mask, rngs=perturb.training_rngs(rng)
        )
      return clean, outputs['logits']

    clean, noised = jax.jit(clean_and_noised)(params, jax.random.key(1))
    change = float(jnp.max(jnp.abs(noised - clean)))
    self.assertGreater(change, 0.0)
    self.assertLess(change, 0.05)


def _classify_task(**model):
  config = configuration.default_config()
  config.task = classify.task_defaults()
  config.model = ml_collections.ConfigDict({
      'family': 'encoder',
      'd_model': WIDTH,
      'num_heads': 2,
      'ffn_dim': 64,
      'num_layers': 2,
      'max_positions': LENGTH,
      **model,
  })
  config.data.max_source_length = LENGTH
  return classify.ClassifyTask(
      config, vocab_size=VOCAB, pad_id=0, info=glue.glue_info('rte')
  )


def _classify_batch():
  return {
      'inputs': np.asarray(_ids()),
      'input_mask': np.ones((BATCH, LENGTH), np.int32),
      'token_types': np.zeros((BATCH, LENGTH), np.int32),
      'labels': np.arange(BATCH, dtype=np.int32) % 2,
      'example_mask': np.ones((BATCH,), np.float32),
  }


def _lm_task(scan_layers=False):
  config = ml_collections.ConfigDict()
  config.model = ml_collections.ConfigDict({
      'family': 'decoder',
      'd_model': WIDTH,
      'num_heads': 2,
      'ffn_dim': 64,
      'num_layers': 2,
      'max_positions': 64,
      'scan_layers': scan_layers,
  })
  config.task = lm.task_defaults()
  config.task.max_new_tokens = 4
  config.data = ml_collections.ConfigDict({
      'max_source_length': LENGTH,
      'max_target_length': 8,
      'source_field': 'src',
  })
  config.init_from = ''
  return lm.LMTask(config, vocab_size=VOCAB, pad_id=0, eos_id=1)


def _lm_batch():
  ids = np.asarray(_ids())
  segment_ids = np.repeat([[1] * 9 + [2] * 5 + [0] * 2], BATCH, axis=0)
  return {
      'inputs': ids,
      'targets': np.roll(ids, -1, axis=1),
      'target_mask': (segment_ids > 0).astype(np.float32),
      'segment_ids': segment_ids.astype(np.int32),
      'positions': np.asarray(
          decoder.segment_positions(jnp.asarray(segment_ids))
      ),
      'example_mask': np.ones((BATCH,), np.float32),
      'prompt': ids[:, :4],
      'prompt_length': np.full((BATCH,), 4, np.int32),
  }


class TrainingOnlyTest(parameterized.TestCase):

  @parameterized.parameters('classify', 'lm')
  def test_evaluation_and_prediction_see_no_noise(self, task_name):
    if task_name == 'classify':
      task, batch = _classify_task(dropout_rate=0.0), _classify_batch()
    else:
      task, batch = _lm_task(), _lm_batch()
    params = nn.unbox(task.init(jax.random.key(0), task.dummy_batch(2)))
    rng = jax.random.key(3)

    def outputs():
      return (
          task.loss_fn(params, batch, rng)[0],
          task.eval_metrics(params, batch),
          task.predict(params, batch, rng),
      )

    def clean_and_noised():
      clean = outputs()
      with perturb.perturbation(_settings(kind='hype', sigma=1.0)):
        return clean, outputs()

    clean, noised = jax.jit(clean_and_noised)()
    clean_loss, clean_metrics, clean_predictions = clean
    noised_loss, metrics, predictions = noised
    self.assertNotEqual(float(noised_loss), float(clean_loss))
    jax.tree.map(np.testing.assert_array_equal, metrics, clean_metrics)
    np.testing.assert_array_equal(predictions, clean_predictions)

  @parameterized.parameters('classify', 'lm')
  def test_sigma_zero_gives_the_vanilla_loss_and_grads_bitwise(self, task_name):
    if task_name == 'classify':
      # Dropout on: the perturb stream must leave the dropout masks alone.
      task, batch = _classify_task(dropout_rate=0.1), _classify_batch()
    else:
      task, batch = _lm_task(scan_layers=True), _lm_batch()
    params = nn.unbox(task.init(jax.random.key(0), task.dummy_batch(2)))
    grad_fn = jax.value_and_grad(task.loss_fn, has_aux=True)
    zeros = lambda key, shape, *_: jnp.zeros(shape, jnp.float32)

    def traced():  # each variant traced under its settings, as a step is
      results = []
      for settings, draw_zeros in (
          (_settings(), False),
          (_settings(kind='hype', sigma=0.0), False),
          (_settings(kind='hype', sigma=1e-3), False),
          # The live noise path (fp32 add, cast back, the 'perturb' stream)
          # with exact zeros drawn.
          (_settings(kind='hype', sigma=1.0), True),
      ):
        with contextlib.ExitStack() as stack:
          if draw_zeros:
            stack.enter_context(
                mock.patch.object(perturb, 'sample_noise', zeros)
            )
          stack.enter_context(perturb.perturbation(settings))
          results.append(grad_fn(params, batch, jax.random.key(5)))
      return results

    vanilla, zero, tiny, live_zero = jax.jit(traced)()
    jax.tree.map(np.testing.assert_array_equal, zero, vanilla)
    jax.tree.map(np.testing.assert_array_equal, live_zero, vanilla)
    self.assertNotEqual(float(tiny[0][0]), float(vanilla[0][0]))


class NEFTuneTest(absltest.TestCase):

  def test_lengths_are_per_document_of_a_packed_row(self):
    segment_ids = jnp.asarray([[1, 1, 1, 2, 2, 0, 0, 0], [1] * 8])
    lengths = perturb.sequence_lengths(segment_ids != 0, segment_ids)
    np.testing.assert_array_equal(lengths, [[3, 3, 3, 2, 2, 5, 5, 5], [8] * 8])
    real = jnp.asarray([[1, 1, 1, 0], [1, 0, 0, 0]]) != 0
    np.testing.assert_array_equal(
        perturb.sequence_lengths(real, None), [[3] * 4, [1] * 4]
    )

  def test_scale_is_alpha_over_sqrt_of_document_length_times_width(self):
    model, args, _ = _model_and_args('decoder', scan=False)
    segment_ids = jnp.asarray(
        np.repeat([[1] * 3 + [2] * 9 + [0] * 4], BATCH, axis=0)
    )
    kwargs = {'segment_ids': segment_ids}
    params = _init(model, args, kwargs)
    for mask_pads in (False, True):
      settings = _settings(
          kind='neftune', neftune_alpha=5.0, neftune_mask_pads=mask_pads
      )
      with _recorded('neftune_noise') as draws:
        _apply(model, params, args, kwargs, settings)
      self.assertLen(draws, 1)
      noise = np.abs(draws[0])  # [batch, length, embed]
      for span, length in ((slice(0, 3), 3), (slice(3, 12), 9)):
        bound = 5.0 / np.sqrt(length * WIDTH)
        self.assertLessEqual(noise[:, span].max(), bound * (1 + 1e-6))
        self.assertGreater(noise[:, span].max(), 0.95 * bound)
      pads = noise[:, 12:].max()
      if mask_pads:
        self.assertEqual(pads, 0.0)
      else:
        self.assertGreater(pads, 0.0)

  def test_noise_lands_on_the_token_embeddings_of_each_family(self):
    for family in ('encoder', 'decoder', 'encoder_decoder'):
      model, args, kwargs = _model_and_args(family, scan=True)
      settings = _settings(kind='neftune', neftune_alpha=5.0)

      def clean_and_noised(model=model, args=args, kwargs=kwargs):
        params = model.init(jax.random.key(0), *args, **kwargs)
        clean = model.apply(params, *args, **kwargs)
        with perturb.perturbation(settings):
          rngs = perturb.training_rngs(jax.random.key(1))
          return clean, model.apply(params, *args, **kwargs, rngs=rngs)

      with _recorded('neftune_noise') as draws:
        clean, noised = jax.jit(clean_and_noised)()
      # BART embeds the source and the target with its shared table.
      self.assertLen(draws, 2 if family == 'encoder_decoder' else 1)
      if family == 'encoder':
        clean, noised = clean['logits'], noised['logits']
      self.assertFalse(np.allclose(noised, clean), family)


class ConfigTest(absltest.TestCase):

  def test_bad_settings_are_one_line_user_errors(self):
    for keys, message in (
        ({'kind': 'dropout'}, 'perturb.kind'),
        ({'kind': 'hype', 'distribution': 'gauss'}, 'perturb.distribution'),
        ({'kind': 'hype', 'sigma': -1.0}, 'perturb.sigma'),
        ({'kind': 'hype', 'layers': 'top:0'}, 'perturb.layers'),
        ({'kind': 'neftune', 'neftune_alpha': -5.0}, 'neftune_alpha'),
        ({'kind': 'neftune', 'attention_output': True}, "kind='hype' only"),
    ):
      config = configuration.default_config()
      config.perturb.update(keys)
      with self.assertRaisesRegex(UserInputError, message):
        perturb.check_config(config)
    config = configuration.default_config()
    config.model.scan_layers = True
    config.perturb.update({'kind': 'hype', 'layers': 'bottom:2'})
    with self.assertRaisesRegex(UserInputError, 'scan_layers=False'):
      perturb.check_config(config)


class TrainerTest(absltest.TestCase):

  def test_perturbed_training_runs_through_the_trainer(self):
    tmp = tempfile.mkdtemp()
    data = run_helpers.make_data_dir(os.path.join(tmp, 'data'))
    for name, make_config, perturb_keys, noise_function, draws_per_step in (
        (
            'bart',
            run_helpers.tiny_config,
            {'kind': 'hype', 'sigma': 0.5},
            'sample_noise',
            2,  # one encoder and one decoder layer
        ),
        (
            'llama',
            run_helpers.lm_tiny_config,
            {'kind': 'neftune'},
            'neftune_noise',
            1,
        ),
    ):
      config = make_config(data, train__steps=2, checkpoint__every=0)
      config.perturb.update(perturb_keys)
      configuration.validate(config, num_devices=jax.device_count())
      workdir = os.path.join(tmp, name)
      with _recorded(noise_function) as draws:
        train.train_and_evaluate(config, workdir)
      # The noise is drawn inside the jitted train steps, and only there
      # (the final evaluation draws none).
      self.assertLen(draws, 2 * draws_per_step, name)
      self.assertFalse(np.allclose(draws[0], draws[draws_per_step]), name)
      losses = run_helpers.train_losses(workdir)
      self.assertTrue(np.isfinite(losses[2]), name)


if __name__ == '__main__':
  absltest.main()
