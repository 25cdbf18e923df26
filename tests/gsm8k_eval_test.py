"""Tests for flaxllm.eval.gsm8k: answer extraction, accuracy and maj@K."""

import json
import os
import re
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from flaxllm.errors import UserInputError
from flaxllm.eval import gsm8k

GSM8K_TEST = '/work/shared/data/gsm8k/test.jsonl'

# Written here so the checks run even without the shared data.
FIXTURE_SOLUTIONS = (
    (
        'Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n'
        'Natalia sold 48+24 = <<48+24=72>>72 clips altogether.\n#### 72'
    ),
    (
        'The bus carries 1,200,000 * 91 = <<1200000*91=109200000>>109,200,000'
        ' people.\n#### 109,200,000'
    ),
    'The temperature fell 3 - 8 = <<3-8=-5>>-5 degrees.\n#### -5',
    'Each costs 12/60 = $<<12/60=0.2>>0.2 a minute.\n#### 0.2',
)


def _perturbed(solution: str) -> str:
  """The solution with its final answer moved by one."""
  answer = gsm8k.reference_answer(solution)
  head = solution[: solution.rindex('####')]
  return f'{head}#### {answer + 1:.12g}'


class ExtractAnswerTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('integer', 'so 5 + 7 = 12\n#### 12', 12.0),
      ('thousands_separators', 'total\n#### 1,234,567', 1234567.0),
      ('negative', 'the change is\n#### -42', -42.0),
      ('decimal', 'each\n#### 3.75', 3.75),
      ('trailing_period', 'so\n#### 18.', 18.0),
      ('first_marker_wins', '#### 4\n#### 5', 4.0),
      ('cut_at_nul', 'work\x00#### 9', None),
      ('no_marker', 'The answer is 12.', None),
      ('marker_then_dollar', '#### $12', None),
      ('marker_without_space', '####12', None),
      ('not_a_number', '#### 1.2.3', None),
  )
  def test_marked_answers_follow_the_repository_rule(self, text, expected):
    self.assertEqual(gsm8k.extract_answer(text), expected)

  @parameterized.named_parameters(
      ('plain', 'so the answer is $\\boxed{42}$.', 42.0),
      ('negative', '\\boxed{-7}', -7.0),
      ('thousands', 'total \\boxed{1,000}', 1000.0),
      ('dollars', '\\boxed{\\$18.50}', 18.5),
      ('fraction', '\\boxed{\\frac{3}{4}}', 0.75),
      ('last_box_wins', '\\boxed{1} then \\boxed{2}', 2.0),
      ('text_unit', '\\boxed{15\\text{ apples}}', 15.0),
      ('nested_non_number', '\\boxed{x^{2}}', None),
  )
  def test_boxed_answers_are_read_when_there_is_no_marker(self, text, expected):
    self.assertEqual(gsm8k.extract_answer(text), expected)

  def test_marker_takes_precedence_over_a_box(self):
    self.assertEqual(gsm8k.extract_answer('\\boxed{3}\n#### 4'), 4.0)

  def test_an_invalid_marker_is_not_rescued_by_a_box(self):
    self.assertIsNone(gsm8k.extract_answer('\\boxed{3}\n#### x'))

  def test_read_boxed_false_is_the_repository_rule_alone(self):
    self.assertIsNone(gsm8k.extract_answer('\\boxed{42}', read_boxed=False))

  def test_answer_text_drops_commas(self):
    self.assertEqual(gsm8k.extract_answer_text('#### 1,080'), '1080')

  def test_reference_without_answer_raises(self):
    with self.assertRaisesRegex(UserInputError, 'no valid'):
      gsm8k.reference_answer('no final line')


class ScoringTest(parameterized.TestCase):

  def test_fixture_references_score_correct_against_themselves(self):
    for solution in FIXTURE_SOLUTIONS:
      self.assertTrue(gsm8k.is_correct(solution, solution), solution)

  def test_fixture_references_with_moved_answers_score_wrong(self):
    for solution in FIXTURE_SOLUTIONS:
      self.assertFalse(gsm8k.is_correct(_perturbed(solution), solution))

  def test_real_test_set_references_score_correct_and_perturbed_do_not(self):
    if not os.path.exists(GSM8K_TEST):
      self.skipTest(f'{GSM8K_TEST} is absent; the fixture tests cover this')
    examples = gsm8k.load_examples(GSM8K_TEST)
    self.assertLen(examples, 1319)
    solutions = [example['answer'] for example in examples]
    self.assertEqual(
        gsm8k.score(solutions, solutions), {'accuracy': 100.0, 'invalid': 0.0}
    )
    perturbed = [_perturbed(solution) for solution in solutions]
    self.assertEqual(gsm8k.score(perturbed, solutions)['accuracy'], 0.0)
    # The real references include thousands separators.
    self.assertTrue(any(re.search(r'#### \d+,\d{3}', s) for s in solutions))

  def test_score_counts_correct_and_invalid_in_percent(self):
    references = ['#### 10', '#### 20', '#### 30', '#### 40']
    predictions = ['#### 10', '#### 21', 'no answer', '#### 40.00001']
    self.assertEqual(
        gsm8k.score(predictions, references),
        {'accuracy': 50.0, 'invalid': 25.0},
    )

  def test_tolerance_is_1e_4(self):
    self.assertTrue(gsm8k.is_correct('#### 2.00009', '#### 2'))
    self.assertFalse(gsm8k.is_correct('#### 2.0002', '#### 2'))

  def test_mismatched_lengths_raise(self):
    with self.assertRaisesRegex(UserInputError, '1 predictions for 2'):
      gsm8k.score(['#### 1'], ['#### 1', '#### 2'])


class MajorityTest(parameterized.TestCase):

  def test_majority_ignores_invalid_samples(self):
    samples = ['#### 3', 'none', 'none', 'none', '#### 5', '#### 5']
    self.assertEqual(gsm8k.majority_answer(samples), 5.0)

  def test_equal_numbers_written_differently_vote_together(self):
    samples = ['#### 1,000', '#### 1000.0', '#### 7', '#### 7.5']
    self.assertEqual(gsm8k.majority_answer(samples), 1000.0)

  def test_a_tie_goes_to_the_answer_that_got_there_first(self):
    self.assertEqual(
        gsm8k.majority_answer(['#### 2', '#### 9', '#### 9', '#### 2']), 9.0
    )

  def test_no_valid_sample_gives_none(self):
    self.assertIsNone(gsm8k.majority_answer(['a', 'b']))

  def test_maj_at_k_accuracy(self):
    samples = [
        ['#### 4', '#### 4', '#### 5'],  # Vote 4: right.
        ['#### 1', '#### 2', '#### 2'],  # Vote 2: wrong (gold 1).
        ['x', 'y', '#### 8'],  # Vote 8: right.
        ['x', 'y', 'z'],  # No vote: wrong.
    ]
    references = ['#### 4', '#### 1', '#### 8', '#### 3']
    self.assertEqual(
        gsm8k.score_majority(samples, references), {'maj_accuracy': 50.0}
    )


class LoadExamplesTest(absltest.TestCase):

  def test_reads_both_field_conventions(self):
    path = os.path.join(tempfile.mkdtemp(), 'mixed.jsonl')
    with open(path, 'w') as jsonl_file:
      jsonl_file.write(json.dumps({'question': 'q1', 'answer': '#### 1'}))
      jsonl_file.write('\n\n')
      jsonl_file.write(json.dumps({'query': 'q2', 'response': '#### 2'}))
    self.assertEqual(
        gsm8k.load_examples(path),
        [
            {'question': 'q1', 'answer': '#### 1'},
            {'question': 'q2', 'answer': '#### 2'},
        ],
    )

  def test_record_without_fields_names_its_line(self):
    path = os.path.join(tempfile.mkdtemp(), 'bad.jsonl')
    with open(path, 'w') as jsonl_file:
      jsonl_file.write(json.dumps({'question': 'q1'}) + '\n')
    with self.assertRaisesRegex(UserInputError, 'bad.jsonl:1'):
      gsm8k.load_examples(path)


if __name__ == '__main__':
  absltest.main()
