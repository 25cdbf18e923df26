"""The run config: every section's defaults, and validation before any work.

`configs/*.py` start from `default_config()` and change what their experiment
needs. `validate()` checks the whole resolved config (unknown keys, types,
value ranges, mesh against the device count, batch against the data axes,
paths) and raises `UserInputError` with one line naming the key and the fix.
Model keys are checked by the model family's own config class.
"""

import math
import os
from typing import Any

import ml_collections

from flaxllm.errors import UserInputError

# Keys of config.model that do not change the parameter shapes: a resumed run
# may change them; any other model key must match the checkpoint's.
NON_SHAPE_MODEL_KEYS = frozenset(
    {'dtype', 'remat', 'attention_impl', 'dropout_rate', 'attention_dropout'}
)


def default_config() -> ml_collections.ConfigDict:
  """All sections with their defaults. Configs override what they need."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Precision of float32 matmuls (see flaxllm.precision): 'default' is the
  # backend's (TF32 on GPUs); 'float32' matches PyTorch's float32 training.
  c.matmul_precision = 'default'

  c.task = ml_collections.ConfigDict()  # checked by flaxllm.tasks
  c.task.name = 'seq2seq'

  c.mesh = ml_collections.ConfigDict()
  c.mesh.shape = (-1, 1, 1)  # ('data', 'fsdp', 'tensor'); -1 = the rest
  # batch over data+fsdp, params' embed over fsdp (ZeRO-3 style), the wide
  # dims over tensor. Rules apply in order and a mesh axis is used at most
  # once per array, so an activation [batch, length, embed] keeps embed
  # replicated while a param [vocab, embed] shards embed over fsdp.
  c.mesh.logical_axis_rules = (
      ('batch', ('data', 'fsdp')),
      ('vocab', 'tensor'),
      ('mlp', 'tensor'),
      ('heads', 'tensor'),
      ('embed', 'fsdp'),
      ('kv', None),
      ('length', None),
      ('layers', None),
  )

  c.model = ml_collections.ConfigDict()  # filled by each config's family
  # Start from existing weights: 'hf:/folder' or 'gguf:/file.gguf' (see
  # flaxllm.models.pretrained). The checkpoint fixes the architecture; only
  # config.model's run-time keys (dtypes, scan_layers, remat, ...) apply.
  c.init_from = ''

  c.data = ml_collections.ConfigDict()
  c.data.train = 'hpo:def2name:train'  # source specs, see flaxllm.data.sources
  c.data.eval = 'hpo:def2name:valid'
  c.data.test = 'hpo:def2name:test'
  c.data.source_field = 'src'
  c.data.target_field = 'tgt'
  c.data.max_source_length = 128
  c.data.max_target_length = 32
  c.data.overlong = 'truncate'  # or 'error'
  c.data.on_bad_record = 'fail'  # or 'skip'
  c.data.bucket_boundaries = ()  # e.g. (32, 64, 128): pad to these lengths
  c.data.max_eval_examples = 0  # cap on examples decoded at eval, 0 = all

  c.tokenizer = ml_collections.ConfigDict()
  c.tokenizer.path = ''  # a local HF tokenizer folder; '' = train a BPE
  c.tokenizer.vocab_size = 8000

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000  # length of the run (and of the LR schedule)
  c.train.stop_at_step = 0  # >0: stop there with a checkpoint, resumable later
  # >0: end training after this many seconds of the loop (checkpoint, then
  # the final evaluation as at the last step); a rerun resumes training.
  c.train.max_train_seconds = 0.0
  c.train.batch_size = 64  # global, over all processes
  c.train.grad_accum_steps = 1
  c.train.log_every = 50
  c.train.eval_every = 500  # 0 = only at the end
  c.train.eval_batch_size = 64
  c.train.num_samples = 5  # sample outputs printed at eval

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.decay = 'cosine'
  c.optimizer.end_lr_fraction = 0.0
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.98
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.01
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.ema_decay = 0.0  # 0 = no EMA

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500  # 0 = only the final save
  c.checkpoint.keep = 3
  c.checkpoint.async_save = True

  c.profile = ml_collections.ConfigDict()
  c.profile.steps = (0, 0)  # trace steps [start, stop) to workdir/profile

  c.predict = ml_collections.ConfigDict()
  c.predict.split = 'test'  # which data split --mode=predict decodes
  c.predict.max_examples = 0  # the first N examples of the split, 0 = all
  # Seq2seq generation (eval and --mode=predict): 1 = greedy, k > 1 = beam
  # search ranked by log p / len ** length_penalty; max_decode_len 0 =
  # data.max_target_length.
  c.predict.beam_size = 1
  c.predict.length_penalty = 1.0
  c.predict.max_decode_len = 0

  # Noise on hidden representations while training (flaxllm.perturb).
  c.perturb = ml_collections.ConfigDict()
  c.perturb.kind = 'none'  # 'none' | 'hype' | 'neftune'
  # HyPe: eps ~ sigma * N(0, 1) ('normal'), U(-sigma, sigma) ('uniform', the
  # paper) or U(0, sigma) ('uniform_positive', the authors' code).
  c.perturb.distribution = 'normal'
  c.perturb.sigma = 1e-5  # HyPe's eps scale (the code's `hype_eps`)
  c.perturb.layers = 'all'  # HyPe: 'all' | 'top:k' | 'bottom:k' layer inputs
  c.perturb.attention_output = False  # HyPe: also each feed-forward input
  c.perturb.neftune_alpha = 5.0  # NEFTune: noise scale alpha / sqrt(L * d)
  c.perturb.neftune_mask_pads = False  # NEFTune: no noise on padding

  # --mode=decode (flaxllm.decode_mode): prompts jsonl -> outputs jsonl with
  # the target of config.init_from (or the workdir's trained lm), alone or
  # with an amateur/draft model.
  c.decode = ml_collections.ConfigDict()
  c.decode.prompts = ''  # jsonl, one request per line
  c.decode.prompt_field = 'prompt'  # the field holding each request's text
  c.decode.output = ''  # '' = workdir/decode_outputs.jsonl
  c.decode.chat_template = 'auto'  # 'auto' | 'tokenizer' | 'alpaca' | 'none'
  c.decode.add_bos = True  # start each prompt with the tokenizer's bos
  c.decode.max_prompts = 0  # 0 = every line of the file
  c.decode.max_prompt_length = 512  # tokens; longer prompts are an error
  c.decode.max_new_tokens = 128
  c.decode.batch_size = 8
  c.decode.method = 'greedy'  # see DECODE_METHODS
  c.decode.temperature = 0.0  # 0 = greedy (any method but 'sample')
  c.decode.top_k = 0
  c.decode.top_p = 1.0
  # The amateur / draft: 'early_exit:K' (the target's first K layers),
  # 'hf:/folder', 'gguf:/file.gguf' or 'workdir:/trained/lm/run'.
  c.decode.amateur = ''
  c.decode.gamma = 4  # draft tokens per round (speculative, scd)
  c.decode.adaptive_gamma = False
  c.decode.alpha = 0.1  # contrastive plausibility threshold
  c.decode.beta = 0.5  # contrast strength ('improved' form)
  c.decode.form = 'improved'  # or 'original'
  c.decode.amateur_temperature = 1.0  # of the amateur's contrast log-probs
  c.decode.draft_temperature = 0.0  # 0 = the same as decode.temperature

  # ZOOTER routing over a zoo of LMs and --mode=route (flaxllm.recipes.zooter).
  from flaxllm.recipes import zooter  # pylint: disable=g-import-not-at-top

  c.route = zooter.route_defaults()
  return c


DECODE_METHODS = ('greedy', 'sample', 'speculative', 'contrastive', 'scd')
# Methods that run an amateur / draft model next to the target.
AMATEUR_METHODS = ('speculative', 'contrastive', 'scd')
AMATEUR_KINDS = ('early_exit', 'hf', 'gguf', 'workdir')


def _check_decode(config: ml_collections.ConfigDict) -> None:
  """Validates config.decode (read by --mode=decode only)."""
  d = config.decode
  for key, allowed in (
      ('method', DECODE_METHODS),
      ('chat_template', ('auto', 'tokenizer', 'alpaca', 'none')),
      ('form', ('original', 'improved')),
  ):
    if d[key] not in allowed:
      raise UserInputError(
          f'config key decode.{key}={d[key]!r}; use one of {allowed}'
      )
  for key in ('max_prompt_length', 'max_new_tokens', 'batch_size', 'gamma'):
    if d[key] <= 0:
      raise UserInputError(f'config key decode.{key}={d[key]} must be > 0')
  if d.max_prompts < 0 or d.top_k < 0:
    raise UserInputError(
        'config keys decode.max_prompts and decode.top_k must be >= 0'
    )
  if not 0.0 < d.top_p <= 1.0:
    raise UserInputError(f'config key decode.top_p={d.top_p} must be in (0, 1]')
  if d.temperature < 0 or d.draft_temperature < 0:
    raise UserInputError(
        'config keys decode.temperature and decode.draft_temperature must be'
        ' >= 0 (0: greedy / the same as temperature)'
    )
  if d.method == 'sample' and d.temperature == 0:
    raise UserInputError(
        "config key decode.method='sample' needs decode.temperature > 0; use"
        " method='greedy' for temperature 0"
    )
  if not 0.0 <= d.alpha <= 1.0 or d.beta < 0 or d.amateur_temperature <= 0:
    raise UserInputError(
        'config keys decode.alpha in [0, 1], decode.beta >= 0 and'
        ' decode.amateur_temperature > 0'
    )
  if d.prompts and not os.path.isfile(d.prompts):
    raise UserInputError(
        f'decode.prompts file {d.prompts!r} does not exist; fix'
        ' --config.decode.prompts'
    )
  if d.method in AMATEUR_METHODS and not d.amateur:
    raise UserInputError(
        f'decode.method={d.method!r} needs an amateur; set'
        " --config.decode.amateur='early_exit:K' (or hf:/gguf:/workdir:)"
    )
  if d.amateur:
    kind, separator, rest = d.amateur.partition(':')
    if not separator or kind not in AMATEUR_KINDS or not rest:
      raise UserInputError(
          f'config key decode.amateur={d.amateur!r} is not one of'
          " 'early_exit:K', 'hf:/folder', 'gguf:/file', 'workdir:/run'"
      )
    if kind == 'early_exit' and not (rest.isdigit() and int(rest) > 0):
      raise UserInputError(
          f'config key decode.amateur={d.amateur!r}: K in early_exit:K must be'
          ' a positive layer count'
      )
    if kind == 'workdir' and not os.path.isfile(
        os.path.join(rest, 'config.json')
    ):
      raise UserInputError(
          f'decode.amateur workdir {rest!r} has no config.json; point it at a'
          ' run trained with --mode=train'
      )
    if kind in ('hf', 'gguf'):
      from flaxllm.models import pretrained  # pylint: disable=g-import-not-at-top

      pretrained.parse(d.amateur)


def _check_keys(
    config: ml_collections.ConfigDict,
    reference: ml_collections.ConfigDict,
    prefix='',
):
  """Unknown keys and type mismatches against the defaults, recursively."""
  for key in config.keys():
    name = f'{prefix}{key}'
    if prefix == '' and key in ('model', 'task'):
      continue  # checked by the task and its model family
    if key not in reference:
      close = [k for k in reference.keys() if k[:3] == key[:3]]
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      raise UserInputError(
          f'config key {name!r} is unknown{hint}; remove it or fix its name'
      )
    value, default = config[key], reference[key]
    if isinstance(default, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise UserInputError(
            f'config key {name!r} must be a section (a ConfigDict)'
        )
      _check_keys(value, default, prefix=f'{name}.')
    elif not _same_kind(value, default):
      raise UserInputError(
          f'config key {name!r} is {value!r} ({type(value).__name__}) but must'
          f' be a {type(default).__name__} like {default!r}'
      )


def _same_kind(value: Any, default: Any) -> bool:
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, int) and not isinstance(value, bool)
  if isinstance(default, (tuple, list)):
    return isinstance(value, (tuple, list))
  if isinstance(default, str):
    return isinstance(value, str)
  return True


def _check_positive(config, *names):
  for name in names:
    section, key = name.split('.')
    if config[section][key] <= 0:
      raise UserInputError(
          f'config key {name!r} is {config[section][key]} but must be > 0'
      )


def _spec_paths(spec: str) -> list[str]:
  """The local paths a (';'-joined) data source spec reads."""
  paths = [_spec_path(part.strip()) for part in spec.split(';')]
  return [path for path in paths if path is not None]


def _spec_path(spec: str) -> str | None:
  """The local path a data source spec reads, if it names one."""
  if not spec or spec.startswith(('hpo:', 'tfds:', 'synthetic:')):
    return None
  kind, sep, rest = spec.partition(':')
  if sep and kind == 'glue':  # glue:<task>:<split>@<dir> | glue:<task>:<file>
    split, at, folder = rest.partition(':')[2].partition('@')
    return folder if at else split
  if sep and kind == 'mugglemath':  # mugglemath:<options>:<base spec>
    from flaxllm.recipes import mugglemath  # pylint: disable=g-import-not-at-top

    return _spec_path(mugglemath.parse_source_spec(rest)[1])
  if sep and kind in (
      'jsonl',
      'json',
      'csv',
      'parquet',
      'disk',
      'text',
      'pubmedqa',
      'ncbi_disease',
  ):
    spec = rest
    if kind in ('disk', 'pubmedqa', 'ncbi_disease') and ':' in spec:
      spec = spec.rsplit(':', 1)[0]
  return spec


def validate(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int,
    num_processes: int = 1,
) -> None:
  """Checks the whole config before any work is done.

  Args:
    config: the resolved run config.
    num_devices: devices of the whole job (all processes).
    num_processes: processes of the job (hosts).

  Raises:
    UserInputError: on the first problem, naming the key and the fix.
  """
  # Imported here: sharding imports jax, and config checks stay cheap to load.
  from flaxllm import perturb  # pylint: disable=g-import-not-at-top
  from flaxllm import precision  # pylint: disable=g-import-not-at-top
  from flaxllm import sharding  # pylint: disable=g-import-not-at-top
  from flaxllm import tasks  # pylint: disable=g-import-not-at-top

  _check_keys(config, default_config())
  tasks.check_task_config(config)
  perturb.check_config(config)
  precision.check(config.matmul_precision)
  _check_positive(
      config,
      'train.steps',
      'train.batch_size',
      'train.grad_accum_steps',
      'train.log_every',
      'train.eval_batch_size',
      'data.max_source_length',
      'data.max_target_length',
      'checkpoint.keep',
      'tokenizer.vocab_size',
  )
  for key, allowed in (
      ('data.overlong', ('truncate', 'error')),
      ('data.on_bad_record', ('fail', 'skip')),
      ('optimizer.name', ('adamw', 'adafactor', 'sgd')),
      ('optimizer.decay', ('cosine', 'linear', 'constant')),
      ('predict.split', ('train', 'eval', 'test')),
  ):
    section, name = key.split('.')
    if config[section][name] not in allowed:
      raise UserInputError(
          f'config key {key!r} is {config[section][name]!r}; use one of'
          f' {allowed}'
      )
  if config.train.max_train_seconds < 0:
    raise UserInputError(
        f"config key 'train.max_train_seconds' is"
        f' {config.train.max_train_seconds} but must be >= 0 (0: no limit)'
    )
  if not 0.0 <= config.optimizer.ema_decay < 1.0:
    raise UserInputError("config key 'optimizer.ema_decay' must be in [0, 1)")
  start, stop = tuple(config.profile.steps)
  if stop < start:
    raise UserInputError(
        "config key 'profile.steps' must be (start, stop) with start <= stop"
    )

  # Mesh against the devices, batch against the data axes.
  mesh_shape = sharding.resolve_mesh_shape(config.mesh.shape, num_devices)
  rules = dict(config.mesh.logical_axis_rules)
  batch_axes = rules.get('batch') or ()
  batch_axes = (batch_axes,) if isinstance(batch_axes, str) else batch_axes
  data_shards = math.prod(
      mesh_shape[sharding.MESH_AXES.index(a)] for a in batch_axes
  )
  for key in ('batch_size', 'eval_batch_size'):
    size = config.train[key]
    if size % data_shards or size % num_processes:
      raise UserInputError(
          f'train.{key}={size} is not divisible by the {data_shards} batch'
          f' shards of mesh {mesh_shape} (and {num_processes} processes); set'
          f' --config.train.{key} to a multiple of'
          f' {math.lcm(data_shards, num_processes)}'
      )
  micro, rem = divmod(config.train.batch_size, config.train.grad_accum_steps)
  if rem or micro % data_shards:
    raise UserInputError(
        f'train.batch_size={config.train.batch_size} split into'
        f' train.grad_accum_steps={config.train.grad_accum_steps} microbatches'
        f' must leave a multiple of the {data_shards} batch shards per'
        ' microbatch'
    )

  # Paths.
  for split in ('train', 'eval', 'test'):
    for path in _spec_paths(config.data[split]):
      if not os.path.exists(path):
        raise UserInputError(
            f'data.{split} file {path!r} does not exist; fix'
            f' --config.data.{split}'
        )
  if config.init_from:
    from flaxllm.models import pretrained  # pylint: disable=g-import-not-at-top

    pretrained.parse(config.init_from)
  _check_decode(config)
  from flaxllm.recipes import zooter  # pylint: disable=g-import-not-at-top

  zooter.check_config(config)
  if config.tokenizer.path and not os.path.isdir(config.tokenizer.path):
    raise UserInputError(
        f'tokenizer.path {config.tokenizer.path!r} is not a folder; point it at'
        ' a local Hugging Face tokenizer folder or leave it empty to train one'
    )


def model_shape(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The model keys that fix parameter shapes (compared on resume)."""
  return {
      k: v
      for k, v in config.model.to_dict().items()
      if k not in NON_SHAPE_MODEL_KEYS
  } | {
      'vocab_size': config.tokenizer.vocab_size,
      'tokenizer': config.tokenizer.path,
      'init_from': config.get('init_from', ''),
  }
