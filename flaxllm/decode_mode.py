r"""--mode=decode: prompts jsonl -> outputs jsonl, with any decoding method.

    python -m flaxllm.main --config=configs/decode.py --workdir=/tmp/dec \
        --config.decode.prompts=prompts.jsonl
    python -m flaxllm.main --config=configs/scd.py --workdir=/tmp/scd \
        --config.decode.prompts=prompts.jsonl --config.decode.amateur=early_exit:8

The target is `config.init_from` ('hf:/folder' or 'gguf:/file.gguf'), or,
when that is empty, the latest checkpoint of the workdir's trained lm run.
The amateur (draft model of speculative decoding, amateur of contrastive
decoding, both for SCD) is `config.decode.amateur`:

  early_exit:K       the target's first K layers with its final norm and head
  hf:/folder         a Hugging Face LLaMA-family folder
  gguf:/file.gguf    a LLaMA-architecture GGUF file
  workdir:/run       the latest checkpoint of an lm run (--mode=train)

and must share the target's tokenizer. Each request's text (field
`decode.prompt_field`) goes through the chat template (`decode.chat_template`:
'auto' uses the tokenizer's own when it has one, else the text as it is),
prompts are batched `decode.batch_size` at a time at one padded width (one
compilation per run), and `decode.method` runs jitted:

  greedy        the target alone, argmax
  sample        the target alone at decode.temperature / top_k / top_p
  speculative   the amateur drafts decode.gamma tokens, the target verifies
  contrastive   contrastive decoding (one call of each model per token)
  scd           speculative contrastive decoding (the amateur drafts and
                contrasts; the target verifies against the CD distribution)

Each output line is the request's record plus 'output' (text), 'tokens'
(ids), 'num_tokens', 'target_calls', 'tokens_per_target_call',
'acceptance_rate' (accepted drafts / drafts proposed; null without drafts)
and 'tokens_per_second' (its tokens over its batch's wall time, compilation
excluded). The file is written to a temporary name and renamed, so a failed
run leaves no half-written output. Decoding runs on one device.
"""

import dataclasses
import json
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flaxllm import configuration
from flaxllm.data import chat_templates
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.decoding import contrastive
from flaxllm.decoding import early_exit
from flaxllm.decoding import model_steps
from flaxllm.decoding import sampling
from flaxllm.decoding import speculative
from flaxllm.errors import UserInputError
from flaxllm.models import decoder

OUTPUT_NAME = 'decode_outputs.jsonl'
# Prompt widths are padded up to a multiple of this (fewer compilations).
_WIDTH_MULTIPLE = 16


class LoadedModel(NamedTuple):
  """A LLaMA-family model and its unboxed params."""

  model: decoder.Decoder
  params: Any


# =============================================================================
# Models
# =============================================================================


def _runtime_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  fields = config.model.to_dict() if 'model' in config else {}
  fields.pop('family', None)
  return fields


def _load_spec(spec: str, fields: dict[str, Any]) -> LoadedModel:
  """An 'hf:' / 'gguf:' checkpoint as a Decoder and its params."""
  from flaxllm.models import pretrained  # pylint: disable=g-import-not-at-top

  model_config = pretrained.model_config(spec, decoder.DecoderConfig, fields)
  params = pretrained.load_params(spec, model_config)
  return LoadedModel(decoder.Decoder(model_config), params)


def _load_workdir(workdir: str) -> tuple[LoadedModel, Any]:
  """The latest checkpoint of an lm run, and its saved tokenizer (or None)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from flaxllm import checkpointing  # pylint: disable=g-import-not-at-top
  from flaxllm.tasks import lm  # pylint: disable=g-import-not-at-top

  config_path = os.path.join(workdir, 'config.json')
  checkpoints = os.path.join(workdir, 'checkpoints')
  if not os.path.isfile(config_path) or not os.path.isdir(checkpoints):
    raise UserInputError(
        f'workdir {workdir} has no trained lm run (config.json + checkpoints);'
        ' train one with --mode=train or set config.init_from'
    )
  with open(config_path) as f:
    run_config = ml_collections.ConfigDict(json.load(f))
  if run_config.task.name not in ('lm', 'sft'):
    raise UserInputError(
        f'workdir {workdir} trained task {run_config.task.name!r}; decoding'
        ' needs a decoder-only lm (or sft) run'
    )
  tokenizer = None
  if os.path.isfile(os.path.join(workdir, 'tokenizer', 'tokenizer.json')):
    tokenizer = tokenizer_lib.load_tokenizer(os.path.join(workdir, 'tokenizer'))
  elif run_config.tokenizer.path:
    tokenizer = tokenizer_lib.load_tokenizer(run_config.tokenizer.path)
  if run_config.get('init_from'):
    model_config = lm.build_model_config(run_config, vocab_size=0, pad_id=0)
  else:
    if tokenizer is None:
      raise UserInputError(f'workdir {workdir} has no tokenizer folder')
    model_config = lm.build_model_config(
        run_config,
        vocab_size=tokenizer.vocab_size,
        pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else 0,
    )
  manager = ocp.CheckpointManager(
      checkpoints, item_names=(checkpointing.STATE, checkpointing.DATA)
  )
  try:
    step = manager.latest_step()
    if step is None:
      raise UserInputError(f'workdir {workdir} has no checkpoint yet')
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            **{checkpointing.STATE: ocp.args.StandardRestore()}
        ),
    )[checkpointing.STATE]
  finally:
    manager.close()
  params = restored.get('ema_params') or restored['params']
  params = jax.tree.map(jnp.asarray, params)
  return LoadedModel(decoder.Decoder(model_config), params), tokenizer


def load_target(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[LoadedModel, tokenizer_lib.Tokenizer]:
  """The target model and its tokenizer.

  Args:
    config: reads `init_from` and `model`'s run-time keys (dtypes).
    workdir: a trained lm run, used when `init_from` is empty.

  Returns:
    (target, tokenizer).
  """
  if config.init_from:
    from flaxllm.models import pretrained  # pylint: disable=g-import-not-at-top

    target = _load_spec(config.init_from, _runtime_fields(config))
    return target, pretrained.load_tokenizer(config.init_from)
  target, tokenizer = _load_workdir(workdir)
  if tokenizer is None:
    raise UserInputError(f'workdir {workdir} has no tokenizer to decode with')
  return target, tokenizer


def load_amateur(
    spec: str, target: LoadedModel, config: ml_collections.ConfigDict
) -> LoadedModel:
  """The amateur / draft model named by `spec` (see the module docstring).

  Args:
    spec: 'early_exit:K', 'hf:/folder', 'gguf:/file' or 'workdir:/run'.
    target: the target, whose layers an early-exit amateur reuses.
    config: the run config (run-time model keys for hf:/gguf:).

  Returns:
    The amateur.

  Raises:
    UserInputError: on a bad spec or a vocabulary that is not the target's.
  """
  kind, _, rest = spec.partition(':')
  if kind == 'early_exit':
    if not rest.isdigit():
      raise UserInputError(f'decode.amateur={spec!r}: K must be an integer')
    model, params = early_exit.early_exit_model(
        target.model.config, target.params, int(rest)
    )
    amateur = LoadedModel(model, params)
  elif kind in ('hf', 'gguf'):
    amateur = _load_spec(spec, _runtime_fields(config))
  elif kind == 'workdir':
    amateur = _load_workdir(rest)[0]
  else:
    raise UserInputError(
        f'decode.amateur={spec!r}; use early_exit:K, hf:, gguf: or workdir:'
    )
  if amateur.model.config.vocab_size != target.model.config.vocab_size:
    raise UserInputError(
        f'decode.amateur {spec!r} has vocab_size'
        f' {amateur.model.config.vocab_size}, the target'
        f' {target.model.config.vocab_size}; the two must share a tokenizer'
    )
  return amateur


# =============================================================================
# Prompts
# =============================================================================


def read_prompts(path: str, field: str, max_prompts: int = 0) -> list[dict]:
  """The request records of a jsonl file.

  Args:
    path: the file.
    field: the key holding each request's text.
    max_prompts: keep the first this many (0: all).

  Returns:
    One dict per non-empty line.

  Raises:
    UserInputError: naming the file and line of the first bad record.
  """
  if not path:
    raise UserInputError(
        'decode.prompts is empty; set --config.decode.prompts=FILE.jsonl'
    )
  if not os.path.isfile(path):
    raise UserInputError(f'decode.prompts file {path!r} does not exist')
  records = []
  with open(path, encoding='utf-8') as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise UserInputError(
            f'{path}:{line_number}: not valid JSON ({e.msg}); each line must'
            ' be one JSON object'
        ) from None
      if not isinstance(record, dict) or not isinstance(record.get(field), str):
        raise UserInputError(
            f'{path}:{line_number}: needs a string field {field!r}; set'
            ' --config.decode.prompt_field to the field holding the prompt'
        )
      records.append(record)
      if max_prompts and len(records) == max_prompts:
        break
  if not records:
    raise UserInputError(f'decode.prompts file {path!r} has no requests')
  return records


def render(tokenizer, text: str, chat_template: str) -> str:
  """The prompt text in the configured format ('auto': template or as is)."""
  if chat_template == 'auto':
    chat_template = 'tokenizer' if tokenizer.chat_template else 'none'
  return chat_templates.render_prompt(tokenizer, text, chat_template)


def encode_prompts(
    tokenizer,
    texts: Sequence[str],
    *,
    chat_template: str,
    add_bos: bool,
    max_prompt_length: int,
) -> list[list[int]]:
  """Token ids of each prompt, rendered and (optionally) after the bos.

  Raises:
    UserInputError: on an empty prompt or one over `max_prompt_length`.
  """
  bos = tokenizer.special_tokens().get('bos_token')
  encoded = []
  for index, text in enumerate(texts):
    prompt = render(tokenizer, text, chat_template)
    if bos and prompt.startswith(bos):
      prompt = prompt[len(bos) :]  # The bos is added as an id below.
    ids = tokenizer.encode(prompt)
    if add_bos and tokenizer.bos_id is not None:
      ids = [tokenizer.bos_id] + ids
    if not ids:
      raise UserInputError(f'prompt {index} is empty; give it some text')
    if len(ids) > max_prompt_length:
      raise UserInputError(
          f'prompt {index} has {len(ids)} tokens, over'
          f' decode.max_prompt_length={max_prompt_length}; raise it'
      )
    encoded.append(ids)
  return encoded


def pad_prompts(
    prompts: Sequence[Sequence[int]], width: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
  """Right-padded int32 [len(prompts), width] ids and [len(prompts)] lengths."""
  ids = np.full((len(prompts), width), pad_id, np.int32)
  for row, prompt in enumerate(prompts):
    ids[row, : len(prompt)] = prompt
  return ids, np.array([len(p) for p in prompts], np.int32)


# =============================================================================
# Decoding
# =============================================================================


@dataclasses.dataclass(frozen=True)
class Settings:
  """What `decode.*` asks for, minus the files (see configuration.py)."""

  method: str = 'greedy'
  max_new_tokens: int = 128
  batch_size: int = 8
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0
  gamma: int = 4
  adaptive_gamma: bool = False
  alpha: float = 0.1
  beta: float = 0.5
  form: str = 'improved'
  amateur_temperature: float = 1.0
  draft_temperature: float = 0.0

  @classmethod
  def from_config(cls, decode: ml_collections.ConfigDict) -> 'Settings':
    names = {field.name for field in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in decode.to_dict().items() if k in names})


def make_generate_fn(
    settings: Settings,
    target_model: decoder.Decoder,
    amateur_model: decoder.Decoder | None,
    *,
    eos_id: int | None,
    pad_id: int,
) -> Callable[..., dict[str, jax.Array]]:
  """A jittable generate(target_params, amateur_params, ids, lengths, rng).

  Args:
    settings: method and its knobs.
    target_model: the target.
    amateur_model: the amateur (None for greedy / sample).
    eos_id: stops a row (kept in its output).
    pad_id: fills rows after they stop.

  Returns:
    A function of (target_params, amateur_params, prompt_ids int32 [batch,
    width], prompt_lengths int32 [batch], rng) returning 'tokens' int32
    [batch, max_new_tokens] and int32 [batch] 'num_tokens', 'accepted',
    'drafted', 'target_calls'.
  """
  s = settings
  max_length = s.max_new_tokens
  greedy = s.method == 'greedy' or s.temperature == 0
  temperature = 0.0 if greedy else s.temperature
  target_fn = model_steps.decoder_tokens_to_logits(target_model)
  amateur_fn = (
      model_steps.decoder_tokens_to_logits(amateur_model)
      if amateur_model is not None
      else None
  )
  contrast = dict(
      alpha=s.alpha,
      beta=s.beta,
      form=s.form,
      amateur_temperature=s.amateur_temperature,
  )
  sampling_knobs = dict(temperature=temperature, top_k=s.top_k, top_p=s.top_p)
  draft_temperature = s.draft_temperature or None

  def count_tokens(tokens):
    if eos_id is None:
      return jnp.full(tokens.shape[:1], max_length, jnp.int32)
    is_eos = tokens == eos_id
    return jnp.where(
        jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, max_length
    ).astype(jnp.int32)

  def generate(target_params, amateur_params, prompt_ids, prompt_lengths, rng):
    cache_length = prompt_ids.shape[1] + max_length + s.gamma + 1
    target_cache, start_ids = model_steps.decoder_prefill(
        target_model,
        target_params,
        prompt_ids,
        prompt_lengths,
        cache_length=cache_length,
    )
    if amateur_model is not None:
      amateur_cache, _ = model_steps.decoder_prefill(
          amateur_model,
          amateur_params,
          prompt_ids,
          prompt_lengths,
          cache_length=cache_length,
      )
    common = dict(max_length=max_length, eos_id=eos_id, pad_id=pad_id, rng=rng)
    if s.method in ('greedy', 'sample', 'contrastive'):
      if s.method == 'contrastive':
        tokens = contrastive.contrastive_decode(
            target_fn,
            target_params,
            target_cache,
            amateur_fn,
            amateur_params,
            amateur_cache,
            start_ids,
            **common,
            **contrast,
            **sampling_knobs,
        )
      else:
        tokens = sampling.sample_decode(
            target_fn,
            target_params,
            target_cache,
            start_ids,
            **common,
            **sampling_knobs,
        )
      num_tokens = count_tokens(tokens)
      zeros = jnp.zeros_like(num_tokens)
      return dict(
          tokens=tokens,
          num_tokens=num_tokens,
          accepted=zeros,
          drafted=zeros,
          target_calls=num_tokens,
      )
    speculative_knobs = dict(
        gamma=s.gamma,
        adaptive_gamma=s.adaptive_gamma,
        draft_temperature=draft_temperature,
        **common,
        **sampling_knobs,
    )
    models = (
        target_fn,
        target_params,
        target_cache,
        amateur_fn,
        amateur_params,
        amateur_cache,
        start_ids,
    )
    if s.method == 'speculative':
      out = speculative.speculative_decode(*models, **speculative_knobs)
    else:
      out = contrastive.speculative_contrastive_decode(
          *models, **speculative_knobs, **contrast
      )
    # Drafts proposed: gamma per round; with adaptive gamma the draft calls
    # (an upper bound: the batch's longest draft, plus catch-up calls).
    drafted = (
        out.draft_calls if s.adaptive_gamma else out.target_calls * s.gamma
    )
    return dict(
        tokens=out.tokens,
        num_tokens=out.num_tokens,
        accepted=out.accepted,
        drafted=drafted,
        target_calls=out.target_calls,
    )

  return generate


class Generator:
  """Compiles a method once per prompt width and decodes batches with it."""

  def __init__(
      self,
      settings: Settings,
      target: LoadedModel,
      amateur: LoadedModel | None,
      tokenizer,
      *,
      seed: int = 0,
  ):
    """Builds the generator.

    Args:
      settings: method and knobs.
      target: the target.
      amateur: the amateur; needed by speculative, contrastive and scd.
      tokenizer: the shared tokenizer (eos, pad, decoding).
      seed: PRNG seed of sampling methods.
    """
    if settings.method in configuration.AMATEUR_METHODS and amateur is None:
      raise UserInputError(
          f'decode.method={settings.method!r} needs decode.amateur'
      )
    self.settings = settings
    self.target = target
    self.amateur = (
        amateur if settings.method in configuration.AMATEUR_METHODS else None
    )
    self.tokenizer = tokenizer
    self.eos_id = tokenizer.eos_id
    self.pad_id = (
        tokenizer.pad_id if tokenizer.pad_id is not None else self.eos_id
    )
    self._generate = jax.jit(
        make_generate_fn(
            settings,
            target.model,
            self.amateur.model if self.amateur else None,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
        )
    )
    self._compiled = {}
    self._rng = jax.random.key(seed)
    self.compile_seconds = 0.0

  def _args(self, ids: np.ndarray, lengths: np.ndarray, rng: jax.Array):
    amateur_params = self.amateur.params if self.amateur else None
    return (self.target.params, amateur_params, ids, lengths, rng)

  def _compiled_for(self, width: int):
    if width not in self._compiled:
      batch = self.settings.batch_size
      start = time.perf_counter()
      self._compiled[width] = self._generate.lower(
          *self._args(
              np.zeros((batch, width), np.int32),
              np.ones((batch,), np.int32),
              self._rng,
          )
      ).compile()
      self.compile_seconds += time.perf_counter() - start
    return self._compiled[width]

  def generate(self, prompts: Sequence[Sequence[int]]) -> list[dict]:
    """Decodes token-id prompts, `batch_size` at a time.

    Args:
      prompts: each prompt's ids (non-empty).

    Returns:
      Per prompt: 'tokens' (list of ids, eos included), 'num_tokens',
      'target_calls', 'accepted', 'drafted', 'seconds' (its batch's wall
      time) and 'batch' (its batch's index).
    """
    batch = self.settings.batch_size
    longest = max(len(p) for p in prompts)
    width = -(-longest // _WIDTH_MULTIPLE) * _WIDTH_MULTIPLE
    compiled = self._compiled_for(width)
    results = []
    for begin in range(0, len(prompts), batch):
      chunk = list(prompts[begin : begin + batch])
      real = len(chunk)
      chunk += [chunk[-1]] * (batch - real)  # Padding rows, dropped below.
      ids, lengths = pad_prompts(chunk, width, self.pad_id)
      self._rng, rng = jax.random.split(self._rng)
      start = time.perf_counter()
      out = jax.device_get(compiled(*self._args(ids, lengths, rng)))
      seconds = time.perf_counter() - start
      for row in range(real):
        count = int(out['num_tokens'][row])
        results.append({
            'tokens': out['tokens'][row, :count].tolist(),
            'num_tokens': count,
            'target_calls': int(out['target_calls'][row]),
            'accepted': int(out['accepted'][row]),
            'drafted': int(out['drafted'][row]),
            'seconds': seconds,
            'batch': begin // batch,
        })
    return results


def request_record(record: dict, result: dict, tokenizer) -> dict:
  """An output line: the request plus its text, tokens and speed figures."""
  calls = max(result['target_calls'], 1)
  return {
      **record,
      'output': tokenizer.decode(result['tokens']),
      'tokens': result['tokens'],
      'num_tokens': result['num_tokens'],
      'target_calls': result['target_calls'],
      'tokens_per_target_call': result['num_tokens'] / calls,
      'acceptance_rate': (
          result['accepted'] / result['drafted'] if result['drafted'] else None
      ),
      'tokens_per_second': result['num_tokens'] / max(result['seconds'], 1e-9),
  }


def summarize(results: Sequence[dict]) -> dict[str, float]:
  """Totals over a run: tokens/s over batch wall time, acceptance, calls."""
  batch_seconds = {}
  for result in results:
    batch_seconds[result['batch']] = result['seconds']
  tokens = sum(r['num_tokens'] for r in results)
  drafted = sum(r['drafted'] for r in results)
  wall = sum(batch_seconds.values())
  return {
      'requests': len(results),
      'tokens': tokens,
      'seconds': wall,
      'tokens_per_second': tokens / max(wall, 1e-9),
      'tokens_per_target_call': (
          tokens / max(sum(r['target_calls'] for r in results), 1)
      ),
      'acceptance_rate': (
          sum(r['accepted'] for r in results) / drafted if drafted else None
      ),
  }


def write_jsonl_atomically(path: str, records: Sequence[dict]) -> None:
  """Writes records one per line via a temporary file and a rename."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}'
  try:
    with open(tmp, 'w', encoding='utf-8') as f:
      for record in records:
        f.write(json.dumps(record, ensure_ascii=False, default=str) + '\n')
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def decode_file(config: ml_collections.ConfigDict, workdir: str) -> str:
  """--mode=decode: decodes `decode.prompts` to `decode.output`.

  Args:
    config: the validated run config.
    workdir: the run folder (default output place; the target when
      `init_from` is empty).

  Returns:
    The path of the outputs jsonl.
  """
  d = config.decode
  records = read_prompts(d.prompts, d.prompt_field, d.max_prompts)
  settings = Settings.from_config(d)
  target, tokenizer = load_target(config, workdir)
  needs_amateur = settings.method in configuration.AMATEUR_METHODS
  amateur = load_amateur(d.amateur, target, config) if needs_amateur else None
  prompts = encode_prompts(
      tokenizer,
      [record[d.prompt_field] for record in records],
      chat_template=d.chat_template,
      add_bos=d.add_bos,
      max_prompt_length=d.max_prompt_length,
  )
  generator = Generator(settings, target, amateur, tokenizer, seed=config.seed)
  results = generator.generate(prompts)
  path = d.output or os.path.join(workdir, OUTPUT_NAME)
  write_jsonl_atomically(
      path,
      [
          request_record(record, result, tokenizer)
          for record, result in zip(records, results)
      ],
  )
  summary = summarize(results)
  accept = summary['acceptance_rate']
  print(
      f'Wrote {summary["requests"]} outputs to {path}: method'
      f' {settings.method}, {summary["tokens"]} tokens in'
      f' {summary["seconds"]:.2f} s ({summary["tokens_per_second"]:.1f}'
      f' tokens/s; compile {generator.compile_seconds:.1f} s),'
      f' {summary["tokens_per_target_call"]:.2f} tokens per target call'
      + (f', acceptance {accept:.3f}' if accept is not None else ''),
      flush=True,
  )
  return path
