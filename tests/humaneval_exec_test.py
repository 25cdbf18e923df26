"""Tests for flaxllm.eval.humaneval: sandboxed execution and pass@k."""

import math
import os
import re

from absl.testing import absltest
from absl.testing import parameterized

from flaxllm.errors import UserInputError
from flaxllm.eval import humaneval

HUMANEVAL = '/work/shared/data/humaneval/HumanEval.jsonl.gz'
REAL_TASKS = ('HumanEval/0', 'HumanEval/2', 'HumanEval/53')

# A problem written here so that the checks run without the shared data.
ADD = {
    'task_id': 'fixture/add',
    'prompt': 'def add(a, b):\n    """Returns a + b."""\n',
    'canonical_solution': '    return a + b\n',
    'test': (
        'def check(candidate):\n'
        '    assert candidate(2, 3) == 5\n'
        '    assert candidate(-1, 1) == 0\n'
    ),
    'entry_point': 'add',
}


class ExecuteTest(parameterized.TestCase):

  def test_canonical_solution_passes(self):
    result = humaneval.execute(ADD, ADD['canonical_solution'])
    self.assertEqual(result.status, humaneval.PASSED)
    self.assertTrue(result.passed)

  def test_wrong_solution_fails_with_the_assertion(self):
    result = humaneval.execute(ADD, '    return a - b\n')
    self.assertEqual(result.status, humaneval.FAILED)
    self.assertIn('AssertionError', result.detail)

  def test_syntax_error_fails(self):
    result = humaneval.execute(ADD, '    return a +\n')
    self.assertEqual(result.status, humaneval.FAILED)
    self.assertIn('SyntaxError', result.detail)

  def test_infinite_loop_times_out(self):
    result = humaneval.execute(
        ADD, '    while True:\n        pass\n', timeout_s=1.0
    )
    self.assertEqual(result.status, humaneval.TIMEOUT)

  @parameterized.named_parameters(
      ('one_big_block', '    x = bytearray(4 * 2**30)\n    return a + b\n'),
      (
          'growing_list',
          (
              '    hog = []\n    while True:\n'
              '        hog.append(bytearray(2**24))\n'
          ),
      ),
  )
  def test_memory_hog_is_stopped(self, completion):
    result = humaneval.execute(ADD, completion, memory_mb=256, timeout_s=10)
    self.assertEqual(result.status, humaneval.OUT_OF_MEMORY)

  def test_opening_a_socket_is_refused(self):
    completion = (
        '    import socket\n'
        '    socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n'
        '    return a + b\n'
    )
    result = humaneval.execute(ADD, completion)
    self.assertEqual(result.status, humaneval.FAILED)
    self.assertIn('network disabled', result.detail)

  @parameterized.named_parameters(
      ('sys_exit', '    import sys\n    sys.exit(0)\n'),
      ('os_exit', '    import os\n    os._exit(0)\n'),
  )
  def test_exiting_early_is_a_failure(self, completion):
    self.assertFalse(humaneval.execute(ADD, completion).passed)

  def test_working_directory_is_temporary_and_removed(self):
    completion = (
        '    import os\n'
        "    open('scratch.txt', 'w').write('x')\n"
        "    raise RuntimeError('cwd=' + os.getcwd())\n"
    )
    result = humaneval.execute(ADD, completion)
    workdir = re.search(r'cwd=(\S+)', result.detail).group(1)
    self.assertIn('humaneval_', workdir)
    self.assertFalse(os.path.exists(workdir))

  def test_destructive_helpers_are_disabled(self):
    completion = "    import shutil\n    shutil.rmtree('/tmp/nothing')\n"
    result = humaneval.execute(ADD, completion)
    self.assertIn('disabled in the HumanEval sandbox', result.detail)


class RealProblemsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if not os.path.exists(HUMANEVAL):
      self.skipTest(f'{HUMANEVAL} is absent; the fixture tests cover this')
    self.problems = humaneval.read_problems(HUMANEVAL)

  def test_reads_all_problems(self):
    self.assertLen(self.problems, 164)

  def test_canonical_solutions_pass_and_empty_bodies_fail(self):
    problems = [self.problems[task] for task in REAL_TASKS]
    canonical = humaneval.execute_many(
        problems, [p['canonical_solution'] for p in problems]
    )
    self.assertEqual([r.status for r in canonical], ['passed'] * 3)
    empty = humaneval.execute_many(problems, ['    pass\n'] * 3)
    self.assertEqual([r.status for r in empty], ['failed'] * 3)


class ScoreTest(absltest.TestCase):

  def test_execute_many_keeps_input_order(self):
    completions = ['    return a + b\n', '    return 0\n'] * 2
    results = humaneval.execute_many([ADD] * 4, completions, workers=2)
    self.assertEqual([r.passed for r in results], [True, False, True, False])

  def test_score_reports_pass_at_k_in_percent(self):
    other = dict(ADD, task_id='fixture/add2')
    samples = [
        ['    return a + b\n', '    return 0\n'],  # 1 of 2 passes.
        ['    return 1\n', '    return 2\n'],  # 0 of 2.
    ]
    scores = humaneval.score([ADD, other], samples, ks=(1, 2))
    self.assertAlmostEqual(scores['pass@1'], 25.0)
    self.assertAlmostEqual(scores['pass@2'], 50.0)

  def test_truncation_cuts_at_the_next_top_level_statement(self):
    completion = '    return a + b\n\ndef other():\n    pass\n'
    self.assertEqual(
        humaneval.truncate_completion(completion), '    return a + b\n'
    )
    self.assertEqual(
        humaneval.score([ADD], [[completion + 'print(1/0)\n']], truncate=True),
        {'pass@1': 100.0},
    )

  def test_mismatched_lists_raise(self):
    with self.assertRaisesRegex(UserInputError, '1 completions for 2'):
      humaneval.execute_many([ADD, ADD], ['x'])


class PassAtKTest(parameterized.TestCase):

  @parameterized.parameters(
      (10, 0, 1), (10, 3, 1), (10, 3, 5), (20, 7, 10), (5, 5, 2), (200, 13, 100)
  )
  def test_matches_the_combinatorial_formula(self, n, c, k):
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    self.assertAlmostEqual(humaneval.pass_at_k(n, c, k), exact, places=10)

  def test_pass_at_1_is_the_fraction_correct(self):
    self.assertAlmostEqual(humaneval.pass_at_k(8, 3, 1), 3 / 8)

  def test_k_above_n_raises(self):
    with self.assertRaisesRegex(UserInputError, 'pass@5'):
      humaneval.pass_at_k(3, 1, 5)


if __name__ == '__main__':
  absltest.main()
