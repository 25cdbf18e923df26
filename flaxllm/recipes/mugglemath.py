"""MuggleMath data augmentation for GSM8K-style math SFT.

MuggleMath (Li et al., "Query and Response Augmentation Cannot Help
Out-of-domain Math Reasoning Generalization", ACL 2024) grows GSM8K with new
queries and new responses. Five pieces, each usable on its own:

  (a) query augmentation: one prompt per seed question asks a generator for
      five variants, one per augmentation type (change numbers, fractions or
      percentages, combine concepts, a conditional, more complexity);
      `augment_queries` builds the prompts, calls any `generate(prompts) ->
      texts` and parses `N. **Type**: question` answers;
  (b) rule-based number changes, no model needed: perturb the numbers of a
      question whose solution carries calculator annotations `<<a*b=c>>`,
      carry them through the annotation chain, re-evaluate it exactly with a
      small arithmetic parser (never `eval`), and emit the new question with
      its exact answer and rewritten solution; items whose numbers cannot be
      mapped to the chain without doubt are rejected, with a reason;
  (c) response augmentation: K sampled reasoning paths per query, kept when
      their final answer matches the known answer (the majority when none is
      known) and their annotations are right, deduplicated by their lists of
      equations (the RFT filter);
  (d) the scaling law: GSM8K accuracy ~ intercept + slope * ln(N), fitted by
      least squares, with R^2 and a plot.
  (e) SFT data: `sft_examples` grows a seed set by (b) and (c), and
      `load_source` serves it as the `mugglemath:<options>:<spec>` data
      source of `flaxllm.data.sources` (configs/mugglemath.py).

The query prompt is written here in our own words after the structure the
paper gives (a teacher persona, one worked example per type on the GSM8K
question about James's letters); pass `template=` to use another text.
"""

import collections
import dataclasses
import fractions
import re
from typing import Callable, Optional, Sequence, Union

import numpy as np

from flaxllm.errors import UserInputError
from flaxllm.eval import gsm8k

Fraction = fractions.Fraction
# generate(prompts) -> one completion per prompt.
Generator = Callable[[list[str]], list[str]]

# =============================================================================
# (a) Query augmentation.
# =============================================================================

AUGMENTATION_TYPES = (
    'Change specific numbers',
    'Introduce fractions or percentages',
    'Combine multiple concepts',
    'Include a conditional statement',
    'Increase the complexity of the problem',
)

_SEED_QUESTION = (
    'James writes a 3-page letter to 2 different friends twice a week. How'
    ' many pages does he write a year?'
)
_SEED_VARIANTS = {
    'Change specific numbers': (
        'James writes a 5-page letter to 3 different friends twice a week.'
        ' How many pages does he write in a year?'
    ),
    'Introduce fractions or percentages': (
        'James writes a 3-page letter to 2 different friends twice a week.'
        ' A quarter of his letters get an extra half page of notes. How many'
        ' pages does he write in a year?'
    ),
    'Combine multiple concepts': (
        'James writes a 3-page letter to 2 different friends twice a week.'
        ' Paper comes in packs of 50 sheets for $4 and he writes on one side'
        ' only. How much does he spend on paper in a year?'
    ),
    'Include a conditional statement': (
        'James writes a 3-page letter to 2 different friends twice a week.'
        " In a week with a friend's birthday he adds a 2-page card for that"
        ' friend. If 6 weeks of the year hold a birthday, how many pages does'
        ' he write in a year?'
    ),
    'Increase the complexity of the problem': (
        'James writes a 3-page letter to 2 different friends twice a week,'
        ' and every other week he also writes a 7-page report for his club.'
        ' He skips all writing during a 2-week holiday. How many pages does'
        ' he write in a 52-week year?'
    ),
}

QUERY_TEMPLATE = """\
I want you to act as a math teacher. I will give you a grade school math \
question, and you will create more challenging questions from it by given \
ways. For the question "{seed_question}", the ways work like this:

{seed_examples}

Now create one new question for each of these ways, numbered and labelled \
exactly as above, for the question:
"{question}"
"""

_NUMBERED_ITEM = re.compile(
    r'^\s*(\d+)\s*[.)]\s*\*\*(.+?)\*\*\s*:?\s*', re.MULTILINE
)


def query_augmentation_prompt(
    question: str,
    types: Sequence[str] = AUGMENTATION_TYPES,
    template: str = QUERY_TEMPLATE,
) -> str:
  """The prompt asking a generator for one variant of `question` per type.

  Args:
    question: the seed question.
    types: the augmentation types to ask for, in order (any of
      AUGMENTATION_TYPES).
    template: a format string with {seed_question}, {seed_examples} and
      {question}.

  Raises:
    UserInputError: for a type that is not in AUGMENTATION_TYPES.
  """
  unknown = [kind for kind in types if kind not in _SEED_VARIANTS]
  if unknown:
    raise UserInputError(
        f'augmentation types {unknown} are unknown; use AUGMENTATION_TYPES'
    )
  seed_examples = '\n'.join(
      f'{number}. **{kind}**: {_SEED_VARIANTS[kind]}'
      for number, kind in enumerate(types, start=1)
  )
  return template.format(
      seed_question=_SEED_QUESTION,
      seed_examples=seed_examples,
      question=question.strip(),
  )


def parse_augmented_queries(
    text: str, types: Sequence[str] = AUGMENTATION_TYPES
) -> list[dict[str, str]]:
  """Reads `N. **Type**: question` items from a generator's answer.

  An item's type is its label when that names one of `types`
  (case-insensitively), else the N-th requested type; items that match
  neither, and empty items, are dropped.

  Returns:
    [{'type': ..., 'question': ...}] in the order written.
  """
  by_label = {kind.lower(): kind for kind in types}
  matches = list(_NUMBERED_ITEM.finditer(text))
  items = []
  for index, match in enumerate(matches):
    end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
    question = ' '.join(text[match.end() : end].split())
    label = match.group(2).strip().rstrip(':').strip().lower()
    number = int(match.group(1))
    kind = by_label.get(label)
    if kind is None and 1 <= number <= len(types):
      kind = types[number - 1]
    if kind is not None and question:
      items.append({'type': kind, 'question': question})
  return items


def augment_queries(
    questions: Sequence[str],
    generate: Generator,
    *,
    types: Sequence[str] = AUGMENTATION_TYPES,
    template: str = QUERY_TEMPLATE,
) -> list[dict[str, Union[str, int]]]:
  """New questions from seed questions through a generator (one round).

  Args:
    questions: the seed questions.
    generate: `generate(prompts) -> texts`, one text per prompt.
    types: the augmentation types to ask for.
    template: see `query_augmentation_prompt`.

  Returns:
    [{'source_index', 'type', 'question'}]; variants equal to their seed or
    repeated within a seed are dropped.

  Raises:
    UserInputError: if the generator returns the wrong number of texts.
  """
  prompts = [query_augmentation_prompt(q, types, template) for q in questions]
  texts = _call_generator(generate, prompts)
  augmented = []
  for index, (question, text) in enumerate(zip(questions, texts)):
    seen = {' '.join(question.split())}
    for item in parse_augmented_queries(text, types):
      if item['question'] not in seen:
        seen.add(item['question'])
        augmented.append({'source_index': index, **item})
  return augmented


def _call_generator(generate: Generator, prompts: list[str]) -> list[str]:
  texts = list(generate(prompts))
  if len(texts) != len(prompts):
    raise UserInputError(
        f'the generator returned {len(texts)} texts for {len(prompts)}'
        ' prompts; it must return one text per prompt'
    )
  return texts


# =============================================================================
# Exact arithmetic: the calculator annotations' language, parsed by hand.
# =============================================================================


class ExpressionError(ValueError):
  """An expression that is not + - * / ( ) over decimal numbers."""


_TOKEN = re.compile(r'\s*(?:(\d+\.?\d*|\.\d+)|([-+*/×÷()]))')
_MAX_EXPRESSION_LENGTH = 300


@dataclasses.dataclass(frozen=True)
class Expression:
  """A parsed arithmetic expression.

  Attributes:
    text: the source text.
    operands: (start, end, value) of each number in `text`, in order.
    tree: nested tuples: ('number', i) | ('negate', t) | (op, left, right).
  """

  text: str
  operands: tuple[tuple[int, int, Fraction], ...]
  tree: tuple

  def evaluate(self, values: Optional[Sequence[Fraction]] = None) -> Fraction:
    """The exact value, with `values` in place of the operands if given.

    Raises:
      ExpressionError: on division by zero.
    """
    values = (
        [value for _, _, value in self.operands] if values is None else values
    )
    return _evaluate(self.tree, values)


def _evaluate(tree: tuple, values: Sequence[Fraction]) -> Fraction:
  kind = tree[0]
  if kind == 'number':
    return values[tree[1]]
  if kind == 'negate':
    return -_evaluate(tree[1], values)
  left, right = _evaluate(tree[1], values), _evaluate(tree[2], values)
  if kind == '+':
    return left + right
  if kind == '-':
    return left - right
  if kind == '*':
    return left * right
  if right == 0:
    raise ExpressionError('division by zero')
  return left / right


def parse_expression(text: str) -> Expression:
  """Parses + - * / ( ) over decimal numbers; '×' and '÷' are * and /.

  Raises:
    ExpressionError: for anything else, or text over 300 characters.
  """
  if len(text) > _MAX_EXPRESSION_LENGTH:  # Keeps the recursion shallow.
    raise ExpressionError(f'expression of {len(text)} characters is too long')
  tokens, position = [], 0
  while position < len(text):
    if text[position:].strip() == '':
      break
    match = _TOKEN.match(text, position)
    if not match:
      raise ExpressionError(f'cannot read {text[position:]!r}')
    if match.group(1):
      tokens.append(('number', match.start(1), match.end(1), match.group(1)))
    else:
      operator = {'×': '*', '÷': '/'}.get(match.group(2), match.group(2))
      tokens.append(('operator', operator))
    position = match.end()
  operands = []
  cursor = [0]

  def peek():
    return tokens[cursor[0]] if cursor[0] < len(tokens) else None

  def take():
    cursor[0] += 1
    return tokens[cursor[0] - 1]

  def expression():
    tree = term()
    while peek() in (('operator', '+'), ('operator', '-')):
      tree = (take()[1], tree, term())
    return tree

  def term():
    tree = factor()
    while peek() in (('operator', '*'), ('operator', '/')):
      tree = (take()[1], tree, factor())
    return tree

  def factor():
    token = peek()
    if token is None:
      raise ExpressionError(f'{text!r} ends early')
    take()
    if token == ('operator', '-'):
      return ('negate', factor())
    if token == ('operator', '+'):
      return factor()
    if token == ('operator', '('):
      tree = expression()
      if peek() != ('operator', ')'):
        raise ExpressionError(f'{text!r} has an unclosed parenthesis')
      take()
      return tree
    if token[0] == 'number':
      operands.append((token[1], token[2], Fraction(token[3])))
      return ('number', len(operands) - 1)
    raise ExpressionError(f'{text!r} has a misplaced {token[1]!r}')

  tree = expression()
  if peek() is not None:
    raise ExpressionError(f'{text!r} has a stray {peek()[1]!r}')
  return Expression(text=text, operands=tuple(operands), tree=tree)


def evaluate(text: str) -> Fraction:
  """The exact value of an arithmetic expression (see `parse_expression`)."""
  return parse_expression(text).evaluate()


def format_number(value: Fraction, like: str = '') -> str:
  """A terminating decimal written out exactly, in the style of `like`.

  `like`, the number it replaces, sets thousands separators, and a `like`
  written in cents ('2.50') keeps two decimals ('3.70', '4.00'); otherwise
  no trailing zeros are written.

  Raises:
    ExpressionError: if the value has no finite decimal expansion.
  """
  decimals = _decimal_places(value)
  if decimals is None:
    raise ExpressionError(f'{value} has no finite decimal expansion')
  if re.search(r'\.\d\d$', like) and decimals <= 2:
    decimals = 2
  grouping = ',' if ',' in like else ''
  whole, part = divmod(int(abs(value) * 10**decimals), 10**decimals)
  text = f'{whole:{grouping}d}'
  if decimals:
    text += '.' + f'{part:0{decimals}d}'
  return '-' + text if value < 0 else text


def _decimal_places(value: Fraction) -> Optional[int]:
  """Digits after the point of a terminating decimal; None if it repeats."""
  denominator = value.denominator
  twos = fives = 0
  while denominator % 2 == 0:
    denominator //= 2
    twos += 1
  while denominator % 5 == 0:
    denominator //= 5
    fives += 1
  return max(twos, fives) if denominator == 1 else None


# =============================================================================
# (b) Rule-based number changes.
# =============================================================================

_ANNOTATION = re.compile(r'<<([^<>=]*)=([^<>=]*)>>')
# A number in prose: digits with optional thousands groups and decimals.
_PROSE_NUMBER = re.compile(r'\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+')
# Context that makes a number not a plain quantity ('12th', '5:30', '1/2',
# '10-20', '-3'): such numbers stay as they are and count as fixed values.
_FIXED_BEFORE = re.compile(r'[\w.,/:-]$')
_FIXED_AFTER = re.compile(r'^(?:[A-Za-z_/:]|-\d|[.,]\d)')
_PERCENT_AFTER = re.compile(r'^\s*(?:%|percent)', re.IGNORECASE)
_RESULT_COPY = re.compile(r'\s*\$?\s*(' + _PROSE_NUMBER.pattern + ')')
# An '=' in the prose that is not the lead-in of an annotation: arithmetic
# done outside the chain, which re-evaluating the chain would not redo.
_PROSE_EQUATION = re.compile(r'=(?!\s*\$?\s*<<)')
# Words after which a solution may use a number the question never writes
# in digits. A question number equal to one of these values cannot be told
# apart from it, so such items are rejected rather than guessed.
_IMPLIED_VALUES = tuple(
    (re.compile(rf'\b(?:{words})', re.IGNORECASE), tuple(map(Fraction, values)))
    for words, values in (
        ('two|twice|double|both|pair|couple|twin', (2,)),
        ('three|thrice|triple|third', (3, '1/3')),
        ('four|quadruple|fourth|quarter', (4, 25, '1/4')),
        ('five|fifth|nickel', (5, '1/5')),
        ('six|sixth', (6,)),
        ('seven|week', (7, 52)),
        ('eight|nine|eleven', (8, 9, 11)),
        ('ten\\b|tenth|decade|dime', (10,)),
        ('twelve|dozen', (12,)),
        (
            'thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen',
            (13, 14, 15, 16, 17, 18, 19),
        ),
        ('twenty|score', (20,)),
        (
            'thirty|forty|fifty|sixty|seventy|eighty|ninety',
            (30, 40, 50, 60, 70, 80, 90),
        ),
        ('month', (12, 30, 31, 4)),
        ('year|annual', (12, 52, 365)),
        ('day|daily|night', (24, 7, 30, 365)),
        ('hour|minute|second', (60, 3600, 24)),
        ('half|halves', (2, '1/2')),
        ('hundred|percent|cent|dollar|century', (100,)),
        ('thousand|kilo|liter|litre|meter|metre', (1000, 100)),
        ('million', (1000000,)),
        ('foot|feet|inch|yard', (12, 3, 36)),
        ('pound|ounce', (16,)),
        ('gallon|quart|pint', (2, 4, 8, 128)),
        ('cup', (8, 16)),
        ('mile', (5280,)),
    )
)
# Unit-like constants a solution may use without the question writing them
# (2 slices a sandwich, 100 for a percent, 60 minutes). A question number
# with one of these values is never changed, and an operand with one is read
# as that constant, unless it may also be an earlier result (then the item is
# ambiguous). An operand found nowhere else must be one of these: anything
# else may have been worked out off the chain, from numbers that change.
_UNIT_CONSTANTS = tuple(
    Fraction(value)
    for value in (0, 1, 2, 7, 10, 12, 24, 52, 60, 100, 365, 1000) + (
        '0.5',
        '0.1',
        '0.01',
    )
)
# Numbers a solution may spell out; one that changes would go stale.
_NUMBER_WORDS = {
    word: index
    for index, word in enumerate(
        'zero one two three four five six seven eight nine ten eleven twelve'
        ' thirteen fourteen fifteen sixteen seventeen eighteen nineteen'
        ' twenty'.split()
    )
}
_NUMBER_WORDS.update(
    (word, 10 * tens)
    for tens, word in enumerate(
        'thirty forty fifty sixty seventy eighty ninety'.split(), start=3
    )
)
_NUMBER_WORD = re.compile(
    r'\b(' + '|'.join(_NUMBER_WORDS) + r')\b', re.IGNORECASE
)
_MAX_TRIES = 32

# Rejection reasons.
NO_ANNOTATIONS = 'no_annotations'
BAD_ANNOTATION = 'bad_annotation'
INEXACT_ANNOTATION = 'inexact_annotation'
PROSE_ARITHMETIC = 'arithmetic_outside_annotations'
AMBIGUOUS_OPERAND = 'ambiguous_operand'
UNKNOWN_CONSTANT = 'unknown_constant'
ANSWER_NOT_IN_CHAIN = 'answer_not_in_chain'
NOTHING_TO_CHANGE = 'nothing_to_change'
ANSWER_OFF_CHAIN = 'answer_independent_of_question'
UNEXPLAINED_PROSE_NUMBER = 'unexplained_prose_number'
NUMBER_WORD_IN_SOLUTION = 'number_word_in_solution'
AMBIGUOUS_PROSE = 'ambiguous_prose_number'
NO_VALID_DRAW = 'no_valid_draw'


@dataclasses.dataclass(frozen=True)
class NumberChange:
  """The outcome of `perturb_numbers` on one item.

  Attributes:
    reason: '' when the item was changed, else why it was rejected.
    question: the new question ('' when rejected).
    answer: the new solution, ending '#### <answer>' ('' when rejected).
    final_answer: the new exact answer (None when rejected).
    changes: (old text, new text) of each changed question number, in
      question order.
  """

  reason: str
  question: str = ''
  answer: str = ''
  final_answer: Optional[Fraction] = None
  changes: tuple[tuple[str, str], ...] = ()

  @property
  def ok(self) -> bool:
    return not self.reason


@dataclasses.dataclass(frozen=True)
class _QuestionValue:
  """A changeable value of the question, with every place it is written.

  Equal numbers are one value: they change together, so a chain operand
  equal to them is right whichever of them it meant.
  """

  value: Fraction
  spans: tuple[tuple[int, int, str], ...]  # (start, end, text) in question.
  percent: bool  # One is followed by '%' or 'percent': may be value / 100.


@dataclasses.dataclass(frozen=True)
class _Annotation:
  start: int  # Of '<<' in the solution.
  end: int  # After '>>'.
  expression: Expression
  result_text: str
  result: Fraction


@dataclasses.dataclass(frozen=True)
class _Source:
  """Where a chain operand's value comes from."""

  kind: str  # 'variable' (question number), 'result' (annotation), 'fixed'.
  index: int = 0
  scale: Fraction = Fraction(1)  # 1/100: a percent used as a fraction.


@dataclasses.dataclass(frozen=True)
class _Plan:
  """How the chain is computed from the question's numbers."""

  numbers: list[_QuestionValue]
  annotations: list[_Annotation]
  sources: list[list[_Source]]  # Per annotation, per operand.
  answer_results: list[int]  # Annotations whose result is the answer.
  answer_text: str
  changed: list[int]  # Indices into `numbers` that feed the chain.
  taken: frozenset[Fraction]  # Values new numbers must avoid.


def _question_numbers(question: str):
  """The question's changeable values, and the values it fixes otherwise."""
  spans, percent, fixed = {}, set(), list(_UNIT_CONSTANTS)
  for match in _PROSE_NUMBER.finditer(question):
    value = Fraction(match.group().replace(',', ''))
    before, after = question[: match.start()], question[match.end() :]
    if (
        _FIXED_BEFORE.search(before)
        or _FIXED_AFTER.match(after)
        or value in _UNIT_CONSTANTS
    ):
      fixed.append(value)
      continue
    spans.setdefault(value, []).append(
        (match.start(), match.end(), match.group())
    )
    if _PERCENT_AFTER.match(after):
      percent.add(value)
  for match in re.finditer(r'(\d+)\s*/\s*(\d+)', question):
    if int(match.group(2)):
      fixed.append(Fraction(int(match.group(1)), int(match.group(2))))
  for pattern, values in _IMPLIED_VALUES:
    if pattern.search(question):
      fixed.extend(values)
  if '%' in question:
    fixed.append(Fraction(100))
  changeable = [
      _QuestionValue(value, tuple(where), value in percent)
      for value, where in spans.items()
  ]
  return changeable, fixed


def _annotations(solution: str) -> list[_Annotation]:
  """The calculator annotations of a solution, parsed."""
  annotations = []
  for match in _ANNOTATION.finditer(solution):
    result_text = match.group(2).strip()
    if not re.fullmatch(r'-?(\d+\.?\d*|\.\d+)', result_text):
      raise ExpressionError(f'result {result_text!r} is not a number')
    annotations.append(
        _Annotation(
            match.start(),
            match.end(),
            parse_expression(match.group(1)),
            result_text,
            Fraction(result_text),
        )
    )
  return annotations


def _operand_sources(value, numbers, fixed, results) -> list[_Source]:
  """Every place an operand's value could come from."""
  sources = []
  for index, number in enumerate(numbers):
    if number.value == value:
      sources.append(_Source('variable', index))
    elif number.percent and number.value / 100 == value:
      sources.append(_Source('variable', index, Fraction(1, 100)))
  sources.extend(
      _Source('result', index)
      for index, result in enumerate(results)
      if result == value
  )
  sources.extend(
      _Source('fixed') for fixed_value in fixed if fixed_value == value
  )
  return sources


def _plan_chain(question: str, solution: str) -> Union[str, _Plan]:
  """The plan of an item, or the reason it cannot be changed safely."""
  if _PROSE_EQUATION.search(_ANNOTATION.sub('<<>>', solution)):
    return PROSE_ARITHMETIC
  try:
    annotations = _annotations(solution)
    exact = [annotation.expression.evaluate() for annotation in annotations]
  except ExpressionError:
    return BAD_ANNOTATION
  if not annotations:
    return NO_ANNOTATIONS
  if any(e != a.result for e, a in zip(exact, annotations)):
    return INEXACT_ANNOTATION
  numbers, fixed = _question_numbers(question)
  sources, results = [], []
  for annotation in annotations:
    row = []
    for _, _, value in annotation.expression.operands:
      candidates = _operand_sources(value, numbers, fixed, results)
      if len(candidates) > 1 and any(c.kind != 'fixed' for c in candidates):
        return AMBIGUOUS_OPERAND
      if not candidates:  # Unit constants are among the fixed values.
        return UNKNOWN_CONSTANT
      row.append(candidates[0])
    sources.append(row)
    results.append(annotation.result)
  answer_text = gsm8k.extract_answer_text(solution)
  if answer_text is None:
    return ANSWER_NOT_IN_CHAIN
  answer_results = [
      index
      for index, result in enumerate(results)
      if result == Fraction(answer_text)
  ]
  if not answer_results:
    return ANSWER_NOT_IN_CHAIN
  # As written (thousands separators kept), to write the new one alike.
  answer_text = gsm8k.MARKED_ANSWER.search(solution).group(1).strip()
  changed = sorted(
      {s.index for row in sources for s in row if s.kind == 'variable'}
  )
  if not changed:
    return NOTHING_TO_CHANGE
  depends = []  # Whether each result moves with the question's numbers.
  for row in sources:
    depends.append(
        any(
            s.kind == 'variable' or (s.kind == 'result' and depends[s.index])
            for s in row
        )
    )
  if not any(depends[index] for index in answer_results):
    return ANSWER_OFF_CHAIN
  known = set(fixed) | set(results)
  for number in numbers:
    known |= (
        {number.value, number.value / 100} if number.percent else {number.value}
    )
  prose = _ANNOTATION.sub(' ', solution)
  if any(
      Fraction(match.group().replace(',', '')) not in known
      for match in _PROSE_NUMBER.finditer(prose)
  ):
    return UNEXPLAINED_PROSE_NUMBER
  moving = {numbers[index].value for index in changed} | {
      result for result, moves in zip(results, depends) if moves
  }
  if any(
      _NUMBER_WORDS[word.lower()] in moving
      for word in _NUMBER_WORD.findall(prose)
  ):
    return NUMBER_WORD_IN_SOLUTION
  unchanged = {n.value for i, n in enumerate(numbers) if i not in changed}
  return _Plan(
      numbers,
      annotations,
      sources,
      answer_results,
      answer_text,
      changed,
      frozenset(fixed) | unchanged,
  )


def _draw_value(
    number: _QuestionValue, taken: frozenset[Fraction], rng: np.random.Generator
) -> Fraction:
  """A new value of the same kind: within 2x, same decimals and roundness.

  Values in `taken` (the question's other numbers) are not drawn.
  """
  text = number.spans[0][2]
  decimals = len(text.split('.')[1]) if '.' in text else 0
  units = int(number.value * 10**decimals)  # The value in its last digit.
  step = 1
  while units % (step * 10) == 0 and units >= step * 20:
    step *= 10
  if step == 1 and units % 5 == 0 and units >= 10:
    step = 5
  low = max(2 if decimals == 0 else 1, units // 2)
  high = max(low + 2 * step, units * 2)
  if number.percent and decimals == 0 and number.value <= 100:
    high = min(high, 100)
  scale = 10**decimals
  choices = [
      u
      for u in range(low, high + 1)
      if u % step == 0 and u != units and Fraction(u, scale) not in taken
  ]
  return Fraction(int(rng.choice(choices or [units + step])), scale)


def _operand_values(plan: _Plan, values, results, annotation_index):
  """The new operands of one annotation."""
  operands = []
  for (_, _, old), source in zip(
      plan.annotations[annotation_index].expression.operands,
      plan.sources[annotation_index],
  ):
    if source.kind == 'variable':
      operands.append(values[source.index] * source.scale)
    elif source.kind == 'result':
      operands.append(results[source.index])
    else:
      operands.append(old)
  return operands


def _run_chain(plan: _Plan, values) -> list[Fraction]:
  """The exact new results of the chain, given new question values."""
  results = []
  for index, annotation in enumerate(plan.annotations):
    operands = _operand_values(plan, values, results, index)
    results.append(annotation.expression.evaluate(operands))
  return results


def _keeps_shape(old: Fraction, new: Fraction) -> bool:
  """Same sign, integer if it was, and a short terminating decimal."""
  if (old > 0) != (new > 0) or (old < 0) != (new < 0):
    return False
  if old.denominator == 1 and new.denominator != 1:
    return False
  places = _decimal_places(new)
  return places is not None and places <= max(2, _decimal_places(old))


def _rewrite_prose(segment: str, value_map, expression_copy=()) -> str:
  """Prose with its numbers mapped to their new values.

  Args:
    segment: text outside the annotations.
    value_map: old value -> new value; None marks a value with two meanings.
    expression_copy: (old, new) operands of the annotation that follows the
      segment; the segment's last numbers on its line, when they read as
      those operands, are replaced position by position.

  Returns:
    The new text.

  Raises:
    KeyError: when a number to map has two meanings.
  """
  matches = list(_PROSE_NUMBER.finditer(segment))
  new_texts = {}
  if expression_copy:
    line_start = segment.rfind('\n') + 1
    tail = [m for m in matches if m.start() >= line_start]
    tail = tail[-len(expression_copy) :]
    if len(tail) == len(expression_copy) and all(
        Fraction(m.group().replace(',', '')) == old
        for m, (old, _) in zip(tail, expression_copy)
    ):
      for match, (_, new) in zip(tail, expression_copy):
        new_texts[match.start()] = format_number(new, match.group())
  for match in matches:
    old = Fraction(match.group().replace(',', ''))
    if match.start() in new_texts or old not in value_map:
      continue
    if value_map[old] is None:
      raise KeyError(match.group())
    new_texts[match.start()] = format_number(value_map[old], match.group())
  pieces, cursor = [], 0
  for match in matches:
    if match.start() in new_texts:
      pieces += [segment[cursor : match.start()], new_texts[match.start()]]
      cursor = match.end()
  return ''.join(pieces) + segment[cursor:]


def _rewrite_solution(solution, plan: _Plan, values, results, value_map):
  """The solution with its annotations, their copies and its prose redone."""
  pieces, cursor = [], 0
  for index, annotation in enumerate(plan.annotations):
    operands = annotation.expression.operands
    new_operands = _operand_values(plan, values, results, index)
    pieces.append(
        _rewrite_prose(
            solution[cursor : annotation.start],
            value_map,
            [(old, new) for (_, _, old), new in zip(operands, new_operands)],
        )
    )
    expression = annotation.expression.text
    for (start, end, _), new in reversed(list(zip(operands, new_operands))):
      expression = (
          expression[:start]
          + format_number(new, expression[start:end])
          + expression[end:]
      )
    result = format_number(results[index], annotation.result_text)
    pieces.append(f'<<{expression}={result}>>')
    cursor = annotation.end
    copy = _RESULT_COPY.match(solution, cursor)
    if copy and Fraction(copy.group(1).replace(',', '')) == annotation.result:
      pieces.append(solution[cursor : copy.start(1)])
      pieces.append(format_number(results[index], copy.group(1)))
      cursor = copy.end()
  tail = solution[cursor:]
  marker = tail.rfind('####')
  pieces.append(_rewrite_prose(tail[:marker], value_map))
  final = results[plan.answer_results[0]]
  pieces.append(f'#### {format_number(final, plan.answer_text)}')
  return ''.join(pieces)


def _value_map(plan: _Plan, values, results):
  """Old value -> new value of every number a solution may restate.

  None marks a value with two meanings (a result that changes and a number
  of the question that stays, say): prose that writes it cannot be mapped.
  """
  value_map = {}
  pairs = [(value, value) for value in plan.taken]
  for index in plan.changed:
    number = plan.numbers[index]
    pairs.append((number.value, values[index]))
    if number.percent:
      pairs.append((number.value / 100, values[index] / 100))
  pairs += [(a.result, new) for a, new in zip(plan.annotations, results)]
  for old, new in pairs:
    value_map[old] = new if value_map.get(old, new) == new else None
  return value_map


def perturb_numbers(
    question: str, solution: str, *, seed: Union[int, Sequence[int]]
) -> NumberChange:
  """A GSM8K item with new numbers, its exact answer and rewritten solution.

  The question's numbers that feed the annotation chain get new values of
  the same kind (within a factor of 2, integers stay integers, prices keep
  their cents, percentages stay within 100, round numbers stay round); equal
  numbers change together, and unit-like numbers (2, 7, 12, 60, 100, ...)
  never change. The chain is re-evaluated exactly; a draw is kept when every
  result keeps its sign and integrality and stays a short decimal, else
  another is drawn (a fixed number of tries). Items are rejected, not
  guessed, when:

    - a chain operand could come from two places (a question number that is
      also an earlier result, or a 3 next to the word 'three');
    - an operand is neither in the question, nor earlier in the chain, nor a
      unit-like constant (it may have been worked out off the chain);
    - the solution does arithmetic outside the annotations, writes a number
      it never computed, or spells out a number that changes ('eight');
    - the final answer is not a result of the chain, or does not move with
      the question's numbers.

  Args:
    question: the GSM8K question.
    solution: its solution with `<<lhs=rhs>>` annotations and '#### N'.
    seed: an int or ints; the same seed gives the same output.

  Returns:
    A NumberChange; `.ok` tells whether the item was changed.
  """
  plan = _plan_chain(question, solution)
  if isinstance(plan, str):
    return NumberChange(plan)
  old_results = [annotation.result for annotation in plan.annotations]
  rng = np.random.default_rng(seed)
  for _ in range(_MAX_TRIES):
    values = {
        index: _draw_value(plan.numbers[index], plan.taken, rng)
        for index in plan.changed
    }
    if len(set(values.values())) < len(values) or plan.taken & set(
        values.values()
    ):
      continue  # Equal numbers would read as one quantity.
    try:
      results = _run_chain(plan, values)
    except ExpressionError:
      continue
    if not all(map(_keeps_shape, old_results, results)):
      continue
    if len({results[index] for index in plan.answer_results}) != 1:
      continue
    try:
      new_solution = _rewrite_solution(
          solution, plan, values, results, _value_map(plan, values, results)
      )
    except KeyError:
      return NumberChange(AMBIGUOUS_PROSE)
    spans = sorted(
        (span, values[index])
        for index in plan.changed
        for span in plan.numbers[index].spans
    )
    new_question, changes = question, []
    for (start, end, text), value in reversed(spans):
      new_text = format_number(value, text)
      changes.insert(0, (text, new_text))
      new_question = new_question[:start] + new_text + new_question[end:]
    return NumberChange(
        reason='',
        question=new_question,
        answer=new_solution,
        final_answer=results[plan.answer_results[0]],
        changes=tuple(changes),
    )
  return NumberChange(NO_VALID_DRAW)


def augment_numbers(
    examples: Sequence[dict[str, str]], *, seed: int, copies: int = 1
) -> tuple[list[dict], collections.Counter]:
  """`perturb_numbers` over a data set, `copies` draws per item.

  Args:
    examples: [{'question', 'answer'}] GSM8K records.
    seed: the data set's seed; item i, copy c uses (seed, i, c).
    copies: draws per item; repeated new questions are dropped.

  Returns:
    (records, rejections): records are {'question', 'answer',
    'source_index', 'changes'}; rejections count the items that gave no
    record, by the reason of their last draw.
  """
  records, rejections = [], collections.Counter()
  for index, example in enumerate(examples):
    seen, reason = {example['question']}, ''
    for copy in range(copies):
      change = perturb_numbers(
          example['question'], example['answer'], seed=(seed, index, copy)
      )
      if not change.ok:
        reason = change.reason
        if reason not in (NO_VALID_DRAW, AMBIGUOUS_PROSE):
          break  # The item's plan failed: no other draw can pass.
        continue
      if change.question in seen:
        continue
      seen.add(change.question)
      records.append({
          'question': change.question,
          'answer': change.answer,
          'source_index': index,
          'changes': list(change.changes),
      })
    if len(seen) == 1:
      rejections[reason or 'no_new_question'] += 1
  return records, rejections


# =============================================================================
# (c) Response augmentation.
# =============================================================================

RESPONSE_TEMPLATE = """\
Solve the following grade school math problem step by step. Show each \
calculation, and finish with a line of the form "#### <number>".

Question: {question}
Answer:"""

_TEXT_EQUATION_SPAN = re.compile(
    r'[\d.(][\d.,\s+\-*/×÷x()]*=\s*\$?\s*-?[\d.,]*\d'
)


def equation_list(response: str) -> tuple[str, ...]:
  """The equations of a reasoning path, spaces removed (the dedup key).

  The calculator annotations when there are any, else the `a op b = c`
  spans of the text.
  """
  annotations = _ANNOTATION.findall(response)
  if annotations:
    return tuple(''.join(f'{lhs}={rhs}'.split()) for lhs, rhs in annotations)
  return tuple(
      ''.join(span.split()) for span in _TEXT_EQUATION_SPAN.findall(response)
  )


def annotations_are_correct(response: str, tolerance: float = 1e-3) -> bool:
  """Whether every `<<lhs=rhs>>` has |lhs - rhs| < tolerance (RFT filter)."""
  for lhs, rhs in _ANNOTATION.findall(response):
    try:
      if abs(float(evaluate(lhs)) - float(rhs.replace(',', ''))) >= tolerance:
        return False
    except (ExpressionError, ValueError):
      return False
  return True


def _edit_distance(first: Sequence[str], second: Sequence[str]) -> int:
  """Levenshtein distance between two token sequences."""
  second = np.asarray(second, object)
  columns = np.arange(len(second) + 1)
  previous = columns
  for row, token in enumerate(first, start=1):
    current = np.empty_like(previous)
    current[0] = row
    substitution = previous[:-1] + (second != token)
    current[1:] = np.minimum(previous[1:] + 1, substitution)
    # Insertions run left to right: a cumulative minimum of (cost - column).
    previous = np.minimum.accumulate(current - columns) + columns
  return int(previous[-1])


def select_responses(
    responses: Sequence[str],
    *,
    answer: Optional[float] = None,
    check_annotations: bool = True,
    keep: str = 'farthest',
) -> list[str]:
  """The RFT filter over one query's sampled reasoning paths.

  Args:
    responses: the sampled paths of one query.
    answer: the known final answer; None votes (the majority answer).
    check_annotations: drop paths with a wrong calculator annotation.
    keep: among paths with the same equation list, keep 'first' or the one
      'farthest' (largest summed word-level edit distance) from the other
      paths kept for this query.

  Returns:
    The kept paths, at most one per equation list, in first-seen order.
  """
  if keep not in ('first', 'farthest'):
    raise UserInputError(f"keep={keep!r}; use 'first' or 'farthest'")
  if answer is None:
    answer = gsm8k.majority_answer(responses)
    if answer is None:
      return []
  correct = [
      response
      for response in responses
      if gsm8k.answers_match(gsm8k.extract_answer(response), answer)
      and (not check_annotations or annotations_are_correct(response))
  ]
  groups: dict[tuple[str, ...], list[str]] = {}
  for response in correct:
    groups.setdefault(equation_list(response), []).append(response)
  if keep == 'first':
    return [members[0] for members in groups.values()]
  kept = {key: members[0] for key, members in groups.items()}
  for key, members in groups.items():
    if len(members) == 1:
      continue
    others = [chosen.split() for other, chosen in kept.items() if other != key]
    distances = [
        sum(_edit_distance(member.split(), other) for other in others)
        for member in members
    ]
    kept[key] = members[int(np.argmax(distances))]
  return list(kept.values())


def augment_responses(
    questions: Sequence[str],
    generate: Generator,
    *,
    samples_per_question: int,
    answers: Optional[Sequence[Optional[float]]] = None,
    template: str = RESPONSE_TEMPLATE,
    check_annotations: bool = True,
    keep: str = 'farthest',
) -> list[list[str]]:
  """K reasoning paths per question, filtered and deduplicated.

  Args:
    questions: the queries (e.g. augmented ones, which have no gold answer).
    generate: `generate(prompts) -> texts`, sampling (the paper: temperature
      >= 1.0, several models and shot counts); called once with every prompt
      repeated K times.
    samples_per_question: K.
    answers: the known answer of each question, or None per question (or for
      all) to keep the majority answer's paths.
    template: a format string with {question}.
    check_annotations: see `select_responses`.
    keep: see `select_responses`.

  Returns:
    Per question, its kept responses.
  """
  if samples_per_question < 1:
    raise UserInputError(
        f'samples_per_question={samples_per_question}; sample at least 1'
    )
  if answers is not None and len(answers) != len(questions):
    raise UserInputError(
        f'{len(answers)} answers for {len(questions)} questions; pass one'
        ' answer (or None) per question'
    )
  prompts = [
      template.format(question=question)
      for question in questions
      for _ in range(samples_per_question)
  ]
  texts = _call_generator(generate, prompts)
  kept = []
  for index in range(len(questions)):
    samples = texts[
        index * samples_per_question : (index + 1) * samples_per_question
    ]
    kept.append(
        select_responses(
            samples,
            answer=None if answers is None else answers[index],
            check_annotations=check_annotations,
            keep=keep,
        )
    )
  return kept


# =============================================================================
# (d) The log-linear scaling law.
# =============================================================================


@dataclasses.dataclass(frozen=True)
class LogLinearFit:
  """accuracy ~ intercept + slope * ln(amount), least squares.

  Attributes:
    intercept: the accuracy predicted at amount 1.
    slope: accuracy gained per e-fold more data.
    r_squared: the coefficient of determination of the fit.
  """

  intercept: float
  slope: float
  r_squared: float

  def predict(self, amounts) -> np.ndarray:
    return self.intercept + self.slope * np.log(np.asarray(amounts, float))


def fit_log_linear(amounts, accuracies) -> LogLinearFit:
  """Fits accuracy = intercept + slope * ln(amount).

  Args:
    amounts: data amounts N (> 0), at least two distinct.
    accuracies: the accuracy at each amount.

  Raises:
    UserInputError: for mismatched, non-positive or too few amounts.
  """
  amounts = np.asarray(amounts, np.float64)
  accuracies = np.asarray(accuracies, np.float64)
  if amounts.shape != accuracies.shape or amounts.ndim != 1:
    raise UserInputError(
        f'{amounts.shape} amounts vs {accuracies.shape} accuracies; pass two'
        ' lists of the same length'
    )
  if np.any(amounts <= 0) or len(np.unique(amounts)) < 2:
    raise UserInputError(
        'scaling fit needs positive amounts, at least two distinct'
    )
  log_amounts = np.log(amounts)
  slope, intercept = np.polyfit(log_amounts, accuracies, 1)
  residual = accuracies - (intercept + slope * log_amounts)
  total = np.sum((accuracies - accuracies.mean()) ** 2)
  r_squared = 1.0 - np.sum(residual**2) / total if total > 0 else 1.0
  return LogLinearFit(float(intercept), float(slope), float(r_squared))


def plot_scaling(
    amounts,
    accuracies,
    fit: LogLinearFit,
    path: str,
    *,
    title: str = 'GSM8K accuracy vs augmented data',
) -> str:
  """Saves a PNG of the points and the fitted line on a log x axis.

  Returns:
    `path`.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

  amounts = np.asarray(amounts, np.float64)
  grid = np.geomspace(amounts.min(), amounts.max(), 100)
  figure, axes = pyplot.subplots(figsize=(5, 3.5))
  axes.scatter(amounts, accuracies, color='black', zorder=3, label='runs')
  axes.plot(
      grid,
      fit.predict(grid),
      label=(
          f'{fit.intercept:.2f} + {fit.slope:.2f} ln N'
          f' (R$^2$ = {fit.r_squared:.3f})'
      ),
  )
  axes.set_xscale('log')
  # Ticks at the measured amounts, written out: log-axis minor labels
  # (3x10^2, 4x10^2, ...) run into each other over short ranges.
  axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  axes.set_xticks(np.unique(amounts))
  axes.set_xticklabels([f'{amount:,.0f}' for amount in np.unique(amounts)])
  axes.set_xlabel('amount of augmented data N')
  axes.set_ylabel('accuracy')
  axes.set_title(title)
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)
  return path


# =============================================================================
# (e) Augmented SFT data: the `mugglemath:` data source.
# =============================================================================

SOURCE_DEFAULTS = {
    'copies': 1,  # Rule-based number-change draws per seed item.
    'responses': 1,  # K: reasoning paths sampled per query.
    'seed': 0,
    'original': 1,  # 1: keep the seed items beside their new versions.
    'limit': 0,  # > 0: use only the first `limit` seed items.
}


def parse_source_spec(spec: str) -> tuple[dict[str, int], str]:
  """'copies=4,responses=2:/data/train.jsonl' -> (options, base spec).

  The options part (before the first ':') may be left out; the base spec is
  any data source spec, e.g. a GSM8K jsonl file or 'synthetic:math:train:500'.

  Raises:
    UserInputError: for an unknown or non-integer option, or no base spec.
  """
  head, separator, rest = spec.partition(':')
  if separator and ('=' in head or not head):
    option_text, base = head, rest
  else:
    option_text, base = '', spec
  options = dict(SOURCE_DEFAULTS)
  for item in filter(None, (part.strip() for part in option_text.split(','))):
    key, _, value = item.partition('=')
    if key not in SOURCE_DEFAULTS or not value.strip().isdigit():
      raise UserInputError(
          f'mugglemath option {item!r} is not one of'
          f' {sorted(SOURCE_DEFAULTS)} set to a whole number; write e.g.'
          ' mugglemath:copies=4,responses=2:/path/gsm8k/train.jsonl'
      )
    options[key] = int(value)
  if not base.strip():
    raise UserInputError(
        f'mugglemath:{spec} names no base data; write'
        ' mugglemath:<options>:<source spec>'
    )
  if options['responses'] < 1:
    raise UserInputError('mugglemath option responses must be at least 1')
  return options, base.strip()


def reorder_operands(solution: str, rng: np.random.Generator) -> str:
  """Another reasoning path of a solution, with the same answer.

  Each annotation that is a two-operand sum or product (`<<a+b=c>>`) is
  written the other way round (`<<b+a=c>>`) with probability 1/2, together
  with its copy in the prose just before it ('a + b = <<...'). The equation
  list changes, the arithmetic does not: a rule-based stand-in for sampling
  a model, used where no generator model is configured.
  """
  pieces, cursor = [], 0
  for match in _ANNOTATION.finditer(solution):
    lhs = match.group(1)
    try:
      expression = parse_expression(lhs)
    except ExpressionError:
      continue
    tree = expression.tree
    if not (
        tree[0] in ('+', '*')
        and tree[1] == ('number', 0)
        and tree[2] == ('number', 1)
        and rng.random() < 0.5
    ):
      continue
    (first_start, first_end, _), (second_start, second_end, _) = (
        expression.operands
    )
    first = lhs[first_start:first_end]
    second = lhs[second_start:second_end]
    middle = lhs[first_end:second_start]
    swapped = lhs[:first_start] + second + middle + first + lhs[second_end:]
    prose = solution[cursor : match.start()]
    copy = re.search(
        rf'(?<![\d.]){re.escape(first)}(\s*[+*×x]\s*){re.escape(second)}'
        r'(\s*=\s*\$?\s*)$',
        prose,
    )
    if copy:
      prose = (
          prose[: copy.start()] + second + copy.group(1) + first + copy.group(2)
      )
    pieces += [prose, f'<<{swapped}={match.group(2)}>>']
    cursor = match.end()
  pieces.append(solution[cursor:])
  return ''.join(pieces)


def reordering_generator(
    solutions: dict[str, str], seed: int, template: str = RESPONSE_TEMPLATE
) -> Generator:
  """`generate(prompts)` answering response prompts by `reorder_operands`.

  Args:
    solutions: question -> its known solution.
    seed: the sampler's seed; repeated prompts get independent draws.
    template: the prompt template the prompts were built with.
  """
  by_prompt = {
      template.format(question=question): solution
      for question, solution in solutions.items()
  }
  rng = np.random.default_rng(seed)

  def generate(prompts: list[str]) -> list[str]:
    return [reorder_operands(by_prompt[prompt], rng) for prompt in prompts]

  return generate


def sft_examples(
    base: Sequence[dict[str, str]],
    *,
    copies: int = 1,
    responses: int = 1,
    seed: int = 0,
    original: int = 1,
    limit: int = 0,
    generate: Optional[Generator] = None,
) -> tuple[list[dict], collections.Counter]:
  """Math SFT examples grown by number changes and response augmentation.

  Args:
    base: seed items {'question', 'answer'} (GSM8K-style solutions).
    copies: number-change draws per seed item (`augment_numbers`); 0 keeps
      the seed items only.
    responses: K, paths sampled per query by `augment_responses` (known
      answers, RFT filter and deduplication); 1 keeps each query's own
      solution.
    seed: the seed of the number changes and of the default sampler.
    original: whether the seed items are kept beside the new ones.
    limit: if > 0, only the first `limit` seed items are used.
    generate: the response sampler; None samples `reorder_operands` of each
      query's own solution (`reordering_generator`).

  Returns:
    (examples, rejections): examples are {'src', 'tgt', 'kind': 'math',
    'answer': '#### N', 'id'}, one per kept (query, path), the seed items
    first; rejections count the seed items the number changes rejected.
  """
  base = list(base[:limit] if limit else base)
  queries = []
  if original:
    queries += [
        (f'item{index}', item['question'], item['answer'])
        for index, item in enumerate(base)
    ]
  rejections = collections.Counter()
  if copies:
    records, rejections = augment_numbers(base, seed=seed, copies=copies)
    counts = collections.Counter()
    for record in records:
      index = record['source_index']
      counts[index] += 1
      queries.append(
          (f'item{index}/{counts[index]}', record['question'], record['answer'])
      )
  if responses > 1:
    if generate is None:
      generate = reordering_generator(
          {question: solution for _, question, solution in queries}, seed
      )
    paths = augment_responses(
        [question for _, question, _ in queries],
        generate,
        samples_per_question=responses,
        answers=[gsm8k.reference_answer(solution) for *_, solution in queries],
    )
  else:
    paths = [[solution] for *_, solution in queries]
  examples = []
  for (name, question, solution), kept in zip(queries, paths):
    answer = f'#### {gsm8k.extract_answer_text(solution)}'
    for path_index, path in enumerate(kept):
      examples.append({
          'src': question,
          'tgt': path,
          'kind': 'math',
          'answer': answer,
          'id': f'{name}#{path_index}' if responses > 1 else name,
      })
  return examples, rejections


def load_source(spec: str) -> list[dict]:
  """The examples of a `mugglemath:<options>:<base>` data source spec.

  A base spec of the `synthetic:` or `hpo:` forms is read with its own
  src/tgt fields; any other (a GSM8K jsonl file) with question/answer.
  """
  from flaxllm.data import sources  # pylint: disable=g-import-not-at-top

  options, base_spec = parse_source_spec(spec)
  own_fields = base_spec.split(':', 1)[0] in ('synthetic', 'hpo')
  fields = ('src', 'tgt') if own_fields else ('question', 'answer')
  base = [
      {'question': example['src'], 'answer': example['tgt']}
      for example in sources.load_examples(
          base_spec, source_field=fields[0], target_field=fields[1]
      )
  ]
  examples, _ = sft_examples(base, **options)
  return examples
