r"""A small LLaMA draft / amateur distilled from SmolLM2-135M (lm task).

Sequence-level distillation: the draft learns the next-token loss on text the
target generated (or on any corpus), with the target's tokenizer, so it can
draft for it (speculative decoding) and be its amateur (contrastive decoding,
SCD). First write the data and the tokenizer by sampling the target (or,
much faster on a CPU, from reference text with --source=corpus):

  .venv/bin/python experiments/make_distill_data.py --out=/tmp/distill
  python -m flaxllm.main --config=configs/distill_draft.py:data=/tmp/distill \
      --workdir=/tmp/draft
  # then: --config.decode.amateur=workdir:/tmp/draft in configs/scd.py, or
  .venv/bin/python experiments/scd_eval.py --distilled=workdir:/tmp/draft

`data=DIR` holds train.jsonl / eval.jsonl ({'text': ...}) and tokenizer/
(default /tmp/flaxllm_distill). Variants: `runlocal` (a few hundred steps on
CPU), `layers=N` (draft depth, default 4).
"""

import os

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(
      arg, runlocal=False, data='/tmp/flaxllm_distill', layers=4
  )
  config = common.default_config()
  config.task.name = 'lm'
  config.task.pack = True
  config.task.loss_on = 'all'
  config.task.separator = '\n'
  config.task.chat_template = 'none'
  config.model = common.decoder_model('small')
  config.model.d_model = 384
  config.model.num_heads = 6
  config.model.num_kv_heads = 2
  config.model.ffn_dim = 1024
  config.model.num_layers = arg.layers
  config.model.rope_theta = 100000.0  # SmolLM2's
  config.model.tie_embeddings = True
  config.tokenizer.path = os.path.join(arg.data, 'tokenizer')
  config.tokenizer.vocab_size = 49152  # the tokenizer's; fixed by the path
  config.data.train = f"jsonl:{os.path.join(arg.data, 'train.jsonl')}"
  config.data.eval = f"jsonl:{os.path.join(arg.data, 'eval.jsonl')}"
  config.data.test = ''
  config.data.source_field = ''  # documents, no prompts
  config.data.target_field = 'text'
  config.data.max_source_length = 16
  config.data.max_target_length = 240
  config.train.steps = 20_000
  config.train.batch_size = 32
  config.train.eval_every = 2000
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 500
  config.checkpoint.every = 2000
  if arg.runlocal:
    config.train.steps = 300
    config.train.batch_size = 8
    config.train.eval_batch_size = 8
    config.train.log_every = 25
    config.train.eval_every = 0
    config.data.max_eval_examples = 32
    config.data.max_target_length = 112
    config.optimizer.warmup_steps = 30
    config.checkpoint.every = 100
  return config
