r"""Summarization-style seq2seq: a long text in, its short summary out.

The default reads PubMedQA (PQA-L, 1,000 expert-labelled abstracts) from
../shared/data/pubmedqa: the abstract's context paragraphs -> its conclusion
(`target=conclusion`, the long answer) or -> its title, phrased as a question
(`target=title`). Splits are by a hash of the PMID (80/10/10). Reports
BLEU and ROUGE-1/2/L of beam-search outputs (beam 4, length penalty 1.0;
`--config.predict.beam_size=1` decodes greedily). Without the PubMedQA folder
the embedded HPO pairs (definition -> concept name) stand in. Continue from a denoising-
pretrained checkpoint with `init_from=hf:<folder>` (see
experiments/bart_pretrain_downstream.py for exporting one of ours).

  python -m flaxllm.main --config=configs/summarize.py:runlocal \
      --workdir=/tmp/summarize
  python -m flaxllm.main \
      --config=configs/summarize.py:init_from=hf:/ckpt/biobart-base \
      --workdir=/tmp/pubmedqa_summarize

Variants (comma-separated):
  runlocal        a tiny model on the embedded HPO (definition -> concept
                  name: the name is a few-word summary of its definition),
                  CPU minutes, no data folder needed.
  pubmedqa=<dir>  where ori_pqal.json is.
  target=conclusion|title  the PubMedQA summary to produce.
  size=tiny|small|base  the model shape without init_from.
  init_from=hf:<folder>  start from a BART checkpoint (its shape and
                  tokenizer win over size).
  beam=<k>        beam size (1 = greedy).
"""

import os

from configs import common

TARGET_FIELDS = ('conclusion', 'title')


def get_config(arg=None):
  arg = common.parse_arg(
      arg,
      runlocal=False,
      pubmedqa='/work/shared/data/pubmedqa',
      target='conclusion',
      size='small',
      init_from='',
      beam=4,
  )
  if arg.target not in TARGET_FIELDS:
    raise ValueError(
        f'target={arg.target!r} is unknown; use one of {TARGET_FIELDS}'
    )
  config = common.default_config()
  config.task.name = 'seq2seq'
  config.task.label_smoothing = 0.1
  config.model = common.encoder_decoder_model(arg.size)
  config.model.max_positions = 512
  config.init_from = arg.init_from

  if os.path.isdir(arg.pubmedqa):
    config.data.train = f'pubmedqa:{arg.pubmedqa}:train'
    config.data.eval = f'pubmedqa:{arg.pubmedqa}:valid'
    config.data.test = f'pubmedqa:{arg.pubmedqa}:test'
    config.data.source_field = 'context'
    config.data.target_field = arg.target
  else:  # the embedded stand-in
    config.data.train = 'hpo:def2name:train'
    config.data.eval = 'hpo:def2name:valid'
    config.data.test = 'hpo:def2name:test'
  config.data.max_source_length = 512
  config.data.max_target_length = 128 if arg.target == 'conclusion' else 48
  config.data.bucket_boundaries = (128, 256, 384, 512)
  config.tokenizer.vocab_size = 8000

  config.train.steps = 3000
  config.train.batch_size = 16
  config.train.eval_every = 500
  config.train.eval_batch_size = 16
  config.optimizer.learning_rate = 5e-5 if arg.init_from else 3e-4
  config.optimizer.warmup_steps = 300
  config.checkpoint.every = 500

  config.predict.beam_size = arg.beam
  config.predict.length_penalty = 1.0
  config.predict.max_decode_len = 0  # 0: data.max_target_length

  if arg.runlocal:
    # A few CPU minutes: the tiny model learns to shorten a definition into
    # its concept name.
    config.init_from = ''
    config.model = common.encoder_decoder_model('tiny')
    config.model.dropout_rate = 0.0
    config.tokenizer.vocab_size = 4000
    config.data.train = 'hpo:def2name:train'
    config.data.eval = 'hpo:def2name:valid'
    config.data.test = 'hpo:def2name:test'
    config.data.source_field = 'src'
    config.data.target_field = 'tgt'
    config.data.max_source_length = 64
    config.data.max_target_length = 24
    config.data.bucket_boundaries = (32, 64)
    config.data.max_eval_examples = 200
    config.train.steps = 1500
    config.train.batch_size = 32
    config.train.eval_batch_size = 32
    config.train.log_every = 100
    config.train.eval_every = 500
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 150
    config.checkpoint.every = 500
  return config
