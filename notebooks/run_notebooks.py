"""Executes flaxllm's notebooks headless at CPU size and fails on any cell error.

`./run.sh notebooks` (and so CI) runs this. Each notebook gets
FLAXLLM_RUNLOCAL=1 (its RUNLOCAL sizes) and FLAXLLM_ROOT (this checkout, so
its install cell finds flaxllm already installed), and runs in a fresh
kernel of this Python. Executed copies, outputs included, can be kept for a
look with --output_dir.

  python notebooks/run_notebooks.py                  # every notebook
  python notebooks/run_notebooks.py scd 00_tour      # some of them
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_one(path: str, timeout: int, output_dir: str) -> float:
  """Executes one notebook in place of a copy; returns its wall seconds."""
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top

  notebook = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
      notebook,
      timeout=timeout,
      kernel_name='python3',
      resources={'metadata': {'path': ROOT}},
  )
  start = time.perf_counter()
  try:
    client.execute()
  finally:
    if output_dir:
      os.makedirs(output_dir, exist_ok=True)
      nbformat.write(notebook, os.path.join(output_dir, os.path.basename(path)))
  return time.perf_counter() - start


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('names', nargs='*', help='notebook names (default all)')
  parser.add_argument('--timeout', type=int, default=1800,
                      help='seconds allowed per cell')
  parser.add_argument('--output_dir', default='',
                      help='where to keep executed copies (default: none)')
  args = parser.parse_args()
  paths = sorted(glob.glob(os.path.join(HERE, '*.ipynb')))
  if args.names:
    wanted = {n.removesuffix('.ipynb') for n in args.names}
    missing = wanted - {os.path.basename(p)[:-6] for p in paths}
    if missing:
      print(f'no notebook named {sorted(missing)} in {HERE}')
      return 2
    paths = [p for p in paths if os.path.basename(p)[:-6] in wanted]
  os.environ['FLAXLLM_RUNLOCAL'] = '1'
  os.environ['FLAXLLM_ROOT'] = ROOT
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  failed = []
  for path in paths:
    name = os.path.basename(path)
    print(f'+ {name}', flush=True)
    try:
      seconds = run_one(path, args.timeout, args.output_dir)
    except Exception as error:  # pylint: disable=broad-except
      # nbclient's CellExecutionError carries the cell and its traceback.
      print(f'FAILED {name}:\n{error}', flush=True)
      failed.append(name)
      continue
    print(f'  ok in {seconds:.0f} s', flush=True)
  if failed:
    print(f'{len(failed)} of {len(paths)} notebooks failed: {failed}')
    return 1
  print(f'all {len(paths)} notebooks ran')
  return 0


if __name__ == '__main__':
  sys.exit(main())
