"""Tests for beam-search prediction and ROUGE in flaxllm.tasks.seq2seq."""

import os

from absl.testing import absltest
import flax.linen as nn
import jax
import ml_collections
import numpy as np

from flaxllm import errors
from flaxllm.data import sources
from flaxllm.eval import text_metrics
from flaxllm.tasks import seq2seq

VOCAB, PAD, EOS, START = 12, 1, 2, 0
SRC, TGT = 6, 7
PUBMEDQA = '/work/shared/data/pubmedqa'


def _task(**predict) -> seq2seq.Seq2SeqTask:
  config = ml_collections.ConfigDict({
      'model': {
          'family': 'encoder_decoder',
          'd_model': 16,
          'num_heads': 2,
          'ffn_dim': 32,
          'encoder_layers': 1,
          'decoder_layers': 2,
          'max_positions': 16,
          'dropout_rate': 0.0,
          'tie_embeddings': False,
      },
      'task': {'label_smoothing': 0.0},
      'data': {'max_source_length': SRC, 'max_target_length': TGT},
      'predict': predict,
  })
  return seq2seq.Seq2SeqTask(
      config, vocab_size=VOCAB, pad_id=PAD, eos_id=EOS, decoder_start_id=START
  )


def _params(task):
  """Random params with peaked, source-dependent next-token distributions."""
  params = nn.unbox(task.init(jax.random.key(3), task.dummy_batch(2)))
  params['shared']['embedding'] *= 8.0
  params['lm_head'] *= 8.0
  for layer in ('layers_0', 'layers_1'):
    params['decoder'][layer]['encoder_attn']['out_proj']['kernel'] *= 8.0
  return params


def _batch(batch_size: int = 6) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  inputs = rng.integers(3, VOCAB, (batch_size, SRC)).astype(np.int32)
  input_mask = np.ones((batch_size, SRC), np.int32)
  for row in range(batch_size):
    input_mask[row, SRC - row % 3 :] = 0
  inputs[input_mask == 0] = PAD
  return {'inputs': inputs, 'input_mask': input_mask}


def _log_prob(task, params, batch, sequences: np.ndarray) -> np.ndarray:
  """log p(sequence | source) by a full forward pass, up to the first EOS."""
  batch_size, length = sequences.shape
  decoder_inputs = np.concatenate(
      [np.full((batch_size, 1), START), sequences[:, :-1]], axis=1
  )
  logits = jax.jit(task.model.apply)(
      {'params': params}, batch['inputs'], batch['input_mask'], decoder_inputs
  )  # [batch, length, vocab]
  token_log_probs = np.take_along_axis(
      np.asarray(jax.nn.log_softmax(logits)), sequences[..., None], -1
  )[..., 0]  # [batch, length]
  ends = np.argmax(
      np.append(sequences == EOS, np.ones((batch_size, 1), bool), 1), 1
  )
  real = np.arange(length) < np.minimum(ends + 1, length)[:, None]
  return np.where(real, token_log_probs, 0.0).sum(-1)


class BeamPredictTest(absltest.TestCase):

  def test_beam_size_one_is_greedy_argmax_of_full_forward_passes(self):
    task = _task(beam_size=1)
    params, batch = _params(task), _batch()
    predicted = np.asarray(jax.jit(task.predict)(params, batch))
    # Reference without a cache: re-run the whole (causal) decoder each
    # step on fixed-width inputs and read the logits at the current position.
    forward = jax.jit(task.model.apply)
    expected = np.full((6, TGT), PAD, np.int32)
    done = np.zeros(6, bool)
    for step in range(TGT):
      decoder_inputs = np.concatenate(
          [np.full((6, 1), START), expected[:, :-1]], axis=1
      )  # [batch, tgt]
      logits = forward(
          {'params': params},
          batch['inputs'],
          batch['input_mask'],
          decoder_inputs,
      )  # [batch, tgt, vocab]
      tokens = np.argmax(np.asarray(logits[:, step]), axis=-1)
      expected[:, step] = np.where(done, PAD, tokens)
      done |= tokens == EOS
    np.testing.assert_array_equal(predicted, expected)

  def test_beam_output_scores_at_least_the_greedy_output(self):
    task = _task(beam_size=4, length_penalty=0.0)
    params, batch = _params(task), _batch()
    greedy = np.asarray(_task(beam_size=1).predict(params, batch))
    beams = jax.jit(task.beam_search)(params, batch)
    best = np.asarray(beams.sequences[:, 0])
    greedy_score = _log_prob(task, params, batch, greedy)
    beam_score = _log_prob(task, params, batch, best)
    # The search's own scores are the model's log-probabilities.
    np.testing.assert_allclose(beams.scores[:, 0], beam_score, rtol=1e-4)
    self.assertTrue(np.all(beam_score >= greedy_score - 1e-4))
    # Not vacuous: the beam finds a likelier output than greedy somewhere.
    self.assertTrue(np.any(beam_score > greedy_score + 1e-3))

  def test_predict_with_beams_returns_the_best_hypothesis(self):
    task = _task(beam_size=3, length_penalty=1.0)
    params, batch = _params(task), _batch()
    predicted = jax.jit(task.predict)(params, batch)
    beams = task.beam_search(params, batch)
    self.assertEqual(beams.sequences.shape, (6, 3, TGT))
    np.testing.assert_array_equal(predicted, beams.sequences[:, 0])
    # Best first.
    self.assertTrue(np.all(np.diff(np.asarray(beams.scores), axis=1) <= 0))

  def test_max_decode_len_sets_the_output_width(self):
    task = _task(max_decode_len=4)
    params, batch = _params(task), _batch()
    self.assertEqual(task.predict(params, batch).shape, (6, 4))
    self.assertEqual(_task(max_decode_len=9).predict(params, batch).shape,
                     (6, 9))

  def test_bad_decoding_options_are_user_errors(self):
    with self.assertRaisesRegex(errors.UserInputError, 'predict.beam_size'):
      _task(beam_size=0)
    with self.assertRaisesRegex(errors.UserInputError, 'max_decode_len'):
      _task(max_decode_len=40)
    with self.assertRaisesRegex(errors.UserInputError, 'max_decode_len'):
      _task(max_decode_len=-1)


class RougeTest(absltest.TestCase):

  def test_rouge_n_and_l_on_toy_strings(self):
    # 5 of 6 unigrams shared, 3 of 5 bigrams, common subsequence of 5.
    scores = text_metrics.rouge(
        ['the cat sat on the mat'], ['the cat lay on the mat']
    )
    self.assertAlmostEqual(scores['rouge1'], 100 * 5 / 6, places=4)
    self.assertAlmostEqual(scores['rouge2'], 60.0, places=4)
    self.assertAlmostEqual(scores['rougeL'], 100 * 5 / 6, places=4)
    # Word order: same unigrams, no shared bigram, LCS of 2 out of 3.
    scores = text_metrics.rouge(['c b a'], ['a b c'])
    self.assertAlmostEqual(scores['rouge1'], 100.0, places=4)
    self.assertAlmostEqual(scores['rouge2'], 0.0, places=4)
    self.assertAlmostEqual(scores['rougeL'], 100 / 3, places=4)

  def test_rouge_averages_examples(self):
    scores = text_metrics.rouge(['a b', 'x y'], ['a b', 'c d'], ('rouge1',))
    self.assertEqual(list(scores), ['rouge1'])
    self.assertAlmostEqual(scores['rouge1'], 50.0, places=4)
    self.assertAlmostEqual(
        text_metrics.rouge_l(['a b', 'x y'], ['a b', 'c d']), 50.0, places=4
    )

  def test_task_evaluate_reports_bleu_and_rouge_1_2_l(self):
    scores = _task().evaluate(
        ['the cat sat on the mat'], [{'tgt': 'the cat lay on the mat'}]
    )
    self.assertEqual(set(scores), {'bleu', 'rouge1', 'rouge2', 'rougeL'})
    self.assertAlmostEqual(scores['rouge2'], 60.0, places=4)


class PubMedQASourceTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    if not os.path.isdir(PUBMEDQA):
      self.skipTest(f'PubMedQA not found at {PUBMEDQA} (shared data)')

  def test_splits_partition_the_abstracts_with_summary_fields(self):
    ids = {}
    for split in ('train', 'valid', 'test'):
      examples = sources.load_examples(
          f'pubmedqa:{PUBMEDQA}:{split}',
          source_field='context',
          target_field='conclusion',
      )
      ids[split] = {example['id'] for example in examples}
      example = examples[0]
      self.assertGreater(len(example['src']), len(example['tgt']) // 2)
      self.assertNotIn(example['tgt'], example['src'])
      self.assertTrue(example['title'].strip())
    self.assertEqual(sum(len(split_ids) for split_ids in ids.values()), 1000)
    self.assertEqual(len(set.union(*ids.values())), 1000)
    self.assertGreater(len(ids['train']), 700)

  def test_bad_spec_is_a_user_error(self):
    with self.assertRaisesRegex(errors.UserInputError, 'pubmedqa:<path>'):
      sources.load_examples(f'pubmedqa:{PUBMEDQA}:dev')
    with self.assertRaisesRegex(errors.UserInputError, 'not found'):
      sources.load_examples('pubmedqa:/nonexistent/folder:train')


if __name__ == '__main__':
  absltest.main()
