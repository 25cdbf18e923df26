"""Prompt formats for instruction data: the tokenizer's chat template or Alpaca's.

`render_prompt(tokenizer, instruction, template)` returns the text a model is
given before its response:

  'none'       the instruction as it is
  'alpaca'     the Alpaca instruction format (with an '### Input:' block when
               the example has an input)
  'tokenizer'  the tokenizer's own Jinja chat template (Hugging Face's
               `chat_template`, or GGUF's `tokenizer.chat_template`), one user
               turn, with the generation prompt appended
  'auto'       'tokenizer' when the tokenizer ships a template, else 'alpaca'

Templates are rendered in Jinja's sandbox, as `transformers` does.
"""

import functools

from flaxllm.errors import UserInputError

TEMPLATES = ('none', 'alpaca', 'tokenizer', 'auto')

_ALPACA_HEADER = (
    'Below is an instruction that describes a task{context}. Write a response'
    ' that appropriately completes the request.\n\n'
)


def alpaca_prompt(instruction: str, input_text: str = '') -> str:
  """The Alpaca prompt for an instruction (and optional input)."""
  if input_text:
    return (
        _ALPACA_HEADER.format(
            context=', paired with an input that provides further context'
        )
        + f'### Instruction:\n{instruction}\n\n### Input:\n{input_text}\n\n'
        '### Response:\n'
    )
  return (
      _ALPACA_HEADER.format(context='')
      + f'### Instruction:\n{instruction}\n\n### Response:\n'
  )


@functools.lru_cache(maxsize=8)
def _compiled(template: str):
  from jinja2 import exceptions  # pylint: disable=g-import-not-at-top
  from jinja2 import sandbox  # pylint: disable=g-import-not-at-top

  def raise_exception(message):
    raise exceptions.TemplateError(message)

  environment = sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True
  )
  environment.globals['raise_exception'] = raise_exception
  return environment.from_string(template)


def tokenizer_prompt(tokenizer, instruction: str) -> str:
  """One user turn through the tokenizer's chat template, ready to answer."""
  if not tokenizer.chat_template:
    raise UserInputError(
        "the tokenizer has no chat template; set task.chat_template='alpaca'"
        " or 'none'"
    )
  tokens = tokenizer.special_tokens()
  return _compiled(tokenizer.chat_template).render(
      messages=[{'role': 'user', 'content': instruction}],
      add_generation_prompt=True,
      bos_token=tokens.get('bos_token') or '',
      eos_token=tokens.get('eos_token') or '',
  )


def render_prompt(
    tokenizer, instruction: str, template: str, input_text: str = ''
) -> str:
  """The prompt text for `instruction` in the named format (module docstring)."""
  if template not in TEMPLATES:
    raise UserInputError(
        f'chat template {template!r} is unknown; use one of {TEMPLATES}'
    )
  if template == 'auto':
    template = 'tokenizer' if tokenizer.chat_template else 'alpaca'
  if template == 'none':
    return f'{instruction}\n{input_text}' if input_text else instruction
  if template == 'alpaca':
    return alpaca_prompt(instruction, input_text)
  if input_text:
    instruction = f'{instruction}\n\n{input_text}'
  return tokenizer_prompt(tokenizer, instruction)
