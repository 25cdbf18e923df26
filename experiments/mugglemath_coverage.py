r"""How much of GSM8K train the rule-based number changes cover.

Runs `flaxllm.recipes.mugglemath.augment_numbers` over every GSM8K train item,
prints how many items it changes and why the others were rejected, checks
each new item once more with an independent evaluator (Python's own
arithmetic over the rewritten annotations), and writes a random sample of
changed items, next to their originals, for reading by hand:

  ./run.sh experiments/mugglemath_coverage.py
  python experiments/mugglemath_coverage.py --samples=50 \
      --out=/tmp/mugglemath_samples.jsonl

The figures are appended to experiments/results/mugglemath_coverage.md. The
sample file holds derived GSM8K text: keep it out of the repository.
"""

import argparse
import datetime
import fractions
import json
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from flaxllm.eval import gsm8k  # pylint: disable=wrong-import-position
from flaxllm.recipes import mugglemath  # pylint: disable=wrong-import-position

_ANNOTATION = re.compile(r'<<([^<>=]*)=([^<>=]*)>>')


def _independently_consistent(record) -> bool:
  """Annotations hold under Python's arithmetic; the answer is a result."""
  annotations = _ANNOTATION.findall(record['answer'])
  for lhs, rhs in annotations:
    if not re.fullmatch(r'[\d.+\-*/() ]+', lhs):
      return False
    if abs(eval(lhs) - float(rhs)) > 1e-6:  # pylint: disable=eval-used
      return False
  answer = gsm8k.extract_answer_text(record['answer'])
  results = {fractions.Fraction(rhs) for _, rhs in annotations}
  return answer is not None and fractions.Fraction(answer) in results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--train', default='/work/shared/data/gsm8k/train.jsonl')
  parser.add_argument('--out', default='/tmp/mugglemath_samples.jsonl')
  parser.add_argument('--samples', type=int, default=50)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--copies', type=int, default=1)
  parser.add_argument(
      '--results',
      default=os.path.join(HERE, 'results', 'mugglemath_coverage.md'),
  )
  args = parser.parse_args()

  examples = gsm8k.load_examples(args.train)
  start = time.perf_counter()
  records, rejections = mugglemath.augment_numbers(
      examples, seed=args.seed, copies=args.copies
  )
  seconds = time.perf_counter() - start
  covered = len({record['source_index'] for record in records})
  consistent = sum(map(_independently_consistent, records))
  changed_numbers = np.mean([len(record['changes']) for record in records])

  lines = [
      f'items: {len(examples)}',
      (
          f'changed: {covered} ({100 * covered / len(examples):.1f}%),'
          f' {len(records)} new items ({args.copies} draw(s) per item)'
      ),
      f'independently consistent: {consistent} of {len(records)}',
      f'question numbers changed per new item: {changed_numbers:.2f}',
      f'time: {seconds:.1f} s',
      'rejected, by reason:',
  ]
  for reason, count in rejections.most_common():
    lines.append(
        f'  {reason:32s} {count:5d} ({100 * count / len(examples):.1f}%)'
    )
  print('\n'.join(lines))

  rng = np.random.default_rng(args.seed)
  picks = rng.choice(len(records), min(args.samples, len(records)), False)
  with open(args.out, 'w', encoding='utf-8') as sample_file:
    for pick in sorted(picks):
      record = records[pick]
      original = examples[record['source_index']]
      sample_file.write(
          json.dumps({
              'source_index': record['source_index'],
              'original_question': original['question'],
              'original_answer': original['answer'],
              'question': record['question'],
              'answer': record['answer'],
              'changes': record['changes'],
          })
          + '\n'
      )
  print(f'wrote {len(picks)} samples to {args.out}')

  if args.results:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    command = 'python experiments/mugglemath_coverage.py ' + ' '.join(
        sys.argv[1:]
    )
    is_new = not os.path.exists(args.results)
    with open(args.results, 'a', encoding='utf-8') as results_file:
      if is_new:
        results_file.write(
            '# MuggleMath rule-based number changes: GSM8K train coverage\n'
        )
      results_file.write(
          f'\n## {stamp}: `{command.strip()}`\n\n```\n'
          + '\n'.join(lines)
          + '\n```\n'
      )


if __name__ == '__main__':
  main()
