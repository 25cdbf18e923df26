"""The committed notebooks match their builder and follow the notebook rules.

Executing them is `./run.sh notebooks` (a CI step of its own, minutes long);
these checks are cheap: a notebook edited by hand and not in the builder, a
stored output, a missing RUNLOCAL switch or README badge all fail here.
"""

import glob
import importlib.util
import os

from absl.testing import absltest
import nbformat

from tests import run_helpers

NOTEBOOKS = os.path.join(run_helpers.ROOT, 'notebooks')


def load_builder():
  path = os.path.join(NOTEBOOKS, 'build_notebooks.py')
  spec = importlib.util.spec_from_file_location('build_notebooks', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class NotebooksBuildTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.builder = load_builder()
    cls.paths = sorted(glob.glob(os.path.join(NOTEBOOKS, '*.ipynb')))

  def test_every_built_notebook_is_committed_and_current(self):
    names = {os.path.basename(p)[: -len('.ipynb')] for p in self.paths}
    self.assertEqual(names, set(self.builder.NOTEBOOKS))
    for name, cells in self.builder.NOTEBOOKS.items():
      with open(os.path.join(NOTEBOOKS, f'{name}.ipynb')) as f:
        committed = f.read()
      built = nbformat.writes(self.builder.build(name, cells)) + '\n'
      self.assertEqual(
          committed, built, f'{name}.ipynb is stale: run build_notebooks.py'
      )

  def test_notebooks_store_no_outputs_and_start_with_the_switch(self):
    for path in self.paths:
      notebook = nbformat.read(path, as_version=4)
      nbformat.validate(notebook)
      code = [c for c in notebook.cells if c.cell_type == 'code']
      self.assertIn('RUNLOCAL = None', code[0].source, path)
      self.assertIn('pip', code[0].source, path)
      for cell in code:
        self.assertEmpty(cell.outputs, path)
        self.assertIsNone(cell.execution_count, path)

  def test_every_method_has_a_notebook_and_a_readme_badge(self):
    with open(os.path.join(run_helpers.ROOT, 'README.md')) as f:
      readme = f.read()
    for name in self.builder.NOTEBOOKS:
      self.assertIn(f'notebooks/{name}.ipynb', readme)
    for method in ('seqdiffuseq', 'scd', 'bart_hype', 'genbioel',
                   'sft_recipes', 'zooter', '00_tour'):
      self.assertIn(method, self.builder.NOTEBOOKS)


if __name__ == '__main__':
  absltest.main()
