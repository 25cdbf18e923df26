"""Tests for --mode=route (flaxllm.route_mode): one member per query, and only
the chosen members run, each on its own queries."""

import collections
import json
import os
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from configs import zooter as zooter_config
from flaxllm import configuration
from flaxllm import route_mode
from flaxllm.errors import UserInputError
from flaxllm.models import encoder
from flaxllm.recipes import zooter_router

MEMBERS = ('math', 'code', 'general')


class CountingZoo:
  """A zoo whose members echo their name and count their calls."""

  def __init__(self, names=MEMBERS):
    self.names = list(names)
    self.calls = collections.Counter()
    self.seen = collections.defaultdict(list)

  def generate(self, name, texts):
    self.calls[name] += 1
    self.seen[name].extend(texts)
    return [
        {'output': f'{name}: {t}', 'num_tokens': 3, 'flops': 10.0}
        for t in texts
    ]


def _router(members=MEMBERS):
  config = encoder.EncoderConfig(
      vocab_size=30522,
      d_model=16,
      num_heads=2,
      ffn_dim=32,
      num_layers=1,
      max_positions=64,
      pooler=False,
  )
  net = zooter_router.PooledHead(config, len(members))
  return zooter_router.Router(
      net,
      zooter_router.fresh_params(net),
      zooter_router.TextEncoder.from_folder(zooter_router.minilm_folder(), 32),
      members,
  )


# The router's distribution for five queries: math, general, math, code, math.
PROBABILITIES = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.3, 0.6],
        [0.5, 0.4, 0.1],
        [0.2, 0.7, 0.1],
        [0.9, 0.05, 0.05],
    ],
    np.float32,
)


class RouteRecordsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.router = _router()
    self.records = [{'prompt': f'query {i}', 'id': i} for i in range(5)]

  def _route(self, zoo, probabilities=PROBABILITIES):
    with mock.patch.object(
        self.router, 'probabilities', return_value=probabilities
    ):
      return route_mode.route_records(self.router, zoo, self.records, 'prompt')

  def test_each_query_runs_on_exactly_its_chosen_member(self):
    zoo = CountingZoo()
    outputs = self._route(zoo)
    members = [o['member'] for o in outputs]
    self.assertEqual(members, ['math', 'general', 'math', 'code', 'math'])
    for output in outputs:
      self.assertEqual(output['member_calls'], 1)
      self.assertEqual(
          output['output'], f'{output["member"]}: {output["prompt"]}'
      )
    # One batched call per chosen member, on exactly its queries.
    self.assertEqual(dict(zoo.calls), {'math': 1, 'code': 1, 'general': 1})
    self.assertEqual(zoo.seen['math'], ['query 0', 'query 2', 'query 4'])
    self.assertEqual(zoo.seen['code'], ['query 3'])

  def test_a_member_no_query_needs_never_runs(self):
    zoo = CountingZoo()
    probabilities = PROBABILITIES.copy()
    probabilities[:, 1] = 0.0  # nobody goes to code
    self._route(zoo, probabilities)
    self.assertNotIn('code', zoo.calls)
    self.assertEqual(sum(len(v) for v in zoo.seen.values()), 5)

  def test_outputs_carry_the_choice_probability_and_the_distribution(self):
    outputs = self._route(CountingZoo())
    self.assertAlmostEqual(outputs[1]['probability'], 0.6, places=6)
    self.assertEqual(set(outputs[1]['probabilities']), set(MEMBERS))
    self.assertEqual(outputs[1]['id'], 1)  # the request's fields stay
    self.assertGreater(outputs[0]['flops'], 10.0)  # member + router

  def test_a_router_for_another_zoo_is_refused(self):
    with self.assertRaisesRegex(UserInputError, 'retrain'):
      route_mode.route_records(
          self.router, CountingZoo(('a', 'b', 'c')), self.records, 'prompt'
      )

  def test_real_router_probabilities_route_every_query(self):
    zoo = CountingZoo()
    outputs = route_mode.route_records(self.router, zoo, self.records, 'prompt')
    self.assertLen(outputs, 5)
    self.assertEqual(sum(len(v) for v in zoo.seen.values()), 5)
    for output in outputs:
      self.assertAlmostEqual(
          output['probability'], max(output['probabilities'].values())
      )


class RouteConfigTest(absltest.TestCase):

  def test_missing_router_without_training_queries_is_a_clear_error(self):
    config = zooter_config.get_config('runlocal')
    config.route.train = ''
    with self.assertRaisesRegex(UserInputError, 'route.train'):
      route_mode.load_or_build_router(config, tempfile.mkdtemp(), CountingZoo())

  def test_route_file_needs_queries(self):
    config = zooter_config.get_config('runlocal')
    with self.assertRaisesRegex(UserInputError, 'route.queries'):
      route_mode.route_file(config, tempfile.mkdtemp())

  def test_route_file_writes_one_line_per_query_with_a_saved_router(self):
    workdir = tempfile.mkdtemp()
    router = _router()
    router.save(os.path.join(workdir, 'router'))
    queries = os.path.join(workdir, 'queries.jsonl')
    with open(queries, 'w') as f:
      for i in range(4):
        f.write(json.dumps({'prompt': f'question {i}'}) + '\n')
    config = zooter_config.get_config('runlocal')
    config.route.queries = queries
    configuration.validate(config, num_devices=1)
    zoo = CountingZoo()
    with mock.patch.object(
        route_mode.zooter.Zoo, 'from_config', return_value=zoo
    ):
      path = route_mode.route_file(config, workdir)
    with open(path) as f:
      lines = [json.loads(line) for line in f]
    self.assertLen(lines, 4)
    self.assertEqual(sum(len(v) for v in zoo.seen.values()), 4)
    self.assertTrue(all(line['member'] in MEMBERS for line in lines))


if __name__ == '__main__':
  absltest.main()
