"""GSM8K answer extraction and scoring (greedy accuracy and maj@K).

The rule follows the evaluation script of the MuggleMath / RFT repository
(OFA-Sys/gsm8k-ScRel):

  1. cut the text at its first NUL character;
  2. take the first match of `#### (-?[0-9.,]+)`, strip it, drop the commas;
  3. the answer is valid when that parses as a float, else it is invalid.

The reference answer of an example is the same function applied to its
solution, and a prediction is correct when it is valid and lies within 1e-4 of
the reference. maj@K votes over the valid answers of K samples.

One addition, on by default (`read_boxed`): a text with no `####` marker at all
is read from its last `\\boxed{...}` (the MATH-style convention), so models
that box their answers are not scored as invalid. A text that has the marker is
always read from the marker, exactly as the repository does; pass
`read_boxed=False` for the repository's rule alone.
"""

import collections
import json
import math
import os
import re
from typing import Iterable, Optional, Sequence

from flaxllm.errors import UserInputError

ANSWER_MARKER = '####'
TOLERANCE = 1e-4
# The repository's answer pattern: the marker, one space, the number.
MARKED_ANSWER = re.compile(r'#### (\-?[0-9\.\,]+)')
_BOXED = '\\boxed{'
_FRACTION = re.compile(r'^(-?)\\d?frac\{(-?[0-9.]+)\}\{(-?[0-9.]+)\}$')
_PLAIN_NUMBER = re.compile(r'^-?(\d+\.?\d*|\.\d+)$')
# Pieces of LaTeX that decorate a boxed number without changing it.
_BOXED_NOISE = re.compile(r'\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}|\\[,!;: ]|\\%')


def _parse_float(text: str) -> Optional[float]:
  try:
    value = float(text)
  except ValueError:
    return None
  return value if math.isfinite(value) else None


def _last_boxed_content(text: str) -> Optional[str]:
  """The content of the last `\\boxed{...}`, braces balanced, or None."""
  start = text.rfind(_BOXED)
  if start < 0:
    return None
  depth = 1
  position = start + len(_BOXED)
  for index in range(position, len(text)):
    if text[index] == '{':
      depth += 1
    elif text[index] == '}':
      depth -= 1
      if depth == 0:
        return text[position:index]
  return None


def _boxed_value(content: str) -> Optional[float]:
  """A number written inside a box: '1,000', '\\$5', '-3.5', '\\frac{1}{2}'."""
  cleaned = _BOXED_NOISE.sub('', content)
  cleaned = cleaned.replace('\\$', '').replace('$', '').replace(',', '')
  cleaned = cleaned.replace('%', '').replace(' ', '').rstrip('.')
  fraction = _FRACTION.match(cleaned)
  if fraction:
    numerator = _parse_float(fraction.group(2))
    denominator = _parse_float(fraction.group(3))
    if numerator is None or not denominator:
      return None
    sign = -1.0 if fraction.group(1) else 1.0
    return sign * numerator / denominator
  if _PLAIN_NUMBER.match(cleaned):
    return _parse_float(cleaned)
  return None


def extract_answer_text(text: str) -> Optional[str]:
  """The repository's rule alone: the cleaned `####` answer string, or None.

  Args:
    text: a GSM8K solution or a generated response.

  Returns:
    The first `#### <number>` match with commas removed (e.g. '-1000.5'), or
    None when there is none or it does not parse as a number.
  """
  match = MARKED_ANSWER.search(text.split('\x00', 1)[0])
  if not match:
    return None
  answer = match.group(1).strip().replace(',', '')
  return answer if _parse_float(answer) is not None else None


def extract_answer(text: str, *, read_boxed: bool = True) -> Optional[float]:
  """The final numeric answer of a solution or a model output.

  Args:
    text: a GSM8K solution or a generated response.
    read_boxed: when the text has no `####` marker, read its last
      `\\boxed{...}` instead of calling it invalid.

  Returns:
    The answer as a float, or None when the text has no valid answer.
  """
  text = text.split('\x00', 1)[0]
  answer = extract_answer_text(text)
  if answer is not None:
    return _parse_float(answer)
  if read_boxed and ANSWER_MARKER not in text:
    content = _last_boxed_content(text)
    if content is not None:
      return _boxed_value(content)
  return None


def reference_answer(solution: str) -> float:
  """The gold answer of a GSM8K solution (strict: the `####` marker only).

  Raises:
    UserInputError: if the solution has no valid `#### <number>` line.
  """
  value = extract_answer(solution, read_boxed=False)
  if value is None:
    raise UserInputError(
        f'GSM8K reference {solution[-60:]!r} has no valid "#### <number>"'
        ' answer; pass the full solution text of the example'
    )
  return value


def answers_match(
    prediction: Optional[float], reference: float, tolerance: float = TOLERANCE
) -> bool:
  """Whether a (possibly invalid) predicted answer equals the reference."""
  return prediction is not None and abs(prediction - reference) < tolerance


def is_correct(
    prediction_text: str, reference_solution: str, *, read_boxed: bool = True
) -> bool:
  """Whether a generated response answers like the reference solution."""
  return answers_match(
      extract_answer(prediction_text, read_boxed=read_boxed),
      reference_answer(reference_solution),
  )


def majority_answer(
    texts: Iterable[str], *, read_boxed: bool = True
) -> Optional[float]:
  """The most frequent valid answer among samples (maj@K's vote).

  Answers are compared as floats; a tie goes to the answer that reached the
  winning count first in sample order.

  Returns:
    The winning answer, or None when no sample has a valid answer.
  """
  counts = collections.Counter()
  winner, winner_count = None, 0
  for text in texts:
    value = extract_answer(text, read_boxed=read_boxed)
    if value is None:
      continue
    counts[value] += 1
    if counts[value] > winner_count:
      winner, winner_count = value, counts[value]
  return winner


def _check_lengths(predictions: Sequence, references: Sequence[str]) -> None:
  if len(predictions) != len(references) or not references:
    raise UserInputError(
        f'GSM8K scoring got {len(predictions)} predictions for'
        f' {len(references)} references; pass one per example, at least one'
    )


def score(
    predictions: Sequence[str],
    reference_solutions: Sequence[str],
    *,
    read_boxed: bool = True,
) -> dict[str, float]:
  """Greedy accuracy over a set of examples.

  Args:
    predictions: one generated response per example.
    reference_solutions: the reference solution of each example.
    read_boxed: see `extract_answer`.

  Returns:
    {'accuracy': percent correct, 'invalid': percent with no valid answer}.
  """
  _check_lengths(predictions, reference_solutions)
  values = [extract_answer(p, read_boxed=read_boxed) for p in predictions]
  correct = sum(
      answers_match(value, reference_answer(reference))
      for value, reference in zip(values, reference_solutions)
  )
  invalid = sum(value is None for value in values)
  count = len(values)
  return {
      'accuracy': 100.0 * correct / count,
      'invalid': 100.0 * invalid / count,
  }


def score_majority(
    samples: Sequence[Sequence[str]],
    reference_solutions: Sequence[str],
    *,
    read_boxed: bool = True,
) -> dict[str, float]:
  """maj@K accuracy: the vote of each example's K samples against its gold.

  Args:
    samples: per example, its K sampled responses (the paper: T = 0.7).
    reference_solutions: the reference solution of each example.
    read_boxed: see `extract_answer`.

  Returns:
    {'maj_accuracy': percent of examples whose vote is correct}.
  """
  _check_lengths(samples, reference_solutions)
  correct = sum(
      answers_match(
          majority_answer(example_samples, read_boxed=read_boxed),
          reference_answer(reference),
      )
      for example_samples, reference in zip(samples, reference_solutions)
  )
  return {'maj_accuracy': 100.0 * correct / len(samples)}


def load_examples(path: str) -> list[dict[str, str]]:
  """Reads GSM8K-style JSON Lines as [{'question': ..., 'answer': ...}].

  Both the official field names (question, answer) and the RFT repository's
  (query, response) are accepted.

  Raises:
    UserInputError: if the file is missing or a line lacks the fields.
  """
  if not os.path.isfile(path):
    raise UserInputError(f'GSM8K file not found: {path}; check the path')
  examples = []
  with open(path, encoding='utf-8') as jsonl_file:
    for line_number, line in enumerate(jsonl_file, start=1):
      if not line.strip():
        continue
      record = json.loads(line)
      question = record.get('question', record.get('query'))
      answer = record.get('answer', record.get('response'))
      if not isinstance(question, str) or not isinstance(answer, str):
        raise UserInputError(
            f'{path}:{line_number} lacks question/answer (or query/response)'
            ' string fields; fix the record'
        )
      examples.append({'question': question, 'answer': answer})
  return examples
