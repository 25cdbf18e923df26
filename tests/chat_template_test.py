"""Instruction prompts: Alpaca's format, a tokenizer's chat template, SFT data."""

import os
import tempfile

from absl.testing import absltest

from flaxllm import errors
from flaxllm.data import chat_templates
from flaxllm.data import lm_data
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.models import gguf
from flaxllm.tasks import sft
from tests import run_helpers

CHATML = (
    '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}'
    '<|im_end|>\n{% endfor %}'
    '{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}'
)


def _tokenizer(chat_template=None):
  tokenizer = tokenizer_lib.train_bpe(['fever cough rash'] * 20, 300)
  tokenizer.chat_template = chat_template
  return tokenizer


class ChatTemplateTest(absltest.TestCase):

  def test_alpaca_prompt_with_and_without_input(self):
    plain = chat_templates.render_prompt(_tokenizer(), 'Add 2 and 3.', 'alpaca')
    self.assertTrue(plain.startswith('Below is an instruction'))
    self.assertIn('### Instruction:\nAdd 2 and 3.\n\n', plain)
    self.assertTrue(plain.endswith('### Response:\n'))
    self.assertNotIn('### Input', plain)
    with_input = chat_templates.render_prompt(
        _tokenizer(), 'Sum these.', 'alpaca', input_text='2, 3'
    )
    self.assertIn('paired with an input', with_input)
    self.assertIn('### Input:\n2, 3\n\n### Response:\n', with_input)

  def test_tokenizer_template_is_rendered_and_survives_save_and_load(self):
    tokenizer = _tokenizer(CHATML)
    prompt = chat_templates.render_prompt(tokenizer, 'hi', 'auto')
    self.assertEqual(
        prompt, '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n'
    )
    folder = os.path.join(tempfile.mkdtemp(), 'tok')
    tokenizer.save(folder)
    self.assertEqual(tokenizer_lib.load_tokenizer(folder).chat_template, CHATML)
    # Without a template, 'auto' falls back to Alpaca and 'tokenizer' fails.
    self.assertIn(
        '### Response:',
        chat_templates.render_prompt(_tokenizer(), 'hi', 'auto'),
    )
    with self.assertRaisesRegex(errors.UserInputError, 'no chat template'):
      chat_templates.render_prompt(_tokenizer(), 'hi', 'tokenizer')

  def test_smollm2_gguf_ships_a_chat_template(self):
    _, _, tokenizer = gguf.read_gguf(gguf.smollm2_path(), tensors=False)
    prompt = chat_templates.render_prompt(tokenizer, 'What is 2+2?', 'auto')
    self.assertIn('<|im_start|>user\nWhat is 2+2?<|im_end|>', prompt)
    self.assertTrue(prompt.endswith('<|im_start|>assistant\n'))

  def test_sft_data_masks_the_rendered_prompt(self):
    data = run_helpers.make_data_dir(tempfile.mkdtemp())
    config = run_helpers.lm_tiny_config(data)
    config.task = sft.task_defaults()
    config.task.chat_template = 'alpaca'
    config.task.pack = False
    config.data.max_source_length = 96
    config.data.max_target_length = 24
    bundle = lm_data.LMData.from_config(config, tempfile.mkdtemp())
    example = bundle.examples('train')[0]
    self.assertTrue(example['src'].startswith('Below is an instruction'))
    batch = bundle.collator([example])
    prompt_tokens = len(example['src_ids']) + 1  # bos + prompt
    weights = batch['target_mask'][0]
    # Targets 0 .. prompt_tokens - 2 are prompt tokens: no loss there.
    self.assertEqual(weights[: prompt_tokens - 1].sum(), 0.0)
    self.assertEqual(weights.sum(), len(example['tgt_ids']) + 1)


if __name__ == '__main__':
  absltest.main()
