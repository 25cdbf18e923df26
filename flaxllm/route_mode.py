r"""--mode=route: queries jsonl -> ZOOTER picks one zoo member per query.

    python -m flaxllm.main --mode=route --config=configs/zooter.py:runlocal \
        --workdir=/tmp/zooter --config.route.queries=queries.jsonl

The router is `route.router` (default workdir/router). When that folder
holds none and `route.train` names training queries, the router is built
first (flaxllm.recipes.zooter.build_router: every member answers the
training queries, rewards become silver labels, tags smooth them, the
MiniLM router is distilled) and saved there for later runs.

Each query (field `route.query_field`) is routed to the member of highest
router probability; each member is loaded only when some query needs it and
answers only its own queries, in batches. Every output line is the request
plus 'member', 'probability' (the router's for that member),
'probabilities' (per member), 'output', 'num_tokens', 'member_calls' (1)
and 'flops' (2 x member parameters x tokens, plus the router's 2 x
non-embedding parameters x query tokens). The file is written to a
temporary name and renamed.
"""

import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from flaxllm import decode_mode
from flaxllm.errors import UserInputError
from flaxllm.recipes import zooter
from flaxllm.recipes import zooter_router

OUTPUT_NAME = 'route_outputs.jsonl'


def route_records(
    router: zooter_router.Router,
    zoo: Any,
    records: Sequence[dict],
    field: str,
) -> list[dict]:
  """Routes each record's query and runs only the chosen member on it.

  Args:
    router: the trained router (member names in the zoo's order).
    zoo: has `names` and `generate(name, texts) -> [{'output', 'num_tokens',
      'flops'}]` (flaxllm.recipes.zooter.Zoo).
    records: the requests.
    field: the key holding each request's text.

  Returns:
    One output record per request, in input order.
  """
  if list(router.members) != list(zoo.names):
    raise UserInputError(
        f'the router was trained for members {list(router.members)}, the zoo'
        f' has {list(zoo.names)}; retrain it (remove the router folder)'
    )
  texts = [record[field] for record in records]
  probabilities = router.probabilities(texts)  # [queries, members]
  choices = probabilities.argmax(axis=-1)
  router_flops = [
      2.0 * router.matmul_params() * int(n)
      for n in router.text_encoder.batch(texts)['mask'].sum(axis=1)
  ]
  results = [None] * len(records)
  for member_index, name in enumerate(zoo.names):
    rows = np.flatnonzero(choices == member_index)
    if not len(rows):
      continue  # never loaded, never run
    for row, result in zip(rows, zoo.generate(name, [texts[r] for r in rows])):
      results[row] = result
  outputs = []
  for row, record in enumerate(records):
    choice = int(choices[row])
    outputs.append({
        **record,
        'member': zoo.names[choice],
        'probability': float(probabilities[row, choice]),
        'probabilities': dict(zip(zoo.names, map(float, probabilities[row]))),
        'output': results[row]['output'],
        'num_tokens': results[row]['num_tokens'],
        'member_calls': 1,
        'flops': results[row]['flops'] + router_flops[row],
    })
  return outputs


def load_or_build_router(
    config: ml_collections.ConfigDict, workdir: str, zoo: Any
) -> zooter_router.Router:
  """The trained router of `route.router`, built first when absent."""
  r = config.route
  folder = r.router or os.path.join(workdir, zooter.ROUTER_DIR)
  tokenizer_folder = zooter_router.encoder_folder(r.encoder)
  if not os.path.isfile(os.path.join(folder, zooter_router.ROUTER_META)):
    if not r.train:
      raise UserInputError(
          f'no trained router in {folder!r} and route.train is empty; set'
          ' route.train to build one or route.router to a trained one'
      )
    zooter.build_router(config, workdir, zoo)
  return zooter_router.load_router(folder, tokenizer_folder)


def route_file(config: ml_collections.ConfigDict, workdir: str) -> str:
  """--mode=route: routes `route.queries` to `route.output`.

  Returns:
    The path of the outputs jsonl.
  """
  r = config.route
  if not r.queries:
    raise UserInputError(
        'route.queries is empty; set --config.route.queries=FILE.jsonl'
    )
  records = decode_mode.read_prompts(r.queries, r.query_field)
  zoo = zooter.Zoo.from_config(config)
  router = load_or_build_router(config, workdir, zoo)
  before = dict(zoo.calls)  # building the router ran every member
  outputs = route_records(router, zoo, records, r.query_field)
  path = r.output or os.path.join(workdir, OUTPUT_NAME)
  decode_mode.write_jsonl_atomically(path, outputs)
  counts = {n: zoo.calls[n] - before.get(n, 0) for n in zoo.names}
  print(
      f'Routed {len(outputs)} queries to {path}: per member {counts},'
      ' one member call per query',
      flush=True,
  )
  return path
