"""Tests for partial-KB evaluation: NIL gold, thresholding, post-pruning.

Every expected number below is worked out by hand in the comments.
"""

from absl.testing import absltest

from flaxllm.errors import UserInputError
from flaxllm.linking import partial_kb

P = partial_kb.Prediction

# Full-KB gold; k5 is a composite mention that accepts A or E.
_GOLD = {
    'k1': {'A'},
    'k2': {'B'},
    'k3': {'C'},
    'k4': {'D'},
    'k5': {'A', 'E'},
}
_PARTIAL_IDS = {'A', 'B', 'E'}  # k3 and k4 are NIL against E_p.

# Direct inference against E_p: NIL mentions still get an E_p concept.
_DIRECT = [
    P('k1', ('A',), -0.1),  # right
    P('k2', ('E',), -0.3),  # wrong concept
    P('k3', ('B',), -0.6),  # NIL linked
    P('k4', ('A',), -0.9),  # NIL linked
    P('k5', ('E',), -0.2),  # right (composite accepts E)
]


class PartialKbTest(absltest.TestCase):

  def test_partial_gold_drops_nil_mentions(self):
    gold = partial_kb.partial_gold(_GOLD, _PARTIAL_IDS)
    self.assertEqual(
        gold,
        {
            'k1': frozenset({'A'}),
            'k2': frozenset({'B'}),
            'k5': frozenset({'A', 'E'}),
        },
    )

  def test_direct_inference_scores(self):
    gold = partial_kb.partial_gold(_GOLD, _PARTIAL_IDS)
    scores = partial_kb.micro_prf(_DIRECT, gold)
    # TP = {k1, k5} = 2; P = 2/5; R = 2/3; F1 = 2 * 0.4 * 2/3 / (0.4 + 2/3).
    self.assertEqual((scores.true_positives, scores.num_predicted), (2, 5))
    self.assertAlmostEqual(scores.precision, 0.4)
    self.assertAlmostEqual(scores.recall, 2 / 3)
    self.assertAlmostEqual(scores.f1, 0.5)

  def test_thresholding_drops_scores_at_or_below_tau(self):
    gold = partial_kb.partial_gold(_GOLD, _PARTIAL_IDS)
    kept = partial_kb.apply_threshold(_DIRECT, -0.3)
    # -0.3 itself is dropped: k1 (-0.1) and k5 (-0.2) remain.
    self.assertEqual([p.key for p in kept], ['k1', 'k5'])
    scores = partial_kb.micro_prf(kept, gold)
    # P = 2/2, R = 2/3, F1 = 2 * 1 * 2/3 / (5/3) = 0.8.
    self.assertAlmostEqual(scores.precision, 1.0)
    self.assertAlmostEqual(scores.recall, 2 / 3)
    self.assertAlmostEqual(scores.f1, 0.8)
    looser = partial_kb.micro_prf(
        partial_kb.apply_threshold(_DIRECT, -0.5), gold
    )
    # k1, k2, k5 kept: P = R = F1 = 2/3.
    self.assertAlmostEqual(looser.f1, 2 / 3)

  def test_choose_threshold_maximizes_dev_f1(self):
    gold = partial_kb.partial_gold(_GOLD, _PARTIAL_IDS)
    # Over the scores: -0.9 -> F1 4/7, -0.6 -> 2/3, -0.3 -> 0.8,
    # -0.2 -> 0.5, -0.1 -> 0.
    threshold, scores = partial_kb.choose_threshold(_DIRECT, gold)
    self.assertAlmostEqual(threshold, -0.3)
    self.assertAlmostEqual(scores.f1, 0.8)
    # Over the paper's sweep, -0.3 and -0.25 both give 0.8: the lower wins.
    threshold, scores = partial_kb.choose_threshold(
        _DIRECT, gold, partial_kb.GENERATION_THRESHOLDS
    )
    self.assertAlmostEqual(threshold, -0.3)
    self.assertAlmostEqual(scores.f1, 0.8)
    self.assertLen(partial_kb.GENERATION_THRESHOLDS, 10)
    self.assertAlmostEqual(partial_kb.GENERATION_THRESHOLDS[-1], -0.45)
    with self.assertRaisesRegex(UserInputError, 'candidate'):
      partial_kb.choose_threshold(_DIRECT, gold, [])

  def test_post_pruning_keeps_full_kb_predictions_inside_the_partial_kb(self):
    full_kb_predictions = [
        P('k1', ('A',)),  # right
        P('k2', ('B', 'C')),  # an ambiguous name: pruned to B, right
        P('k3', ('C',)),  # outside E_p: dropped
        P('k4', ('D',)),  # outside E_p: dropped
        P('k5', ('E',)),  # right
        P('k6', ('A',)),  # a spurious mention inside E_p: wrong
    ]
    full = partial_kb.micro_prf(full_kb_predictions, _GOLD)
    # Full KB: TP 5 of 6 predictions, 5 gold.
    self.assertAlmostEqual(full.precision, 5 / 6)
    self.assertAlmostEqual(full.recall, 1.0)
    pruned = partial_kb.post_prune(full_kb_predictions, _PARTIAL_IDS)
    self.assertEqual([p.key for p in pruned], ['k1', 'k2', 'k5', 'k6'])
    self.assertEqual(pruned[1].concept_ids, ('B',))
    scores = partial_kb.micro_prf(
        pruned, partial_kb.partial_gold(_GOLD, _PARTIAL_IDS)
    )
    # TP 3, P = 3/4, R = 3/3, F1 = 2 * 0.75 / 1.75 = 6/7.
    self.assertAlmostEqual(scores.precision, 0.75)
    self.assertAlmostEqual(scores.recall, 1.0)
    self.assertAlmostEqual(scores.f1, 6 / 7)
    self.assertEqual(
        scores.as_dict(), {'precision': 0.75, 'recall': 1.0, 'f1': 6 / 7}
    )

  def test_span_scores_and_accuracy_on_detected_spans(self):
    gold = partial_kb.partial_gold(_GOLD, _PARTIAL_IDS)
    spans = partial_kb.span_prf(_DIRECT, gold)
    # Predicted spans k1..k5, gold spans k1, k2, k5: P 3/5, R 1, F1 0.75.
    self.assertAlmostEqual(spans.precision, 0.6)
    self.assertAlmostEqual(spans.recall, 1.0)
    self.assertAlmostEqual(spans.f1, 0.75)
    # On the detected gold spans k1, k2, k5, k1 and k5 are linked right.
    self.assertAlmostEqual(
        partial_kb.accuracy_on_detected(_DIRECT, gold), 2 / 3
    )

  def test_empty_inputs_score_zero(self):
    scores = partial_kb.micro_prf([], {})
    self.assertEqual((scores.precision, scores.recall, scores.f1), (0, 0, 0))
    self.assertEqual(partial_kb.accuracy_on_detected([], {'k': {'A'}}), 0.0)

  def test_recall_at_k(self):
    rankings = [
        [('A',), ('B',)],  # gold B at rank 2
        [('C', 'A')],  # gold A at rank 1 (an ambiguous name)
        [],  # nothing generated
        [('E',), ('F',), ('G',), ('H',), ('I',), ('D',)],  # gold D at rank 6
    ]
    gold = [{'B'}, {'A'}, {'D'}, {'D'}]
    self.assertAlmostEqual(partial_kb.recall_at_k(rankings, gold, 1), 1 / 4)
    self.assertAlmostEqual(partial_kb.recall_at_k(rankings, gold, 5), 2 / 4)
    self.assertAlmostEqual(partial_kb.recall_at_k(rankings, gold, 6), 3 / 4)
    with self.assertRaisesRegex(UserInputError, 'k >= 1'):
      partial_kb.recall_at_k(rankings, gold, 0)
    with self.assertRaisesRegex(UserInputError, 'one per'):
      partial_kb.recall_at_k(rankings, gold[:2], 1)

  def test_restricted_rankings_give_direct_retrieval_predictions(self):
    ranking, scores = partial_kb.restrict_ranking(
        [('C',), ('D', 'B'), ('A',)], _PARTIAL_IDS, [0.9, 0.8, 0.7]
    )
    self.assertEqual(ranking, [('B',), ('A',)])
    self.assertEqual(scores, [0.8, 0.7])
    predictions = partial_kb.top_predictions(
        ['k2', 'k3'], [ranking, []], [scores, []]
    )
    self.assertEqual(predictions, [P('k2', ('B',), 0.8)])


if __name__ == '__main__':
  absltest.main()
