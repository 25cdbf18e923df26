"""Tests for flaxllm.eval.general_proxy (ROUGE-L proxy, reward hook)."""

import json
import os
import tempfile

from absl.testing import absltest

from flaxllm.errors import UserInputError
from flaxllm.eval import general_proxy

ALPACA_EVAL = (
    '/work/shared/data/general_sft/alpaca_eval/'
    'text_davinci_003_model_outputs.json'
)
EXAMPLES = [
    {'instruction': 'Name a color.', 'reference': 'The sky is blue today'},
    {'instruction': 'Say hi.', 'reference': 'hello there my friend'},
]


def _write_outputs_file(records) -> str:
  path = os.path.join(tempfile.mkdtemp(), 'outputs.json')
  with open(path, 'w') as json_file:
    json.dump(records, json_file)
  return path


class GeneralProxyTest(absltest.TestCase):

  def test_reference_outputs_score_100_and_unrelated_ones_0(self):
    references = [example['reference'] for example in EXAMPLES]
    self.assertAlmostEqual(
        general_proxy.score(references, EXAMPLES)['general_proxy_rouge_l'],
        100.0,
        places=4,
    )
    self.assertEqual(
        general_proxy.score(['x y', 'z w'], EXAMPLES)['general_proxy_rouge_l'],
        0.0,
    )

  def test_partial_overlap_is_the_mean_rouge_l(self):
    # Pair 1: LCS 4 of 5 and 4 tokens -> F1 8/9; pair 2: no overlap.
    scores = general_proxy.score(['the sky is blue', 'no'], EXAMPLES)
    self.assertAlmostEqual(
        scores['general_proxy_rouge_l'], 100 * (8 / 9) / 2, places=4
    )

  def test_without_a_reward_model_only_the_proxy_is_reported(self):
    self.assertEqual(
        list(general_proxy.score(['a', 'b'], EXAMPLES)),
        ['general_proxy_rouge_l'],
    )

  def test_reward_hook_reports_the_mean_reward(self):
    seen = []

    def reward_fn(instructions, outputs):
      seen.append((list(instructions), list(outputs)))
      return [len(output) for output in outputs]

    scores = general_proxy.score(
        ['abc', 'abcde'], EXAMPLES, reward_fn=reward_fn
    )
    self.assertEqual(scores['general_proxy_reward'], 4.0)
    self.assertEqual(seen, [(['Name a color.', 'Say hi.'], ['abc', 'abcde'])])

  def test_reward_model_with_wrong_count_raises(self):
    with self.assertRaisesRegex(UserInputError, 'one score per output'):
      general_proxy.score(['a', 'b'], EXAMPLES, reward_fn=lambda i, o: [1.0])

  def test_output_count_mismatch_raises(self):
    with self.assertRaisesRegex(UserInputError, '1 outputs for 2'):
      general_proxy.score(['a'], EXAMPLES)

  def test_loads_an_outputs_file(self):
    path = _write_outputs_file([
        {'instruction': 'i1', 'output': 'o1', 'generator': 'g'},
        {'instruction': 'i2', 'output': 'o2', 'generator': 'g'},
    ])
    self.assertEqual(
        general_proxy.load_alpaca_eval(path, max_examples=1),
        [{'instruction': 'i1', 'reference': 'o1'}],
    )

  def test_record_without_output_raises(self):
    path = _write_outputs_file([{'instruction': 'i1'}])
    with self.assertRaisesRegex(UserInputError, 'record 0'):
      general_proxy.load_alpaca_eval(path)

  def test_real_alpaca_eval_references_score_100_against_themselves(self):
    if not os.path.exists(ALPACA_EVAL):
      self.skipTest(f'{ALPACA_EVAL} is absent; the fixture tests cover this')
    examples = general_proxy.load_alpaca_eval(ALPACA_EVAL)
    self.assertLen(examples, 805)
    subset = examples[:20]
    outputs = [example['reference'] for example in subset]
    self.assertAlmostEqual(
        general_proxy.score(outputs, subset)['general_proxy_rouge_l'],
        100.0,
        places=4,
    )


if __name__ == '__main__':
  absltest.main()
