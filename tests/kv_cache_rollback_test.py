"""Tests for flaxllm.decoding.cache: per-row rollback and row operations."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm.decoding import cache as cache_lib
from flaxllm.decoding import model_steps
from tests import decoding_helpers as helpers

CACHE_LENGTH = 10
# Every row is fed 7 tokens; the rows then keep prefixes of these lengths.
FED = np.array([[3, 4, 5, 6, 7, 2, 1], [6, 1, 2, 2, 5, 3, 4]], np.int32)
KEPT = np.array([5, 2], np.int32)
NEXT = np.array([[2], [7]], np.int32)


def _self_attention_caches(cache, scanned: bool):
  """[(cached_key, cached_value, cache_index)] per layer, batch axis 0."""
  if scanned:
    attention = cache['layers']['self_attn']
    return [
        tuple(
            attention[name][layer]
            for name in ('cached_key', 'cached_value', 'cache_index')
        )
        for layer in range(attention['cache_index'].shape[0])
    ]
  return [
      tuple(
          cache[f'layers_{layer}']['self_attn'][name]
          for name in ('cached_key', 'cached_value', 'cache_index')
      )
      for layer in range(2)
  ]


class RollbackTest(parameterized.TestCase):

  @parameterized.parameters(False, True)
  def test_rolled_back_cache_equals_cache_built_on_the_kept_prefix(
      self, scanned
  ):
    lm = helpers.TinyLM.random(seed=0, head_scale=5.0, scan_layers=scanned)
    empty_cache = lambda batch: model_steps.init_decoder_cache(
        lm.model, batch, CACHE_LENGTH
    )

    @jax.jit
    def rolled_back(params):
      # Feed all 7 tokens, then keep KEPT of them per row and feed NEXT.
      _, cache = lm.step(params, jnp.asarray(FED), empty_cache(2))
      cache = cache_lib.set_lengths(cache, KEPT)
      next_logits, _ = lm.step(params, jnp.asarray(NEXT), cache)
      return cache, next_logits

    @jax.jit
    def from_scratch(params, prefix, next_ids):
      # One row, fed exactly its kept prefix.
      _, cache = lm.step(params, prefix, empty_cache(1))
      next_logits, _ = lm.step(params, next_ids, cache)
      return cache, next_logits

    rolled, rolled_next = rolled_back(lm.params)
    np.testing.assert_array_equal(cache_lib.get_lengths(rolled), KEPT)
    np.testing.assert_array_equal(rolled['position_index'], KEPT)
    for row, kept in enumerate(KEPT):
      fresh, fresh_next = from_scratch(
          lm.params, FED[row : row + 1, :kept], NEXT[row : row + 1]
      )
      for (key, value, index), (fresh_key, fresh_value, fresh_index) in zip(
          _self_attention_caches(rolled, scanned),
          _self_attention_caches(fresh, scanned),
      ):
        self.assertEqual(int(index[row]), int(fresh_index[0]))
        np.testing.assert_allclose(
            key[row, :kept], fresh_key[0, :kept], atol=1e-6
        )
        np.testing.assert_allclose(
            value[row, :kept], fresh_value[0, :kept], atol=1e-6
        )
        # The rolled-back row still holds the discarded tokens' keys...
        self.assertGreater(
            float(jnp.abs(key[row, kept] - fresh_key[0, kept]).max()), 0
        )
      # ...but they are masked: the next token sees only the kept prefix.
      np.testing.assert_allclose(rolled_next[row], fresh_next[0], atol=1e-5)


class RowOperationsTest(absltest.TestCase):

  def test_repeat_and_gather_move_whole_rows_of_scanned_caches(self):
    num_layers, batch = 2, 3
    cache = {
        'layers': {
            'cache_index': (
                jnp.arange(num_layers * batch).reshape(num_layers, batch)
            ),
            'cached_key': (
                jnp.arange(num_layers * batch * 4.0).reshape(
                    num_layers, batch, 4
                )
            ),
        },
        'position_index': jnp.arange(batch),
        'shared_scalar': jnp.float32(7.0),
    }
    repeated = cache_lib.repeat_rows(cache, batch, 2)
    np.testing.assert_array_equal(
        repeated['position_index'], [0, 0, 1, 1, 2, 2]
    )
    np.testing.assert_array_equal(
        repeated['layers']['cache_index'],
        [[0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5]],
    )
    order = jnp.array([5, 0, 0, 3, 2, 1])
    gathered = cache_lib.gather_rows(repeated, 6, order)
    np.testing.assert_array_equal(
        gathered['layers']['cached_key'],
        repeated['layers']['cached_key'][:, order],
    )
    np.testing.assert_array_equal(
        gathered['position_index'], [2, 0, 0, 1, 1, 0]
    )
    self.assertEqual(float(gathered['shared_scalar']), 7.0)

  def test_set_lengths_sets_every_length_leaf(self):
    cache = {
        'layers': {'cache_index': jnp.zeros((2, 3), jnp.int32)},
        'position_index': jnp.zeros((3,), jnp.int32),
        'cached_key': jnp.ones((3, 4)),
    }
    updated = cache_lib.set_lengths(cache, jnp.array([1, 2, 3]))
    np.testing.assert_array_equal(
        updated['layers']['cache_index'], [[1, 2, 3]] * 2
    )
    np.testing.assert_array_equal(updated['position_index'], [1, 2, 3])
    np.testing.assert_array_equal(updated['cached_key'], cache['cached_key'])


if __name__ == '__main__':
  absltest.main()
