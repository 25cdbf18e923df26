r"""Throughput of the BART denoising collator on embedded HPO definitions.

Noises and pads `--num_documents` HPO definitions (byte-level BPE trained on
them) in batches of `--batch_size`, once per noise preset, and prints
documents/s and target tokens/s on one CPU core (the collator is plain numpy
and runs in the input pipeline, off the accelerator).

  python experiments/bench_denoise_collator.py --num_documents=4000
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from experiments import bench_common
from flaxllm.data import denoise
from flaxllm.data import documents
from flaxllm.data import tokenizer as tokenizer_lib

# pylint: enable=g-import-not-at-top,wrong-import-position

_NUM_DOCUMENTS = flags.DEFINE_integer(
    'num_documents', 4000, 'HPO definitions to noise.'
)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Documents per batch.')
_MAX_LENGTH = flags.DEFINE_integer(
    'max_length', 128, 'max_source_length = max_target_length.'
)
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed passes (median kept).')
_VOCAB_SIZE = flags.DEFINE_integer('vocab_size', 4000, 'BPE vocabulary size.')
RESULTS = os.path.join(
    os.path.dirname(__file__), 'results', 'bench_denoise_collator.md'
)


def main(argv):
  del argv
  docs = documents.hpo_definitions('train')[: _NUM_DOCUMENTS.value]
  tokenizer = tokenizer_lib.train_bpe(
      (d['text'] for d in docs), _VOCAB_SIZE.value
  )
  token_ids = tokenizer.encode_batch([d['text'] for d in docs])
  examples = [{'text_ids': ids, 'index': i} for i, ids in enumerate(token_ids)]
  word_starts = denoise.word_start_table(tokenizer)
  stop = documents.full_stop_id(tokenizer)
  batch_size = _BATCH_SIZE.value
  lines = [
      '| preset | documents/s | target tokens/s | ms/batch |',
      '| --- | --- | --- | --- |',
  ]
  for name in denoise.PRESETS:
    collator = denoise.DenoisingCollator(
        denoise.preset(name),
        max_source_length=_MAX_LENGTH.value,
        max_target_length=_MAX_LENGTH.value,
        vocab_size=tokenizer.vocab_size,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        mask_id=tokenizer.mask_id,
        special_ids=(tokenizer.unk_id,),
        is_word_start=word_starts,
        full_stop_id=stop,
    )
    tokens = 0

    def one_pass(batches, collator=collator):
      nonlocal tokens
      tokens = 0
      for start in range(0, batches * batch_size, batch_size):
        batch = collator(examples[start : start + batch_size], epoch=1)
        tokens += int(batch['target_mask'].sum())

    num_batches = len(examples) // batch_size
    seconds = bench_common.median_step_seconds(
        one_pass, num_batches, _REPEATS.value
    )
    lines.append(
        f'| {name} | {batch_size / seconds:,.0f} |'
        f' {tokens / num_batches / seconds:,.0f} | {1000 * seconds:.2f} |'
    )
  header = (
      f'Denoising collator, {len(examples)} HPO definitions, batch'
      f' {batch_size}, max length {_MAX_LENGTH.value}, one CPU core'
  )
  bench_common.record(RESULTS, header, '\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
