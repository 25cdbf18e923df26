"""Tests of the family-independent Hugging Face folder I/O in models/hf.py."""

import json
import os
import tempfile
from unittest import mock

from absl.testing import absltest
import flax.linen as nn
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_dtypes
import numpy as np

from flaxllm import errors
from flaxllm.models import encoder_decoder
from flaxllm.models import hf

HF_CONFIG = {'model_type': 'bart', 'vocab_size': 7}


def _state() -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  return {
      'a.weight': rng.normal(size=(8, 4)).astype(np.float32),
      'b.bias': rng.normal(size=(16,)).astype(ml_dtypes.bfloat16),
      'c.index': np.arange(3, dtype=np.int64),
      'd.weight': rng.normal(size=(5, 5)).astype(np.float16),
  }


def _assert_states_equal(test, actual, expected):
  test.assertEqual(sorted(actual), sorted(expected))
  for name, array in expected.items():
    test.assertEqual(actual[name].dtype, array.dtype, name)
    np.testing.assert_array_equal(actual[name], array, err_msg=name)


class FolderIoTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.enterContext(tempfile.TemporaryDirectory())
    self.path = os.path.join(self.root, 'ckpt')

  def test_single_file_round_trip(self):
    hf.write_folder(self.path, HF_CONFIG, _state())
    self.assertCountEqual(
        os.listdir(self.path),
        [hf.CONFIG_FILE, hf.WEIGHTS_FILE, hf.MARKER_FILE],
    )
    self.assertEqual(hf.read_config(self.path), HF_CONFIG)
    _assert_states_equal(self, hf.read_state(self.path), _state())

  def test_sharded_round_trip(self):
    hf.write_folder(self.path, HF_CONFIG, _state(), max_shard_bytes=64)
    with open(os.path.join(self.path, hf.INDEX_FILE)) as f:
      index = json.load(f)
    shards = set(index['weight_map'].values())
    self.assertGreater(len(shards), 1)
    self.assertFalse(os.path.exists(os.path.join(self.path, hf.WEIGHTS_FILE)))
    for shard in shards:
      self.assertTrue(os.path.isfile(os.path.join(self.path, shard)))
    self.assertEqual(
        index['metadata']['total_size'],
        sum(array.nbytes for array in _state().values()),
    )
    _assert_states_equal(self, hf.read_state(self.path), _state())

  def test_sharded_model_round_trip(self):
    config = encoder_decoder.EncoderDecoderConfig(
        vocab_size=11, d_model=8, num_heads=2, ffn_dim=16, max_positions=6,
        scan_layers=True,
    )  # fmt: skip
    ids = np.ones((1, 3), np.int32)
    params = nn.unbox(
        jax.jit(encoder_decoder.EncoderDecoder(config).init)(
            jax.random.key(0), ids, ids, ids
        )['params']
    )
    hf.save_pretrained(self.path, config, params, max_shard_bytes=2048)
    self.assertTrue(os.path.isfile(os.path.join(self.path, hf.INDEX_FILE)))
    loaded_config, loaded = hf.load_pretrained(
        self.path, scan_layers=True, dropout_rate=config.dropout_rate
    )
    self.assertEqual(loaded_config, config)
    jax.tree.map(np.testing.assert_array_equal, loaded, params)

  def test_writer_failing_midway_leaves_no_folder(self):
    state = {**_state(), 'z.unsupported': np.array([object()])}
    with self.assertRaises(Exception):
      hf.write_folder(self.path, HF_CONFIG, state, max_shard_bytes=64)
    self.assertEmpty(os.listdir(self.root))

  def test_failed_overwrite_keeps_previous_save(self):
    hf.write_folder(self.path, HF_CONFIG, _state())
    real_save = hf.safetensors_np.save_file
    calls = []

    def save_then_crash(*args, **kwargs):
      if calls:
        raise OSError('disk full')
      calls.append(args)
      real_save(*args, **kwargs)

    with mock.patch.object(hf.safetensors_np, 'save_file', save_then_crash):
      with self.assertRaisesRegex(OSError, 'disk full'):
        hf.write_folder(
            self.path, {'model_type': 'bert'}, _state(), max_shard_bytes=64
        )
    self.assertEqual(os.listdir(self.root), ['ckpt'])
    self.assertEqual(hf.read_config(self.path), HF_CONFIG)
    _assert_states_equal(self, hf.read_state(self.path), _state())

  def test_overwrite_rules(self):
    os.makedirs(self.path)  # An empty folder may be written into.
    hf.write_folder(self.path, HF_CONFIG, _state())
    # A previous flaxllm save may be replaced.
    hf.write_folder(self.path, {'model_type': 'bert'}, {'x': np.ones(2)})
    self.assertEqual(hf.read_config(self.path), {'model_type': 'bert'})
    self.assertEqual(list(hf.read_state(self.path)), ['x'])
    self.assertEqual(os.listdir(self.root), ['ckpt'])
    # Someone else's folder may not.
    foreign = os.path.join(self.root, 'foreign')
    os.makedirs(foreign)
    open(os.path.join(foreign, 'notes.txt'), 'w').close()
    with self.assertRaisesRegex(errors.UserInputError, 'foreign'):
      hf.write_folder(foreign, HF_CONFIG, _state())
    self.assertEqual(os.listdir(foreign), ['notes.txt'])

  def test_user_errors(self):
    missing = os.path.join(self.root, 'missing')
    with self.assertRaisesRegex(errors.UserInputError, 'missing'):
      hf.load_pretrained(missing)
    os.makedirs(self.path)
    with self.assertRaisesRegex(errors.UserInputError, 'config.json'):
      hf.read_config(self.path)
    with self.assertRaisesRegex(errors.UserInputError, 'safetensors'):
      hf.read_state(self.path)
    with open(os.path.join(self.path, hf.CONFIG_FILE), 'w') as f:
      json.dump({'model_type': 'gpt2'}, f)
    with self.assertRaisesRegex(errors.UserInputError, 'gpt2'):
      hf.load_pretrained(self.path)
    with self.assertRaisesRegex(errors.UserInputError, 'converter'):
      hf.save_pretrained(os.path.join(self.root, 'out'), object(), {})


class PlaceTest(absltest.TestCase):

  def test_each_device_receives_its_slice(self):
    self.assertLen(jax.devices(), 8)
    mesh = jax.make_mesh(
        (4, 2), ('data', 'tensor'), axis_types=(jax.sharding.AxisType.Auto,) * 2
    )
    host = {
        'both': np.arange(8 * 6, dtype=np.float32).reshape(8, 6),
        'rows': np.arange(16 * 3, dtype=np.int32).reshape(16, 3),
        'replicated': np.arange(5, dtype=np.float32),
        'default': np.ones((2, 2), ml_dtypes.bfloat16),
    }
    shardings = {
        'both': NamedSharding(mesh, P('data', 'tensor')),
        'rows': NamedSharding(mesh, P(('data', 'tensor'), None)),
        'replicated': NamedSharding(mesh, P()),
        'default': None,
    }
    placed = hf.place(host, shardings)
    expected_shard_shapes = {
        'both': (2, 3),
        'rows': (2, 3),
        'replicated': (5,),
        'default': (2, 2),
    }
    for name, array in placed.items():
      with self.subTest(name):
        self.assertIsInstance(array, jax.Array)
        self.assertEqual(array.dtype, host[name].dtype)
        if shardings[name] is not None:
          self.assertEqual(array.sharding, shardings[name])
        for shard in array.addressable_shards:
          self.assertEqual(shard.data.shape, expected_shard_shapes[name])
          np.testing.assert_array_equal(shard.data, host[name][shard.index])
        np.testing.assert_array_equal(np.asarray(array), host[name])

  def test_without_shardings_uses_the_default_device(self):
    placed = hf.place({'w': np.ones((3, 2), np.float32)})
    self.assertEqual(placed['w'].devices(), {jax.devices()[0]})


if __name__ == '__main__':
  absltest.main()
