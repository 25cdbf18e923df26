"""Tests for ZOOTER's router and reward model (flaxllm.recipes.zooter_router,
flaxllm.recipes.reward_model) on a tiny random BERT with MiniLM's tokenizer."""

import tempfile

from absl.testing import absltest
import jax
import numpy as np

from flaxllm.models import encoder
from flaxllm.recipes import reward_model
from flaxllm.recipes import zooter_router

MEMBERS = ('fruit', 'physics')
FRUIT = (
    'how sweet is a ripe mango',
    'peel the banana and the orange',
    'apple pie with fresh pears',
    'is a lemon sour or sweet',
    'grapes and cherries for dessert',
    'which melon is the juiciest',
)
PHYSICS = (
    'derive the energy of a photon',
    'what is quantum entanglement',
    'the speed of light in vacuum',
    'newton laws of motion and force',
    'how does a magnetic field bend electrons',
    'entropy of an ideal gas',
)


def _tiny_net(num_outputs: int, hidden: int = 0):
  config = encoder.EncoderConfig(
      vocab_size=30522,
      d_model=32,
      num_heads=4,
      ffn_dim=64,
      num_layers=2,
      max_positions=64,
      dropout_rate=0.0,
      attention_dropout=0.0,
      pooler=False,
  )
  net = zooter_router.PooledHead(config, num_outputs, hidden)
  return net, zooter_router.fresh_params(net, seed=0)


def _text_encoder():
  return zooter_router.TextEncoder.from_folder(
      zooter_router.minilm_folder(), 32
  )


def _toy_set():
  queries = list(FRUIT + PHYSICS)
  labels = np.zeros((len(queries), 2), np.float32)
  labels[: len(FRUIT)] = [0.9, 0.1]  # soft labels, as ZOOTER's
  labels[len(FRUIT) :] = [0.2, 0.8]
  return queries, labels


class RouterTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    queries, labels = _toy_set()
    net, params = _tiny_net(2)
    cls.initial = params
    cls.router, cls.losses = zooter_router.train_router(
        net,
        params,
        _text_encoder(),
        queries,
        labels,
        MEMBERS,
        zooter_router.FitSettings(steps=60, learning_rate=3e-3),
        batch_size=6,
    )

  def test_soft_label_loss_decreases_on_a_separable_set(self):
    first, last = np.mean(self.losses[:5]), np.mean(self.losses[-5:])
    self.assertLess(last, first - 0.2)
    # The floor is the labels' entropy (KL = 0): about 0.42 here.
    self.assertGreater(last, 0.3)

  def test_route_picks_each_querys_expert_with_its_probability(self):
    queries, labels = _toy_set()
    choices, probabilities = self.router.route(queries)
    np.testing.assert_array_equal(choices, labels.argmax(1))
    full = self.router.probabilities(queries)
    np.testing.assert_allclose(full.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, full.max(1), rtol=1e-6)

  def test_save_and_load_give_the_same_probabilities(self):
    folder = tempfile.mkdtemp()
    self.router.save(folder)
    loaded = zooter_router.load_router(folder, zooter_router.minilm_folder())
    self.assertEqual(loaded.members, MEMBERS)
    queries, _ = _toy_set()
    np.testing.assert_allclose(
        loaded.probabilities(queries),
        self.router.probabilities(queries),
        atol=1e-6,
    )

  def test_a_frozen_encoder_keeps_its_weights_and_trains_the_head(self):
    queries, labels = _toy_set()
    net, params = _tiny_net(2, hidden=16)
    router, losses = zooter_router.train_router(
        net,
        params,
        _text_encoder(),
        queries,
        labels,
        MEMBERS,
        zooter_router.FitSettings(
            steps=60, learning_rate=1e-2, train_encoder=False
        ),
        batch_size=6,
    )
    same = jax.tree.map(
        np.array_equal, params['encoder'], router.params['encoder']
    )
    self.assertTrue(all(jax.tree.leaves(same)))
    self.assertFalse(
        np.array_equal(
            params['head']['out']['kernel'],
            router.params['head']['out']['kernel'],
        )
    )
    self.assertLess(np.mean(losses[-5:]), np.mean(losses[:5]))


class RewardModelTest(absltest.TestCase):

  def test_bradley_terry_training_ranks_the_chosen_answer_higher(self):
    rng = np.random.default_rng(0)
    questions = list(FRUIT + PHYSICS)
    good = ['a correct and helpful answer', 'yes this is right']
    bad = ['wrong nonsense reply', 'no idea sorry']
    pairs = [
        (q, good[rng.integers(2)], bad[rng.integers(2)]) for q in questions
    ]
    net, params = _tiny_net(1)
    text_encoder = zooter_router.TextEncoder.from_folder(
        zooter_router.minilm_folder(), 48
    )
    model, losses = reward_model.train_reward_model(
        net,
        params,
        text_encoder,
        pairs,
        zooter_router.FitSettings(steps=40, learning_rate=3e-3),
        batch_size=6,
    )
    self.assertLess(np.mean(losses[-5:]), np.mean(losses[:5]) - 0.2)
    held_out = ['what colour is a plum', 'define momentum']
    chosen = model.score(held_out, [good[0], good[1]])
    rejected = model.score(held_out, [bad[0], bad[1]])
    self.assertTrue(np.all(chosen > rejected))

  def test_no_pairs_is_an_error(self):
    net, params = _tiny_net(1)
    with self.assertRaisesRegex(Exception, 'no preference pairs'):
      reward_model.train_reward_model(
          net,
          params,
          _text_encoder(),
          [],
          zooter_router.FitSettings(steps=1),
      )


if __name__ == '__main__':
  absltest.main()
