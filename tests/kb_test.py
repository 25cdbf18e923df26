"""Tests for the entity-linking knowledge bases: loaders, names, sub-KBs."""

import gzip
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from flaxllm.data import kb as kb_lib
from flaxllm.errors import UserInputError

SHARED_MEDIC = '/work/shared/data/ncbi_disease/medic/CTD_diseases.tsv.gz'

_OBO = r"""format-version: 1.2

[Term]
id: TOY:0000001
name: All

[Term]
id: TOY:0000002
name: Abnormality of the Heart
alt_id: TOY:0000020
def: "A structural anomaly of the heart." []
synonym: "Cardiac anomaly" EXACT []
synonym: "heart abnormality" EXACT layperson []
synonym: "Heart trouble" RELATED []
synonym: "Old heart name" EXACT obsolete_synonym []
is_a: TOY:0000001 ! All

[Term]
id: TOY:0000003
name: Atrial septal defect
synonym: "ASD" EXACT abbreviation []
is_a: TOY:0000002

[Term]
id: TOY:0000004
name: Kidney cyst
is_a: TOY:0000001

[Term]
id: TOY:0000005
name: Gone
is_obsolete: true
"""

_CTD_ROWS = [
    '# Comparative Toxicogenomics Database, a toy header',
    '# Fields:',
    (
        '# DiseaseName\tDiseaseID\tAltDiseaseIDs\tDefinition\tParentIDs\t'
        'TreeNumbers\tParentTreeNumbers\tSynonyms\tSlimMappings'
    ),
    '#',
    (
        'Neoplasms\tMESH:D009369\t\tNew abnormal growth.\t\tC04\t\t'
        'Tumors|Neoplasia|Tumor\tCancer'
    ),
    (
        'Breast Neoplasms\tMESH:D001943\tOMIM:114480|DO:DOID:1612\t\t'
        'MESH:D009369\tC04.588.180|C17.800.090\tC04.588\t'
        'Breast Cancer|Breast Tumors\tCancer|Skin disease'
    ),
    'Gardner Syndrome\tMESH:D005736\t\t\tMESH:D001943\tC04.5\t\t\t',
    'Short Row\tOMIM:999999',
]


def _conso(cui, language, aui, source, text, preferred=False):
  """One MRCONSO.RRF row (18 fields and the trailing bar)."""
  status = ('P', 'PF', 'Y') if preferred else ('S', 'VO', 'N')
  term_status, string_type, is_preferred = status
  head = [cui, language, term_status, 'L1', string_type, 'S1', is_preferred]
  tail = [source, 'PT', 'X', text, '0', 'N', '']
  fields = head + [aui, '', '', ''] + tail
  return '|'.join(fields) + '|'


_MRCONSO = [
    _conso('C0000001', 'ENG', 'A01', 'MSH', 'heart attack'),
    _conso(
        'C0000001',
        'ENG',
        'A02',
        'SNOMEDCT_US',
        'Myocardial infarction',
        preferred=True,
    ),
    _conso('C0000001', 'FRE', 'A03', 'MSHFRE', 'infarctus du myocarde'),
    _conso('C0000001', 'ENG', 'A04', 'MSH', 'heart attack'),
    _conso('C0000002', 'ENG', 'A05', 'LNC', 'Lab panel'),
    _conso('C0000003', 'ENG', 'A06', 'MSH', 'Fever'),
    _conso('C0000004', 'ENG', 'A07', 'MSH', 'Aspirin'),
    _conso('C0000005', 'SPA', 'A08', 'MSH', 'gripe'),
]
_MRDEF = [
    'C0000001|A01|AT1||MSH|Necrosis of the myocardium.|N||',
    'C0000001|A03|AT2||MSHFRE|Nécrose du myocarde.|N||',
    'C0000003|A06|AT3||MSH|Raised body temperature.|N||',
]
_MRSTY = [
    'C0000001|T047|B2.2.1.2.1|Disease or Syndrome|AT9|256|',
    'C0000002|T059|B1.3.1.1|Laboratory Procedure|AT8|256|',
    'C0000003|T184|A2.2.2|Sign or Symptom|AT7|256|',
    'C0000004|T121|A1.4.1.1.1|Pharmacologic Substance|AT6|256|',
    'C0000009|T038|B2.2.1|Biologic Function|AT5|256|',
]


class KbTest(parameterized.TestCase):

  def _write(self, name: str, lines, gzipped: bool = False) -> str:
    directory = self.enterContext(tempfile.TemporaryDirectory())
    path = os.path.join(directory, name)
    text = '\n'.join(lines) + '\n' if isinstance(lines, list) else lines
    opener = gzip.open if gzipped else open
    with opener(path, 'wt', encoding='utf-8') as f:
      f.write(text)
    return path

  def _umls_dir(self, with_sty: bool = True) -> str:
    directory = self.enterContext(tempfile.TemporaryDirectory())
    files = {'MRCONSO.RRF': _MRCONSO, 'MRDEF.RRF': _MRDEF}
    if with_sty:
      files['MRSTY.RRF'] = _MRSTY
    for name, lines in files.items():
      with open(os.path.join(directory, name), 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
    return directory

  @parameterized.parameters(
      ('Breast-Cancer (BRCA1), type  2!', 'breast cancer brca1 type 2'),
      ("Alzheimer's disease", 'alzheimer s disease'),
      ('  10p Deletion Syndrome (Partial) ', '10p deletion syndrome partial'),
      ('a/b<c>d=e%f`g"h', 'a b c d e f g h'),
      ('CO2 {x}[y]; z?', 'co2 x y z'),
  )
  def test_normalize_name_matches_genbioel_conv(self, raw, expected):
    self.assertEqual(kb_lib.normalize_name(raw), expected)

  def test_names_are_normalized_and_deduplicated_per_concept(self):
    kb = kb_lib.KnowledgeBase([
        kb_lib.KbConcept('X:1', 'Cancer', ('cancer.', 'CANCER', 'Tumour', '')),
        kb_lib.KbConcept('X:2', 'Tumour'),
    ])
    self.assertEqual(kb.names('X:1'), ('cancer', 'tumour'))
    self.assertEqual(
        kb.name_to_ids(), {'cancer': ('X:1',), 'tumour': ('X:1', 'X:2')}
    )
    self.assertEqual(kb.num_names(), 3)

  def test_repeated_concept_id_raises(self):
    with self.assertRaisesRegex(UserInputError, 'X:1.*twice'):
      kb_lib.KnowledgeBase(
          [kb_lib.KbConcept('X:1', 'a'), kb_lib.KbConcept('X:1', 'b')]
      )

  def test_obo_loader_reads_exact_synonyms_definitions_parents(self):
    kb = kb_lib.load_obo(self._write('toy.obo', _OBO))
    self.assertEqual(kb.ids(), [f'TOY:000000{i}' for i in range(1, 5)])
    heart = kb['TOY:0000002']
    self.assertEqual(heart.synonyms, ('Cardiac anomaly', 'heart abnormality'))
    self.assertEqual(heart.definitions, ('A structural anomaly of the heart.',))
    self.assertEqual(heart.parents, ('TOY:0000001',))
    self.assertEqual(kb.resolve('TOY:0000020'), ('TOY:0000002',))
    self.assertEqual(
        kb.names('TOY:0000002'),
        ('abnormality of the heart', 'cardiac anomaly', 'heart abnormality'),
    )

  def test_obo_loader_takes_other_scopes_on_request(self):
    kb = kb_lib.load_obo(
        self._write('toy.obo', _OBO), synonym_scopes=('EXACT', 'RELATED')
    )
    self.assertIn('Heart trouble', kb['TOY:0000002'].synonyms)
    self.assertNotIn('Old heart name', kb['TOY:0000002'].synonyms)

  def test_branch_selects_the_descendants_of_a_root(self):
    kb = kb_lib.load_obo(self._write('toy.obo', _OBO))
    self.assertEqual(
        kb.branch('TOY:0000002').ids(), ['TOY:0000002', 'TOY:0000003']
    )
    self.assertLen(kb.branch('TOY:0000001'), 4)
    # An alternative id names the same branch.
    self.assertLen(kb.branch('TOY:0000020'), 2)
    with self.assertRaisesRegex(UserInputError, 'TOY:9'):
      kb.branch('TOY:9')

  @parameterized.parameters(False, True)
  def test_ctd_loader_reads_every_column(self, gzipped):
    kb = kb_lib.load_ctd_tsv(
        self._write('ctd.tsv.gz' if gzipped else 'ctd.tsv', _CTD_ROWS, gzipped)
    )
    self.assertEqual(
        kb.ids(),
        ['MESH:D009369', 'MESH:D001943', 'MESH:D005736', 'OMIM:999999'],
    )
    breast = kb['MESH:D001943']
    self.assertEqual(breast.name, 'Breast Neoplasms')
    self.assertEqual(breast.synonyms, ('Breast Cancer', 'Breast Tumors'))
    self.assertEqual(breast.alt_ids, ('OMIM:114480', 'DO:DOID:1612'))
    self.assertEqual(breast.parents, ('MESH:D009369',))
    self.assertEqual(breast.tree_numbers, ('C04.588.180', 'C17.800.090'))
    self.assertEqual(breast.semantic_types, ('Cancer', 'Skin disease'))
    self.assertEqual(kb['MESH:D009369'].definitions, ('New abnormal growth.',))
    self.assertEqual(kb['MESH:D005736'].definitions, ())
    self.assertEqual(kb.resolve('OMIM:114480'), ('MESH:D001943',))
    self.assertEqual(kb.resolve('OMIM:000000'), ())

  def test_tree_prefix_selection_respects_segment_boundaries(self):
    kb = kb_lib.load_ctd_tsv(self._write('ctd.tsv', _CTD_ROWS))
    self.assertEqual(
        kb.with_tree_prefix('C04').ids(),
        ['MESH:D009369', 'MESH:D001943', 'MESH:D005736'],
    )
    self.assertEqual(kb.with_tree_prefix('C04.588').ids(), ['MESH:D001943'])
    # 'C04.5' is a whole segment: it does not match 'C04.588.180'.
    self.assertEqual(kb.with_tree_prefix('C04.5').ids(), ['MESH:D005736'])
    self.assertEqual(kb.with_tree_prefix('C17').ids(), ['MESH:D001943'])

  def test_subset_complement_and_semantic_types(self):
    kb = kb_lib.load_ctd_tsv(self._write('ctd.tsv', _CTD_ROWS))
    subset = kb.subset(['OMIM:114480', 'MESH:D005736', 'MESH:NOPE'])
    self.assertEqual(subset.ids(), ['MESH:D001943', 'MESH:D005736'])
    self.assertEqual(
        kb.complement(['OMIM:114480']).ids(),
        ['MESH:D009369', 'MESH:D005736', 'OMIM:999999'],
    )
    self.assertEqual(
        kb.with_semantic_types(['Skin disease']).ids(), ['MESH:D001943']
    )

  def test_ctd_row_without_id_names_file_and_line(self):
    path = self._write('bad.tsv', ['# header', 'Lonely name'])
    with self.assertRaisesRegex(UserInputError, r'bad\.tsv:2:'):
      kb_lib.load_ctd_tsv(path)

  def test_missing_file_raises_user_input_error(self):
    with self.assertRaisesRegex(UserInputError, 'not found'):
      kb_lib.load_ctd_tsv('/nonexistent/ctd.tsv')

  def test_id_name_dictionary_gives_composite_ids_every_name(self):
    path = self._write(
        'dict.txt',
        [
            'D001||first name',
            'D001|OMIM:123||shared name',
            '',
            'D002+D003||joint name',
            'D001||first name',
        ],
    )
    kb = kb_lib.load_id_name_dictionary(path)
    self.assertEqual(kb.ids(), ['D001', 'OMIM:123', 'D002', 'D003'])
    self.assertEqual(kb['D001'].name, 'first name')
    self.assertEqual(kb['D001'].synonyms, ('shared name',))
    self.assertEqual(kb['OMIM:123'].name, 'shared name')
    self.assertEqual(kb['D003'].name, 'joint name')

  def test_id_name_dictionary_bad_line_names_file_and_line(self):
    path = self._write('dict.txt', ['D001||ok', 'D002 missing bars'])
    with self.assertRaisesRegex(UserInputError, r'dict\.txt:2:.*id\|\|name'):
      kb_lib.load_id_name_dictionary(path)

  def test_merged_adds_names_through_primary_and_alternative_ids(self):
    medic = kb_lib.load_ctd_tsv(self._write('ctd.tsv', _CTD_ROWS))
    dictionary = kb_lib.KnowledgeBase([
        kb_lib.KbConcept('MESH:D009369', 'cancers'),
        kb_lib.KbConcept('OMIM:114480', 'hereditary breast cancer'),
        kb_lib.KbConcept('MESH:D000001', 'new disease'),
    ])
    merged = medic.merged(dictionary)
    self.assertEqual(merged.ids()[-1], 'MESH:D000001')
    self.assertLen(merged, len(medic) + 1)
    self.assertIn('cancers', merged.names('MESH:D009369'))
    self.assertIn('hereditary breast cancer', merged.names('MESH:D001943'))
    self.assertEqual(merged['MESH:D001943'].name, 'Breast Neoplasms')

  def test_without_names_keeps_the_preferred_name(self):
    kb = kb_lib.load_ctd_tsv(self._write('ctd.tsv', _CTD_ROWS))
    reduced = kb.without_names(
        {'MESH:D009369': ['TUMORS', 'neoplasms'], 'MESH:D001943': ['x']}
    )
    self.assertEqual(
        reduced.names('MESH:D009369'), ('neoplasms', 'neoplasia', 'tumor')
    )
    self.assertEqual(reduced.names('MESH:D001943'), kb.names('MESH:D001943'))

  def test_umls_loader_keeps_english_names_and_definitions(self):
    kb = kb_lib.load_umls_rrf(self._umls_dir())
    self.assertEqual(kb.ids(), ['C0000001', 'C0000002', 'C0000003', 'C0000004'])
    infarction = kb['C0000001']
    self.assertEqual(infarction.name, 'Myocardial infarction')
    self.assertEqual(infarction.synonyms, ('heart attack',))
    # The definition attached to the French atom A03 is dropped.
    self.assertEqual(infarction.definitions, ('Necrosis of the myocardium.',))
    self.assertEqual(infarction.semantic_types, ('T047',))
    self.assertEqual(kb['C0000003'].name, 'Fever')  # No preferred atom.

  def test_umls_loader_applies_st21pv_sources_and_type_descendants(self):
    kb = kb_lib.load_umls_rrf(
        self._umls_dir(),
        sources=kb_lib.ST21PV_SOURCES,
        semantic_types=kb_lib.ST21PV_SEMANTIC_TYPES,
    )
    # C2 only has an LNC atom; C3 (T184) and C4 (T121) are outside ST21pv;
    # C1's T047 lies below T038 (Biologic Function) in the type tree.
    self.assertEqual(kb.ids(), ['C0000001'])
    exact = kb_lib.load_umls_rrf(self._umls_dir()).with_semantic_types(
        ['T038'], include_descendants=False
    )
    self.assertEmpty(exact)

  def test_umls_type_filter_without_mrsty_raises(self):
    with self.assertRaisesRegex(UserInputError, 'MRSTY'):
      kb_lib.load_umls_rrf(
          self._umls_dir(with_sty=False), semantic_types=['T047']
      )

  def test_umls_short_row_names_file_and_line(self):
    directory = self._umls_dir()
    with open(os.path.join(directory, 'MRSTY.RRF'), 'a') as f:
      f.write('C0000001|T047\n')
    with self.assertRaisesRegex(UserInputError, r'MRSTY\.RRF:6:'):
      kb_lib.load_umls_rrf(directory)

  def test_shared_medic_parses_with_its_documented_counts(self):
    if not os.path.isfile(SHARED_MEDIC):
      self.skipTest(f'{SHARED_MEDIC} is absent (shared data not mounted)')
    medic = kb_lib.load_ctd_tsv(SHARED_MEDIC)
    # SOURCE.md: 11,865 concepts, 66,129 synonyms.
    self.assertLen(medic, 11_865)
    self.assertEqual(sum(len(c.synonyms) for c in medic.concepts()), 66_129)
    self.assertEqual(medic['MESH:D003110'].name, 'Colonic Neoplasms')
    self.assertGreater(len(medic.with_tree_prefix('C04')), 1_000)


if __name__ == '__main__':
  absltest.main()
