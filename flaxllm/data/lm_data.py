"""Causal-LM data bundle: sources -> tokenizer -> sequences -> packed batches.

Examples come from the same source specs as seq2seq data (`flaxllm.data.
sources`); a (src, tgt) pair becomes the document `[bos] src separator tgt
[eos]`, and a corpus without prompts (`data.source_field = ''`) gives
`[bos] text [eos]`. Rows hold `data.max_source_length + data.max_target_length`
tokens; training batches are packed (`task.pack`), evaluation batches hold one
document per row plus its prompt for generation. With `task.chat_template`
the prompt is first rendered in an instruction format
(`flaxllm.data.chat_templates`).
"""

import dataclasses
from collections.abc import Iterator
import functools

import ml_collections
import numpy as np

from flaxllm.data import chat_templates
from flaxllm.data import collators
from flaxllm.data import iterator as iterator_lib
from flaxllm.data import packing
from flaxllm.data import sources
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError

SPLITS = ('train', 'eval', 'test')


def load_split(spec: str, data: ml_collections.ConfigDict) -> list[dict]:
  """Loads one split's (src, tgt) examples; src is '' without a source field.

  `spec` may join several source specs with ';' (their examples in order).
  """
  if ';' in spec:
    return [
        example
        for part in spec.split(';')
        if part.strip()
        for example in load_split(part.strip(), data)
    ]
  if data.source_field:
    return sources.load_examples(
        spec,
        source_field=data.source_field,
        target_field=data.target_field,
        on_bad_record=data.on_bad_record,
    )
  # No prompts: read the text field as the target, with an empty source.
  examples = sources.load_examples(
      spec,
      source_field=data.target_field,
      target_field=data.target_field,
      on_bad_record=data.on_bad_record,
  )
  return [{**example, 'src': ''} for example in examples]


def apply_template(example: dict, tokenizer, template: str) -> dict:
  """The example with its prompt rendered in a chat/instruction format."""
  if not example['src']:
    return example
  prompt = chat_templates.render_prompt(tokenizer, example['src'], template)
  bos = tokenizer.special_tokens().get('bos_token')
  if bos and prompt.startswith(bos):  # lm_sequence adds bos itself
    prompt = prompt[len(bos) :]
  return {**example, 'src': prompt, 'instruction': example['src']}


def parse_sources(text: str) -> dict[str, str]:
  """'math=spec,code=spec' -> {'math': 'spec', 'code': 'spec'}."""
  sources_by_name = {}
  for item in filter(None, (part.strip() for part in text.split(','))):
    name, separator, spec = item.partition('=')
    if not separator or not name.strip() or not spec.strip():
      raise UserInputError(
          f'task.sources item {item!r} is not name=spec; e.g.'
          " 'math=synthetic:math:train:2000,general=hpo:def2name:train'"
      )
    sources_by_name[name.strip()] = spec.strip()
  return sources_by_name


def stage_boundaries(sizes: list[int], total_steps: int) -> tuple[int, ...]:
  """Steps at which each stage ends: the steps split in proportion to sizes."""
  total = sum(sizes)
  ends, running = [], 0
  for size in sizes:
    running += size
    ends.append(round(total_steps * running / total))
  return tuple(ends)


@dataclasses.dataclass
class LMData:
  """Tokenized splits of a text dataset and their next-token batchers.

  With `task.sources` (the sft task) the training data are named sources that
  a recipe (`flaxllm.recipes.dmt`) schedules into stages; `stages` holds each
  stage's examples and `checkpoint_steps` the steps where stages end, which
  the trainer checkpoints.
  """

  tokenizer: tokenizer_lib.Tokenizer
  collator: packing.LMCollator
  splits: dict[str, list[dict]]
  pack: bool
  stages: list | None = None  # [(name, examples)] in training order
  checkpoint_steps: tuple[int, ...] = ()

  @classmethod
  def from_config(
      cls,
      config: ml_collections.ConfigDict,
      workdir: str | None,
      *,
      save_tokenizer: bool = True,
  ) -> 'LMData':
    """Loads, tokenizes and checks every configured split.

    Args:
      config: the run config (data, tokenizer, task.pack, task.loss_on and
        task.separator are read).
      workdir: where a trained tokenizer is saved and looked for.
      save_tokenizer: False on processes other than 0.

    Returns:
      The data bundle.
    """
    data = config.data
    raw = {
        split: load_split(data[split], data) for split in SPLITS if data[split]
    }
    named = parse_sources(config.task.get('sources', ''))
    by_source = {name: load_split(spec, data) for name, spec in named.items()}
    if by_source:  # the stages' examples are the training split
      raw['train'] = [e for examples in by_source.values() for e in examples]
    if 'train' not in raw:
      raise UserInputError('data.train is empty; name a training source')

    def training_text():
      for example in raw['train']:
        if example['src']:
          yield example['src']
        yield example['tgt']

    tokenizer = tokenizer_lib.run_tokenizer(
        config, training_text, workdir if save_tokenizer else None
    )
    template = config.task.get('chat_template', 'none')
    separator_ids = (
        tokenizer.encode(config.task.separator)
        if config.task.separator and template == 'none'
        else []  # a chat template ends where the response starts
    )
    if template != 'none':
      raw = {
          split: [apply_template(e, tokenizer, template) for e in examples]
          for split, examples in raw.items()
      }
      by_source = {
          name: [apply_template(e, tokenizer, template) for e in examples]
          for name, examples in by_source.items()
      }
    collator = packing.LMCollator(
        length=data.max_source_length + data.max_target_length,
        pad_id=tokenizer.pad_id,
        sequence_fn=functools.partial(
            packing.lm_sequence,
            bos_id=tokenizer.bos_id,
            eos_id=tokenizer.eos_id,
            separator_ids=separator_ids,
            loss_on=config.task.loss_on,
        ),
        overlong=data.overlong,
        prompt_fn=functools.partial(
            packing.prompt_ids,
            bos_id=tokenizer.bos_id,
            separator_ids=separator_ids,
        ),
        max_prompt_length=data.max_source_length,
    )
    # A prompt longer than its budget keeps its end (where an instruction
    # template puts the response header), so the response is never cut.
    prompt_budget = data.max_source_length - 1 - len(separator_ids)

    def prepare(split, examples):
      tokenized = collators.tokenize_pairs(examples, tokenizer)
      for index, example in enumerate(tokenized):
        if len(example['src_ids']) <= prompt_budget:
          continue
        if data.overlong == 'error':
          raise UserInputError(
              f'{split} example {example.get("id", f"#{index}")} has a'
              f' {len(example["src_ids"])}-token prompt, over'
              f' data.max_source_length={data.max_source_length} (bos and'
              " separator included); raise it or set data.overlong='truncate'"
          )
        example['src_ids'] = example['src_ids'][-prompt_budget:]
      for index, example in enumerate(tokenized):
        collator.check_length(example, index)  # fail now, not mid-run
      return tokenized

    splits = {
        split: prepare(split, examples) for split, examples in raw.items()
    }
    stages, checkpoint_steps = None, ()
    if by_source:
      from flaxllm.recipes import dmt  # pylint: disable=g-import-not-at-top

      composed = dmt.stages_from_config(
          config.task.recipe,
          {name: prepare(name, ex) for name, ex in by_source.items()},
      )
      stages = [(stage.name, stage.examples) for stage in composed]
      checkpoint_steps = stage_boundaries(
          [len(examples) for _, examples in stages], config.train.steps
      )[:-1]
    return cls(
        tokenizer,
        collator,
        splits,
        bool(config.task.pack),
        stages,
        checkpoint_steps,
    )

  def examples(self, split: str, max_examples: int = 0) -> list[dict]:
    examples = self.splits[split]
    return examples[:max_examples] if max_examples else examples

  def train_iterator(
      self,
      *,
      global_batch_size: int,
      seed: int,
      process_index: int,
      process_count: int,
  ):
    """Infinite, shuffled, resumable batches (packed when task.pack)."""
    if self.stages is not None:
      return packing.StagedIterator(
          [
              self._iterator(
                  examples,
                  global_batch_size=global_batch_size,
                  seed=seed + index,
                  process_index=process_index,
                  process_count=process_count,
              )
              for index, (_, examples) in enumerate(self.stages)
          ],
          self.checkpoint_steps,
      )
    return self._iterator(
        self.splits['train'],
        global_batch_size=global_batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
    )

  def _iterator(
      self,
      examples,
      *,
      global_batch_size: int,
      seed: int,
      process_index: int,
      process_count: int,
  ):
    if self.pack:
      return packing.PackedIterator(
          examples,
          self.collator,
          global_batch_size=global_batch_size,
          seed=seed,
          process_index=process_index,
          process_count=process_count,
      )
    collate = dataclasses.replace(self.collator, prompt_fn=None)
    return iterator_lib.BatchIterator(
        examples,
        global_batch_size=global_batch_size,
        collate=collate,
        seed=seed,
        shuffle=True,
        process_index=process_index,
        process_count=process_count,
    )

  def eval_batches(
      self,
      split: str,
      *,
      global_batch_size: int,
      process_index: int,
      process_count: int,
      max_examples: int = 0,
  ) -> Iterator[dict[str, np.ndarray]]:
    """One ordered pass over a split, one document (and prompt) per row."""
    return iterator_lib.eval_batches(
        self.examples(split, max_examples),
        global_batch_size=global_batch_size,
        collate=self.collator,
        process_index=process_index,
        process_count=process_count,
    )
