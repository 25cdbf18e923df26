"""Generative biomedical entity linking (GenBioEL) with partial-KB evaluation.

An encoder-decoder reads a mention in context, `left START mention END
right`, and the decoder, prompted with ' <mention> is', writes one name of
the knowledge base. Training (`loss_fn`, inherited from the seq2seq task)
scores only the name: the prompt is masked out of `target_mask`. The target
name is chosen among the gold concept's names by character 3-gram TF-IDF
cosine to the mention (`flaxllm.linking.synonyms`); KB-guided pre-training
samples (`flaxllm.linking.kb_pretraining`) have the same shape, so the same
task pre-trains and fine-tunes.

Prediction prefills the decoder with [eos] + ' <mention> is' and runs beam
search from the last prompt token, the root of a prefix trie over every KB
name (`flaxllm.linking.trie`), so every beam is a KB name. A beam's score is
its mean token log-probability (length penalty 1). `evaluate` maps names
back to concept ids and reports Recall@1 / Recall@k, and, with
`task.subkb` set, partial-KB P/R/F1 (`flaxllm.linking.partial_kb`):
'direct' inference searches the sub-KB's trie (and reports thresholding at
`task.threshold` on top of it), 'post_pruning' searches the full KB's and
drops links outside the sub-KB.

Data specs (config.data.train / eval / test):

  hpo:mentions:<train|valid|test>      the embedded HPO mention set, against
                                       the HPO KB less the held-out synonyms
  hpo:kb_pretraining                   KB-guided samples of that HPO KB
  ncbi_disease:<dir>:<split>           NCBI-disease (train|devel|test, PubTator
                                       in <dir>/original) against MEDIC
                                       (<dir>/medic)
  ncbi_disease:<dir>:kb_pretraining    KB-guided samples of MEDIC

Batches hold the seq2seq task's arrays (see `flaxllm.tasks.seq2seq`) plus

  decoder_prompt  int32 [batch, prompt]  [eos] + ' <mention> is', right-padded
  prompt_length   int32 [batch]          its length per row
"""

import dataclasses
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import errors
from flaxllm.data import iterator as iterator_lib
from flaxllm.data import kb as kb_lib
from flaxllm.data import mentions as mentions_lib
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.decoding import beam_search
from flaxllm.decoding import cache as cache_lib
from flaxllm.decoding import model_steps
from flaxllm.linking import kb_pretraining
from flaxllm.linking import partial_kb
from flaxllm.linking import synonyms
from flaxllm.linking import trie as trie_lib
from flaxllm.tasks import seq2seq

Batch = dict[str, Any]
SUBKB_INFERENCE = ('direct', 'post_pruning')
PRETRAINING_SPLIT = 'kb_pretraining'
MEDIC_FILE = os.path.join('medic', 'CTD_diseases.tsv.gz')


def task_settings(
    config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """config.task over `task_defaults()`: every key, set or not."""
  settings = task_defaults()
  settings.update(config.task.to_dict())
  return settings


# -----------------------------------------------------------------------------
# Data: specs, KB, examples, batches.
# -----------------------------------------------------------------------------


def parse_spec(spec: str) -> tuple[str, str, str]:
  """Splits a linking data spec into (dataset, directory, split).

  Raises:
    UserInputError: a spec of neither form of the module docstring.
  """
  usage = (
      "use 'hpo:mentions:<split>', 'hpo:kb_pretraining',"
      " 'ncbi_disease:<dir>:<split>' or 'ncbi_disease:<dir>:kb_pretraining'"
  )
  dataset, _, rest = spec.partition(':')
  if dataset == 'hpo':
    if rest == PRETRAINING_SPLIT:
      return 'hpo', '', PRETRAINING_SPLIT
    kind, _, split = rest.partition(':')
    if kind == 'mentions' and split:
      return 'hpo', '', split
  elif dataset == 'ncbi_disease' and ':' in rest:
    directory, split = rest.rsplit(':', 1)
    if directory and split:
      return 'ncbi_disease', directory, split
  raise errors.UserInputError(
      f'linking data spec {spec!r} is not understood; {usage}'
  )


def load_kb(dataset: str, directory: str) -> kb_lib.KnowledgeBase:
  """The target KB of a dataset (HPO less held-out synonyms, or MEDIC)."""
  if dataset == 'hpo':
    return mentions_lib.hpo_mention_kb()
  path = os.path.join(directory, MEDIC_FILE)
  if not os.path.isfile(path):
    raise errors.UserInputError(
        f'MEDIC vocabulary {path} not found; point the ncbi_disease spec at a'
        ' folder holding medic/CTD_diseases.tsv.gz'
    )
  return kb_lib.load_ctd_tsv(path)


def select_subkb(kb: kb_lib.KnowledgeBase, spec: str) -> kb_lib.KnowledgeBase:
  """The partial KB: 'tree:<prefix>' (tree numbers) or a branch root id.

  Raises:
    UserInputError: an unknown root or an empty selection.
  """
  if spec.startswith('tree:'):
    sub = kb.with_tree_prefix(spec[len('tree:') :])
  else:
    sub = kb.branch(spec.removeprefix('branch:'))
  if not len(sub):
    raise errors.UserInputError(
        f'task.subkb={spec!r} selects no concept; use a branch root id or'
        " 'tree:<tree number prefix>' the KB has"
    )
  return sub


def most_similar_pairs(
    examples: list[dict],
    kb: kb_lib.KnowledgeBase,
    selector: synonyms.SynonymSelector,
) -> list[dict]:
  """`synonyms.fine_tuning_pairs` with 'most_similar', vectorized.

  The same choice (the gold name of highest TF-IDF cosine, ties to the
  first), with one vectorizer call for all mentions and one for all
  candidate names instead of two per example.
  """
  candidates = []
  for example in examples:
    names = [n for c in example['concept_ids'] if c in kb for n in kb.names(c)]
    candidates.append(list(dict.fromkeys(names)))
  kept = [index for index, names in enumerate(candidates) if names]
  mention_vectors = selector.vectorizer.transform(
      [examples[index]['mention'] for index in kept]
  )  # [kept, ngrams]
  name_vectors = selector.vectorizer.transform(
      [name for index in kept for name in candidates[index]]
  )  # [candidate names, ngrams]
  similarity = np.asarray(
      name_vectors.multiply(
          mention_vectors[
              np.repeat(
                  np.arange(len(kept)), [len(candidates[i]) for i in kept]
              )
          ]
      ).sum(axis=1)
  ).reshape(
      -1
  )  # [candidate names]
  pairs, offset = [], 0
  for index in kept:
    count = len(candidates[index])
    best = int(np.argmax(similarity[offset : offset + count]))
    offset += count
    example = examples[index]
    pairs.append({
        **example,
        'prefix': f'{example["mention"]} is',
        'tgt': candidates[index][best],
    })
  return pairs


def load_split(
    spec: str,
    kb: kb_lib.KnowledgeBase,
    selector: synonyms.SynonymSelector,
    *,
    training: bool,
    strategy: str,
    seed: int,
) -> list[dict]:
  """The examples of one spec, each with 'src', 'prefix', 'mention', 'tgt'.

  Training splits drop composite mentions and mentions whose gold concept
  the KB lacks; evaluation splits keep every mention (a missing gold counts
  as a miss) with the first gold name as 'tgt' ('' when there is none).
  """
  dataset, directory, split = parse_spec(spec)
  if split == PRETRAINING_SPLIT:
    samples = kb_pretraining.pretraining_samples(kb, seed=seed)
    return [{**sample, 'concept_ids': (sample['id'],)} for sample in samples]
  if dataset == 'hpo':
    examples = mentions_lib.hpo_mentions(split)
  else:
    documents = mentions_lib.ncbi_disease(directory, split)
    examples = mentions_lib.linking_examples(
        documents, kb=kb, drop_composite=training
    )
  if training and strategy == 'most_similar':
    return most_similar_pairs(examples, kb, selector)
  if training:
    pairs, _ = synonyms.fine_tuning_pairs(
        examples, kb, selector, strategy=strategy, seed=seed
    )
    return pairs
  kept = []
  for example in examples:
    names = [n for c in example['concept_ids'] if c in kb for n in kb.names(c)]
    kept.append({
        **example,
        'prefix': f'{example["mention"]} is',
        'tgt': names[0] if names else '',
    })
  return kept


def _fit_source(src: str, ids: list[int], tokenizer: Any, limit: int):
  """The source's tokens, cut to a word window around START that fits."""
  words = src.split(' ')
  marker = mentions_lib.START_MARKER
  center = words.index(marker) if marker in words else 0
  width = len(words)
  while len(ids) > limit and width > 1:
    width = max(1, int(width * 0.8))
    begin = max(0, center - width // 3)
    ids = tokenizer.encode(' '.join(words[begin : begin + width]))
  return ids[:limit]


@dataclasses.dataclass
class LinkingCollator:
  """Fixed-shape batches of tokenized linking examples."""

  max_source_length: int
  max_target_length: int
  max_prompt_length: int
  pad_id: int
  eos_id: int

  def __call__(self, examples: list[dict]) -> dict[str, np.ndarray]:
    n = len(examples)
    source = np.full((n, self.max_source_length), self.pad_id, np.int32)
    decoder_inputs = np.full((n, self.max_target_length), self.pad_id, np.int32)
    targets = np.full((n, self.max_target_length), self.pad_id, np.int32)
    target_mask = np.zeros((n, self.max_target_length), np.float32)
    prompt = np.full((n, self.max_prompt_length), self.pad_id, np.int32)
    prompt_length = np.ones((n,), np.int32)
    for row, example in enumerate(examples):
      src = example['src_ids'][: self.max_source_length]
      source[row, : len(src)] = src
      prompt_ids = [self.eos_id, *example['prompt_ids']]
      prompt[row, : len(prompt_ids)] = prompt_ids
      prompt_length[row] = len(prompt_ids)
      # Decoder: [eos] + prompt + name; targets: prompt + name + [eos].
      inputs = [*prompt_ids, *example['name_ids'][:-1]]
      labels = [*example['prompt_ids'], *example['name_ids']]
      weights = [0.0] * len(example['prompt_ids'])
      weights += [1.0] * len(example['name_ids'])
      length = min(len(inputs), self.max_target_length)
      decoder_inputs[row, :length] = inputs[:length]
      targets[row, :length] = labels[:length]
      target_mask[row, :length] = weights[:length]
    return {
        'inputs': source,
        'input_mask': (source != self.pad_id).astype(np.int32),
        'decoder_inputs': decoder_inputs,
        'targets': targets,
        'target_mask': target_mask,
        'decoder_prompt': prompt,
        'prompt_length': prompt_length,
        'example_mask': np.ones((n,), np.float32),
    }


def tokenize_examples(
    examples: list[dict], tokenizer: Any, config: ml_collections.ConfigDict
) -> list[dict]:
  """Adds 'src_ids', 'prompt_ids' (' <mention> is') and 'name_ids'.

  A prompt over task.max_prompt_length - 1 tokens keeps the mention's first
  tokens and the root token (' is'); data.overlong='error' refuses it, and a
  prompt + name over data.max_target_length, instead.
  """
  limit = task_settings(config).max_prompt_length - 1  # [eos] comes first.
  root = trie_lib.root_token(tokenizer)
  sources = tokenizer.encode_batch([example['src'] for example in examples])
  prompts = tokenizer.encode_batch(
      [f' {example["mention"]}{trie_lib.PROMPT_SUFFIX}' for example in examples]
  )
  names = tokenizer.encode_batch([f' {example["tgt"]}' for example in examples])
  tokenized = []
  for index, example in enumerate(examples):
    prompt_ids = list(prompts[index])  # = trie_lib.prompt_ids
    name_ids = [*names[index], tokenizer.eos_id]  # = trie_lib.name_ids
    too_long = len(prompt_ids) > limit or (
        1 + len(prompt_ids) + len(name_ids) > config.data.max_target_length
    )
    if too_long and config.data.overlong == 'error':
      raise errors.UserInputError(
          f'linking example {index} (mention {example["mention"]!r}) needs'
          f' {len(prompt_ids) + len(name_ids) + 1} decoder tokens; raise'
          ' task.max_prompt_length / data.max_target_length or set'
          " data.overlong='truncate'"
      )
    if len(prompt_ids) > limit:
      prompt_ids = [*prompt_ids[: limit - 1], root]
    tokenized.append({
        **example,
        'src_ids': _fit_source(
            example['src'],
            list(sources[index]),
            tokenizer,
            config.data.max_source_length,
        ),
        'prompt_ids': prompt_ids,
        'name_ids': name_ids,
    })
  return tokenized


@dataclasses.dataclass
class LinkingData:
  """Tokenized linking splits, the KB and the trainer's iterators."""

  tokenizer: Any
  collator: LinkingCollator
  splits: dict[str, list[dict]]
  kb: kb_lib.KnowledgeBase

  @classmethod
  def from_config(
      cls,
      config: ml_collections.ConfigDict,
      workdir: str | None,
      *,
      save_tokenizer: bool = True,
  ) -> 'LinkingData':
    """Loads the KB and every split; trains the tokenizer if needed."""
    specs = {
        s: config.data[s] for s in ('train', 'eval', 'test') if config.data[s]
    }
    if 'train' not in specs:
      raise errors.UserInputError('data.train is empty; name a linking spec')
    parsed = {split: parse_spec(spec) for split, spec in specs.items()}
    settings = task_settings(config)
    sources = {
        (dataset, directory) for dataset, directory, _ in parsed.values()
    }
    if len(sources) > 1:
      raise errors.UserInputError(
          f'data splits {specs} mix knowledge bases; link every split against'
          ' one dataset'
      )
    kb = load_kb(*sources.pop())
    selector = synonyms.SynonymSelector(kb.name_to_ids())
    splits = {
        split: load_split(
            spec,
            kb,
            selector,
            training=split == 'train',
            strategy=settings.target_strategy,
            seed=config.seed,
        )
        for split, spec in specs.items()
    }

    def training_text():
      yield from kb.name_to_ids()
      for example in splits['train']:
        yield example['src']
        yield example['prefix']

    tokenizer = tokenizer_lib.run_tokenizer(
        config, training_text, workdir if save_tokenizer else None
    )
    collator = LinkingCollator(
        max_source_length=config.data.max_source_length,
        max_target_length=config.data.max_target_length,
        max_prompt_length=settings.max_prompt_length,
        pad_id=tokenizer.pad_id,
        eos_id=tokenizer.eos_id,
    )
    splits = {
        split: tokenize_examples(examples, tokenizer, config)
        for split, examples in splits.items()
    }
    return cls(tokenizer, collator, splits, kb)

  def examples(self, split: str, max_examples: int = 0) -> list[dict]:
    examples = self.splits[split]
    return examples[:max_examples] if max_examples else examples

  def train_iterator(
      self, *, global_batch_size, seed, process_index, process_count
  ) -> iterator_lib.BatchIterator:
    """Infinite, shuffled, resumable batches of the train split."""
    return iterator_lib.BatchIterator(
        self.splits['train'],
        global_batch_size=global_batch_size,
        collate=self.collator,
        seed=seed,
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
    """One ordered pass over a split; the ragged last batch is padded."""
    return iterator_lib.eval_batches(
        self.examples(split, max_examples),
        global_batch_size=global_batch_size,
        collate=self.collator,
        process_index=process_index,
        process_count=process_count,
    )


# -----------------------------------------------------------------------------
# The task.
# -----------------------------------------------------------------------------


class LinkingTask(seq2seq.Seq2SeqTask):
  """GenBioEL: trie-constrained generation of KB names, mapped to concepts.

  Attributes:
    kb: the full target KB.
    subkb: the partial KB (None without `task.subkb`).
    full_trie: the NameTrie of every KB name.
    inference_trie: the trie `predict` searches: the sub-KB's for 'direct'
      partial inference, else `full_trie`.
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      *,
      tokenizer: Any,
      kb: kb_lib.KnowledgeBase,
  ):
    settings = task_settings(config)
    config = ml_collections.ConfigDict({**config.to_dict(), 'task': settings})
    super().__init__(
        config,
        vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id,
        eos_id=tokenizer.eos_id,
        decoder_start_id=tokenizer.eos_id,
    )
    self.tokenizer = tokenizer
    self.kb = kb
    self.num_beams = int(settings.num_beams)
    self.max_prompt_length = int(settings.max_prompt_length)
    self.threshold = float(settings.threshold)
    self.subkb_inference = settings.subkb_inference
    self.full_trie = trie_lib.build_name_trie(kb.name_to_ids(), tokenizer)
    self.subkb = select_subkb(kb, settings.subkb) if settings.subkb else None
    self.inference_trie = self.full_trie
    if self.subkb is not None and self.subkb_inference == 'direct':
      self.inference_trie = trie_lib.build_name_trie(
          self.subkb.name_to_ids(), tokenizer
      )
    self.device_trie = self.inference_trie.to_device(
        self.model_config.vocab_size
    )

  def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    batch = super().dummy_batch(batch_size)
    batch['decoder_prompt'] = np.full(
        (batch_size, self.max_prompt_length), self.pad_id, np.int32
    )
    batch['prompt_length'] = np.ones((batch_size,), np.int32)
    return batch

  def decode_length(self, name_trie: trie_lib.NameTrie) -> int:
    """Tokens to generate for a trie: its longest name, within max_positions."""
    room = self.model_config.max_positions - self.max_prompt_length
    return max(1, min(name_trie.max_name_tokens, room))

  def search(
      self,
      params: Any,
      batch: Batch,
      device_trie: trie_lib.DeviceTrie,
      max_length: int,
  ) -> jax.Array:
    """Trie-constrained beam search after the prompt.

    Jit it with the trie as an argument (`max_length` static) to search
    several tries with one compiled function.

    Args:
      params: the model's params.
      batch: needs inputs, input_mask, decoder_prompt, prompt_length.
      device_trie: the names to search, rooted at the prompt's last token.
      max_length: tokens to generate at most (`decode_length`).

    Returns:
      float32 [batch, beams, 1 + max_length]: column 0 the beam's mean
      token log-probability (-inf for an empty slot), then its token ids.
    """
    prompt = jnp.asarray(batch['decoder_prompt'])  # [batch, prompt]
    lengths = jnp.asarray(batch['prompt_length'], jnp.int32)  # [batch]
    state, _ = model_steps.encoder_decoder_prefill(
        self.model,
        params,
        jnp.asarray(batch['inputs']),
        jnp.asarray(batch['input_mask']),
        cache_length=prompt.shape[1] + max_length,
        decoder_start_id=self.decoder_start_id,
    )
    step = model_steps.encoder_decoder_tokens_to_logits(self.model)
    if prompt.shape[1] > 1:
      # Cache all prompt tokens but each row's last; roll ragged rows back.
      _, state = step(params, prompt[:, :-1], state)
      state['cache'] = cache_lib.set_lengths(state['cache'], lengths - 1)
    start_ids = jnp.take_along_axis(prompt, (lengths - 1)[:, None], axis=1)[
        :, 0
    ]
    output = beam_search.beam_search(
        step,
        params,
        state,
        start_ids,
        num_beams=self.num_beams,
        max_length=max_length,
        eos_id=self.eos_id,
        pad_id=self.pad_id,
        length_penalty=1.0,
        processors=[trie_lib.logits_processor(device_trie)],
    )
    return jnp.concatenate(
        [output.scores[..., None], output.sequences.astype(jnp.float32)],
        axis=-1,
    )

  def predict(
      self, params: Any, batch: Batch, rng: jax.Array | None = None
  ) -> jax.Array:
    """`search` over `inference_trie`; see `search` for the output."""
    del rng
    return self.search(
        params,
        batch,
        self.device_trie,
        self.decode_length(self.inference_trie),
    )

  def decode_outputs(
      self, rows: np.ndarray, name_trie: trie_lib.NameTrie | None = None
  ) -> list[dict]:
    """Ranked names, their concept ids and scores, per row of `search`.

    Args:
      rows: float32 [n, beams, 1 + length] from `search` / `predict`.
      name_trie: the trie searched; default `inference_trie`.

    Returns:
      Per row {'names', 'concept_ids', 'scores'}, best first, empty beam
      slots dropped.
    """
    name_trie = name_trie or self.inference_trie
    decoded = []
    for row in np.asarray(rows):
      names, ids, scores = [], [], []
      for beam in row:
        if not np.isfinite(beam[0]):
          continue
        tokens = beam[1:].astype(np.int64)
        concept_ids = name_trie.concepts_of(tokens, self.tokenizer)
        end = list(tokens).index(self.eos_id) if self.eos_id in tokens else None
        names.append(self.tokenizer.decode(tokens[:end].tolist()).strip())
        ids.append(list(concept_ids))
        scores.append(float(beam[0]))
      decoded.append({'names': names, 'concept_ids': ids, 'scores': scores})
    return decoded

  def evaluate(
      self, predictions: list[dict], examples: list[dict]
  ) -> dict[str, float]:
    """Recall@1 / Recall@k and, with a sub-KB, partial-KB P/R/F1.

    Args:
      predictions: `decode_outputs` rows.
      examples: the examples predicted, with their gold 'concept_ids'.

    Returns:
      'recall_at_1', 'recall_at_<num_beams>' (against the full gold); with
      `task.subkb`, for 'direct' inference 'direct_{precision,recall,f1}'
      and 'threshold_*' at `task.threshold`, for 'post_pruning'
      'post_pruning_*' and 'full_kb_*' (no redemption), all against the gold
      that stays in the sub-KB (NIL mentions dropped).
    """
    rankings = [prediction['concept_ids'] for prediction in predictions]
    gold = [example['concept_ids'] for example in examples]
    metrics = {
        f'recall_at_{k}': partial_kb.recall_at_k(rankings, gold, k)
        for k in sorted({1, self.num_beams})
    }
    if self.subkb is None:
      return metrics
    keys = list(range(len(predictions)))
    partial_ids = set(self.subkb.ids())
    partial_gold = partial_kb.partial_gold(dict(zip(keys, gold)), partial_ids)
    top = partial_kb.top_predictions(
        keys, rankings, [p['scores'] for p in predictions]
    )
    if self.subkb_inference == 'direct':
      variants = {
          'direct': top,
          'threshold': partial_kb.apply_threshold(top, self.threshold),
      }
    else:
      variants = {
          'full_kb': top,
          'post_pruning': partial_kb.post_prune(top, partial_ids),
      }
    for name, chosen in variants.items():
      scores = partial_kb.micro_prf(chosen, partial_gold)
      for key, value in scores.as_dict().items():
        metrics[f'{name}_{key}'] = value
    return metrics


# -----------------------------------------------------------------------------
# Registry hooks (see flaxllm.tasks): config keys, validation, construction.
# -----------------------------------------------------------------------------


def task_defaults() -> ml_collections.ConfigDict:
  """The keys `config.task` takes for this task, with their defaults."""
  return ml_collections.ConfigDict({
      'name': 'linking',
      'label_smoothing': 0.1,
      'num_beams': 5,  # beams kept = candidates ranked (Recall@num_beams)
      'max_prompt_length': 24,  # [eos] + ' <mention> is' in tokens
      'target_strategy': 'most_similar',  # see synonyms.TARGET_STRATEGIES
      'subkb': '',  # partial KB: a branch root id or 'tree:<prefix>'
      'subkb_inference': 'direct',  # or 'post_pruning'
      'threshold': -0.25,  # tau on the mean token log-prob (thresholding)
  })


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates config.task, the data specs and config.model (no loading)."""
  task = task_settings(config)
  if task.num_beams < 1:
    raise errors.UserInputError('config key task.num_beams must be >= 1')
  if task.max_prompt_length < 3:
    raise errors.UserInputError(
        'config key task.max_prompt_length must be >= 3 ([eos], a mention'
        " token and ' is')"
    )
  strategy = task.target_strategy
  if strategy not in synonyms.TARGET_STRATEGIES:
    raise errors.UserInputError(
        f'config key task.target_strategy={strategy!r} is unknown; use one of'
        f' {synonyms.TARGET_STRATEGIES}'
    )
  inference = task.subkb_inference
  if inference not in SUBKB_INFERENCE:
    raise errors.UserInputError(
        f'config key task.subkb_inference={inference!r} is unknown; use one of'
        f' {SUBKB_INFERENCE}'
    )
  for split in ('train', 'eval', 'test'):
    if config.data[split]:
      try:
        dataset, directory, name = parse_spec(config.data[split])
      except errors.UserInputError as error:
        raise errors.UserInputError(
            f'config key data.{split}: {error}'
        ) from None
      if dataset == 'ncbi_disease' and not os.path.isdir(directory):
        raise errors.UserInputError(
            f'data.{split} folder {directory!r} does not exist; point it at'
            ' the ncbi_disease folder (original/ + medic/)'
        )
      if split != 'train' and name == PRETRAINING_SPLIT:
        raise errors.UserInputError(
            f'data.{split} is KB pre-training data; evaluate on mentions'
        )
  if task.max_prompt_length > config.data.max_target_length:
    raise errors.UserInputError(
        'task.max_prompt_length exceeds data.max_target_length; the decoder'
        ' input holds the prompt and the name'
    )
  seq2seq.check_config(config)


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
) -> tuple[LinkingTask, LinkingData]:
  """Loads the KB and the data (and tokenizer); builds the task."""
  del process_count  # Every process loads the same examples; iterators split.
  data = LinkingData.from_config(
      config, workdir, save_tokenizer=process_index == 0
  )
  return LinkingTask(config, tokenizer=data.tokenizer, kb=data.kb), data
