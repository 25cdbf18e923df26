"""Tests for the synonyms-aware target choice (character 3-gram TF-IDF)."""

import random

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from flaxllm.data import kb as kb_lib
from flaxllm.errors import UserInputError
from flaxllm.linking import synonyms


def _kb():
  return kb_lib.KnowledgeBase([
      kb_lib.KbConcept(
          'D:1',
          'Rheumatoid Arthritis, Juvenile',
          ('juvenile rheumatoid arthritis', 'Still disease', 'JRA'),
      ),
      kb_lib.KbConcept('D:2', 'Colonic Neoplasms', ('colon cancer',)),
      kb_lib.KbConcept('D:3', 'Fever'),
  ])


class SynonymSelectionTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.kb = _kb()
    cls.selector = synonyms.SynonymSelector(cls.kb.name_to_ids())

  def test_vectorizer_is_character_3grams_within_words(self):
    vectorizer = self.selector.vectorizer
    self.assertEqual(vectorizer.analyzer, 'char_wb')
    self.assertEqual(vectorizer.ngram_range, (3, 3))
    self.assertIn(' ju', vectorizer.vocabulary_)

  def test_similarity_is_the_cosine_of_tfidf_vectors(self):
    names = self.kb.names('D:1')
    similarity = self.selector.similarities(
        'juvenile rheumatoid arthritis', names
    )
    vectors = self.selector.vectorizer.transform(
        ['juvenile rheumatoid arthritis', *names]
    ).toarray()
    norms = np.linalg.norm(vectors, axis=1)
    expected = vectors[1:] @ vectors[0] / (norms[1:] * norms[0])
    np.testing.assert_allclose(similarity, expected, rtol=1e-5)
    self.assertAlmostEqual(float(similarity[1]), 1.0, places=5)

  @parameterized.parameters(
      ('juvenile rheumatoid arthritis', 'rheumatoid arthritis juvenile'),
      ('rheumatoid arthritis of youth', 'rheumatoid arthritis juvenile'),
      ("still's disease", 'still disease'),
      ('jra', 'jra'),
  )
  def test_most_similar_picks_the_nearest_synonym(self, mention, expected):
    # 'char_wb' n-grams ignore word order: the first two names of D:1 have
    # the same vector, and ties go to the first.
    choice = self.selector.choose(mention, self.kb.names('D:1'))
    self.assertEqual(choice, expected)

  def test_least_similar_and_ties(self):
    names = self.kb.names('D:1')
    mention = 'juvenile rheumatoid arthritis'
    similarity = self.selector.similarities(mention, names)
    # 'still disease' and 'jra' share no 3-gram with the mention.
    np.testing.assert_array_equal(similarity[2:], [0.0, 0.0])
    self.assertEqual(
        self.selector.choose(mention, names, strategy='least_similar'),
        'still disease',
    )
    # No shared 3-gram with any name: every cosine is 0, the first wins.
    self.assertEqual(self.selector.choose('zzzz', names), names[0])

  def test_random_strategies_are_seeded_and_stay_in_the_names(self):
    names = self.kb.names('D:1')
    for strategy in ('random', 'sampled'):
      picks = [
          self.selector.choose(
              'juvenile arthritis',
              names,
              strategy=strategy,
              rng=random.Random(seed),
          )
          for seed in range(20)
      ]
      self.assertContainsSubset(picks, names)
      again = self.selector.choose(
          'juvenile arthritis', names, strategy=strategy, rng=random.Random(3)
      )
      self.assertEqual(again, picks[3])

  def test_single_name_is_chosen_without_scoring(self):
    self.assertEqual(self.selector.choose('anything', ['fever']), 'fever')

  def test_unknown_strategy_raises(self):
    with self.assertRaisesRegex(UserInputError, 'strategy'):
      self.selector.choose('x', ['a', 'b'], strategy='closest')

  def test_fine_tuning_pairs_add_prompt_and_target(self):
    examples = [
        {'src': 'a START jra END b', 'mention': 'jra', 'concept_ids': ('D:1',)},
        {
            'src': 'START colon cancers END',
            'mention': 'colon cancers',
            'concept_ids': ('D:9', 'D:2'),
        },
        {'src': 'START x END', 'mention': 'x', 'concept_ids': ('D:9',)},
    ]
    pairs, skipped = synonyms.fine_tuning_pairs(
        examples, self.kb, self.selector
    )
    self.assertEqual(skipped, 1)
    self.assertEqual(
        [(pair['prefix'], pair['tgt']) for pair in pairs],
        [('jra is', 'jra'), ('colon cancers is', 'colon cancer')],
    )
    self.assertEqual(pairs[0]['src'], 'a START jra END b')


if __name__ == '__main__':
  absltest.main()
