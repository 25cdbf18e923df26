"""Supervised fine-tuning of decoder LMs on (instruction, response) pairs.

The causal-LM task (`flaxllm.tasks.lm`) with instruction-tuning defaults:
prompts rendered through the tokenizer's chat template (Alpaca's when it has
none), loss on the response tokens only, and packed rows whose documents never
attend to each other. Every `lm` key may be overridden. With `task.sources`
the training data are named sources scheduled into stages by a recipe
(`flaxllm.recipes.dmt`: single, multi-task, sequential, mixed sequential,
DMT(k)); every stage boundary is a checkpoint, and a run resumes inside
either stage.
"""

from typing import Any

import ml_collections

from flaxllm import errors
from flaxllm.recipes import dmt
from flaxllm.tasks import lm


def task_defaults() -> ml_collections.ConfigDict:
  """The `lm` keys with SFT defaults."""
  defaults = lm.task_defaults()
  defaults.name = 'sft'
  defaults.loss_on = 'target'
  defaults.chat_template = 'auto'
  defaults.separator = ''
  # Named training sources, 'math=spec,code=spec,general=spec'; '' trains on
  # data.train. With sources, `recipe` schedules them into stages.
  defaults.sources = ''
  defaults.recipe = dmt.recipe_defaults()
  return defaults


def check_config(config: ml_collections.ConfigDict) -> None:
  lm.check_config(config)
  recipe = config.task.get('recipe')
  if recipe is not None and recipe.strategy not in dmt.STRATEGIES:
    raise errors.UserInputError(
        f'config key task.recipe.strategy={recipe.strategy!r}; use one of'
        f' {dmt.STRATEGIES}'
    )


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
) -> tuple[lm.LMTask, Any]:
  return lm.build(
      config,
      workdir,
      process_index=process_index,
      process_count=process_count,
  )
