"""HumanEval functional correctness: pass@1 and the unbiased pass@k.

A completion is appended to its problem's prompt, followed by the problem's
test code and `check(<entry_point>)`; it passes when that program finishes
without an exception inside the time limit. Each program runs in its own
Python subprocess:

  - in a fresh temporary working directory, removed afterwards;
  - under resource limits set in the child before the program starts
    (address space `memory_mb`, CPU seconds, file size, no core files);
  - with a wall-clock timeout; on expiry its whole process group is killed;
  - without network: in a new network namespace (`unshare -n`) where the
    host allows one, and in every case with `socket` connections refused;
  - with destructive helpers (os.system, os.kill, shutil.rmtree, subprocess,
    ...) disabled, against accidents rather than attacks.

This is a guard against buggy model code, not a security boundary: run
untrusted code on a disposable machine. Programs run in parallel on a small
pool of worker threads, each waiting on its own subprocess.
"""

import concurrent.futures
import dataclasses
import functools
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Mapping, Sequence

import numpy as np

from flaxllm.errors import UserInputError

# Model outputs run on past the function; these lines start the next
# top-level statement (the stop sequences of the HumanEval paper).
STOP_SEQUENCES = ('\nclass', '\ndef', '\n#', '\nif', '\nprint')

# Statuses of an ExecutionResult.
PASSED = 'passed'
FAILED = 'failed'  # An exception (AssertionError included) or an early exit.
TIMEOUT = 'timeout'
OUT_OF_MEMORY = 'out_of_memory'

_RESULT_FILE = 'result.json'

# Runs inside the sandboxed child: limits first, then the guards, then the
# program; writes its verdict to argv[2] only after `check` returned.
_RUNNER = r"""
import builtins, json, os, resource, shutil, socket, subprocess
import sys

program_path, result_path = sys.argv[1], sys.argv[2]
memory_bytes, cpu_seconds = int(sys.argv[3]), int(sys.argv[4])
resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 24, 1 << 24))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
with open(program_path) as program_file:
  source = program_file.read()
verdict = open(result_path, 'wb', buffering=0)
# Encoded up front: after a MemoryError there may be no room to build it.
out_of_memory = json.dumps({'status': 'out_of_memory', 'detail': 'MemoryError'})
out_of_memory = out_of_memory.encode()

def _refuse(*args, **kwargs):
  raise PermissionError('disabled in the HumanEval sandbox')

class _NoSocket(socket.socket):
  def __init__(self, *args, **kwargs):
    raise PermissionError('network disabled in the HumanEval sandbox')

socket.socket = _NoSocket
socket.create_connection = _refuse
for name in ('system', 'kill', 'killpg', 'fork', 'forkpty', 'putenv',
             'remove', 'unlink', 'rmdir', 'removedirs', 'rename', 'renames',
             'truncate', 'chmod', 'chown', 'setuid', 'execv', 'execve',
             'spawnv', 'popen'):
  if hasattr(os, name):
    setattr(os, name, _refuse)
shutil.rmtree = shutil.move = shutil.chown = _refuse
subprocess.Popen = subprocess.run = subprocess.call = _refuse
builtins.help = _refuse

def _write(status, detail):
  verdict.write(json.dumps({'status': status, 'detail': detail[:500]}).encode())

try:
  exec(compile(source, 'candidate.py', 'exec'), {'__name__': '__main__'})
except MemoryError:
  verdict.write(out_of_memory)
except BaseException as error:
  _write('failed', f'{type(error).__name__}: {error}')
else:
  _write('passed', '')
sys.stdout.flush()
os._exit(0)
"""


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
  """The outcome of one completion.

  Attributes:
    task_id: the problem's id.
    status: PASSED, FAILED, TIMEOUT or OUT_OF_MEMORY.
    detail: the exception or the reason, for reading.
  """

  task_id: str
  status: str
  detail: str = ''

  @property
  def passed(self) -> bool:
    return self.status == PASSED


def read_problems(path: str) -> dict[str, dict[str, str]]:
  """Reads HumanEval problems (`.jsonl` or `.jsonl.gz`) keyed by task_id.

  Raises:
    UserInputError: if the file is missing or a record lacks a field.
  """
  if not os.path.isfile(path):
    raise UserInputError(f'HumanEval file not found: {path}; check the path')
  opener = gzip.open if path.endswith('.gz') else open
  problems = {}
  with opener(path, 'rt', encoding='utf-8') as problem_file:
    for line_number, line in enumerate(problem_file, start=1):
      if not line.strip():
        continue
      problem = json.loads(line)
      missing = {'task_id', 'prompt', 'test', 'entry_point'} - set(problem)
      if missing:
        raise UserInputError(
            f'{path}:{line_number} lacks {sorted(missing)}; fix the record'
        )
      problems[problem['task_id']] = problem
  return problems


def truncate_completion(completion: str) -> str:
  """Cuts a generated function body at the first top-level stop sequence."""
  cut = len(completion)
  for stop in STOP_SEQUENCES:
    position = completion.find(stop)
    if position >= 0:
      cut = min(cut, position)
  return completion[:cut]


def build_program(problem: Mapping[str, str], completion: str) -> str:
  """The program that tests a completion: prompt, body, tests, check call."""
  return (
      f"{problem['prompt']}{completion}\n\n{problem['test']}\n\n"
      f"check({problem['entry_point']})\n"
  )


@functools.cache
def _network_namespace_prefix() -> tuple[str, ...]:
  """`unshare` arguments that give the child no network, or () if none works."""
  unshare = shutil.which('unshare')
  if unshare is None:
    return ()
  for flags in (('-n',), ('-r', '-n')):
    command = (unshare, *flags, '--')
    try:
      probe = subprocess.run(
          [*command, 'true'], capture_output=True, timeout=10, check=False
      )
    except (OSError, subprocess.TimeoutExpired):
      continue
    if probe.returncode == 0:
      return command
  return ()


def network_isolation() -> str:
  """'namespace' when children get no network namespace, else 'socket_guard'."""
  return 'namespace' if _network_namespace_prefix() else 'socket_guard'


def execute(
    problem: Mapping[str, str],
    completion: str,
    *,
    timeout_s: float = 3.0,
    memory_mb: int = 1024,
) -> ExecutionResult:
  """Runs one completion against its problem's tests in a sandbox.

  Args:
    problem: a HumanEval record (task_id, prompt, test, entry_point).
    completion: the generated code that continues the prompt.
    timeout_s: wall-clock limit of the program.
    memory_mb: address-space limit of the child process.

  Returns:
    The ExecutionResult.
  """
  task_id = problem['task_id']
  workdir = tempfile.mkdtemp(prefix='humaneval_')
  try:
    program_path = os.path.join(workdir, 'candidate.py')
    runner_path = os.path.join(workdir, 'runner.py')
    result_path = os.path.join(workdir, _RESULT_FILE)
    with open(program_path, 'w', encoding='utf-8') as program_file:
      program_file.write(build_program(problem, completion))
    with open(runner_path, 'w', encoding='utf-8') as runner_file:
      runner_file.write(_RUNNER)
    command = [
        *_network_namespace_prefix(),
        sys.executable,
        '-I',  # Ignore PYTHON* variables and the user's site-packages.
        '-B',
        runner_path,
        program_path,
        result_path,
        str(memory_mb * 2**20),
        str(max(1, int(timeout_s) + 1)),
    ]
    environment = {
        'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
        'HOME': workdir,
        'TMPDIR': workdir,
        'LANG': 'C.UTF-8',
        'OMP_NUM_THREADS': '1',
    }
    child = subprocess.Popen(
        command,
        cwd=workdir,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # Its own process group, killed as a whole.
    )
    try:
      _, stderr = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
      _kill_group(child)
      return ExecutionResult(task_id, TIMEOUT, f'over {timeout_s} s')
    _kill_group(child)  # Whatever it left running.
    return _read_verdict(task_id, result_path, child.returncode, stderr)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(child: subprocess.Popen) -> None:
  try:
    os.killpg(child.pid, signal.SIGKILL)
  except (ProcessLookupError, PermissionError):
    pass
  child.wait()


def _read_verdict(
    task_id: str, result_path: str, returncode: int, stderr: bytes
) -> ExecutionResult:
  """The child's own verdict, or why it wrote none."""
  try:
    with open(result_path, encoding='utf-8') as result_file:
      verdict = json.loads(result_file.read())
  except (OSError, ValueError):
    verdict = None
  if verdict is not None:
    return ExecutionResult(task_id, verdict['status'], verdict['detail'])
  message = stderr.decode('utf-8', 'replace').strip().splitlines()
  last_line = message[-1] if message else ''
  if returncode == -signal.SIGXCPU or returncode == -signal.SIGKILL:
    return ExecutionResult(
        task_id, TIMEOUT, f'CPU limit (signal {-returncode})'
    )
  if 'MemoryError' in last_line:
    return ExecutionResult(task_id, OUT_OF_MEMORY, last_line)
  return ExecutionResult(
      task_id, FAILED, f'no verdict (exit {returncode}) {last_line}'.strip()
  )


def execute_many(
    problems: Sequence[Mapping[str, str]],
    completions: Sequence[str],
    *,
    timeout_s: float = 3.0,
    memory_mb: int = 1024,
    workers: int = 2,
) -> list[ExecutionResult]:
  """Runs (problem, completion) pairs in parallel, results in input order.

  Args:
    problems: one problem per completion (repeat a problem for k samples).
    completions: the generated code of each pair.
    timeout_s: per-program wall-clock limit.
    memory_mb: per-program address-space limit.
    workers: programs running at once.

  Returns:
    One ExecutionResult per pair.

  Raises:
    UserInputError: if the lists differ in length.
  """
  if len(problems) != len(completions):
    raise UserInputError(
        f'HumanEval got {len(completions)} completions for {len(problems)}'
        ' problems; pass one problem per completion'
    )
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    return list(
        pool.map(
            lambda pair: execute(
                pair[0], pair[1], timeout_s=timeout_s, memory_mb=memory_mb
            ),
            zip(problems, completions),
        )
    )


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
  """The unbiased estimator 1 - C(n - c, k) / C(n, k) of pass@k.

  Args:
    num_samples: n, completions sampled for the problem.
    num_correct: c, how many of them passed.
    k: the budget; at most n.

  Returns:
    The probability that at least one of k samples drawn without
    replacement from the n passes.

  Raises:
    UserInputError: if k > n or the counts are inconsistent.
  """
  if not 0 < k <= num_samples or not 0 <= num_correct <= num_samples:
    raise UserInputError(
        f'pass@{k} needs 0 < k <= n and 0 <= c <= n (n={num_samples},'
        f' c={num_correct}); sample at least k completions per problem'
    )
  if num_samples - num_correct < k:
    return 1.0
  # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i), stable in floats.
  terms = 1.0 - k / np.arange(num_samples - num_correct + 1, num_samples + 1)
  return float(1.0 - np.prod(terms))


def score(
    problems: Sequence[Mapping[str, str]],
    samples: Sequence[Sequence[str]],
    *,
    ks: Sequence[int] = (1,),
    timeout_s: float = 3.0,
    memory_mb: int = 1024,
    workers: int = 2,
    truncate: bool = False,
) -> dict[str, float]:
  """pass@k over problems, each with its list of sampled completions.

  Greedy decoding gives one completion per problem and pass@1 = percent
  passed.

  Args:
    problems: the HumanEval problems.
    samples: per problem, its completions (n >= max(ks)).
    ks: the k values to report.
    timeout_s: per-program wall-clock limit.
    memory_mb: per-program address-space limit.
    workers: programs running at once.
    truncate: cut each completion at the stop sequences first.

  Returns:
    {'pass@k': percent, ...}.
  """
  if len(problems) != len(samples) or not problems:
    raise UserInputError(
        f'HumanEval got samples for {len(samples)} of {len(problems)}'
        ' problems; pass a list of completions per problem'
    )
  flat_problems, flat_completions = [], []
  for problem, completions in zip(problems, samples):
    for completion in completions:
      flat_problems.append(problem)
      flat_completions.append(
          truncate_completion(completion) if truncate else completion
      )
  results = execute_many(
      flat_problems,
      flat_completions,
      timeout_s=timeout_s,
      memory_mb=memory_mb,
      workers=workers,
  )
  passed_by_problem = []
  position = 0
  for completions in samples:
    outcomes = results[position : position + len(completions)]
    passed_by_problem.append(sum(result.passed for result in outcomes))
    position += len(completions)
  return {
      f'pass@{k}': (
          100.0
          * float(
              np.mean([
                  pass_at_k(len(completions), passed, k)
                  for completions, passed in zip(samples, passed_by_problem)
              ])
          )
      )
      for k in ks
  }
