"""Tests for GenBioEL's name trie: host trie, device table, prompt and root.

The defining property: every path through the trie ends in a KB name, both
when the host trie is walked and when the device table is stepped inside a
jitted loop (and a beam search) with random allowed choices.
"""

import random

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from flaxllm.data import kb as kb_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.decoding import beam_search as beam_search_lib
from flaxllm.linking import trie as trie_lib

_CONCEPTS = [
    ('D:1', 'Breast Cancer', ('breast carcinoma', 'Breast cancer, type 2')),
    ('D:2', 'Breast Neoplasm', ('breast tumour', 'Mammary neoplasm')),
    ('D:3', 'Colon', ()),
    ('D:4', 'Colon Cancer', ('colorectal carcinoma', 'cancer of the colon')),
    ('D:5', 'Cancer', ('malignant neoplasm', 'malignancy')),
    ('D:6', 'Malignancy', ('cancer',)),  # Shares two names with D:5.
    ('D:7', 'Fever', ('pyrexia', 'high temperature')),
    ('D:8', 'Type 2 diabetes', ('diabetes mellitus type 2', 'T2DM')),
]


def _kb():
  return kb_lib.KnowledgeBase(
      kb_lib.KbConcept(concept_id, name, synonyms)
      for concept_id, name, synonyms in _CONCEPTS
  )


class PrefixTrieTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.kb = _kb()
    names = list(cls.kb.name_to_ids())
    texts = [f'{name} is {name}' for name in names] * 20
    cls.tokenizer = tokenizer_lib.train_bpe(texts, vocab_size=330)
    cls.name_trie = trie_lib.build_name_trie(
        cls.kb.name_to_ids(), cls.tokenizer
    )
    cls.device_trie = cls.name_trie.to_device(cls.tokenizer.vocab_size)

  def _random_path(self, rng: random.Random) -> list[int]:
    generated = []
    for _ in range(100):
      allowed = self.name_trie.allowed_next(generated)
      self.assertNotEmpty(allowed, f'dead end after {generated}')
      generated.append(rng.choice(allowed))
      if generated[-1] == self.tokenizer.eos_id:
        return generated
    self.fail(f'path did not terminate: {generated}')

  def test_sequences_follow_genbioel_layout(self):
    tokenizer = self.tokenizer
    root = tokenizer.encode(' is')[-1]
    self.assertEqual(self.name_trie.root_id, root)
    for name in self.kb.name_to_ids():
      sequence = [root, *tokenizer.encode(' ' + name), tokenizer.eos_id]
      self.assertIn(sequence, self.name_trie.trie)
      self.assertEqual(trie_lib.name_ids(tokenizer, name), sequence[1:])
    self.assertEqual(
        self.name_trie.trie.num_sequences, len(self.kb.name_to_ids())
    )
    self.assertEqual(
        self.name_trie.max_name_tokens,
        max(
            len(trie_lib.name_ids(tokenizer, name))
            for name in self.kb.name_to_ids()
        ),
    )
    # From the trie's empty start, the root is the only way in.
    self.assertEqual(self.name_trie.trie.allowed_next([]), [root])

  @parameterized.parameters('breast cancer', 'x', 'the colon, sadly', 'is')
  def test_root_is_the_last_prompt_token(self, mention):
    prompt = trie_lib.prompt_ids(self.tokenizer, mention)
    self.assertEqual(prompt[-1], self.name_trie.root_id)
    self.assertEqual(self.tokenizer.decode(prompt).strip(), f'{mention} is')

  def test_without_prompt_the_root_is_the_decoder_start(self):
    unprompted = trie_lib.build_name_trie(
        self.kb.name_to_ids(), self.tokenizer, prompted=False
    )
    self.assertEqual(unprompted.root_id, self.tokenizer.eos_id)
    self.assertEqual(
        unprompted.allowed_next([]), self.name_trie.allowed_next([])
    )

  def test_root_allows_exactly_the_first_tokens_of_names(self):
    first_tokens = {
        self.tokenizer.encode(' ' + name)[0] for name in self.kb.name_to_ids()
    }
    self.assertEqual(set(self.name_trie.allowed_next([])), first_tokens)
    self.assertEqual(
        self.name_trie.allowed_next([]), sorted(self.name_trie.allowed_next([]))
    )

  def test_name_that_prefixes_another_allows_eos_and_continuation(self):
    colon = self.tokenizer.encode(' colon')
    allowed = self.name_trie.allowed_next(colon)
    self.assertIn(self.tokenizer.eos_id, allowed)
    self.assertIn(self.tokenizer.encode(' colon cancer')[len(colon)], allowed)

  def test_random_host_walks_always_end_in_a_kb_name(self):
    rng = random.Random(0)
    name_to_ids = self.kb.name_to_ids()
    reached = set()
    for _ in range(300):
      path = self._random_path(rng)
      ids = self.name_trie.concepts_of(path)
      self.assertNotEmpty(ids)
      name = self.tokenizer.decode(path).strip()
      self.assertEqual(ids, name_to_ids[name])
      reached.add(name)
    self.assertGreater(len(reached), len(name_to_ids) // 2)

  def test_concepts_of_maps_shared_names_to_every_concept(self):
    cancer = trie_lib.name_ids(self.tokenizer, 'cancer')
    self.assertEqual(self.name_trie.concepts_of(cancer), ('D:5', 'D:6'))
    # Tokens after eos are ignored; a non-name gives ().
    self.assertEqual(
        self.name_trie.concepts_of(cancer + [5, 6]), ('D:5', 'D:6')
    )
    breast = self.tokenizer.encode(' breast')
    self.assertEqual(
        self.name_trie.concepts_of(breast + [self.tokenizer.eos_id]), ()
    )
    self.assertEqual(self.name_trie.concepts_of(cancer[:-1]), ())  # No eos.

  def test_concepts_of_falls_back_to_the_decoded_text(self):
    # 'fever' spelled with other tokens (byte by byte) is not a trie path.
    spelled = [self.tokenizer.encode(char)[0] for char in ' fever'] + [
        self.tokenizer.eos_id
    ]
    self.assertEqual(self.name_trie.concepts_of(spelled), ())
    self.assertEqual(
        self.name_trie.concepts_of(spelled, self.tokenizer), ('D:7',)
    )

  def test_host_mask_falls_back_to_eos_off_the_trie(self):
    eos = self.tokenizer.eos_id
    complete = trie_lib.name_ids(self.tokenizer, 'fever')
    masks = self.name_trie.mask(
        [[], complete, [self.tokenizer.unk_id]], self.tokenizer.vocab_size
    )
    self.assertEqual(masks.shape, (3, self.tokenizer.vocab_size))
    self.assertEqual(
        list(np.flatnonzero(masks[0])), self.name_trie.allowed_next([])
    )
    for row in (1, 2):
      self.assertEqual(list(np.flatnonzero(masks[row])), [eos])

  def test_device_table_agrees_with_host_trie_on_random_prefixes(self):
    rng = random.Random(1)
    vocab = self.tokenizer.vocab_size
    prefixes = []
    for _ in range(96):
      path = self._random_path(rng)
      prefix = path[: rng.randint(0, len(path))]
      if rng.random() < 0.3:  # Off the trie (or, rarely, still on it).
        prefix = prefix + [rng.randrange(vocab)]
      prefixes.append(prefix)
    max_length = max(map(len, prefixes)) + 2
    tokens = np.full((len(prefixes), max_length), 1, np.int32)
    for row, prefix in enumerate(prefixes):
      tokens[row, : len(prefix)] = prefix
    lengths = np.array([len(prefix) for prefix in prefixes], np.int32)

    @jax.jit
    def device_masks(trie, tokens, lengths):
      return trie_lib.allowed_mask(trie, trie_lib.walk(trie, tokens, lengths))

    np.testing.assert_array_equal(
        device_masks(self.device_trie, tokens, lengths),
        self.name_trie.mask(prefixes, vocab),
    )

  def test_advance_matches_host_children_and_dead_nodes(self):
    trie = self.name_trie.trie
    advance = jax.jit(trie_lib.advance)
    for prefix in ([], self.tokenizer.encode(' breast')):
      allowed = self.name_trie.allowed_next(prefix)
      node = trie.node_of([self.name_trie.root_id, *prefix])
      tokens = jnp.arange(self.tokenizer.vocab_size, dtype=jnp.int32)
      nodes = jnp.full_like(tokens, node)
      moved = np.asarray(advance(self.device_trie, nodes, tokens))
      for token in range(self.tokenizer.vocab_size):
        expected = (
            trie.node_of([self.name_trie.root_id, *prefix, token])
            if token in allowed
            else trie_lib.DEAD_NODE
        )
        self.assertEqual(moved[token], expected)
    dead = jnp.full((2,), trie_lib.DEAD_NODE, jnp.int32)
    self.assertEqual(
        list(advance(self.device_trie, dead, jnp.array([5, 6]))),
        [trie_lib.DEAD_NODE] * 2,
    )
    dead_mask = np.asarray(trie_lib.allowed_mask(self.device_trie, dead))
    self.assertEqual(list(np.flatnonzero(dead_mask[0])), [2])

  def test_random_device_walks_in_a_jitted_loop_end_in_kb_names(self):
    trie = self.device_trie
    eos = self.tokenizer.eos_id
    rows, steps = 128, 24

    @jax.jit
    def random_walks(trie, rng):
      def step(position, state):
        nodes, tokens, done, rng = state
        rng, key = jax.random.split(rng)
        mask = trie_lib.allowed_mask(trie, nodes)  # [rows, vocab]
        choice = jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf))
        choice = jnp.where(done, 1, choice).astype(jnp.int32)
        tokens = tokens.at[:, position].set(choice)
        nodes = jnp.where(done, nodes, trie_lib.advance(trie, nodes, choice))
        return nodes, tokens, done | (choice == eos), rng

      initial = (
          trie_lib.start_nodes(trie, rows),
          jnp.ones((rows, steps), jnp.int32),
          jnp.zeros((rows,), jnp.bool_),
          rng,
      )
      _, tokens, done, _ = jax.lax.fori_loop(0, steps, step, initial)
      return tokens, done

    tokens, done = random_walks(trie, jax.random.key(0))
    self.assertTrue(np.all(done))
    for row in np.asarray(tokens):
      self.assertNotEmpty(self.name_trie.concepts_of(row), row)

  def test_processor_constrains_beam_search_to_kb_names(self):
    vocab = self.tokenizer.vocab_size
    batch, beams = 3, 4
    table = jax.random.normal(jax.random.key(3), (vocab, vocab)) * 3.0

    def tokens_to_logits(params, ids, cache):
      return params[ids[:, -1]], cache  # [rows, vocab]

    @jax.jit
    def search(trie, params, start_ids):
      return beam_search_lib.beam_search(
          tokens_to_logits,
          params,
          jnp.zeros((batch, 1)),
          start_ids,
          num_beams=beams,
          max_length=16,
          eos_id=self.tokenizer.eos_id,
          pad_id=self.tokenizer.pad_id,
          processors=[trie_lib.logits_processor(trie)],
      )

    root = jnp.full((batch,), self.name_trie.root_id, jnp.int32)
    output = search(self.device_trie, table, root)
    self.assertTrue(np.all(np.isfinite(np.asarray(output.scores))))
    for row in np.asarray(output.sequences).reshape(batch * beams, -1):
      self.assertNotEmpty(self.name_trie.concepts_of(row), row)

  def test_vocabulary_too_small_for_the_trie_raises(self):
    with self.assertRaisesRegex(Exception, 'vocabulary'):
      self.name_trie.to_device(10)

  def test_empty_kb_raises(self):
    with self.assertRaisesRegex(Exception, 'no names'):
      trie_lib.build_name_trie({}, self.tokenizer)


if __name__ == '__main__':
  absltest.main()
