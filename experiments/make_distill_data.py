r"""Writes distillation data for configs/distill_draft.py by sampling the target.

SmolLM2-135M-Instruct answers GSM8K train questions (through its chat
template) and continues WikiText-2 test paragraphs' openings, sampled at
--temperature with flaxllm.decode_mode; each prompt + response becomes one
{'text': ...} document. Also saves the target's tokenizer, so the draft
shares it.

  .venv/bin/python experiments/make_distill_data.py --out=/tmp/flaxllm_distill \
      --prompts=2000 --max_new_tokens=128

Writes OUT/train.jsonl, OUT/eval.jsonl (the last --eval_fraction) and
OUT/tokenizer/.
"""

import json
import os
import sys

from absl import app
from absl import flags
import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flaxllm import decode_mode  # pylint: disable=g-import-not-at-top
from flaxllm.eval import gsm8k  # pylint: disable=g-import-not-at-top
from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

DATA = '/work/shared/data'
_OUT = flags.DEFINE_string('out', '/tmp/flaxllm_distill', 'Output folder.')
_PROMPTS = flags.DEFINE_integer('prompts', 256, 'Prompts (half GSM8K).')
_NEW = flags.DEFINE_integer('max_new_tokens', 96, 'Tokens per response.')
_TEMPERATURE = flags.DEFINE_float('temperature', 0.8, 'Sampling temperature.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Prompts per batch.')
_EVAL = flags.DEFINE_float('eval_fraction', 0.05, 'Share kept for eval.')


def prompts(count: int) -> list[tuple[str, str]]:
  """(text, template) pairs: GSM8K train questions, WikiText openings."""
  questions = gsm8k.load_examples(os.path.join(DATA, 'gsm8k', 'train.jsonl'))
  pairs = [(e['question'], 'tokenizer') for e in questions[: count // 2]]
  with open(os.path.join(DATA, 'wikitext2', 'raw', 'wiki.test.raw')) as f:
    for line in f:
      words = line.split()
      if len(words) >= 64 and not line.strip().startswith('='):
        pairs.append((' '.join(words[:24]), 'none'))
      if len(pairs) == count:
        break
  return pairs


def main(argv):
  del argv
  config = ml_collections.ConfigDict(
      {'init_from': f'gguf:{gguf.smollm2_path()}', 'model': {}}
  )
  target, tokenizer = decode_mode.load_target(config, '')
  settings = decode_mode.Settings(
      method='sample',
      temperature=_TEMPERATURE.value,
      max_new_tokens=_NEW.value,
      batch_size=_BATCH.value,
  )
  generator = decode_mode.Generator(settings, target, None, tokenizer)
  documents = []
  for template in ('tokenizer', 'none'):
    texts = [text for text, kind in prompts(_PROMPTS.value) if kind == template]
    if not texts:
      continue
    encoded = decode_mode.encode_prompts(
        tokenizer,
        texts,
        chat_template=template,
        add_bos=False,
        max_prompt_length=1024,
    )
    for prompt, result in zip(encoded, generator.generate(encoded)):
      documents.append(tokenizer.decode(prompt + result['tokens']))
  os.makedirs(_OUT.value, exist_ok=True)
  tokenizer.save(os.path.join(_OUT.value, 'tokenizer'))
  split = max(1, int(len(documents) * _EVAL.value))
  for name, part in (
      ('train', documents[:-split]),
      ('eval', documents[-split:]),
  ):
    decode_mode.write_jsonl_atomically(
        os.path.join(_OUT.value, f'{name}.jsonl'), [{'text': d} for d in part]
    )
  print(f'Wrote {len(documents)} documents and the tokenizer to {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
