"""Tests for flaxllm.recipes.zooter: silver labels, tag smoothing, zoo specs,
task-grounded rewards and the evaluation helpers (MTR, oracle, accuracy)."""

from absl.testing import absltest
import ml_collections
import numpy as np

from flaxllm.errors import UserInputError
from flaxllm.recipes import reward_model
from flaxllm.recipes import zooter


def _route(**overrides) -> ml_collections.ConfigDict:
  route = zooter.route_defaults()
  route.update(overrides)
  return route


class SilverLabelsTest(absltest.TestCase):

  def test_labels_are_the_softmax_of_rewards(self):
    rewards = np.array([[1.0, 0.0, 0.0], [2.0, 2.0, -1.0]])
    labels = zooter.silver_labels(rewards)
    expected = np.exp(rewards) / np.exp(rewards).sum(1, keepdims=True)
    np.testing.assert_allclose(labels, expected, rtol=1e-6)
    np.testing.assert_allclose(labels.sum(1), 1.0, rtol=1e-6)

  def test_a_lower_temperature_sharpens_toward_the_best_member(self):
    rewards = np.array([[1.0, 0.0, 0.0]])
    flat = zooter.silver_labels(rewards, 1.0)[0, 0]
    sharp = zooter.silver_labels(rewards, 0.1)[0, 0]
    self.assertGreater(sharp, 0.99)
    self.assertLess(flat, 0.6)

  def test_large_rewards_do_not_overflow(self):
    labels = zooter.silver_labels(np.array([[1000.0, 999.0]]))
    self.assertTrue(np.all(np.isfinite(labels)))

  def test_non_positive_temperature_is_an_error(self):
    with self.assertRaisesRegex(UserInputError, 'temperature'):
      zooter.silver_labels(np.zeros((1, 2)), 0.0)


class TagEnhancementTest(absltest.TestCase):

  LABELS = np.array(
      [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.2, 0.8]], np.float32
  )
  TAGS = [['a'], ['a', 'b'], ['b'], []]

  def test_tag_label_is_the_mean_label_of_its_queries(self):
    prior = zooter.tag_labels(self.LABELS, self.TAGS)
    np.testing.assert_allclose(prior['a'], [0.75, 0.25])
    np.testing.assert_allclose(prior['b'], [0.25, 0.75])

  def test_enhanced_label_mixes_instance_and_mean_tag_label(self):
    out = zooter.enhance_labels(self.LABELS, self.TAGS, beta=0.3)
    # Query 0, tag a: 0.3 [1, 0] + 0.7 [0.75, 0.25].
    np.testing.assert_allclose(out[0], [0.825, 0.175], rtol=1e-6)
    # Query 1, tags a and b: the tag mean is [0.5, 0.5].
    np.testing.assert_allclose(out[1], [0.5, 0.5], rtol=1e-6)
    # Query 3 has no tags: its own label.
    np.testing.assert_allclose(out[3], self.LABELS[3])
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-6)

  def test_beta_one_keeps_and_beta_zero_replaces_the_instance_label(self):
    np.testing.assert_allclose(
        zooter.enhance_labels(self.LABELS, self.TAGS, beta=1.0), self.LABELS
    )
    replaced = zooter.enhance_labels(self.LABELS, self.TAGS, beta=0.0)
    np.testing.assert_allclose(replaced[2], [0.25, 0.75])

  def test_beta_outside_the_unit_interval_is_an_error(self):
    with self.assertRaisesRegex(UserInputError, 'beta'):
      zooter.enhance_labels(self.LABELS, self.TAGS, beta=1.5)

  def test_field_tags_split_on_commas(self):
    tags = zooter.field_tags([{'kind': 'math, word'}, {}], 'kind')
    self.assertEqual(tags, [['math', 'word'], []])

  def test_kmeans_finds_two_separated_blobs(self):
    rng = np.random.default_rng(0)
    points = np.concatenate(
        [rng.normal(0, 0.1, (20, 4)), rng.normal(5, 0.1, (20, 4))]
    )
    clusters = zooter.kmeans(points, 2)
    self.assertLen(set(clusters[:20]), 1)
    self.assertLen(set(clusters[20:]), 1)
    self.assertNotEqual(clusters[0], clusters[20])


class ZooSpecTest(absltest.TestCase):

  def test_members_carry_shared_and_overridden_settings(self):
    members = zooter.parse_members(
        _route(
            members='a=workdir:/r/a; b=gguf:/m.gguf',
            member_settings='b.temperature=0.7;b.max_new_tokens=32',
            max_new_tokens=64,
        )
    )
    self.assertEqual([m.name for m in members], ['a', 'b'])
    self.assertEqual(members[0].max_new_tokens, 64)
    self.assertEqual(members[1].max_new_tokens, 32)
    self.assertEqual(members[1].temperature, 0.7)
    self.assertEqual(members[1].spec, 'gguf:/m.gguf')

  def test_malformed_members_name_the_entry(self):
    for bad in ('a=s3:/x;b=hf:/y', 'a;b=hf:/y', 'a=hf:/x;a=hf:/y'):
      with self.assertRaises(UserInputError):
        zooter.parse_members(_route(members=bad))
    with self.assertRaisesRegex(UserInputError, 'not in'):
      zooter.parse_members(
          _route(members='a=hf:/x;b=hf:/y', member_settings='c.top_p=0.9')
      )

  def test_config_check_rejects_a_zoo_of_one_and_bad_scorers(self):
    config = ml_collections.ConfigDict({'route': _route(members='a=hf:/x')})
    with self.assertRaisesRegex(UserInputError, 'at least two'):
      zooter.check_config(config)
    config = ml_collections.ConfigDict({'route': _route(scorer='gpt4')})
    with self.assertRaisesRegex(UserInputError, 'route.scorer'):
      zooter.check_config(config)


class TaskScoresTest(absltest.TestCase):

  def test_each_kind_is_scored_by_its_checker(self):
    examples = [
        {'kind': 'math', 'src': 'q', 'tgt': '... #### 7', 'answer': '#### 7'},
        {'kind': 'math', 'src': 'q', 'tgt': '... #### 7', 'answer': '#### 7'},
        {
            'kind': 'code',
            'src': 'q',
            'tgt': '',
            'entry_point': 'f',
            'test': 'def check(candidate):\n    assert candidate(2) == 4',
        },
        {
            'kind': 'code',
            'src': 'q',
            'tgt': '',
            'entry_point': 'f',
            'test': 'def check(candidate):\n    assert candidate(2) == 4',
        },
        {'kind': 'general', 'src': 'q', 'tgt': 'short stature'},
    ]
    outputs = [
        'so #### 7',
        'so #### 8',
        'def f(x):\n    return x * 2',
        'def f(x):\n    return x + 1',
        'stature',
    ]
    scores = zooter.task_scores(examples, outputs)
    np.testing.assert_allclose(scores[:4], [1.0, 0.0, 1.0, 0.0])
    self.assertAlmostEqual(scores[4], 2 / 3, places=5)  # ROUGE-L F1


class EvaluationTest(absltest.TestCase):

  def test_oracle_breaks_ties_by_cost(self):
    scores = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    flops = np.array([[5.0, 2.0, 1.0], [3.0, 2.0, 9.0]])
    np.testing.assert_array_equal(zooter.oracle_choices(scores, flops), [1, 1])

  def test_routing_accuracy_counts_any_best_member(self):
    scores = np.array([[1.0, 1.0], [0.0, 1.0], [0.3, 0.2]])
    self.assertAlmostEqual(
        zooter.routing_accuracy(np.array([0, 0, 0]), scores), 2 / 3
    )

  def test_mean_task_rank_and_percent_first_share_ties(self):
    table = {
        'x': {'d1': 10.0, 'd2': 5.0},
        'y': {'d1': 10.0, 'd2': 1.0},
        'z': {'d1': 0.0, 'd2': 9.0},
    }
    ranks = zooter.mean_task_rank(table, ['d1', 'd2'])
    self.assertEqual(ranks['x'], (1.75, 50.0))  # d1 tied first: 1.5
    self.assertEqual(ranks['y'], (2.25, 50.0))
    self.assertEqual(ranks['z'], (2.0, 50.0))

  def test_domain_scores_average_the_chosen_outputs(self):
    scores = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.0]])
    out = zooter.domain_scores(np.array([0, 0, 0]), scores, ['a', 'b', 'b'])
    self.assertEqual(out, {'a': 100.0, 'b': 25.0, 'all': 50.0})

  def test_preference_pairs_only_where_scores_differ(self):
    pairs = reward_model.preference_pairs(
        ['q1', 'q2'],
        [['good', 'bad', 'ok'], ['x', 'y', 'z']],
        np.array([[1.0, 0.0, 1.0], [0.5, 0.5, 0.5]]),
    )
    self.assertCountEqual(pairs, [('q1', 'good', 'bad'), ('q1', 'ok', 'bad')])


if __name__ == '__main__':
  absltest.main()
