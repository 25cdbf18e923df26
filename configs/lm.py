r"""Causal LM (LLaMA-style decoder) on the embedded HPO corpus, or your text.

By default each document is `definition \n name` from `hpo_def2name`: the
model learns the text, and at evaluation continues each definition with a
name (greedy), scored by BLEU / ROUGE-L against the reference name. Training
rows pack several documents (segment ids keep them apart).

  python -m flaxllm.main --config=configs/lm.py:runlocal --workdir=/tmp/lm
  # Continue training a checkpoint you have (architecture from the file):
  python -m flaxllm.main --config=configs/lm.py \
      --config.init_from=gguf:/path/SmolLM2-135M-Instruct.Q4_1.gguf \
      --config.data.train=/path/train.jsonl --workdir=/tmp/smol

Variants: `runlocal` (CPU-sized, minutes), `size=tiny|small|tinyllama`,
`sft` (loss only on the response tokens), `nopack` (one document per row).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(
      arg, runlocal=False, size='small', sft=False, nopack=False
  )
  config = common.default_config()
  config.task.name = 'lm'
  config.task.pack = not arg.nopack
  config.task.loss_on = 'target' if arg.sft else 'all'
  config.task.separator = '\n'
  config.model = common.decoder_model(arg.size)

  config.data.train = 'hpo:def2name:train'
  config.data.eval = 'hpo:def2name:valid'
  config.data.test = 'hpo:def2name:test'
  config.data.max_source_length = 128  # prompt budget
  config.data.max_target_length = 32  # continuation budget
  config.tokenizer.vocab_size = 8000

  config.train.steps = 20_000
  config.train.batch_size = 64
  config.train.eval_every = 2000
  config.optimizer.learning_rate = 5e-4
  config.optimizer.warmup_steps = 1000
  config.checkpoint.every = 2000

  if arg.runlocal:
    config.model = common.decoder_model('tiny')
    config.tokenizer.vocab_size = 4000
    config.data.max_source_length = 96
    config.data.max_target_length = 24
    config.data.max_eval_examples = 200
    config.train.steps = 1500
    config.train.batch_size = 16
    config.train.log_every = 100
    config.train.eval_every = 500
    config.train.eval_batch_size = 32
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 150
    config.checkpoint.every = 500
  return config
