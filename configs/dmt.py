r"""DMT and the other SFT data-composition strategies over three abilities.

Math, code and general sources scheduled by `task.recipe` (flaxllm.recipes.
dmt): `single`, `multi_task`, `sequential` (code -> math -> general),
`mixed_sequential` ((code + math) -> general) or `dmt` (DMT(k): code + math,
then general plus a fraction k of each specialist). Every stage boundary is a
checkpoint; evaluation reports math accuracy (GSM8K checker), code pass@1
(sandboxed execution) and general ROUGE-L.

  python -m flaxllm.main --config=configs/dmt.py:runlocal,strategy=dmt,k=0.0625 \
      --workdir=/tmp/dmt

`runlocal` uses generated stand-ins for each ability (flaxllm.data.
synthetic_sft) and a tiny LLaMA. Its math problems have operands 1-20
(`math_level=small`, the default), whose sums and differences mostly occur
in training problems: the tiny model solves 75% trained on math alone;
`math_level=two_digit` (operands 10-59, the default before 2026-11-26) gives
problems it does not learn at 900 steps (4% alone). The full variant points the sources at GSM8K
(RFT), Code Alpaca and a general set with `--config.task.sources=...`.
"""

from configs import common

# math_level -> the synthetic math generator (flaxllm.data.synthetic_sft).
_MATH_GENERATORS = {'two_digit': 'math', 'small': 'math_small'}


def get_config(arg=None):
  arg = common.parse_arg(
      arg,
      runlocal=False,
      strategy='dmt',
      k=1 / 256,
      single='math',
      math_level='small',
  )
  if arg.math_level not in _MATH_GENERATORS:
    raise ValueError(
        f'config argument math_level={arg.math_level!r} is unknown; use one'
        f' of {sorted(_MATH_GENERATORS)}'
    )
  math = _MATH_GENERATORS[arg.math_level]
  config = common.default_config()
  config.task.name = 'sft'
  config.task.pack = True
  config.task.loss_on = 'target'
  config.task.chat_template = 'auto'
  config.task.separator = ''
  config.task.sources = (
      f'math=synthetic:{math}:train:20000,code=synthetic:code:train:20000,'
      'general=hpo:def2name:train'
  )
  from flaxllm.recipes import dmt  # pylint: disable=g-import-not-at-top

  config.task.recipe = dmt.recipe_defaults()
  config.task.recipe.strategy = arg.strategy
  config.task.recipe.k = arg.k
  config.task.recipe.single_source = (
      arg.single if arg.strategy == 'single' else ''
  )
  config.model = common.decoder_model('small')
  config.data.train = ''
  config.data.eval = ''
  config.data.test = (
      f'synthetic:{math}:test:200;synthetic:code:test:200;'
      'synthetic:general:test:200'
  )
  config.data.max_source_length = 160
  config.data.max_target_length = 64
  config.tokenizer.vocab_size = 4000
  config.train.steps = 6000
  config.train.batch_size = 32
  config.train.eval_every = 0
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 200
  config.checkpoint.every = 1000

  if arg.runlocal:
    config.model = common.decoder_model('tiny')
    config.tokenizer.vocab_size = 2000
    config.task.sources = (
        f'math=synthetic:{math}:train:1500,code=synthetic:code:train:1500,'
        'general=synthetic:general:train:1500'
    )
    config.data.test = (
        f'synthetic:{math}:test:48;synthetic:code:test:48;'
        'synthetic:general:test:48'
    )
    config.data.max_source_length = 128
    config.data.max_target_length = 48
    config.train.steps = 900
    config.train.batch_size = 16
    config.train.log_every = 100
    config.train.eval_batch_size = 48
    config.optimizer.warmup_steps = 60
    config.checkpoint.every = 0
  return config
