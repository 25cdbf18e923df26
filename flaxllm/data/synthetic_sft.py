"""Generated instruction data with three abilities a tiny model can learn.

For CPU-scale SFT and DMT experiments, where GSM8K, Code Alpaca and ShareGPT
are far beyond a few-million-parameter model, each ability gets a small,
checkable stand-in:

  math     two-step arithmetic word problems answered GSM8K-style, with a
           calculator annotation and '#### answer' (checked by
           `flaxllm.eval.gsm8k`); operands 10-59, so most test problems
           need a sum or difference that no training problem shows (5 of
           48 test problems have both steps in 1,500 training ones): a tiny
           model trained on it alone for 900 steps solves 4%;
  math_small  the same problems with operands 1-20 (kind 'math'): 40 of
           48 test problems have both steps in 1,500 training ones, and
           the same model solves 75% of them;
  code     one-line Python functions from a description (checked by running
           them against asserts with `flaxllm.eval.humaneval`);
  general  naming a Human Phenotype Ontology concept from its definition
           (the embedded HPO; scored by ROUGE-L).

Every example is {'src': instruction, 'tgt': response, 'kind': ability} plus
what its checker needs ('answer' for math; 'test', a HumanEval-style
`check(candidate)`, and 'entry_point' for code).
Generation is deterministic in (split, seed); the splits never share an item.
"""

import zlib

import numpy as np

from flaxllm.data import hpo
from flaxllm.errors import UserInputError

ABILITIES = ('math', 'code', 'general')
# Math generator name -> the smallest and largest operand (a and b).
_MATH_OPERANDS = {'math': (10, 59), 'math_small': (1, 20)}
SPLITS = ('train', 'valid', 'test')

_NAMES = ('Ana', 'Ben', 'Chen', 'Dara', 'Eli', 'Femi', 'Gus', 'Hana')
_ITEMS = ('apples', 'books', 'coins', 'pens', 'shells', 'stamps')

_CODE_TASKS = (
    # (description, body, python operator form)
    ('adds {n} to x', 'x + {n}', lambda x, n: x + n),
    ('subtracts {n} from x', 'x - {n}', lambda x, n: x - n),
    ('multiplies x by {n}', 'x * {n}', lambda x, n: x * n),
    (
        'returns the remainder of x divided by {n}',
        'x % {n}',
        lambda x, n: x % n,
    ),
    ('returns x squared plus {n}', 'x * x + {n}', lambda x, n: x * x + n),
)


def _rng(ability: str, split: str, seed: int) -> np.random.Generator:
  return np.random.default_rng(
      [seed, zlib.crc32(ability.encode()), zlib.crc32(split.encode())]
  )


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise UserInputError(f'synthetic split {split!r} is unknown; use {SPLITS}')


def _in_split(key: str, split: str) -> bool:
  """Assigns an item to one split by a hash of its identity (80/10/10)."""
  bucket = zlib.crc32(key.encode()) % 10
  return SPLITS[0 if bucket < 8 else 1 if bucket == 8 else 2] == split


def math_examples(
    count: int, split: str, seed: int = 0, operands: tuple[int, int] = (10, 59)
) -> list[dict]:
  """Word problems 'a + b - c' with an annotated, GSM8K-style solution.

  Args:
    count: how many problems.
    split: 'train', 'valid' or 'test'; a triple (a, b, c) is in one only.
    seed: varies the problems drawn (not the split of a triple).
    operands: the range of a and b, both ends included; c is in
      1..a+b-1, so answers are positive.

  Returns:
    `count` examples of kind 'math'.
  """
  _check_split(split)
  low, high = operands
  rng = _rng('math', split, seed)
  examples = []
  while len(examples) < count:
    name = _NAMES[rng.integers(len(_NAMES))]
    item = _ITEMS[rng.integers(len(_ITEMS))]
    a, b = (int(v) for v in rng.integers(low, high + 1, 2))
    c = int(rng.integers(1, a + b))
    if not _in_split(f'{a},{b},{c}', split):
      continue
    total, answer = a + b, a + b - c
    examples.append({
        'src': (
            f'{name} has {a} {item} and gets {b} more, then gives away {c}.'
            f' How many {item} does {name} have now?'
        ),
        'tgt': (
            f'{name} first has {a} + {b} = <<{a}+{b}={total}>>{total} {item}.'
            f'\nAfter giving {c} away: {total} - {c} = <<{total}-{c}={answer}>>'
            f'{answer}.\n#### {answer}'
        ),
        'kind': 'math',
        'answer': f'#### {answer}',
    })
  return examples


def code_examples(count: int, split: str, seed: int = 0) -> list[dict]:
  """'Write f(x) that ...' -> a one-line Python function, with asserts."""
  _check_split(split)
  rng = _rng('code', split, seed)
  examples = []
  while len(examples) < count:
    task = int(rng.integers(len(_CODE_TASKS)))
    n = int(rng.integers(2, 30))
    if not _in_split(f'{task},{n}', split):
      continue
    description, body, function = _CODE_TASKS[task]
    name = f'f{task}_{n}'
    checks = [int(v) for v in rng.integers(-20, 40, 3)]
    examples.append({
        'src': (
            f'Write a Python function {name}(x) that {description.format(n=n)}.'
        ),
        'tgt': f'def {name}(x):\n    return {body.format(n=n)}',
        'kind': 'code',
        'entry_point': name,
        'test': (
            'def check(candidate):\n'
            + '\n'.join(
                f'    assert candidate({x}) == {function(x, n)}' for x in checks
            )
        ),
    })
  return examples


def general_examples(count: int, split: str, seed: int = 0) -> list[dict]:
  """'Name the phenotype: <definition>' -> the HPO concept name."""
  _check_split(split)
  hpo_split = {'train': 'train', 'valid': 'valid', 'test': 'test'}[split]
  pairs = hpo.hpo_def2name(hpo_split)
  order = _rng('general', split, seed).permutation(len(pairs))
  if count > len(pairs):
    raise UserInputError(
        f'only {len(pairs)} general {split} examples exist; ask for fewer'
    )
  return [
      {
          'src': f'Name the phenotype: {pairs[i]["src"]}',
          'tgt': pairs[i]['tgt'],
          'kind': 'general',
          'id': pairs[i]['id'],
      }
      for i in order[:count]
  ]


def examples(ability: str, count: int, split: str, seed: int = 0) -> list[dict]:
  """`count` examples of one ability (see the module docstring)."""
  if ability in _MATH_OPERANDS:
    return math_examples(count, split, seed, _MATH_OPERANDS[ability])
  makers = {'code': code_examples, 'general': general_examples}
  if ability not in makers:
    raise UserInputError(
        f'synthetic ability {ability!r} is unknown; use one of'
        f' {sorted([*_MATH_OPERANDS, *makers])}'
    )
  return makers[ability](count, split, seed)
