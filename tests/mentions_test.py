"""Tests for the mention readers (PubTator, CoNLL) and the HPO mention set."""

import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

from flaxllm.data import hpo
from flaxllm.data import kb as kb_lib
from flaxllm.data import mentions
from flaxllm.errors import UserInputError

SHARED_NCBI = '/work/shared/data/ncbi_disease'

_TITLE = 'Breast and ovarian cancers in BRCA1 carriers.'
_ABSTRACT = (
    'Colon cancer &amp; X-linked immunodeficiency disease are rare. '
    'Type 2 diabetes is not.'
)


def _annotation(pmid, text, phrase, kind, ids, padding=''):
  """A PubTator mention line for the first `phrase` in `text`."""
  start = text.index(phrase)
  end = start + len(phrase)
  return f'{pmid}\t{start}\t{end}\t{phrase}{padding}\t{kind}\t{ids}'


def _pubtator_lines():
  text = f'{_TITLE} {_ABSTRACT}'
  document = [
      f'100|t|{_TITLE}',
      f'100|a|{_ABSTRACT}',
      _annotation(
          100,
          text,
          'Breast and ovarian cancers',
          'CompositeMention',
          'D001943|D010051',
      ),
      _annotation(100, text, 'Colon cancer', 'SpecificDisease', 'D003110'),
      _annotation(
          100,
          text,
          'X-linked immunodeficiency disease',
          'DiseaseClass',
          'D007153+OMIM:300300',
      ),
      _annotation(
          100, text, 'Type 2 diabetes', 'SpecificDisease', 'C537666', '  '
      ),
  ]
  second = ['200|t|Nothing here.', '200|a|', '']
  return document + [''] + second + document + ['']


class MentionsTest(parameterized.TestCase):

  def _write(self, name, lines):
    directory = self.enterContext(tempfile.TemporaryDirectory())
    path = os.path.join(directory, name)
    with open(path, 'w', encoding='utf-8') as f:
      f.write('\n'.join(lines) + '\n')
    return path

  @parameterized.parameters(
      ('D003110', 'MESH:D003110'),
      ('C537666', 'MESH:C537666'),
      ('MESH:D003110', 'MESH:D003110'),
      ('OMIM:613825', 'OMIM:613825'),
      (' D000001 ', 'MESH:D000001'),
  )
  def test_canonical_concept_id(self, raw, expected):
    self.assertEqual(mentions.canonical_concept_id(raw), expected)

  def test_pubtator_reads_documents_mentions_and_id_forms(self):
    documents = mentions.parse_pubtator(
        self._write('corpus.txt', _pubtator_lines())
    )
    self.assertEqual([d.doc_id for d in documents], ['100', '200', '100#2'])
    first = documents[0]
    self.assertEqual(first.text, f'{_TITLE} {_ABSTRACT}')
    self.assertEqual(
        [m.concept_ids for m in first.mentions],
        [
            ('MESH:D001943', 'MESH:D010051'),
            ('MESH:D003110',),
            ('MESH:D007153', 'OMIM:300300'),
            ('MESH:C537666',),
        ],
    )
    self.assertEqual(
        [m.composite for m in first.mentions], [True, False, True, False]
    )
    self.assertEqual(first.mentions[0].type, 'CompositeMention')
    # The padded mention text is read from the offsets.
    self.assertEqual(first.mentions[3].text, 'Type 2 diabetes')
    self.assertEmpty(documents[1].mentions)

  def test_pubtator_offset_mismatch_names_file_and_line(self):
    lines = _pubtator_lines()
    lines[3] = lines[3].replace('Colon cancer', 'Colon tumour')
    path = self._write('corpus.txt', lines)
    with self.assertRaisesRegex(UserInputError, r'corpus\.txt:4: offsets'):
      mentions.parse_pubtator(path)

  def test_pubtator_malformed_line_names_file_and_line(self):
    path = self._write('corpus.txt', ['1|t|Title', '1|a|Text', '1\t0\t2'])
    with self.assertRaisesRegex(UserInputError, r'corpus\.txt:3:'):
      mentions.parse_pubtator(path)

  def test_linking_examples_mark_the_mention_and_drop_composites(self):
    documents = mentions.parse_pubtator(
        self._write('corpus.txt', _pubtator_lines())
    )[:1]
    examples = mentions.linking_examples(documents)
    self.assertLen(examples, 4)
    self.assertEqual(
        examples[1]['src'],
        'breast and ovarian cancers in brca1 carriers. START colon cancer END'
        ' & x-linked immunodeficiency disease are rare. type 2 diabetes is'
        ' not.',
    )
    self.assertEqual(examples[1]['mention'], 'colon cancer')
    self.assertEqual(
        (examples[1]['doc_id'], examples[1]['start'], examples[1]['end']),
        ('100', 46, 58),
    )
    kept = mentions.linking_examples(documents, drop_composite=True)
    self.assertEqual(
        [example['mention'] for example in kept],
        ['colon cancer', 'type 2 diabetes'],
    )

  def test_linking_examples_resolve_alternative_ids_through_the_kb(self):
    documents = mentions.parse_pubtator(
        self._write('corpus.txt', _pubtator_lines())
    )[:1]
    kb = kb_lib.KnowledgeBase([
        kb_lib.KbConcept('MESH:D007153', 'immunodeficiency'),
        kb_lib.KbConcept('MESH:C999999', 'xlid', alt_ids=('OMIM:300300',)),
    ])
    examples = mentions.linking_examples(documents, kb=kb)
    self.assertEqual(
        examples[2]['concept_ids'], ('MESH:D007153', 'MESH:C999999')
    )
    self.assertEqual(examples[1]['concept_ids'], ('MESH:D003110',))

  def test_mention_input_keeps_short_texts_whole(self):
    self.assertEqual(
        mentions.mention_input('Left Ctx  Mention right.', 10, 17),
        'left ctx START mention END right.',
    )
    self.assertEqual(
        mentions.mention_input('Mention', 0, 7, lowercase=False),
        'START Mention END',
    )

  @parameterized.named_parameters(
      ('middle', 250, 192, 192),
      ('near_start', 10, 10, 374),
      ('near_end', 490, 375, 9),
  )
  def test_mention_input_cuts_long_contexts_around_the_mention(
      self, position, left_words, right_words
  ):
    words = [f'w{index}' for index in range(500)]
    words[position] = 'MENTION'
    text = ' '.join(words)
    start = text.index('MENTION')
    source = mentions.mention_input(text, start, start + 7, max_words=384)
    left, right = source.split(' START mention END ')
    self.assertLen(left.split(' '), left_words)
    self.assertLen(right.split(' '), right_words)
    self.assertEqual(left.split(' ')[-1], f'w{position - 1}')
    self.assertEqual(right.split(' ')[0], f'w{position + 1}')

  def test_conll_sentences_and_spans(self):
    path = self._write(
        'train.tsv',
        [
            'The\tO',
            'adenomatous\tB-Disease',
            'polyposis\tI-Disease',
            'coli\tI-Disease',
            'gene\tO',
            '',
            'Stray\tI-Disease',
            'cancer\tB-Disease',
            'and\tO',
        ],
    )
    sentences = mentions.parse_conll(path)
    self.assertLen(sentences, 2)
    self.assertEqual(sentences[0].tokens[1], 'adenomatous')
    self.assertEqual(sentences[0].spans(), [(1, 4)])
    self.assertEqual(sentences[1].spans(), [(0, 1), (1, 2)])

  def test_conll_line_without_tag_names_file_and_line(self):
    path = self._write('train.tsv', ['The\tO', 'lonely'])
    with self.assertRaisesRegex(UserInputError, r'train\.tsv:2:'):
      mentions.parse_conll(path)

  def test_unknown_ncbi_split_raises(self):
    with self.assertRaisesRegex(UserInputError, 'split'):
      mentions.ncbi_disease(SHARED_NCBI, 'validation')

  def test_shared_ncbi_files_parse_with_their_documented_counts(self):
    if not os.path.isdir(SHARED_NCBI):
      self.skipTest(f'{SHARED_NCBI} is absent (shared data not mounted)')
    # SOURCE.md: train 593 abstracts / 5,145 mentions, devel 100 / 787;
    # CoNLL sentences 5,432 / 923 and tokens 136,086 / 23,969.
    for split, abstracts, count, sentences, tokens in (
        ('train', 593, 5_145, 5_432, 136_086),
        ('devel', 100, 787, 923, 23_969),
    ):
      documents = mentions.ncbi_disease(SHARED_NCBI, split)
      self.assertLen(documents, abstracts)
      all_mentions = [m for d in documents for m in d.mentions]
      self.assertLen(all_mentions, count)
      self.assertNotEmpty([m for m in all_mentions if m.composite])
      conll = mentions.parse_conll(f'{SHARED_NCBI}/conll/{split}.tsv')
      self.assertLen(conll, sentences)
      self.assertEqual(sum(len(s.tokens) for s in conll), tokens)
      self.assertEqual(sum(len(s.spans()) for s in conll), count)
    # The train release repeats PMID 8528200.
    train_ids = [d.doc_id for d in mentions.ncbi_disease(SHARED_NCBI, 'train')]
    self.assertIn('8528200#2', train_ids)


class HpoMentionsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.splits = {split: mentions.hpo_mentions(split) for split in hpo.SPLITS}
    cls.kb = mentions.hpo_mention_kb()
    cls.full = kb_lib.load_obo()

  def test_sizes_and_disjoint_concept_splits(self):
    self.assertBetween(len(self.splits['train']), 5_000, 12_000)
    self.assertBetween(len(self.splits['valid']), 500, 1_500)
    self.assertBetween(len(self.splits['test']), 500, 1_500)
    concept_sets = [
        {example['concept_ids'] for example in examples}
        for examples in self.splits.values()
    ]
    self.assertEmpty(concept_sets[0] & concept_sets[1])
    self.assertEmpty(concept_sets[0] & concept_sets[2])
    self.assertEmpty(concept_sets[1] & concept_sets[2])

  def test_deterministic(self):
    self.assertEqual(mentions.hpo_mentions('valid'), self.splits['valid'])

  def test_mentions_are_held_out_of_the_linking_kb(self):
    for example in self.splits['test']:
      (concept_id,) = example['concept_ids']
      normal_form = kb_lib.normalize_name(example['mention'])
      self.assertIn(normal_form, self.full.names(concept_id))
      self.assertNotIn(normal_form, self.kb.names(concept_id))
      # The concept keeps at least its preferred name.
      self.assertNotEmpty(self.kb.names(concept_id))

  def test_source_is_the_marked_synonym_then_its_definition(self):
    example = self.splits['train'][0]
    (concept_id,) = example['concept_ids']
    definition = self.full[concept_id].definitions[0].lower()
    self.assertEqual(
        example['src'], f'START {example["mention"]} END : {definition}'
    )
    self.assertLen(self.kb, len(self.full))


if __name__ == '__main__':
  absltest.main()
