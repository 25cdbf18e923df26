"""Tests for flaxllm.recipes.mugglemath: query/response augmentation, rule-based
number changes, the arithmetic parser and the log-linear scaling fit."""

import fractions
import os
import re
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from flaxllm.errors import UserInputError
from flaxllm.eval import gsm8k
from flaxllm.recipes import mugglemath

Fraction = fractions.Fraction
GSM8K_TRAIN = '/work/shared/data/gsm8k/train.jsonl'


def _numbers(text):
  return [Fraction(n) for n in re.findall(r'\d+(?:\.\d+)?', text)]


# (question, solution, the answer as a function of the question's numbers in
# order): the function recomputes each new item's answer independently.
FORMULA_ITEMS = (
    (
        (
            'Sam buys 3 boxes of 15 pencils and gives away 8 pencils. How many'
            ' pencils does he have left?'
        ),
        (
            'Sam buys 3*15 = <<3*15=45>>45 pencils.\n'
            'He has 45-8 = <<45-8=37>>37 pencils left.\n#### 37'
        ),
        lambda boxes, per_box, given: boxes * per_box - given,
    ),
    (
        (
            'A jacket costs $80. It is on sale for 25% off. What is the sale'
            ' price?'
        ),
        (
            'The discount is 80*25/100 = $<<80*25/100=20>>20.\n'
            'The sale price is 80-20 = $<<80-20=60>>60.\n#### 60'
        ),
        lambda price, percent: price - price * percent / 100,
    ),
    (
        (
            'A jacket costs $80. It is on sale for 25% off. What is the sale'
            ' price?'
        ),
        (
            'The discount is 80*.25 = $<<80*.25=20>>20.\n'
            'The sale price is 80-20 = $<<80-20=60>>60.\n#### 60'
        ),
        lambda price, percent: price - price * percent / 100,
    ),
    (
        (
            'Pens cost $1.25 each. Mia buys 6 pens and pays with a $20 bill.'
            ' How much change does she get?'
        ),
        (
            '6 pens cost 6*1.25 = $<<6*1.25=7.5>>7.5.\n'
            'Her change is 20-7.5 = $<<20-7.5=12.5>>12.5.\n#### 12.5'
        ),
        lambda price, pens, bill: bill - pens * price,
    ),
    (
        (
            'Ann has 4 bags with 4 apples in each bag. She eats 3 apples. How'
            ' many apples are left?'
        ),
        (
            'Ann has 4*4 = <<4*4=16>>16 apples.\n'
            'She has 16-3 = <<16-3=13>>13 apples left.\n#### 13'
        ),
        lambda bags, per_bag, eaten: bags * per_bag - eaten,
    ),
    (
        (
            'Leo reads 18 pages on Monday and half as many on Tuesday. How many'
            ' pages does he read?'
        ),
        (
            'On Tuesday he reads 18/2 = <<18/2=9>>9 pages.\n'
            'In all he reads 18+9 = <<18+9=27>>27 pages.\n#### 27'
        ),
        lambda monday: monday + monday / 2,
    ),
)

# (question, solution, reason): items that must be rejected.
REJECTED_ITEMS = (
    (  # 9 is both a question number and an earlier result.
        (
            'Lee has 3 red balls and 6 blue balls. A friend gives him 9 more'
            ' balls. How many balls does he have?'
        ),
        (
            'He has 3+6 = <<3+6=9>>9 balls.\nNow he has 9+9 = <<9+9=18>>18.\n'
            '#### 18'
        ),
        mugglemath.AMBIGUOUS_OPERAND,
    ),
    (  # 3 is a question number and also 'three' in words.
        (
            'Kim buys 3 cakes and three pies. Each cake costs $8 and each pie'
            ' costs $5. How much does she spend?'
        ),
        (
            'Cakes cost 3*8 = $<<3*8=24>>24.\nPies cost 3*5 = $<<3*5=15>>15.\n'
            'In all 24+15 = $<<24+15=39>>39.\n#### 39'
        ),
        mugglemath.AMBIGUOUS_OPERAND,
    ),
    (  # 13 comes from nowhere: it may have been worked out off the chain.
        (
            'Bo has 5 shirts and buys 8 more, then 4 more. How many shirts does'
            ' he have?'
        ),
        (
            'He has 13 shirts after the first purchase, so 13+4 ='
            ' <<13+4=17>>17.\n#### 17'
        ),
        mugglemath.UNKNOWN_CONSTANT,
    ),
    (  # Arithmetic outside the annotations.
        'Ria has 5 coins and finds 8 more. How many coins does she have?',
        'Let x = 5 + 8. Then x = <<5+8=13>>13.\n#### 13',
        mugglemath.PROSE_ARITHMETIC,
    ),
    (  # A rounded result: the chain is not exact.
        'Split 10 cookies among 3 kids. How many does each get?',
        'Each gets 10/3 = <<10/3=3.33>>3.33 cookies.\n#### 3.33',
        mugglemath.INEXACT_ANNOTATION,
    ),
    (
        'Ria has 5 coins and finds 8 more. How many coins does she have?',
        'She has 13 coins.\n#### 13',
        mugglemath.NO_ANNOTATIONS,
    ),
    (  # The answer comes from constants alone: it would not move.
        (
            'Max has 15 red marbles and 6 blue marbles. Each of his 10 friends'
            ' gets 1 sticker and 2 pencils from him. How many gifts do his'
            ' friends get?'
        ),
        (
            'He has 15+6 = <<15+6=21>>21 marbles.\n'
            'Each friend gets 1+2 = <<1+2=3>>3 gifts.\n'
            'So his friends get 10*3 = <<10*3=30>>30 gifts.\n#### 30'
        ),
        mugglemath.ANSWER_OFF_CHAIN,
    ),
    (  # 45 is worked out in the prose, not in the chain.
        'Tim has 14 cards and buys 9 more. How many cards does he have?',
        (
            'He buys 9 cards, which is 45 cents of cards.\n'
            'He has 14+9 = <<14+9=23>>23 cards.\n#### 23'
        ),
        mugglemath.UNEXPLAINED_PROSE_NUMBER,
    ),
    (  # 'eight' in the solution would go stale when 8 changes.
        'Jo has 8 pens and buys 5 more. How many pens does she have?',
        'Jo starts with eight pens.\nShe has 8+5 = <<8+5=13>>13 pens.\n#### 13',
        mugglemath.NUMBER_WORD_IN_SOLUTION,
    ),
)


class ArithmeticTest(parameterized.TestCase):

  @parameterized.parameters(
      ('2+3*4', 14),
      ('(2+3)*4', 20),
      ('10-4-3', 3),
      ('48/2/3', 8),
      ('-5+2', -3),
      ('+30+46', 76),
      ('.75*4', 3),
      ('12/60', Fraction(1, 5)),
      ('3 × 4 ÷ 6', 2),
      ('1-(2-(3-4))', -2),
  )
  def test_evaluates_exactly(self, text, expected):
    self.assertEqual(mugglemath.evaluate(text), expected)

  @parameterized.parameters(
      '__import__("os")',
      '2**3',
      '2 3',
      '(1+2',
      '1+',
      'abs(3)',
      '1/0',
      '',
      '(' * 160 + '1' + ')' * 160,  # Too long to parse safely.
  )
  def test_anything_else_is_refused(self, text):
    with self.assertRaises(mugglemath.ExpressionError):
      mugglemath.evaluate(text)

  def test_operands_carry_their_positions(self):
    expression = mugglemath.parse_expression('12 / 60')
    self.assertEqual(
        expression.operands, ((0, 2, Fraction(12)), (5, 7, Fraction(60)))
    )
    self.assertEqual(expression.evaluate([Fraction(30), Fraction(60)]), 0.5)

  @parameterized.parameters(
      (Fraction(9), '7.5', '9'),
      (Fraction('3.7'), '2.50', '3.70'),
      (Fraction(1234567), '1,000', '1,234,567'),
      (Fraction('-0.125'), '', '-0.125'),
  )
  def test_numbers_are_written_like_the_ones_they_replace(
      self, value, like, expected
  ):
    self.assertEqual(mugglemath.format_number(value, like), expected)


class NumberChangeTest(parameterized.TestCase):

  @parameterized.parameters(range(len(FORMULA_ITEMS)))
  def test_new_answers_equal_an_independent_recomputation(self, item):
    question, solution, formula = FORMULA_ITEMS[item]
    finals = set()
    for seed in range(12):
      change = mugglemath.perturb_numbers(question, solution, seed=seed)
      self.assertTrue(change.ok, change.reason)
      recomputed = formula(*_numbers(change.question))
      self.assertEqual(change.final_answer, recomputed, change.question)
      self.assertEqual(gsm8k.extract_answer(change.answer), float(recomputed))
      for lhs, rhs in re.findall(r'<<([^=]*)=([^>]*)>>', change.answer):
        self.assertEqual(mugglemath.evaluate(lhs), Fraction(rhs), lhs)
      finals.add(change.final_answer)
    self.assertGreater(len(finals), 1)  # The numbers really change.

  def test_solution_text_is_rewritten_consistently(self):
    question, solution, _ = FORMULA_ITEMS[0]
    change = mugglemath.perturb_numbers(question, solution, seed=0)
    boxes, per_box, given = _numbers(change.question)
    total = boxes * per_box
    self.assertEqual(
        change.answer,
        f'Sam buys {boxes}*{per_box} = <<{boxes}*{per_box}={total}>>{total}'
        f' pencils.\nHe has {total}-{given} = <<{total}-{given}='
        f'{total - given}>>{total - given} pencils left.\n'
        f'#### {total - given}',
    )

  def test_equal_question_numbers_change_together(self):
    question, solution, _ = FORMULA_ITEMS[4]
    change = mugglemath.perturb_numbers(question, solution, seed=1)
    bags, per_bag, _ = _numbers(change.question)
    self.assertEqual(bags, per_bag)
    self.assertNotEqual(bags, 4)

  def test_unit_constants_and_words_stay(self):
    question, solution, _ = FORMULA_ITEMS[5]
    change = mugglemath.perturb_numbers(question, solution, seed=0)
    self.assertIn('half as many', change.question)
    self.assertRegex(change.answer, r'<<\d+/2=')

  @parameterized.parameters(range(len(REJECTED_ITEMS)))
  def test_ambiguous_items_are_rejected_with_their_reason(self, item):
    question, solution, reason = REJECTED_ITEMS[item]
    change = mugglemath.perturb_numbers(question, solution, seed=0)
    self.assertFalse(change.ok)
    self.assertEqual(change.reason, reason)
    self.assertEqual(change.question, '')

  def test_same_seed_same_item_other_seed_other_item(self):
    question, solution, _ = FORMULA_ITEMS[0]
    first = mugglemath.perturb_numbers(question, solution, seed=(7, 1))
    again = mugglemath.perturb_numbers(question, solution, seed=(7, 1))
    other = mugglemath.perturb_numbers(question, solution, seed=(7, 2))
    self.assertEqual(first, again)
    self.assertNotEqual(first.question, other.question)

  def test_data_set_augmentation_counts_rejections(self):
    examples = [{'question': q, 'answer': s} for q, s, _ in FORMULA_ITEMS] + [
        {'question': q, 'answer': s} for q, s, _ in REJECTED_ITEMS
    ]
    records, rejections = mugglemath.augment_numbers(examples, seed=0, copies=2)
    self.assertEqual(sum(rejections.values()), len(REJECTED_ITEMS))
    self.assertEqual(
        {record['source_index'] for record in records},
        set(range(len(FORMULA_ITEMS))),
    )
    for record in records:
      self.assertNotEqual(
          record['question'], examples[record['source_index']]['question']
      )

  def test_real_gsm8k_items_are_changed_consistently(self):
    if not os.path.exists(GSM8K_TRAIN):
      self.skipTest(f'{GSM8K_TRAIN} is absent; the fixture tests cover this')
    examples = gsm8k.load_examples(GSM8K_TRAIN)[:300]
    records, _ = mugglemath.augment_numbers(examples, seed=0)
    self.assertGreater(len(records), 60)  # About a third is covered.
    for record in records:
      annotations = re.findall(r'<<([^=]*)=([^>]*)>>', record['answer'])
      results = [Fraction(rhs) for _, rhs in annotations]
      for lhs, rhs in annotations:
        # Python's own arithmetic, as an independent check of the chain;
        # the regex admits digits and operators only.
        self.assertRegex(lhs, r'^[\d.+\-*/() ]+$')
        value = eval(lhs)  # pylint: disable=eval-used
        self.assertAlmostEqual(value, float(rhs), places=6)
      answer = Fraction(gsm8k.extract_answer_text(record['answer']))
      self.assertIn(answer, results)


class QueryAugmentationTest(absltest.TestCase):

  def test_prompt_names_every_type_and_both_questions(self):
    prompt = mugglemath.query_augmentation_prompt('How many eggs are left?')
    for number, kind in enumerate(mugglemath.AUGMENTATION_TYPES, start=1):
      self.assertIn(f'{number}. **{kind}**:', prompt)
    self.assertIn('act as a math teacher', prompt)
    self.assertIn('James writes a 3-page letter', prompt)
    self.assertTrue(prompt.rstrip().endswith('"How many eggs are left?"'))

  def test_unknown_type_raises(self):
    with self.assertRaisesRegex(UserInputError, 'AUGMENTATION_TYPES'):
      mugglemath.query_augmentation_prompt('q', types=('Rhyme it',))

  def test_parses_numbered_bold_items_over_several_lines(self):
    text = (
        'Sure! Here they are:\n'
        '1. **Change specific numbers**: Tom has 5 eggs.\n'
        'How many are left?\n'
        '2. **Introduce fractions or percentages:** Tom eats 1/2.\n'
        '3. **Mixing ideas**: Tom sells eggs for $2.\n'
        '9. **Nonsense**: dropped.\n'
        '5. **Increase the complexity of the problem**: \n'
    )
    self.assertEqual(
        mugglemath.parse_augmented_queries(text),
        [
            {
                'type': 'Change specific numbers',
                'question': 'Tom has 5 eggs. How many are left?',
            },
            {
                'type': 'Introduce fractions or percentages',
                'question': 'Tom eats 1/2.',
            },
            {
                'type': 'Combine multiple concepts',  # By its number.
                'question': 'Tom sells eggs for $2.',
            },
        ],
    )

  def test_augment_queries_calls_the_generator_once_per_question(self):
    calls = []

    def generate(prompts):
      calls.append(prompts)
      return [
          (
              '1. **Change specific numbers**: New A.\n'
              '2. **Combine multiple concepts**: New A.\n'
              '3. **Include a conditional statement**: Seed A?'
          ),
          '5. **Increase the complexity of the problem**: New B.',
      ]

    augmented = mugglemath.augment_queries(['Seed A?', 'Seed B?'], generate)
    self.assertLen(calls, 1)
    self.assertLen(calls[0], 2)
    self.assertEqual(
        augmented,
        [
            {
                'source_index': 0,
                'type': 'Change specific numbers',
                'question': 'New A.',
            },
            {
                'source_index': 1,
                'type': 'Increase the complexity of the problem',
                'question': 'New B.',
            },
        ],
    )

  def test_generator_with_wrong_count_raises(self):
    with self.assertRaisesRegex(UserInputError, 'one text per prompt'):
      mugglemath.augment_queries(['a', 'b'], lambda prompts: ['only one'])


class ResponseAugmentationTest(absltest.TestCase):

  PATHS = (
      'He has 3*4 = <<3*4=12>>12 eggs.\nThen 12-2 = <<12-2=10>>10.\n#### 10',
      # Same equations, other words: a duplicate.
      'Eggs: 3*4 = <<3*4=12>>12. Left: 12-2 = <<12-2=10>>10 eggs.\n#### 10',
      # Other equations, same answer: kept.
      'He eats 2 of 12: <<4*3=12>>12, <<12-2=10>>10.\n#### 10',
      # Wrong annotation (3*4 is not 13), right answer: dropped.
      'So <<3*4=13>>13, then <<13-3=10>>10.\n#### 10',
      # Wrong answer: dropped.
      'So <<3*4=12>>12, then <<12-1=11>>11.\n#### 11',
  )

  def test_keeps_correct_distinct_paths_with_right_annotations(self):
    kept = mugglemath.select_responses(self.PATHS, answer=10, keep='first')
    self.assertEqual(kept, [self.PATHS[0], self.PATHS[2]])

  def test_unknown_answer_keeps_the_majority_answer(self):
    paths = self.PATHS + ('<<5+6=11>>11\n#### 11',) * 4
    kept = mugglemath.select_responses(paths, answer=None, keep='first')
    self.assertEqual(kept, [self.PATHS[4], '<<5+6=11>>11\n#### 11'])

  def test_annotation_check_can_be_turned_off(self):
    kept = mugglemath.select_responses(
        self.PATHS, answer=10, check_annotations=False, keep='first'
    )
    self.assertIn(self.PATHS[3], kept)

  def test_farthest_duplicate_is_kept(self):
    other = 'totally different words here <<1+9=10>>10\n#### 10'
    near = 'a b c <<2*5=10>>10\n#### 10'
    far = 'x y z w v <<2*5=10>>10\n#### 10'
    # `far` shares no word with `other` and is longer: it is farther.
    kept = mugglemath.select_responses([near, other, far], answer=10)
    self.assertEqual(kept, [far, other])

  def test_equation_list_drops_spaces_and_reads_plain_text(self):
    self.assertEqual(
        mugglemath.equation_list('<<3 * 4=12>>12 and <<12 - 2=10>>'),
        ('3*4=12', '12-2=10'),
    )
    self.assertEqual(
        mugglemath.equation_list('So 3 x 4 = 12 eggs, and 12 - 2 = 10.'),
        ('3x4=12', '12-2=10'),
    )

  def test_augment_responses_samples_k_paths_per_question(self):
    prompts_seen = []

    def generate(prompts):
      prompts_seen.extend(prompts)
      return [self.PATHS[i % 3] for i in range(len(prompts))]

    kept = mugglemath.augment_responses(
        ['Q1', 'Q2'], generate, samples_per_question=3, answers=[10, 11]
    )
    self.assertLen(prompts_seen, 6)
    self.assertIn('Question: Q2', prompts_seen[5])
    self.assertLen(kept[0], 2)
    self.assertEqual(kept[1], [])


class AugmentedSftDataTest(absltest.TestCase):

  def test_source_spec_options_and_base(self):
    options, base = mugglemath.parse_source_spec(
        'copies=3,responses=2:synthetic:math:train:50'
    )
    self.assertEqual(base, 'synthetic:math:train:50')
    self.assertEqual(options['copies'], 3)
    self.assertEqual(options['responses'], 2)
    self.assertEqual(options['original'], 1)  # A default.
    options, base = mugglemath.parse_source_spec('/data/gsm8k/train.jsonl')
    self.assertEqual(base, '/data/gsm8k/train.jsonl')
    self.assertEqual(options, mugglemath.SOURCE_DEFAULTS)

  def test_bad_source_options_raise_naming_the_option(self):
    for spec in ('copies=two:x.jsonl', 'rounds=2:x.jsonl', 'copies=1:'):
      with self.assertRaisesRegex(UserInputError, 'mugglemath'):
        mugglemath.parse_source_spec(spec)

  def test_reordered_paths_keep_the_arithmetic_and_answer(self):
    solution = (
        'Sam buys 3*15 = <<3*15=45>>45 pencils.\n'
        'He gets 45 + 8 = <<45+8=53>>53, gives 53-20 = <<53-20=33>>33.\n'
        '#### 33'
    )
    rng = np.random.default_rng(0)
    paths = {mugglemath.reorder_operands(solution, rng) for _ in range(40)}
    self.assertLen(paths, 4)  # Each of the two sums/products, or not.
    self.assertIn(
        'Sam buys 15*3 = <<15*3=45>>45 pencils.\n'
        'He gets 8 + 45 = <<8+45=53>>53, gives 53-20 = <<53-20=33>>33.\n'
        '#### 33',
        paths,
    )
    for path in paths:
      self.assertTrue(mugglemath.annotations_are_correct(path))
      self.assertEqual(gsm8k.extract_answer(path), 33)
      self.assertIn('53-20 = <<53-20=33>>', path)  # Never reordered.

  def test_sft_examples_count_originals_copies_and_paths(self):
    base = [{'question': q, 'answer': s} for q, s, _ in FORMULA_ITEMS]
    only_seed, _ = mugglemath.sft_examples(base, copies=0)
    self.assertEqual(
        [e['src'] for e in only_seed], [item['question'] for item in base]
    )
    grown, _ = mugglemath.sft_examples(base, copies=2, seed=3)
    self.assertLen(grown, 3 * len(base))  # Every fixture item changes.
    self.assertEqual(grown[: len(base)], only_seed)
    no_seed, _ = mugglemath.sft_examples(base, copies=2, seed=3, original=0)
    self.assertEqual(no_seed, grown[len(base) :])
    for example in grown:
      self.assertEqual(example['kind'], 'math')
      self.assertTrue(gsm8k.is_correct(example['answer'], example['tgt']))

  def test_k_responses_are_distinct_correct_paths_of_one_query(self):
    base = [{'question': q, 'answer': s} for q, s, _ in FORMULA_ITEMS]
    examples, _ = mugglemath.sft_examples(base, copies=1, responses=6)
    by_query = {}
    for example in examples:
      query = example['id'].partition('#')[0]
      by_query.setdefault(query, []).append(example)
    self.assertGreater(len(examples), len(by_query))  # Some K > 1 kept.
    for paths in by_query.values():
      self.assertLessEqual(len(paths), 6)
      keys = [mugglemath.equation_list(p['tgt']) for p in paths]
      self.assertEqual(len(set(keys)), len(keys))  # Deduplicated.
      for path in paths:
        self.assertTrue(gsm8k.is_correct(path['answer'], path['tgt']))

  def test_data_source_recomputes_generated_problems(self):
    from flaxllm.data import sources  # pylint: disable=g-import-not-at-top

    examples = sources.load_examples(
        'mugglemath:copies=2:synthetic:math:train:30'
    )
    new = [e for e in examples if '/' in e['id']]
    self.assertGreater(len(new), 40)
    for example in new:
      # 'X has a items and gets b more, then gives away c.': a + b - c.
      a, b, c = _numbers(example['src'])
      self.assertEqual(gsm8k.extract_answer(example['tgt']), float(a + b - c))
      self.assertEqual(example['kind'], 'math')

  def test_config_falls_back_to_generated_math_without_gsm8k(self):
    from configs import mugglemath as config_module  # pylint: disable=g-import-not-at-top

    config = config_module.get_config(
        'runlocal,copies=3,responses=2,gsm8k_dir=/nonexistent'
    )
    self.assertEqual(
        config.data.train,
        'mugglemath:copies=3,responses=2,seed=0,limit=400:'
        'synthetic:math:train:400',
    )
    self.assertEqual(config.data.test, 'synthetic:math:test:64')
    with self.assertRaisesRegex(ValueError, 'base'):
      config_module.get_config('runlocal,base=math23k')


class ScalingFitTest(absltest.TestCase):

  def test_recovers_slope_and_intercept_of_exact_log_linear_data(self):
    amounts = np.array([7_500, 15_000, 30_000, 60_000, 120_000, 240_000])
    accuracies = 12.5 + 4.25 * np.log(amounts)
    fit = mugglemath.fit_log_linear(amounts, accuracies)
    self.assertAlmostEqual(fit.slope, 4.25, places=8)
    self.assertAlmostEqual(fit.intercept, 12.5, places=6)
    self.assertAlmostEqual(fit.r_squared, 1.0, places=10)
    np.testing.assert_allclose(fit.predict(amounts), accuracies, rtol=1e-10)

  def test_noise_lowers_r_squared(self):
    amounts = np.geomspace(1e3, 1e6, 12)
    rng = np.random.default_rng(0)
    accuracies = 10 + 3 * np.log(amounts) + rng.normal(0, 2, amounts.shape)
    fit = mugglemath.fit_log_linear(amounts, accuracies)
    self.assertLess(fit.r_squared, 0.99)
    self.assertGreater(fit.r_squared, 0.5)
    self.assertAlmostEqual(fit.slope, 3, delta=1)

  def test_plot_is_written_as_png(self):
    amounts = [1e3, 1e4, 1e5]
    accuracies = [30.0, 40.0, 50.0]
    fit = mugglemath.fit_log_linear(amounts, accuracies)
    path = os.path.join(tempfile.mkdtemp(), 'scaling.png')
    self.assertEqual(
        mugglemath.plot_scaling(amounts, accuracies, fit, path), path
    )
    with open(path, 'rb') as png:
      self.assertEqual(png.read(8), b'\x89PNG\r\n\x1a\n')

  def test_non_positive_or_too_few_amounts_raise(self):
    with self.assertRaisesRegex(UserInputError, 'positive amounts'):
      mugglemath.fit_log_linear([0, 10], [1, 2])
    with self.assertRaisesRegex(UserInputError, 'positive amounts'):
      mugglemath.fit_log_linear([5, 5], [1, 2])


if __name__ == '__main__':
  absltest.main()
