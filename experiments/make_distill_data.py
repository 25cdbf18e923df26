r"""Writes distillation data for configs/distill_draft.py by sampling the target.

SmolLM2-135M-Instruct answers GSM8K train questions (through its chat
template) and continues WikiText-2 test paragraphs' openings, sampled at
--temperature with flaxllm.decode_mode; each prompt + response becomes one
{'text': ...} document. Also saves the target's tokenizer, so the draft
shares it.

  .venv/bin/python experiments/make_distill_data.py --out=/tmp/flaxllm_distill \
      --prompts=2000 --max_new_tokens=128

With --source=corpus no sampling happens (minutes instead of hours on a
CPU): the documents are GSM8K train questions with their reference solutions
(calculator annotations <<...>> removed) through the chat template, and
WikiText-2 test paragraphs after the first --skip_paragraphs long ones (the
evaluation prompts of experiments/scd_eval.py come from those):

  .venv/bin/python experiments/make_distill_data.py --source=corpus \
      --out=/tmp/flaxllm_distill --prompts=8000

Writes OUT/train.jsonl, OUT/eval.jsonl (the last --eval_fraction) and
OUT/tokenizer/.
"""

import os
import random
import re
import sys
from typing import Iterator

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
_SOURCE = flags.DEFINE_enum(
    'source', 'target', ['target', 'corpus'],
    "'target': sample the target; 'corpus': reference text, no sampling.",
)
_SKIP = flags.DEFINE_integer(
    'skip_paragraphs', 200, 'Long WikiText paragraphs held out (both sources).'
)


def training_paragraphs(skip_paragraphs: int, data: str) -> Iterator[list[str]]:
  """Words of the long WikiText-2 test paragraphs after the held-out ones.

  Long means 64 words or more, headings excluded. The first `skip_paragraphs`
  of them hold experiments/scd_eval.py's prompts and are never yielded.
  """
  long_seen = 0
  with open(os.path.join(data, 'wikitext2', 'raw', 'wiki.test.raw')) as f:
    for line in f:
      words = line.split()
      if len(words) < 64 or line.strip().startswith('='):
        continue
      long_seen += 1
      if long_seen > skip_paragraphs:
        yield words


def prompts(
    count: int, skip_paragraphs: int, data: str = DATA
) -> list[tuple[str, str]]:
  """(text, template) pairs: GSM8K train questions, WikiText openings.

  The openings come from the long WikiText-2 test paragraphs after the first
  `skip_paragraphs`, as in `corpus_documents`, so the draft never sees the
  paragraphs experiments/scd_eval.py evaluates on.
  """
  questions = gsm8k.load_examples(os.path.join(data, 'gsm8k', 'train.jsonl'))
  pairs = [(e['question'], 'tokenizer') for e in questions[: count // 2]]
  for words in training_paragraphs(skip_paragraphs, data):
    if len(pairs) >= count:
      break
    pairs.append((' '.join(words[:24]), 'none'))
  return pairs


def corpus_documents(
    tokenizer, count: int, skip_paragraphs: int, data: str = DATA
) -> list[str]:
  """GSM8K train solutions (chat template) and WikiText paragraphs.

  Args:
    tokenizer: the target's (its chat template renders the questions).
    count: documents wanted: up to count // 2 GSM8K ones, then WikiText.
    skip_paragraphs: the first long WikiText paragraphs left out (they hold
      experiments/scd_eval.py's prompts).
    data: the shared data folder.

  Returns:
    The documents, shuffled with a fixed seed.
  """
  questions = gsm8k.load_examples(os.path.join(data, 'gsm8k', 'train.jsonl'))
  documents = []
  for example in questions[: count // 2]:
    solution = re.sub(r'<<[^>]*>>', '', example['answer'])
    prompt = decode_mode.render(tokenizer, example['question'], 'tokenizer')
    documents.append(f'{prompt}{solution}<|im_end|>')
  for words in training_paragraphs(skip_paragraphs, data):
    if len(documents) >= count:
      break
    documents.append(' '.join(words))
  random.Random(0).shuffle(documents)
  return documents


def main(argv):
  del argv
  config = ml_collections.ConfigDict(
      {'init_from': f'gguf:{gguf.smollm2_path()}', 'model': {}}
  )
  target, tokenizer = decode_mode.load_target(config, '')
  if _SOURCE.value == 'corpus':
    documents = corpus_documents(tokenizer, _PROMPTS.value, _SKIP.value)
  else:
    documents = sample_documents(target, tokenizer)
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


def sample_documents(target, tokenizer) -> list[str]:
  """Prompt + the target's sampled response, one document per prompt."""
  settings = decode_mode.Settings(
      method='sample',
      temperature=_TEMPERATURE.value,
      max_new_tokens=_NEW.value,
      batch_size=_BATCH.value,
  )
  generator = decode_mode.Generator(settings, target, None, tokenizer)
  documents = []
  for template in ('tokenizer', 'none'):
    pairs = prompts(_PROMPTS.value, _SKIP.value)
    texts = [text for text, kind in pairs if kind == template]
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
  return documents


if __name__ == '__main__':
  app.run(main)
