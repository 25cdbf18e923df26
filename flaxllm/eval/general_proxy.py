"""A proxy for general (instruction-following) ability, offline.

DMT measures general ability with MT-Bench judged by GPT-4, which needs a
network judge. This module stands in for it, and says so in every metric name:

  general_proxy_rouge_l   mean ROUGE-L F1 (0-100) of the model's answers to
                          the AlpacaEval instructions against a reference
                          model's answers (text-davinci-003 or GPT-4 Turbo in
                          the shipped files). It rewards answers that say
                          what the reference says, in similar words; it is
                          no judge of helpfulness and is not comparable with
                          MT-Bench scores.
  general_proxy_reward    the mean score of a reward model, when one is
                          configured: any callable
                          `reward_fn(instructions, outputs) -> scores`.
"""

import json
import os
from typing import Callable, Optional, Sequence

import numpy as np

from flaxllm.errors import UserInputError
from flaxllm.eval import text_metrics

# reward_fn(instructions, outputs) -> one score per pair.
RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]


def load_alpaca_eval(path: str, max_examples: int = 0) -> list[dict[str, str]]:
  """Reads an AlpacaEval outputs file as [{'instruction', 'reference'}].

  Args:
    path: a JSON array of {'instruction', 'output', ...} records, e.g.
      alpaca_eval/text_davinci_003_model_outputs.json.
    max_examples: keep the first this many (0: all).

  Raises:
    UserInputError: if the file is missing or a record lacks a field.
  """
  if not os.path.isfile(path):
    raise UserInputError(f'AlpacaEval file not found: {path}; check the path')
  with open(path, encoding='utf-8') as json_file:
    records = json.load(json_file)
  examples = []
  for index, record in enumerate(records):
    if not isinstance(record.get('instruction'), str) or not isinstance(
        record.get('output'), str
    ):
      raise UserInputError(
          f'{path} record {index} lacks instruction/output strings; fix it'
      )
    examples.append(
        {'instruction': record['instruction'], 'reference': record['output']}
    )
  return examples[:max_examples] if max_examples else examples


def score(
    outputs: Sequence[str],
    examples: Sequence[dict[str, str]],
    *,
    reward_fn: Optional[RewardFn] = None,
) -> dict[str, float]:
  """The general-ability proxy metrics of a model's outputs.

  Args:
    outputs: the model's answer to each example's instruction.
    examples: records with 'instruction' and 'reference' (see
      `load_alpaca_eval`).
    reward_fn: optional reward model; adds its mean score.

  Returns:
    {'general_proxy_rouge_l': ...} plus 'general_proxy_reward' when a reward
    model is given.

  Raises:
    UserInputError: if the counts differ, or the reward model returns the
      wrong number of scores.
  """
  if len(outputs) != len(examples) or not examples:
    raise UserInputError(
        f'general proxy got {len(outputs)} outputs for {len(examples)}'
        ' instructions; pass one output per instruction'
    )
  metrics = {
      'general_proxy_rouge_l': text_metrics.rouge_l(
          list(outputs), [example['reference'] for example in examples]
      )
  }
  if reward_fn is not None:
    instructions = [example['instruction'] for example in examples]
    rewards = np.asarray(reward_fn(instructions, list(outputs)), np.float64)
    if rewards.shape != (len(outputs),):
      raise UserInputError(
          f'reward_fn returned shape {rewards.shape} for {len(outputs)}'
          ' outputs; it must return one score per output'
      )
    metrics['general_proxy_reward'] = float(rewards.mean())
  return metrics
