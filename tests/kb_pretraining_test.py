"""Tests for GenBioEL's KB-guided pre-training samples."""

import collections
import re

from absl.testing import absltest

from flaxllm.data import kb as kb_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.linking import kb_pretraining
from flaxllm.linking import trie as trie_lib

_DEFINITIONS = (
    'A Chronic inflammation of the joints.',
    'An autoimmune disease of children.',
    'Arthritis that starts before age sixteen.',
)


def _kb():
  return kb_lib.KnowledgeBase([
      kb_lib.KbConcept(
          'D:1',
          'Juvenile arthritis',
          ('Still disease', 'JRA'),
          definitions=_DEFINITIONS,
      ),
      kb_lib.KbConcept(
          'D:2', 'Fever', ('Pyrexia', 'high temperature', 'febrile', 'hot')
      ),
      kb_lib.KbConcept('D:3', 'Hiccup'),
      kb_lib.KbConcept('D:4', 'Gout', definitions=('Uric acid in joints.',)),
  ])


class WordTokenizer:
  """Whitespace words as tokens, enough for truncation."""

  eos_id = 2

  def __init__(self):
    self.words = {}

  def encode(self, text):
    return [
        self.words.setdefault(word, len(self.words) + 10)
        for word in text.split()
    ]

  def decode(self, ids):
    by_id = {index: word for word, index in self.words.items()}
    return ' '.join(by_id[index] for index in ids)


def _parse(sample, templates, mention_first_indices):
  """(template index, context) of a source, or fails."""
  marked = re.escape(f'START {sample["mention"]} END')
  for index, template in enumerate(templates):
    if index in mention_first_indices:
      pattern = f'^{marked} {re.escape(template)} (.+)$'
    else:
      pattern = f'^(.+) {re.escape(template)} {marked}$'
    match = re.match(pattern, sample['src'])
    if match:
      return index, match.group(1)
  raise AssertionError(f'no template matches {sample["src"]!r}')


class KbPretrainingTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.kb = _kb()
    cls.samples = [
        sample
        for seed in range(40)
        for sample in kb_pretraining.pretraining_samples(cls.kb, seed=seed)
    ]

  def test_one_sample_per_concept_and_name(self):
    samples = kb_pretraining.pretraining_samples(self.kb, seed=0)
    self.assertLen(samples, self.kb.num_names())
    self.assertCountEqual(
        [(sample['id'], sample['tgt']) for sample in samples],
        [(cid, name) for cid in self.kb for name in self.kb.names(cid)],
    )

  def test_mention_is_another_name_unless_the_concept_has_one(self):
    for sample in self.samples:
      names = self.kb.names(sample['id'])
      self.assertEqual(sample['prefix'], f'{sample["mention"]} is')
      if len(names) > 1:
        self.assertIn(sample['mention'], names)
        self.assertNotEqual(sample['mention'], sample['tgt'])
      else:
        self.assertEqual(sample['mention'], sample['tgt'])

  def test_definition_samples_have_the_spec_form(self):
    definitions = [text.lower() for text in _DEFINITIONS]
    used = collections.Counter()
    for sample in self.samples:
      if sample['id'] != 'D:1':
        continue
      index, context = _parse(
          sample, kb_pretraining.DEFINITION_TEMPLATES, (0, 1)
      )
      used[index] += 1
      # Two different definitions, lowercased, joined by a space.
      pairs = [f'{a} {b}' for a in definitions for b in definitions if a != b]
      self.assertIn(context, pairs)
    self.assertLen(used, 4)
    gout = [sample for sample in self.samples if sample['id'] == 'D:4']
    self.assertIn(
        'uric acid in joints.',
        {
            _parse(s, kb_pretraining.DEFINITION_TEMPLATES, (0, 1))[1]
            for s in gout
        },
    )

  def test_synonym_samples_have_the_spec_form(self):
    used = collections.Counter()
    for sample in self.samples:
      if sample['id'] != 'D:2':
        continue
      index, context = _parse(sample, kb_pretraining.SYNONYM_TEMPLATES, (2, 3))
      used[index] += 1
      others = [name for name in self.kb.names('D:2') if name != sample['tgt']]
      listed = context.split(', ')
      self.assertLen(listed, 3)
      self.assertLen(set(listed), 3)
      self.assertContainsSubset(listed, others)
    self.assertLen(used, 4)

  def test_single_name_samples_have_the_spec_form(self):
    forms = {
        'hiccup is START hiccup END',
        'hiccup is the same as START hiccup END',
        'START hiccup END is hiccup',
        'START hiccup END is the same as hiccup',
    }
    seen = {sample['src'] for sample in self.samples if sample['id'] == 'D:3'}
    self.assertEqual(seen, forms)

  def test_same_seed_same_samples(self):
    first = kb_pretraining.pretraining_samples(self.kb, seed=7)
    self.assertEqual(first, kb_pretraining.pretraining_samples(self.kb, seed=7))
    self.assertNotEqual(
        first, kb_pretraining.pretraining_samples(self.kb, seed=8)
    )

  def test_long_sources_keep_the_side_with_the_mention(self):
    long_definition = ' '.join(f'word{i}' for i in range(900))
    kb = kb_lib.KnowledgeBase([
        kb_lib.KbConcept(
            'D:9', 'Long thing', ('other name',), definitions=(long_definition,)
        )
    ])
    tokenizer = WordTokenizer()
    sides = set()
    for seed in range(12):
      for sample in kb_pretraining.pretraining_samples(
          kb, seed=seed, tokenizer=tokenizer, max_source_tokens=50
      ):
        self.assertLen(tokenizer.encode(sample['src']), 50)
        self.assertIn(f'START {sample["mention"]} END', sample['src'])
        sides.add(sample['src'].startswith('START'))
    self.assertEqual(sides, {True, False})

  def test_decoder_sequences_mask_the_prompt(self):
    tokenizer = tokenizer_lib.train_bpe(
        ['still disease is juvenile arthritis'] * 5, vocab_size=300
    )
    sequences = kb_pretraining.decoder_sequences(
        tokenizer, 'still disease', 'juvenile arthritis'
    )
    prompt = tokenizer.encode(' still disease is')
    name = tokenizer.encode(' juvenile arthritis')
    eos = tokenizer.eos_id
    self.assertEqual(sequences['decoder_inputs'], [eos, *prompt, *name])
    self.assertEqual(sequences['targets'], [*prompt, *name, eos])
    self.assertEqual(
        sequences['target_mask'],
        [0.0] * len(prompt) + [1.0] * (len(name) + 1),
    )
    # The last prompt token is the trie root the name is decoded from.
    self.assertEqual(prompt[-1], trie_lib.root_token(tokenizer))


if __name__ == '__main__':
  absltest.main()
