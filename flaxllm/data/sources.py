"""Loading (source, target) text examples from a source spec string.

A spec names where examples come from:

  hpo:def2name:<split>        the embedded HPO, definition -> name
  hpo:name2syn:<split>        the embedded HPO, name -> exact synonym
  synthetic:<ability>:<split>:<count>   generated instruction data (math,
                              code or general; see flaxllm.data.synthetic_sft)
  mugglemath:<options>:<spec>  math items of <spec> grown by MuggleMath's
                              number changes and response augmentation
                              (flaxllm.recipes.mugglemath.load_source)
  pubmedqa:<path>:<split>     PubMedQA abstracts (ori_pqal.json or its
                              folder), split by a hash of the PMID, as
                              records with 'context' (the abstract without
                              its conclusion), 'conclusion' and 'title'
  jsonl:/path, x.jsonl/.json  one JSON object per line
  csv:/path, x.csv            a header row, then one record per row
  parquet:/path, x.parquet    one record per row
  disk:/path[:split]          a Hugging Face dataset saved with save_to_disk
  tfds:name:split[@data_dir]  a TFDS dataset prepared as array_record files

Every form yields `{'src': str, 'tgt': str}` dicts (plus 'id' and the record's
other scalar fields, e.g. a checker's 'answer' or 'test'). Records that cannot be used (bad JSON, missing or empty fields) are
reported with their file and line or row, then fail the load or are skipped,
as `on_bad_record` says. Nothing here reaches a network.
"""

import collections
import csv
import json
import os
import re
from typing import Any, Iterator

from absl import logging

from flaxllm.data import hpo
from flaxllm.errors import UserInputError

# Hugging Face libraries read these when first imported: keep them offline.
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

BAD_RECORD_POLICIES = ('fail', 'skip')
_REPORTED_LOCATIONS = 5  # Bad-record locations named in the skip warning.
_TFDS_SPEC = re.compile(
    r'^(?P<name>[^@]+?):(?P<split>[A-Za-z_]\w*(\[.*\])?)(@(?P<data_dir>.+))?$'
)

# (location, record): location reads like 'data/train.jsonl:17'; record is
# the parsed record, or a _ParseError when the line could not be parsed.
_LocatedRecord = tuple[str, Any]


class _ParseError(str):
  """The error message of a record that could not be parsed."""


def _require_file(path: str) -> None:
  if not os.path.isfile(path):
    raise UserInputError(f'data file not found: {path}; check the source spec')


def _read_jsonl(path: str) -> Iterator[_LocatedRecord]:
  """Yields the records of a JSON Lines file; blank lines are ignored."""
  _require_file(path)
  with open(path, 'rb') as jsonl_file:
    for line_number, raw_line in enumerate(jsonl_file, start=1):
      location = f'{path}:{line_number}'
      try:
        line = raw_line.decode('utf-8')
      except UnicodeDecodeError:
        yield location, _ParseError('line is not valid UTF-8')
        continue
      if not line.strip():
        continue
      try:
        yield location, json.loads(line)
      except json.JSONDecodeError as error:
        yield location, _ParseError(f'not valid JSON ({error.msg})')


def _check_columns(
    columns: list[str], fields: tuple[str, ...], where: str
) -> None:
  """Fails fast when a tabular source lacks a configured column."""
  for field in fields:
    if field not in columns:
      raise UserInputError(
          f'{where} has no column {field!r} (columns: {", ".join(columns)});'
          ' set data.source_field / data.target_field to the right columns'
      )


def _read_csv(path: str, fields: tuple[str, ...]) -> Iterator[_LocatedRecord]:
  """Yields the rows of a CSV file with a header row."""
  _require_file(path)
  with open(path, encoding='utf-8', newline='') as csv_file:
    reader = csv.DictReader(csv_file)
    _check_columns(list(reader.fieldnames or ()), fields, path)
    for row in reader:
      yield f'{path}:{reader.line_num}', row


def _read_parquet(
    path: str, fields: tuple[str, ...]
) -> Iterator[_LocatedRecord]:
  """Yields the rows of a Parquet file, located by row index."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top

  _require_file(path)
  parquet_file = pq.ParquetFile(path)
  _check_columns(parquet_file.schema_arrow.names, fields, path)
  row_index = 0
  for record_batch in parquet_file.iter_batches():
    for row in record_batch.to_pylist():
      yield f'{path} row {row_index}', row
      row_index += 1


def _read_disk(spec: str, fields: tuple[str, ...]) -> Iterator[_LocatedRecord]:
  """Yields the rows of a dataset saved with `save_to_disk`.

  Args:
    spec: '/path' or '/path:split' (the split picks from a DatasetDict).
    fields: the columns that must exist.
  """
  import datasets  # pylint: disable=g-import-not-at-top

  path, split = spec, None
  if not os.path.exists(path) and ':' in spec:
    path, split = spec.rsplit(':', 1)
  if not os.path.isdir(path):
    raise UserInputError(f'saved dataset not found: {path}; check the spec')
  try:
    dataset = datasets.load_from_disk(path)
  except FileNotFoundError as error:
    raise UserInputError(
        f'{path} is not a dataset saved with save_to_disk ({error})'
    ) from None
  if isinstance(dataset, datasets.DatasetDict):
    available = ', '.join(dataset)
    if split is None or split not in dataset:
      problem = 'names no split' if split is None else f'has no split {split!r}'
      raise UserInputError(
          f'disk:{spec} {problem}; the saved DatasetDict has: {available};'
          f' use disk:{path}:<split>'
      )
    dataset = dataset[split]
  elif split is not None:
    raise UserInputError(
        f'disk:{spec} names split {split!r} but {path} holds a single'
        f' Dataset; use disk:{path}'
    )
  _check_columns(dataset.column_names, fields, path)
  for row_index, row in enumerate(dataset):
    yield f'{spec} row {row_index}', row


def _read_tfds(spec: str) -> Iterator[_LocatedRecord]:
  """Yields the records of a TFDS dataset stored as array_record files.

  Args:
    spec: 'name:split' or 'name:split@data_dir'; the name may carry a config
      and version ('my_data/config:1.0.0').
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserInputError(
        f'tfds:{spec} needs TensorFlow Datasets; run'
        ' `pip install flaxllm[tfds]`'
    ) from None
  match = _TFDS_SPEC.match(spec)
  if not match:
    raise UserInputError(
        f'bad tfds spec tfds:{spec}; write tfds:name:split or'
        ' tfds:name:split@data_dir'
    )
  name, split, data_dir = match.group('name', 'split', 'data_dir')
  try:
    source = tfds.data_source(
        name, split=split, data_dir=data_dir, download=False, try_gcs=False
    )
  except Exception as error:  # pylint: disable=broad-exception-caught
    # TFDS raises DatasetNotFoundError, AssertionError or ValueError here.
    first_line = str(error).strip().splitlines()[0] if str(error) else ''
    raise UserInputError(
        f'cannot open tfds:{spec} ({type(error).__name__}: {first_line});'
        ' prepare it as array_record files under the data_dir first'
    ) from None
  for row_index in range(len(source)):
    record = source[row_index]
    if isinstance(record, dict):
      record = {
          key: value.decode('utf-8') if isinstance(value, bytes) else value
          for key, value in record.items()
      }
    yield f'tfds:{name}:{split} row {row_index}', record


def _read_hpo(spec: str) -> Iterator[_LocatedRecord]:
  """Yields the pairs of an embedded HPO dataset ('def2name:train', ...)."""
  builders = {'def2name': hpo.hpo_def2name, 'name2syn': hpo.hpo_name2syn}
  task, _, split = spec.partition(':')
  if task not in builders:
    raise UserInputError(
        f'unknown HPO dataset hpo:{spec}; use hpo:def2name:<split> or'
        ' hpo:name2syn:<split>'
    )
  for pair in builders[task](split):
    yield f'hpo:{task}:{split} {pair["id"]}', pair


def _read_synthetic(spec: str) -> Iterator[_LocatedRecord]:
  """Yields generated instruction examples ('math:train:2000', ...)."""
  from flaxllm.data import synthetic_sft  # pylint: disable=g-import-not-at-top

  parts = spec.split(':')
  if len(parts) != 3 or not parts[2].isdigit():
    raise UserInputError(
        f'synthetic:{spec} is not synthetic:<ability>:<split>:<count>, e.g.'
        ' synthetic:math:train:2000'
    )
  ability, split, count = parts[0], parts[1], int(parts[2])
  for index, example in enumerate(
      synthetic_sft.examples(ability, count, split)
  ):
    yield f'synthetic:{spec} #{index}', example


def _read_mugglemath(spec: str) -> Iterator[_LocatedRecord]:
  """Yields augmented math examples ('copies=4:/path/train.jsonl', ...)."""
  from flaxllm.recipes import mugglemath  # pylint: disable=g-import-not-at-top

  for example in mugglemath.load_source(spec):
    yield f'mugglemath:{spec} {example["id"]}', example


def _read_pubmedqa(spec: str) -> Iterator[_LocatedRecord]:
  """Yields PubMedQA summarization records ('/data/pubmedqa:train', ...)."""
  path, _, split = spec.rpartition(':')
  if not path or split not in hpo.SPLITS:
    raise UserInputError(
        f'pubmedqa:{spec} is not pubmedqa:<path>:<split> with a split in'
        f' {hpo.SPLITS}'
    )
  if os.path.isdir(path):
    path = os.path.join(path, 'ori_pqal.json')
  _require_file(path)
  with open(path, encoding='utf-8') as json_file:
    try:
      records = json.load(json_file)
    except json.JSONDecodeError as error:
      raise UserInputError(f'{path}: not valid JSON ({error})') from None
  if not isinstance(records, dict):
    raise UserInputError(f'{path}: expected a JSON object keyed by PMID')
  for pmid, record in records.items():
    if hpo.split_of(str(pmid)) != split:
      continue
    if not isinstance(record, dict):
      yield f'{path} PMID {pmid}', _ParseError('record is not an object')
      continue
    contexts = record.get('CONTEXTS')
    if isinstance(contexts, list):
      contexts = ' '.join(str(paragraph).strip() for paragraph in contexts)
    yield f'{path} PMID {pmid}', {
        'id': str(pmid),
        'context': contexts,
        'conclusion': record.get('LONG_ANSWER'),
        'title': record.get('QUESTION'),
    }


def _read_records(
    spec: str, fields: tuple[str, ...]
) -> Iterator[_LocatedRecord]:
  """Dispatches a spec to the reader of its form."""
  kind, separator, rest = spec.partition(':')
  if separator and kind == 'hpo':
    return _read_hpo(rest)
  if separator and kind == 'synthetic':
    return _read_synthetic(rest)
  if separator and kind == 'mugglemath':
    return _read_mugglemath(rest)
  if separator and kind == 'pubmedqa':
    return _read_pubmedqa(rest)
  if separator and kind == 'jsonl':
    return _read_jsonl(rest)
  if separator and kind == 'csv':
    return _read_csv(rest, fields)
  if separator and kind == 'parquet':
    return _read_parquet(rest, fields)
  if separator and kind == 'disk':
    return _read_disk(rest, fields)
  if separator and kind == 'tfds':
    return _read_tfds(rest)
  extension = os.path.splitext(spec)[1].lower()
  if extension in ('.jsonl', '.json'):
    return _read_jsonl(spec)
  if extension == '.csv':
    return _read_csv(spec, fields)
  if extension == '.parquet':
    return _read_parquet(spec, fields)
  raise UserInputError(
      f'unknown data source {spec!r}; use hpo:, synthetic:, jsonl:, csv:,'
      ' parquet:, disk: or tfds:, or a path ending in .jsonl, .json, .csv or'
      ' .parquet'
  )


def _to_example(
    record: Any, source_field: str, target_field: str
) -> dict | str:
  """Validates one record.

  Args:
    record: a parsed record, or the _ParseError of one that did not parse.
    source_field: the field holding the source text.
    target_field: the field holding the target text.

  Returns:
    The example {'src', 'tgt'[, 'id']}, or a message saying what is wrong.
  """
  if isinstance(record, _ParseError):
    return str(record)
  if not isinstance(record, dict):
    return f'record is a {type(record).__name__}, not an object'
  example = {}
  for field, role, key in (
      (source_field, 'source', 'src'),
      (target_field, 'target', 'tgt'),
  ):
    value = record.get(field)
    if value is None:
      return f'missing {role} field {field!r}'
    if not isinstance(value, str):
      return f'{role} field {field!r} is a {type(value).__name__}, not text'
    if not value.strip():
      return f'empty {role} field {field!r}'
    example[key] = value
  if record.get('id') is not None:
    example['id'] = record['id']
  for key, value in record.items():  # what checkers and outputs may need
    if key not in example and key not in (source_field, target_field):
      if isinstance(value, (str, int, float, bool)):
        example[key] = value
  return example


def load_examples(
    spec: str,
    *,
    source_field: str = 'src',
    target_field: str = 'tgt',
    on_bad_record: str = 'fail',
) -> list[dict]:
  """Loads (source, target) examples from a source spec.

  Args:
    spec: where the data is; see the module docstring for the forms.
    source_field: the record field holding the source text.
    target_field: the record field holding the target text.
    on_bad_record: 'fail' raises on the first bad record; 'skip' drops bad
      records and logs one warning with their count and first locations.

  Returns:
    A list of {'src': str, 'tgt': str} dicts, with 'id' when the record has
    one, in the source's order.

  Raises:
    UserInputError: an unknown spec or policy, a missing file, a bad record
      under 'fail', or no usable record at all.
  """
  if on_bad_record not in BAD_RECORD_POLICIES:
    raise UserInputError(
        f'data.on_bad_record={on_bad_record!r} is not a policy; use'
        " 'fail' or 'skip'"
    )
  fields = (source_field, target_field)
  examples = []
  bad_locations = []
  bad_reasons = collections.Counter()
  for location, record in _read_records(spec, fields):
    example = _to_example(record, source_field, target_field)
    if isinstance(example, dict):
      examples.append(example)
      continue
    if on_bad_record == 'fail':
      raise UserInputError(
          f'{location}: {example}; fix the record or set'
          " data.on_bad_record='skip'"
      )
    bad_locations.append(location)
    bad_reasons[example] += 1
  if bad_locations:
    logging.warning(
        'Skipped %d bad records of %s (first: %s; most common problem: %s).',
        len(bad_locations),
        spec,
        ', '.join(bad_locations[:_REPORTED_LOCATIONS]),
        bad_reasons.most_common(1)[0][0],
    )
  if not examples:
    raise UserInputError(
        f'{spec} has no usable record ({len(bad_locations)} bad); check the'
        ' file and data.source_field / data.target_field'
    )
  return examples
