"""Mesh building and sharded training on 8 fake CPU devices."""

import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from flaxllm import sharding
from flaxllm import train
from flaxllm.errors import UserInputError
from tests import run_helpers


class MeshShapeTest(parameterized.TestCase):

  @parameterized.parameters(
      ((-1, 1, 1), 8, (8, 1, 1)),
      ((2, -1, 1), 8, (2, 4, 1)),
      ((2, 4, 1), 8, (2, 4, 1)),
      ((1, 1, -1), 4, (1, 1, 4)),
  )
  def test_resolves_the_rest(self, shape, devices, expected):
    self.assertEqual(sharding.resolve_mesh_shape(shape, devices), expected)

  @parameterized.parameters(
      ((3, 3, 1), 8, 'needs 9 devices'),
      ((3, -1, 1), 8, 'cannot fill 8 devices'),
      ((-1, -1, 1), 8, 'at most one -1'),
      ((2, 4), 8, 'must have 3 entries'),
      ((0, 8, 1), 8, 'positive sizes'),
  )
  def test_bad_shapes_name_the_problem(self, shape, devices, message):
    with self.assertRaisesRegex(UserInputError, message):
      sharding.resolve_mesh_shape(shape, devices)

  def test_mesh_axes_are_auto(self):
    mesh = sharding.make_mesh((2, 4, 1))
    self.assertEqual(mesh.axis_names, ('data', 'fsdp', 'tensor'))
    self.assertTrue(
        all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    )


class ShardedTrainingTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.data = run_helpers.make_data_dir(os.path.join(cls.tmp, 'data'))

  def test_fsdp_params_are_really_split(self):
    config = run_helpers.tiny_config(self.data)
    config.mesh.shape = (2, 4, 1)
    run = train.setup(config, os.path.join(self.tmp, 'split'))
    state = run.placement.init(jax.random.PRNGKey(0))
    embedding = state.params['shared']['embedding']
    # vocab -> tensor (size 1 here), embed -> fsdp.
    self.assertEqual(
        embedding.sharding.spec, jax.sharding.PartitionSpec('tensor', 'fsdp')
    )
    vocab, embed = embedding.shape
    self.assertEqual(
        embedding.addressable_shards[0].data.shape, (vocab, embed // 4)
    )
    # Adam moments follow their params; the step counter is replicated.
    adam = state.opt_state[1][0]
    self.assertEqual(
        adam.mu['shared']['embedding'].sharding.spec, embedding.sharding.spec
    )
    self.assertTrue(state.step.sharding.is_fully_replicated)
    split = [
        leaf
        for leaf in jax.tree.leaves(state.params)
        if leaf.addressable_shards[0].data.shape != leaf.shape
    ]
    self.assertGreater(len(split), len(jax.tree.leaves(state.params)) // 3)
    run.checkpointer.close()

  def test_fsdp_loss_matches_one_device(self):
    config_path = run_helpers.write_config_file(
        os.path.join(self.tmp, 'tiny_config.py'), self.data, train__steps=3
    )
    workdir_one = os.path.join(self.tmp, 'one_device')
    result = run_helpers.run_cli(
        [f'--config={config_path}', f'--workdir={workdir_one}'], devices=1
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    config = run_helpers.tiny_config(self.data, train__steps=3)
    config.mesh.shape = (2, 4, 1)
    workdir_eight = os.path.join(self.tmp, 'eight_devices')
    train.train_and_evaluate(config, workdir_eight)
    one = run_helpers.train_losses(workdir_one)
    eight = run_helpers.train_losses(workdir_eight)
    self.assertEqual(sorted(one), [1, 2, 3])
    np.testing.assert_allclose(
        [eight[s] for s in (1, 2, 3)],
        [one[s] for s in (1, 2, 3)],
        rtol=0,
        atol=1e-5,
    )
    self.assertNotEqual(one[1], one[3])  # it trained


if __name__ == '__main__':
  absltest.main()
