"""The corpus documents that experiments/make_distill_data.py trains drafts on.

Built from a small GSM8K / WikiText folder written here, so no shared data or
real tokenizer is needed: a stand-in tokenizer carries a ChatML template.
"""

import importlib.util
import json
import os
import tempfile

from absl.testing import absltest

_SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    'experiments',
    'make_distill_data.py',
)
_CHATML = (
    '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}'
    '<|im_end|>\n{% endfor %}'
    '{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}'
)


def _load_script():
  """The script as a module (once: it defines absl flags on import)."""
  spec = importlib.util.spec_from_file_location('make_distill_data', _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


_MODULE = _load_script()


class _ChatTokenizer:
  """Just what the prompt renderer reads from a tokenizer."""

  chat_template = _CHATML

  def special_tokens(self):
    return {'eos_token': '<|im_end|>'}


def _paragraph(index: int) -> str:
  return ' '.join(f'para{index}word{w}' for w in range(70))


class CorpusDocumentsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.data = tempfile.mkdtemp()
    os.makedirs(os.path.join(self.data, 'gsm8k'))
    os.makedirs(os.path.join(self.data, 'wikitext2', 'raw'))
    with open(os.path.join(self.data, 'gsm8k', 'train.jsonl'), 'w') as f:
      for i in range(4):
        f.write(
            json.dumps({
                'question': f'How many apples in box {i}?',
                'answer': (
                    f'It holds 3*{i} = <<3*{i}={3 * i}>>{3 * i}.\n'
                    f'#### {3 * i}'
                ),
            })
            + '\n'
        )
    lines = [' = Heading = \n', ' short line \n']
    lines += [f' {_paragraph(i)} \n' for i in range(6)]
    with open(
        os.path.join(self.data, 'wikitext2', 'raw', 'wiki.test.raw'), 'w'
    ) as f:
      f.writelines(lines)
    self.module = _MODULE

  def test_gsm8k_solutions_follow_the_chat_template_without_annotations(self):
    documents = self.module.corpus_documents(
        _ChatTokenizer(), count=8, skip_paragraphs=0, data=self.data
    )
    solutions = [d for d in documents if 'apples' in d]
    self.assertLen(solutions, 4)
    for document in solutions:
      self.assertTrue(document.startswith('<|im_start|>user\nHow many apples'))
      self.assertIn('<|im_start|>assistant\nIt holds', document)
      self.assertNotIn('<<', document)
      self.assertRegex(document, r'\n#### \d+<\|im_end\|>$')

  def test_held_out_wikitext_paragraphs_never_enter_the_corpus(self):
    documents = self.module.corpus_documents(
        _ChatTokenizer(), count=100, skip_paragraphs=2, data=self.data
    )
    wiki = [d for d in documents if d.startswith('para')]
    self.assertCountEqual(wiki, [_paragraph(i) for i in range(2, 6)])
    self.assertFalse(any('Heading' in d or 'short' in d for d in documents))

  def test_sampling_prompts_also_skip_the_held_out_paragraphs(self):
    pairs = self.module.prompts(count=8, skip_paragraphs=2, data=self.data)
    questions = [text for text, kind in pairs if kind == 'tokenizer']
    openings = [text for text, kind in pairs if kind == 'none']
    self.assertLen(questions, 4)
    # The 24-word openings of paragraphs 2-5, never of the held-out 0 and 1.
    self.assertEqual(
        openings, [' '.join(_paragraph(i).split()[:24]) for i in range(2, 6)]
    )

  def test_count_caps_the_documents(self):
    documents = self.module.corpus_documents(
        _ChatTokenizer(), count=6, skip_paragraphs=0, data=self.data
    )
    self.assertLen(documents, 6)
    self.assertLen([d for d in documents if 'apples' in d], 3)


if __name__ == '__main__':
  absltest.main()
