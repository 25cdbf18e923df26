"""Seq2seq data bundle: sources -> tokenizer -> tokenized splits -> batches.

`Seq2SeqData.from_config` reads `config.data` and `config.tokenizer`, loads the
train/eval/test splits, trains (or loads) the tokenizer, tokenizes every split
once, and hands out the trainer's iterators. Every problem with the data is
raised here, before the run writes anything but the tokenizer.
"""

import dataclasses
from collections.abc import Iterator

import ml_collections
import numpy as np

from flaxllm.data import collators
from flaxllm.data import iterator as iterator_lib
from flaxllm.data import sources
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError

SPLITS = ('train', 'eval', 'test')


@dataclasses.dataclass
class Seq2SeqData:
  """Tokenized splits of a (source, target) dataset and their batchers."""

  tokenizer: tokenizer_lib.Tokenizer
  collator: collators.Seq2SeqCollator
  splits: dict[str, list[dict]]  # split -> examples with src/tgt and their ids
  bucket_boundaries: tuple[int, ...]

  @classmethod
  def from_config(
      cls,
      config: ml_collections.ConfigDict,
      workdir: str | None,
      *,
      save_tokenizer: bool = True,
  ) -> 'Seq2SeqData':
    """Loads, tokenizes and checks every configured split.

    Args:
      config: the run config (data and tokenizer sections are read).
      workdir: where a trained tokenizer is saved and looked for.
      save_tokenizer: False on processes other than 0 of a multi-process run.

    Returns:
      The data bundle.
    """
    data = config.data
    raw = {
        split: sources.load_examples(
            data[split],
            source_field=data.source_field,
            target_field=data.target_field,
            on_bad_record=data.on_bad_record,
        )
        for split in SPLITS
        if data[split]
    }
    if 'train' not in raw:
      raise UserInputError('data.train is empty; name a training source')

    def training_text():
      for example in raw['train']:
        yield example['src']
        yield example['tgt']

    tokenizer = tokenizer_lib.run_tokenizer(
        config, training_text, workdir if save_tokenizer else None
    )
    collator = collators.Seq2SeqCollator(
        max_source_length=data.max_source_length,
        max_target_length=data.max_target_length,
        pad_id=tokenizer.pad_id,
        eos_id=tokenizer.eos_id,
        decoder_start_id=tokenizer.eos_id,
        overlong=data.overlong,
    )
    splits = {}
    for split, examples in raw.items():
      tokenized = collators.tokenize_pairs(examples, tokenizer)
      if data.overlong == 'error':  # fail now, not when the batch comes up
        for index, example in enumerate(tokenized):
          collator.check_length(example, index)
      splits[split] = tokenized
    return cls(tokenizer, collator, splits, tuple(data.bucket_boundaries))

  def examples(self, split: str, max_examples: int = 0) -> list[dict]:
    examples = self.splits[split]
    return examples[:max_examples] if max_examples else examples

  def train_iterator(
      self,
      *,
      global_batch_size: int,
      seed: int,
      process_index: int,
      process_count: int,
  ) -> iterator_lib.BatchIterator:
    """Infinite, shuffled, resumable batches of the train split."""
    return iterator_lib.BatchIterator(
        self.splits['train'],
        global_batch_size=global_batch_size,
        collate=self.collator,
        seed=seed,
        shuffle=True,
        process_index=process_index,
        process_count=process_count,
        bucket_boundaries=self.bucket_boundaries or None,
        length_fn=self.collator.lengths,
    )

  def eval_batches(
      self,
      split: str,
      *,
      global_batch_size: int,
      process_index: int,
      process_count: int,
      max_examples: int = 0,
  ) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over a split; the ragged last batch is padded."""
    return iterator_lib.eval_batches(
        self.examples(split, max_examples),
        global_batch_size=global_batch_size,
        collate=self.collator,
        process_index=process_index,
        process_count=process_count,
    )
