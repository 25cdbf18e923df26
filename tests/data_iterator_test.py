"""Tests for deterministic, resumable, sharded batch iteration."""

import collections
import json

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from flaxllm.data import collators
from flaxllm.data import hpo
from flaxllm.data import iterator
from flaxllm.errors import UserInputError

_NUM_EXAMPLES = 103


def _numbered_examples(count: int = _NUM_EXAMPLES) -> list[dict]:
  """Example i has source [i] and a target whose length varies with i."""
  return [
      {'src_ids': [index], 'tgt_ids': [index] * (1 + index % 4)}
      for index in range(count)
  ]


_COLLATE = collators.Seq2SeqCollator(
    max_source_length=4,
    max_target_length=8,
    pad_id=0,
    eos_id=-1,
    decoder_start_id=-1,
)


def _ids(batch: dict) -> list[int]:
  """The example indices of a batch built from _numbered_examples."""
  return [int(row[0]) for row in batch['inputs']]


def _take(batches, count: int) -> list[dict]:
  return [next(batches) for _ in range(count)]


def _iterator(process_index=0, process_count=1, **overrides):
  settings = dict(
      examples=_numbered_examples(),
      global_batch_size=8,
      collate=_COLLATE,
      seed=0,
      process_index=process_index,
      process_count=process_count,
  )
  settings.update(overrides)
  examples = settings.pop('examples')
  return iterator.BatchIterator(examples, **settings)


class BatchIteratorTest(parameterized.TestCase):

  def test_steps_per_epoch_drops_the_remainder(self):
    self.assertEqual(_iterator().steps_per_epoch, 12)

  def test_every_example_at_most_once_per_epoch(self):
    batches = _iterator()
    seen = [i for batch in _take(batches, 12) for i in _ids(batch)]
    self.assertLen(seen, 96)
    self.assertLen(set(seen), 96)
    self.assertEqual(batches.get_state()['epoch'], 1)

  @parameterized.parameters(2, 4, 8)
  def test_processes_split_the_global_batch(self, process_count):
    reference = _take(_iterator(), 15)
    shards = [
        _take(_iterator(p, process_count), 15) for p in range(process_count)
    ]
    for step, global_batch in enumerate(reference):
      for key, array in global_batch.items():
        local_arrays = [shard[step][key] for shard in shards]
        self.assertEqual(local_arrays[0].shape[0], 8 // process_count)
        np.testing.assert_array_equal(np.concatenate(local_arrays), array)

  @parameterized.parameters(
      dict(saved_by=1, resumed_on=1),
      dict(saved_by=2, resumed_on=1),
      dict(saved_by=1, resumed_on=4),
  )
  def test_resume_continues_exactly(self, saved_by, resumed_on):
    reference = _take(_iterator(), 30)  # Spans two epoch boundaries.
    for saved_at in (0, 5, 12, 17):
      before = _iterator(0, saved_by)
      _take(before, saved_at)
      state = json.loads(json.dumps(before.get_state()))
      resumed = [_iterator(p, resumed_on) for p in range(resumed_on)]
      for process_iterator in resumed:
        process_iterator.set_state(state)
      for step in range(saved_at, 30):
        local = [_ids(next(it)) for it in resumed]
        self.assertEqual(
            sum(local, []), _ids(reference[step]), (saved_at, step)
        )

  def test_state_does_not_depend_on_the_process_layout(self):
    one, two = _iterator(), _iterator(1, 2)
    _take(one, 5)
    _take(two, 5)
    self.assertEqual(one.get_state(), two.get_state())
    self.assertEqual(one.get_state()['batch_in_epoch'], 5)

  def test_same_seed_agrees_other_seed_differs(self):
    first = [_ids(b) for b in _take(_iterator(seed=3), 12)]
    again = [_ids(b) for b in _take(_iterator(seed=3), 12)]
    other = [_ids(b) for b in _take(_iterator(seed=4), 12)]
    self.assertEqual(first, again)
    self.assertNotEqual(first, other)

  def test_epochs_reshuffle(self):
    batches = _take(_iterator(), 24)
    first_epoch = [_ids(b) for b in batches[:12]]
    second_epoch = [_ids(b) for b in batches[12:]]
    self.assertNotEqual(first_epoch, second_epoch)

  def test_no_shuffle_keeps_file_order(self):
    batches = _take(_iterator(shuffle=False), 13)
    self.assertEqual(_ids(batches[0]), list(range(8)))
    self.assertEqual(_ids(batches[11]), list(range(88, 96)))
    self.assertEqual(_ids(batches[12]), list(range(8)))

  def test_set_state_rejects_another_run(self):
    state = _iterator().get_state()
    with self.assertRaisesRegex(
        UserInputError, 'seed=0 but this run has seed=1'
    ):
      _iterator(seed=1).set_state(state)
    with self.assertRaisesRegex(UserInputError, 'num_examples'):
      _iterator(examples=_numbered_examples(50)).set_state(state)
    with self.assertRaisesRegex(UserInputError, 'global_batch_size'):
      _iterator(global_batch_size=4).set_state(state)

  def test_dataset_smaller_than_a_batch(self):
    with self.assertRaisesRegex(UserInputError, '5 examples.*batch of 8'):
      _iterator(examples=_numbered_examples(5))

  @parameterized.parameters(
      dict(global_batch_size=6, process_count=4),
      dict(seed=-1),
      dict(global_batch_size=0),
  )
  def test_bad_settings(self, **settings):
    with self.assertRaises(UserInputError):
      _iterator(**settings)


class BucketingTest(absltest.TestCase):
  """Bucketing on HPO definition -> name pairs, words standing for tokens."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    pairs = hpo.hpo_def2name('train')[:4000]
    cls.examples = [
        {
            'src_ids': [index] + [7] * (len(pair['src'].split()) - 1),
            'tgt_ids': [3] * len(pair['tgt'].split()),
        }
        for index, pair in enumerate(pairs)
    ]
    cls.collate = collators.Seq2SeqCollator(
        max_source_length=128,
        max_target_length=16,
        pad_id=0,
        eos_id=1,
        decoder_start_id=1,
    )
    cls.boundaries = (8, 16, 32, 64, 128)

  def _iterator(self, bucketed=True, **overrides):
    settings = dict(
        global_batch_size=32,
        collate=self.collate,
        seed=1,
        bucket_window=16,
    )
    if bucketed:
      settings.update(
          bucket_boundaries=self.boundaries, length_fn=self.collate.lengths
      )
    settings.update(overrides)
    return iterator.BatchIterator(self.examples, **settings)

  def _padding(self, batches) -> int:
    return sum(
        b['input_mask'].size
        - b['input_mask'].sum()
        + b['target_mask'].size
        - b['target_mask'].sum()
        for b in batches
    )

  def test_bucketing_pads_less(self):
    plain = self._iterator(bucketed=False)
    bucketed = self._iterator()
    steps = plain.steps_per_epoch
    self.assertLess(
        self._padding(_take(bucketed, steps)),
        0.5 * self._padding(_take(plain, steps)),
    )

  def test_each_example_once_per_epoch_and_shapes_on_boundaries(self):
    batches = self._iterator()
    shapes = collections.Counter()
    for epoch in range(2):
      seen = []
      for batch in _take(batches, batches.steps_per_epoch):
        seen += _ids(batch)
        source_length = batch['inputs'].shape[1]
        target_length = batch['targets'].shape[1]
        shapes[source_length, target_length] += 1
        self.assertIn(source_length, self.boundaries)
        self.assertIn(target_length, self.boundaries[:2])
        # The smallest boundary that fits: one step down would not.
        longest_source = batch['input_mask'].sum(axis=1).max()
        smaller = [b for b in self.boundaries if b < source_length]
        self.assertTrue(not smaller or longest_source > smaller[-1])
      self.assertLen(seen, batches.steps_per_epoch * 32, epoch)
      self.assertLen(set(seen), len(seen), epoch)
    self.assertGreater(len(shapes), 2)

  def test_all_processes_get_the_global_shape(self):
    reference = _take(self._iterator(), 20)
    shards = [
        _take(self._iterator(process_index=p, process_count=4), 20)
        for p in range(4)
    ]
    for step, global_batch in enumerate(reference):
      for key, array in global_batch.items():
        local = [shard[step][key] for shard in shards]
        self.assertEqual({a.shape[1:] for a in local}, {array.shape[1:]})
        np.testing.assert_array_equal(np.concatenate(local), array)

  def test_bucketed_resume_on_another_layout(self):
    reference = [_ids(b) for b in _take(self._iterator(), 140)]
    saved = self._iterator()
    _take(saved, 120)  # Past the end of the first epoch (125 steps).
    resumed = [
        self._iterator(process_index=p, process_count=2) for p in range(2)
    ]
    for process_iterator in resumed:
      process_iterator.set_state(saved.get_state())
    for step in range(120, 140):
      self.assertEqual(
          sum((_ids(next(it)) for it in resumed), []), reference[step]
      )

  def test_bucketing_needs_length_fn(self):
    with self.assertRaises(ValueError):
      self._iterator(bucketed=False, bucket_boundaries=self.boundaries)


class EvalBatchesTest(parameterized.TestCase):

  @parameterized.parameters(1, 2, 4)
  def test_one_padded_pass_in_order(self, process_count):
    examples = _numbered_examples(21)
    shards = [
        list(
            iterator.eval_batches(
                examples,
                global_batch_size=8,
                collate=_COLLATE,
                process_index=p,
                process_count=process_count,
            )
        )
        for p in range(process_count)
    ]
    for shard in shards:
      self.assertLen(shard, 3)
      for batch in shard:
        self.assertEqual(batch['inputs'].shape, (8 // process_count, 4))
    real_ids = []
    for step in range(3):
      for shard in shards:
        batch = shard[step]
        real = batch['example_mask'] == 1  # [local_batch]
        real_ids += _ids({'inputs': batch['inputs'][real]})
        self.assertEqual(batch['target_mask'][~real].sum(), 0)
    self.assertEqual(real_ids, list(range(21)))

  def test_empty_eval_set(self):
    batches = iterator.eval_batches([], global_batch_size=8, collate=_COLLATE)
    self.assertEmpty(list(batches))


if __name__ == '__main__':
  absltest.main()
