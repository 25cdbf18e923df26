"""Synthetic instruction data and per-ability scoring of responses."""

import re

from absl.testing import absltest

from flaxllm.data import sources
from flaxllm.data import synthetic_sft
from flaxllm.eval import ability_scores


class SyntheticSftTest(absltest.TestCase):

  def test_splits_are_disjoint_and_deterministic(self):
    for ability in ('math', 'math_small', 'code'):
      train = synthetic_sft.examples(ability, 200, 'train')
      test = synthetic_sft.examples(ability, 50, 'test')
      self.assertEqual(train, synthetic_sft.examples(ability, 200, 'train'))
      self.assertFalse({e['src'] for e in train} & {e['src'] for e in test})

  def test_small_math_keeps_operands_small_and_answers_exact(self):
    examples = synthetic_sft.examples('math_small', 300, 'train')
    for example in examples:
      a, b, c = (int(v) for v in re.findall(r'\d+', example['src']))
      self.assertBetween(a, 1, 20)
      self.assertBetween(b, 1, 20)
      self.assertBetween(c, 1, a + b - 1)
      self.assertEqual(example['answer'], f'#### {a + b - c}')
      self.assertEqual(example['kind'], 'math')
    scores = ability_scores.score_by_kind(
        [e['tgt'] for e in examples], examples
    )
    self.assertEqual(scores['math_accuracy'], 100.0)

  def test_unknown_ability_names_the_choices(self):
    with self.assertRaisesRegex(Exception, 'math_small'):
      synthetic_sft.examples('algebra', 3, 'train')

  def test_source_spec_keeps_checker_fields(self):
    examples = sources.load_examples('synthetic:code:valid:5')
    self.assertLen(examples, 5)
    self.assertEqual(examples[0]['kind'], 'code')
    self.assertIn('def check(candidate)', examples[0]['test'])


class ScoreByKindTest(absltest.TestCase):

  def test_references_score_perfectly_and_wrong_answers_do_not(self):
    examples = (
        synthetic_sft.examples('math', 4, 'valid')
        + synthetic_sft.examples('code', 3, 'valid')
        + synthetic_sft.examples('general', 3, 'valid')
    )
    perfect = ability_scores.score_by_kind(
        [e['tgt'] for e in examples], examples
    )
    self.assertEqual(perfect['math_accuracy'], 100.0)
    self.assertEqual(perfect['code_pass@1'], 100.0)
    self.assertAlmostEqual(perfect['general_rougeL'], 100.0, places=4)
    wrong = ability_scores.score_by_kind(
        ['#### 99999', 'no answer', examples[2]['tgt'], '#### -1']
        + ['def nothing(x):\n    return x'] * 3
        + ['zzz'] * 3,
        examples,
    )
    self.assertEqual(wrong['math_accuracy'], 25.0)
    self.assertEqual(wrong['code_pass@1'], 0.0)
    self.assertLess(wrong['general_rougeL'], 1.0)


if __name__ == '__main__':
  absltest.main()
