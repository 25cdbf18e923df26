"""Supervised fine-tuning of decoder LMs on (instruction, response) pairs.

The causal-LM task (`flaxllm.tasks.lm`) with instruction-tuning defaults:
prompts rendered through the tokenizer's chat template (Alpaca's when it has
none), loss on the response tokens only, and packed rows whose documents never
attend to each other. Every `lm` key may be overridden.
"""

from typing import Any

import ml_collections

from flaxllm.tasks import lm


def task_defaults() -> ml_collections.ConfigDict:
  """The `lm` keys with SFT defaults."""
  defaults = lm.task_defaults()
  defaults.name = 'sft'
  defaults.loss_on = 'target'
  defaults.chat_template = 'auto'
  defaults.separator = ''
  return defaults


def check_config(config: ml_collections.ConfigDict) -> None:
  lm.check_config(config)


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
