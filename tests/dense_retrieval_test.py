"""Tests for dense-retrieval entity linking (flaxllm/linking/dense_retrieval).

Most tests use a tiny random BERT-family encoder and a word-level toy
vocabulary; one loads the real all-MiniLM-L6-v2 weights.
"""

import os
import tempfile

from absl.testing import absltest
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from flaxllm.data import kb as kb_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError
from flaxllm.linking import dense_retrieval as dense
from flaxllm.linking import partial_kb
from flaxllm.models import encoder

_SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
# Eight toy concepts, each with a mention word and a different name word.
_MENTION_WORDS = [f'm{index}' for index in range(8)]
_NAME_WORDS = [f'n{index}' for index in range(8)]


def _toy_model(max_length: int = 8) -> tuple[dense.EmbeddingModel, dict]:
  vocab = {
      token: index
      for index, token in enumerate(
          _SPECIALS + _MENTION_WORDS + _NAME_WORDS + ['shared']
      )
  }
  raw = tokenizers.Tokenizer(
      tokenizers.models.WordLevel(vocab, unk_token='[UNK]')
  )
  raw.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  tokenizer = tokenizer_lib.Tokenizer(
      raw,
      bos_token='[CLS]',
      eos_token='[SEP]',
      pad_token='[PAD]',
      unk_token='[UNK]',
      mask_token='[MASK]',
  )
  config = encoder.EncoderConfig(
      vocab_size=len(vocab),
      d_model=32,
      num_heads=2,
      ffn_dim=64,
      num_layers=1,
      max_positions=16,
      pooler=False,
      dropout_rate=0.0,
      attention_dropout=0.0,
  )
  ids = jnp.ones((1, 4), jnp.int32)
  params = encoder.Encoder(config).init(jax.random.key(0), ids, ids)['params']
  params = jax.tree.map(np.asarray, nn.unbox(params))
  return dense.EmbeddingModel(config, tokenizer, max_length), params


def _unit_rows(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
  vectors = rng.normal(size=(rows, width)).astype(np.float32)
  return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _random_index(rng: np.random.Generator) -> dense.NameIndex:
  """40 names over 12 concepts; some names belong to two concepts."""
  concept_ids = [f'C{index}' for index in range(12)]
  name_concepts = []
  for index in range(40):
    first = concept_ids[index % 12]
    if index % 7 == 0:
      name_concepts.append((first, concept_ids[(index + 5) % 12]))
    else:
      name_concepts.append((first,))
  names = [f'name {index}' for index in range(40)]
  return dense.NameIndex(names, name_concepts, _unit_rows(rng, 40, 16))


def _brute_force(index, query):
  """Concept -> the best cosine over its names, by plain loops."""
  best = {}
  for vector, ids in zip(index.embeddings, index.name_concepts):
    cosine = float(vector @ query)
    for concept_id in ids:
      best[concept_id] = max(best.get(concept_id, -np.inf), cosine)
  return best


class NameIndexTest(absltest.TestCase):

  def test_search_matches_brute_force_cosine_ranking(self):
    rng = np.random.default_rng(0)
    index = _random_index(rng)
    queries = _unit_rows(rng, 9, 16)
    # A chunk smaller than the queries exercises the chunking and padding.
    ids, scores = index.search(queries, k=5, chunk_size=4)
    self.assertEqual(scores.shape, (9, 5))
    for query, row_ids, row_scores in zip(queries, ids, scores):
      best = _brute_force(index, query)
      expected = sorted(best.items(), key=lambda item: -item[1])[:5]
      np.testing.assert_allclose(
          row_scores, [score for _, score in expected], atol=1e-5
      )
      for concept_id, score in zip(row_ids, row_scores):
        self.assertAlmostEqual(best[concept_id], float(score), places=5)

  def test_concept_score_is_max_over_its_names(self):
    basis = np.eye(4, dtype=np.float32)
    # Concept A has names along e0 and e1, concept B along e2.
    index = dense.NameIndex(
        ['a one', 'a two', 'b'], [('A',), ('A',), ('B',)], basis[:3]
    )
    query = np.asarray([[0.1, 0.9, 0.3, 0.0]], np.float32)
    query /= np.linalg.norm(query)
    ids, scores = index.search(query, k=2)
    self.assertEqual(ids[0], ['A', 'B'])
    np.testing.assert_allclose(scores[0], [query[0, 1], query[0, 2]], atol=1e-6)

  def test_k_beyond_the_concepts_returns_each_concept_once(self):
    rng = np.random.default_rng(1)
    index = _random_index(rng)
    ids, _ = index.search(_unit_rows(rng, 2, 16), k=100)
    for row in ids:
      self.assertCountEqual(row, index.concept_ids)

  def test_restricted_search_stays_inside_the_partial_kb(self):
    rng = np.random.default_rng(2)
    index = _random_index(rng)
    partial = {'C1', 'C4', 'C5', 'C9'}
    restricted = index.restrict(partial)
    queries = _unit_rows(rng, 20, 16)
    ids, scores = restricted.search(queries, k=4)
    full_ids, full_scores = index.search(queries, k=index.num_concepts)
    for row, row_scores, full_row, full_row_scores in zip(
        ids, scores, full_ids, full_scores
    ):
      self.assertContainsSubset(row, partial)
      # The same as filtering the full ranking (direct = restrict_ranking).
      kept, kept_scores = partial_kb.restrict_ranking(
          dense.candidates([full_row])[0], partial, full_row_scores
      )
      self.assertEqual([candidate[0] for candidate in kept], row)
      np.testing.assert_allclose(kept_scores, row_scores, atol=1e-6)

  def test_from_kb_indexes_each_normalized_name_once(self):
    kb = kb_lib.KnowledgeBase([
        kb_lib.KbConcept('A', 'Heart-Attack', synonyms=('heart attack',)),
        kb_lib.KbConcept('B', 'Heart attack', synonyms=('stroke',)),
    ])
    seen = []

    def fake_embed(texts):
      seen.extend(texts)
      return np.eye(len(texts), 4, dtype=np.float32)

    index = dense.NameIndex.from_kb(kb, fake_embed)
    self.assertEqual(seen, ['heart attack', 'stroke'])
    self.assertEqual(index.name_concepts, [('A', 'B'), ('B',)])

  def test_bad_queries_and_k_raise_user_errors(self):
    index = _random_index(np.random.default_rng(3))
    with self.assertRaisesRegex(UserInputError, 'k >= 1'):
      index.search(np.zeros((1, 16), np.float32), k=0)
    with self.assertRaisesRegex(UserInputError, 'width 16'):
      index.search(np.zeros((1, 8), np.float32))
    with self.assertRaisesRegex(UserInputError, 'empty'):
      index.restrict({'nothing'}).search(np.zeros((1, 16), np.float32))


class EmbedTest(absltest.TestCase):

  def test_embeddings_are_unit_norm_and_ignore_padding(self):
    model, params = _toy_model()
    alone = dense.embed(model, params, ['m1'])
    # In a batch with a longer text, 'm1' is padded; its vector must not
    # change.
    batched = dense.embed(
        model, params, ['m2 n3 shared m4 n5', 'm1', 'n2'], batch_size=2
    )
    np.testing.assert_allclose(batched[1], alone[0], atol=1e-5)
    np.testing.assert_allclose(
        np.linalg.norm(batched, axis=1), np.ones(3), atol=1e-5
    )
    self.assertGreater(np.abs(batched[0] - batched[1]).max(), 1e-3)

  def test_long_texts_are_cut_to_max_length(self):
    model, _ = _toy_model(max_length=5)
    rows = model.tokenize(['m1 m2 m3 m4 m5 m6'])
    self.assertLen(rows[0], 5)
    self.assertEqual(rows[0][0], model.tokenizer.bos_id)
    self.assertEqual(rows[0][-1], model.tokenizer.eos_id)


class FineTuneTest(absltest.TestCase):

  def test_in_batch_negative_loss_masks_same_concept_names(self):
    basis = jnp.eye(3)
    # Rows 0 and 1 share a concept: name 1 is no negative for mention 0.
    loss, _ = dense.in_batch_nce_loss(
        basis, basis[jnp.asarray([0, 0, 2])], jnp.asarray([5, 5, 7]), 1.0
    )
    # Row 0 (mention e0): logits [1, masked, 0] -> log(e + 1) - 1.
    # Row 1 (mention e1, own name e0): [masked, 0, 0] -> log(2).
    # Row 2 (mention e2, concept 7): both e0 names are negatives, [0, 0, 1]
    # -> log(2 + e) - 1.
    expected = (np.log(np.e + 1) - 1 + np.log(2.0) + np.log(2 + np.e) - 1) / 3
    self.assertAlmostEqual(float(loss), expected, places=5)

  def test_loss_decreases_on_a_separable_toy_set(self):
    model, params = _toy_model()
    mentions = [f'{word} shared' for word in _MENTION_WORDS] * 4
    names = _NAME_WORDS * 4
    concepts = list(range(8)) * 4
    config = dense.FineTuneConfig(
        steps=60,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=5,
        temperature=0.1,
        dropout=False,
        freeze_word_embeddings=False,
        train_length=8,
    )
    tuned, history = dense.fine_tune(
        model, params, mentions, names, concepts, config
    )
    first = np.mean([m['loss'] for m in history[:5]])
    last = np.mean([m['loss'] for m in history[-5:]])
    self.assertLess(last, 0.5 * first)
    # Retrieval improves: each mention's nearest name is its own concept's.
    index = dense.NameIndex(
        _NAME_WORDS,
        [(str(i),) for i in range(8)],
        dense.embed(model, tuned, _NAME_WORDS),
    )
    ids, _ = index.search(dense.embed(model, tuned, mentions[:8]), k=1)
    hits = sum(row[0] == str(i) for i, row in enumerate(ids))
    self.assertGreaterEqual(hits, 7)

  def test_frozen_word_embeddings_do_not_move(self):
    model, params = _toy_model()
    config = dense.FineTuneConfig(
        steps=3,
        batch_size=4,
        learning_rate=1e-2,
        warmup_steps=1,
        train_length=8,
    )
    tuned, _ = dense.fine_tune(
        model, params, _MENTION_WORDS, _NAME_WORDS, range(8), config
    )
    word = lambda tree: tree['embeddings']['word_embeddings']['embedding']
    np.testing.assert_array_equal(word(tuned), word(params))
    mlp = lambda tree: tree['layer_0']['mlp']['fc1']['kernel']
    self.assertGreater(np.abs(mlp(tuned) - mlp(params)).max(), 0)

  def test_too_few_pairs_for_a_batch_raise(self):
    model, params = _toy_model()
    with self.assertRaisesRegex(UserInputError, 'batch'):
      dense.fine_tune(
          model,
          params,
          ['m1'],
          ['n1'],
          [0],
          dense.FineTuneConfig(batch_size=4),
      )


class SaveLoadTest(absltest.TestCase):

  def test_round_trip_restores_every_array(self):
    _, params = _toy_model()
    with tempfile.TemporaryDirectory() as folder:
      path = os.path.join(folder, 'sub', 'params.msgpack')
      dense.save_params(path, params)
      self.assertEqual(os.listdir(os.path.dirname(path)), ['params.msgpack'])
      loaded = dense.load_params(path, like=params)
    flat = lambda tree: dict(jax.tree_util.tree_flatten_with_path(tree)[0])
    expected, got = flat(params), flat(loaded)
    self.assertEqual(expected.keys(), got.keys())
    for key, value in expected.items():
      np.testing.assert_array_equal(got[key], value)

  def test_corrupt_or_foreign_files_raise_user_errors(self):
    _, params = _toy_model()
    with tempfile.TemporaryDirectory() as folder:
      corrupt = os.path.join(folder, 'corrupt.msgpack')
      with open(corrupt, 'wb') as f:
        f.write(b'\x00not msgpack at all')
      with self.assertRaisesRegex(UserInputError, 'corrupt.msgpack'):
        dense.load_params(corrupt)
      other = os.path.join(folder, 'other.msgpack')
      dense.save_params(other, {'w': np.zeros((2, 2), np.float32)})
      with self.assertRaisesRegex(UserInputError, 'another model'):
        dense.load_params(other, like=params)
      with self.assertRaisesRegex(UserInputError, 'not found'):
        dense.load_params(os.path.join(folder, 'missing.msgpack'))


class PartialKbHooksTest(absltest.TestCase):

  def test_direct_thresholding_and_post_pruning(self):
    basis = np.eye(4, dtype=np.float32)
    # Concepts A, B in the partial KB, C outside it.
    index = dense.NameIndex(
        ['a', 'b', 'c'], [('A',), ('B',), ('C',)], basis[:3]
    )

    def mentions(vectors, golds):
      keys = [f'k{i}' for i in range(len(golds))]
      unit = np.asarray(vectors, np.float32)
      unit /= np.linalg.norm(unit, axis=1, keepdims=True)
      return dense.MentionSet(keys, unit, dict(zip(keys, golds)))

    # k0 -> A (sure), k1 -> B (sure), k2 is NIL (gold C): close to C and
    # weakly to B, so direct inference links it to B with a low cosine.
    test = mentions(
        [[1, 0.1, 0, 0], [0, 1, 0, 0.1], [0, 0.3, 1, 0]],
        [('A',), ('B',), ('C',)],
    )
    results = dense.partial_kb_scores(index, {'A', 'B'}, test, test)
    direct, _ = results['direct']
    self.assertEqual((direct.true_positives, direct.num_predicted), (2, 3))
    thresholded, tau = results['thresholding']
    self.assertEqual((thresholded.num_predicted, thresholded.f1), (2, 1.0))
    self.assertGreaterEqual(tau, 0.28)  # The NIL link's cosine, 0.287.
    pruned, _ = results['post-pruning']
    self.assertEqual((pruned.num_predicted, pruned.f1), (2, 1.0))
    full, _ = results['full KB']
    self.assertEqual(full.f1, 1.0)


class MiniLmRetrievalTest(absltest.TestCase):

  def test_names_retrieve_themselves_and_obvious_synonyms(self):
    try:
      model, params = dense.load_minilm()
    except UserInputError as error:
      self.skipTest(f'all-MiniLM-L6-v2 not installed: {error}')
    kb = kb_lib.KnowledgeBase([
        kb_lib.KbConcept('MI', 'Myocardial infarction', ('Heart attack',)),
        kb_lib.KbConcept('DM', 'Diabetes mellitus', ('Sugar diabetes',)),
        kb_lib.KbConcept('BC', 'Breast neoplasms', ('Breast cancer',)),
        kb_lib.KbConcept('AS', 'Asthma', ('Bronchial asthma',)),
        kb_lib.KbConcept('FX', 'Bone fractures', ('Broken bones',)),
    ])
    index = dense.NameIndex.from_kb(
        kb, lambda texts: dense.embed(model, params, texts)
    )
    self.assertEqual(index.embeddings.shape, (10, 384))
    own_ids, own_scores = index.search(index.embeddings, k=1)
    self.assertEqual(
        [row[0] for row in own_ids],
        [cid for ids in index.name_concepts for cid in ids],
    )
    np.testing.assert_allclose(own_scores[:, 0], 1.0, atol=1e-5)
    queries = ['heart attacks', 'breast carcinoma', 'fractured bone']
    ids, _ = index.search(dense.embed(model, params, queries), k=1)
    self.assertEqual([row[0] for row in ids], ['MI', 'BC', 'FX'])


if __name__ == '__main__':
  absltest.main()
