"""Tests for flaxllm.recipes.dmt: the stages of each SFT strategy."""

import collections
import math

from absl.testing import absltest
from absl.testing import parameterized

from flaxllm.errors import UserInputError
from flaxllm.recipes import dmt

# The paper's source sizes: GSM8K RFT, Code Alpaca, ShareGPT.
PAPER_SIZES = {'math': 110_142, 'code': 20_022, 'general': 86_060}
SMALL_SIZES = {'math': 1000, 'code': 300, 'general': 500}


def _sources(sizes):
  """Distinct, labelled examples: ('math', 0), ('math', 1), ..."""
  return {
      name: [(name, i) for i in range(size)] for name, size in sizes.items()
  }


def _counts(stages):
  return [stage.counts for stage in stages]


class DmtCountsTest(parameterized.TestCase):

  def test_paper_k_1_256_adds_430_math_and_78_code_examples(self):
    stages = dmt.compose_stages(
        _sources(PAPER_SIZES), strategy='dmt', k=1 / 256
    )
    self.assertEqual(
        _counts(stages),
        [
            {'code': 20_022, 'math': 110_142},
            {'general': 86_060, 'code': 78, 'math': 430},
        ],
    )
    self.assertEqual(
        [stage.name for stage in stages], ['code+math', 'general+code+math']
    )

  @parameterized.parameters(0.0, 1 / 256, 1 / 64, 1 / 16, 1 / 4, 1.0)
  def test_stage_two_takes_floor_k_n_of_each_specialist(self, k):
    stages = dmt.compose_stages(_sources(SMALL_SIZES), strategy='dmt', k=k)
    stage1, stage2 = _counts(stages)
    self.assertEqual(stage1, {'math': 1000, 'code': 300})
    expected = {'general': 500}
    for name in ('math', 'code'):
      if math.floor(k * SMALL_SIZES[name]):
        expected[name] = math.floor(k * SMALL_SIZES[name])
    self.assertEqual(stage2, expected)

  def test_equal_counts_variant_takes_k_count_of_each(self):
    stages = dmt.compose_stages(
        _sources(SMALL_SIZES), strategy='dmt', k_count=40
    )
    self.assertEqual(stages[1].counts, {'general': 500, 'math': 40, 'code': 40})

  def test_stage_two_replays_examples_from_stage_one_without_repeats(self):
    stages = dmt.compose_stages(_sources(SMALL_SIZES), strategy='dmt', k=0.1)
    replayed = [e for e in stages[1].examples if e[0] != 'general']
    self.assertLen(set(replayed), len(replayed))
    self.assertContainsSubset(replayed, stages[0].examples)

  def test_sources_label_each_example(self):
    stages = dmt.compose_stages(_sources(SMALL_SIZES), strategy='dmt', k=0.1)
    for stage in stages:
      self.assertEqual(
          stage.sources, [example[0] for example in stage.examples]
      )


class StrategiesTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('single', 'single', [{'code': 300}]),
      (
          'multi_task',
          'multi_task',
          [{'math': 1000, 'code': 300, 'general': 500}],
      ),
      (
          'sequential',
          'sequential',
          [{'code': 300}, {'math': 1000}, {'general': 500}],
      ),
      (
          'mixed_sequential',
          'mixed_sequential',
          [{'code': 300, 'math': 1000}, {'general': 500}],
      ),
      (
          'dmt',
          'dmt',
          [{'code': 300, 'math': 1000}, {'general': 500, 'math': 3, 'code': 1}],
      ),
  )
  def test_each_strategy_has_its_stages_and_counts(self, strategy, expected):
    stages = dmt.compose_stages(
        _sources(SMALL_SIZES),
        strategy=strategy,
        k=1 / 256,
        single_source='code',
    )
    self.assertEqual(_counts(stages), expected)

  def test_stages_hold_every_example_exactly_once_when_nothing_is_cut(self):
    for strategy in ('multi_task', 'sequential', 'mixed_sequential'):
      stages = dmt.compose_stages(_sources(SMALL_SIZES), strategy=strategy)
      examples = [e for stage in stages for e in stage.examples]
      self.assertLen(examples, sum(SMALL_SIZES.values()))
      self.assertLen(set(examples), len(examples))

  def test_sequential_order_follows_specialist_sources(self):
    stages = dmt.compose_stages(
        _sources(SMALL_SIZES),
        strategy='sequential',
        specialist_sources=('math', 'code'),
    )
    self.assertEqual([s.name for s in stages], ['math', 'code', 'general'])

  def test_mixed_stages_are_shuffled_unless_asked_not_to(self):
    sources = _sources(SMALL_SIZES)
    shuffled = dmt.compose_stages(sources, strategy='multi_task')[0]
    in_order = dmt.compose_stages(
        sources, strategy='multi_task', shuffle=False
    )[0]
    self.assertEqual(
        in_order.examples,
        sources['general'] + sources['code'] + sources['math'],
    )
    self.assertNotEqual(shuffled.examples, in_order.examples)
    self.assertCountEqual(shuffled.examples, in_order.examples)


class AmountsTest(parameterized.TestCase):

  def test_counts_and_fractions_cut_sources_before_the_strategy(self):
    stages = dmt.compose_stages(
        _sources(SMALL_SIZES),
        strategy='dmt',
        k=0.5,
        amounts={'math': 1 / 16, 'code': 100},
    )
    self.assertEqual(
        _counts(stages),
        [{'math': 62, 'code': 100}, {'general': 500, 'math': 31, 'code': 50}],
    )

  def test_string_amounts_parse_counts_and_fractions(self):
    self.assertEqual(
        dmt.parse_amounts('math=1/16, code=100,general=0.25'),
        {'math': 1 / 16, 'code': 100, 'general': 0.25},
    )

  @parameterized.named_parameters(
      ('count_above_size', {'code': 301}, 'has 300 examples'),
      ('fraction_above_one', {'code': 1.5}, 'not a fraction'),
      ('unknown_source', {'maths': 0.5}, 'unknown sources'),
  )
  def test_bad_amounts_raise(self, amounts, message):
    with self.assertRaisesRegex(UserInputError, message):
      dmt.compose_stages(
          _sources(SMALL_SIZES), strategy='multi_task', amounts=amounts
      )

  def test_malformed_amount_string_raises(self):
    with self.assertRaisesRegex(UserInputError, 'name=count'):
      dmt.parse_amounts('math=lots')


class DeterminismTest(absltest.TestCase):

  def test_same_seed_same_stages_other_seed_other_stages(self):
    sources = _sources(SMALL_SIZES)
    first = dmt.compose_stages(sources, strategy='dmt', k=0.1, seed=3)
    again = dmt.compose_stages(sources, strategy='dmt', k=0.1, seed=3)
    other = dmt.compose_stages(sources, strategy='dmt', k=0.1, seed=4)
    self.assertEqual([s.examples for s in first], [s.examples for s in again])
    self.assertNotEqual(first[1].examples, other[1].examples)

  def test_replay_draw_does_not_depend_on_the_other_sources(self):
    sources = _sources(SMALL_SIZES)
    bigger = dict(sources, general=sources['general'] * 2)

    def replayed(stages):
      return collections.Counter(
          e for e in stages[1].examples if e[0] == 'math'
      )

    self.assertEqual(
        replayed(dmt.compose_stages(sources, strategy='dmt', k=0.1)),
        replayed(dmt.compose_stages(bigger, strategy='dmt', k=0.1)),
    )


class ConfigTest(absltest.TestCase):

  def test_defaults_give_dmt_1_256(self):
    recipe = dmt.recipe_defaults()
    stages = dmt.stages_from_config(recipe, _sources(PAPER_SIZES))
    self.assertEqual(stages[1].counts['math'], 430)
    self.assertEqual(stages[1].counts['code'], 78)

  def test_config_string_amounts_and_strategy_are_honoured(self):
    recipe = dmt.recipe_defaults()
    recipe.strategy = 'single'
    recipe.single_source = 'math'
    recipe.amounts = 'math=1/4'
    stages = dmt.stages_from_config(recipe, _sources(SMALL_SIZES))
    self.assertEqual(_counts(stages), [{'math': 250}])

  def test_unknown_strategy_raises(self):
    with self.assertRaisesRegex(UserInputError, 'use one of'):
      dmt.compose_stages(_sources(SMALL_SIZES), strategy='curriculum')

  def test_missing_source_raises(self):
    sources = _sources(SMALL_SIZES)
    del sources['code']
    with self.assertRaisesRegex(UserInputError, 'general_source'):
      dmt.compose_stages(sources, strategy='dmt')

  def test_single_source_must_exist(self):
    with self.assertRaisesRegex(UserInputError, 'single_source'):
      dmt.compose_stages(
          _sources(SMALL_SIZES), strategy='single', single_source='poetry'
      )


if __name__ == '__main__':
  absltest.main()
