"""DMT stage composition: how specialist and general SFT data are scheduled.

DMT (Dong et al., "How Abilities in Large Language Models are Affected by
Supervised Fine-tuning Data Composition", ACL 2024) trains on named sources,
two specialists (code, math) and one general source (ShareGPT), with one of
these strategies, picked by `strategy`:

  single            one stage: `single_source` alone (the "X only" rows);
  multi_task        one stage: every source mixed;
  sequential        one stage per source: the specialists in the order given
                    (code, then math), then the general source;
  mixed_sequential  two stages: the specialists mixed, then general alone;
  dmt               dual-stage mixed fine-tuning, DMT(k): stage 1 is the
                    specialists mixed; stage 2 is all of the general source
                    plus floor(k * n) examples drawn at random from each
                    specialist of n examples (or `k_count` from each, the
                    equal-counts variant of the paper's appendix H).

Before any strategy, each source can be cut to an amount (RQ1's subsets):
an int is a count, a float a fraction (floor(fraction * n) examples), drawn
at random. Everything is a pure function of the example lists and the seed:
the same inputs give the same stages, example for example. The trainer
checkpoints at every stage boundary and starts the next stage from there.
"""

import dataclasses
import functools
import zlib
from typing import Any, Mapping, Sequence, Union

import ml_collections
import numpy as np

from flaxllm.errors import UserInputError

STRATEGIES = ('single', 'multi_task', 'sequential', 'mixed_sequential', 'dmt')

Amount = Union[int, float]

# Seed streams, so that cutting, stage-2 sampling and shuffling never share
# random numbers.
_CUT_STREAM, _STAGE2_STREAM, _SHUFFLE_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training stage.

  Attributes:
    name: e.g. 'code+math' or 'general+code+math'.
    examples: the stage's examples in training order.
    sources: the source name of each example, parallel to `examples`.
  """

  name: str
  examples: list[Any]
  sources: list[str]

  @property
  def counts(self) -> dict[str, int]:
    """Examples per source."""
    counts = {}
    for source in self.sources:
      counts[source] = counts.get(source, 0) + 1
    return counts


def recipe_defaults() -> ml_collections.ConfigDict:
  """The keys of a DMT recipe config, with the paper's DMT(1/256) defaults."""
  return ml_collections.ConfigDict({
      'strategy': 'dmt',
      'k': 1 / 256,
      'k_count': 0,  # > 0: this many from each specialist instead of k.
      'seed': 0,
      'general_source': 'general',
      'specialist_sources': ('code', 'math'),  # Also the sequential order.
      'single_source': '',
      'amounts': '',  # 'math=0.25,code=5000': per-source cuts, before all.
      'shuffle': True,
  })


def _stream_rng(seed: int, stream: int, name: str) -> np.random.Generator:
  # crc32, not hash(): Python salts str hashes per process.
  return np.random.default_rng([seed, stream, zlib.crc32(name.encode())])


def _draw(examples: Sequence[Any], count: int, rng: np.random.Generator):
  """`count` examples drawn without replacement, kept in their input order."""
  chosen = np.sort(rng.choice(len(examples), size=count, replace=False))
  return [examples[index] for index in chosen]


def _fraction_count(fraction: float, available: int, what: str) -> int:
  if not 0.0 <= fraction <= 1.0:
    raise UserInputError(
        f'{what} = {fraction} is not a fraction in [0, 1]; use a count (int)'
        ' or a fraction'
    )
  return int(np.floor(fraction * available + 1e-9))


def amount_count(amount: Amount, available: int, what: str) -> int:
  """The number of examples an amount asks for out of `available`.

  Args:
    amount: an int count, or a float fraction (floored).
    available: how many examples there are.
    what: the amount's name, for error messages.

  Raises:
    UserInputError: for a negative count, a count above `available`, or a
      fraction outside [0, 1].
  """
  if isinstance(amount, bool) or not isinstance(amount, (int, float)):
    raise UserInputError(f'{what} = {amount!r} must be an int or a float')
  if isinstance(amount, float):
    return _fraction_count(amount, available, what)
  if not 0 <= amount <= available:
    raise UserInputError(
        f'{what} = {amount} but the source has {available} examples; ask for'
        ' at most that many'
    )
  return amount


def parse_amounts(amounts: Union[str, Mapping[str, Amount]]) -> dict:
  """'math=0.25,code=5000' (or a mapping) as {'math': 0.25, 'code': 5000}.

  In the string form a value with '.' or '/' is a fraction ('1/16'), other
  values are counts.

  Raises:
    UserInputError: for a malformed entry.
  """
  if not isinstance(amounts, str):
    return dict(amounts)
  parsed = {}
  for entry in filter(None, (part.strip() for part in amounts.split(','))):
    name, _, value = entry.partition('=')
    try:
      if '/' in value:
        numerator, denominator = value.split('/')
        parsed[name.strip()] = float(numerator) / float(denominator)
      elif '.' in value:
        parsed[name.strip()] = float(value)
      else:
        parsed[name.strip()] = int(value)
    except (ValueError, ZeroDivisionError):
      raise UserInputError(
          f'amounts entry {entry!r} is not name=count or name=fraction;'
          " write e.g. 'math=0.25,code=5000'"
      ) from None
  return parsed


def _cut_sources(
    sources: Mapping[str, Sequence[Any]],
    amounts: Mapping[str, Amount],
    seed: int,
) -> dict[str, list[Any]]:
  """Each source cut to its amount (all of it when none is given)."""
  unknown = sorted(set(amounts) - set(sources))
  if unknown:
    raise UserInputError(
        f'amounts name unknown sources {unknown}; known: {sorted(sources)}'
    )
  cut = {}
  for name, examples in sources.items():
    if name not in amounts:
      cut[name] = list(examples)
      continue
    count = amount_count(amounts[name], len(examples), f'amounts[{name!r}]')
    cut[name] = _draw(examples, count, _stream_rng(seed, _CUT_STREAM, name))
  return cut


def _mix(
    parts: Sequence[tuple[str, list[Any]]],
    stage_index: int,
    *,
    seed: int,
    shuffle: bool,
) -> Stage:
  """One stage from (source name, examples) parts, shuffled when asked."""
  examples = [example for _, part in parts for example in part]
  labels = [name for name, part in parts for _ in part]
  if shuffle and examples:
    order = np.random.default_rng(
        [seed, _SHUFFLE_STREAM, stage_index]
    ).permutation(len(examples))
    examples = [examples[index] for index in order]
    labels = [labels[index] for index in order]
  name = '+'.join(source for source, _ in parts)
  return Stage(name=name, examples=examples, sources=labels)


def _check_roles(
    sources: Mapping[str, Sequence[Any]],
    strategy: str,
    general: str,
    specialists: Sequence[str],
    single_source: str,
) -> None:
  """Every source a strategy names exists, and no source is left unused."""
  if strategy not in STRATEGIES:
    raise UserInputError(
        f'DMT strategy {strategy!r} is unknown; use one of {STRATEGIES}'
    )
  if strategy == 'single':
    if single_source not in sources:
      raise UserInputError(
          f'single_source {single_source!r} is not a source; set it to one'
          f' of {sorted(sources)}'
      )
    return
  if general in specialists or len(set(specialists)) != len(specialists):
    raise UserInputError(
        f'specialist_sources {tuple(specialists)} must be distinct and must'
        f' not include the general source {general!r}'
    )
  roles = {general, *specialists}
  if roles != set(sources):
    raise UserInputError(
        f'strategy {strategy!r} trains on {sorted(roles)} but the sources are'
        f' {sorted(sources)}; make general_source and specialist_sources'
        ' name exactly the loaded sources'
    )


def compose_stages(
    sources: Mapping[str, Sequence[Any]],
    *,
    strategy: str,
    k: float = 1 / 256,
    k_count: int = 0,
    seed: int = 0,
    general_source: str = 'general',
    specialist_sources: Sequence[str] = ('code', 'math'),
    single_source: str = '',
    amounts: Union[str, Mapping[str, Amount]] = '',
    shuffle: bool = True,
) -> list[Stage]:
  """The training stages of a DMT strategy, exact and deterministic.

  Args:
    sources: source name -> its examples (any objects).
    strategy: one of STRATEGIES.
    k: DMT's fraction of each specialist replayed in stage 2.
    k_count: if > 0, replay this many examples of each specialist instead.
    seed: the seed of every random draw and shuffle.
    general_source: the general source's name.
    specialist_sources: the specialists' names, in sequential order.
    single_source: the source of the 'single' strategy.
    amounts: per-source cuts applied first (see `parse_amounts`).
    shuffle: shuffle the examples within each stage.

  Returns:
    The stages in training order.

  Raises:
    UserInputError: for an unknown strategy, missing or extra sources, or a
      bad amount or k.
  """
  _check_roles(
      sources, strategy, general_source, specialist_sources, single_source
  )
  available = _cut_sources(sources, parse_amounts(amounts), seed)
  mix = functools.partial(_mix, seed=seed, shuffle=shuffle)
  specialists = [(name, available[name]) for name in specialist_sources]
  general = (general_source, available[general_source])
  if strategy == 'single':
    return [mix([(single_source, available[single_source])], 0)]
  if strategy == 'multi_task':
    return [mix([general, *specialists], 0)]
  if strategy == 'sequential':
    return [
        mix([part], index) for index, part in enumerate([*specialists, general])
    ]
  if strategy == 'mixed_sequential':
    return [mix(specialists, 0), mix([general], 1)]
  replayed = []
  for name, examples in specialists:
    if k_count > 0:
      count = amount_count(int(k_count), len(examples), 'k_count')
    else:
      count = _fraction_count(float(k), len(examples), 'k')
    replayed.append(
        (name, _draw(examples, count, _stream_rng(seed, _STAGE2_STREAM, name)))
    )
  return [mix(specialists, 0), mix([general, *replayed], 1)]


def stages_from_config(
    recipe: ml_collections.ConfigDict, sources: Mapping[str, Sequence[Any]]
) -> list[Stage]:
  """`compose_stages` with its arguments from a `recipe_defaults()` config."""
  return compose_stages(
      sources,
      strategy=recipe.strategy,
      k=recipe.k,
      k_count=recipe.k_count,
      seed=recipe.seed,
      general_source=recipe.general_source,
      specialist_sources=tuple(recipe.specialist_sources),
      single_source=recipe.single_source,
      amounts=recipe.amounts,
      shuffle=recipe.shuffle,
  )
