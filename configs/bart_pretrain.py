r"""BART denoising pretraining (BART, BioBART) on plain documents.

The encoder reads a noised document (Poisson(3) span infilling of 30% of the
words, optionally sentence permutation) and the decoder rebuilds the whole
document. Reports eval/test loss and the reconstruction BLEU / ROUGE-L / exact
match of greedy outputs.

  python -m flaxllm.main --config=configs/bart_pretrain.py:runlocal \
      --workdir=/tmp/bart
  python -m flaxllm.main --config=configs/bart_pretrain.py:biobart,size=base \
      --config.data.train=text:/data/pubmed_abstracts.txt \
      --workdir=gs://bucket/biobart

Variants (comma-separated):
  runlocal        tiny model on the embedded HPO definitions (CPU minutes).
  biobart         BioBART's continued pretraining: BART base/large shapes,
                  512-token documents, 2,560 documents per update (grad
                  accumulation 10), AdamW(0.9, 0.999, eps 1e-6, wd 0.01), peak
                  lr 1e-4 with 2% linear warmup then linear decay over 40k
                  steps, grad clip 1.0, infilling only (noise=biobart). Its
                  documents default to the PubMedQA abstracts in
                  /work/shared/data/pubmedqa (`pubmedqa=<folder>` moves them;
                  set --config.data.train to real PubMed abstracts).
  size=base|large (biobart) the BART shape.
  init_from=hf:<folder> (biobart) start from a local BART checkpoint, as
                  BioBART does; its shape and tokenizer then win over size.
  noise=bart|bart_fairseq|biobart|biobart_released  the noise preset (default
                  bart, or biobart with `biobart`); see flaxllm.data.denoise.
"""

import dataclasses

from configs import common
from flaxllm.data import denoise

# BART shapes: (d_model, heads, ffn, encoder layers, decoder layers).
BART_SIZES = {'base': (768, 12, 3072, 6, 6), 'large': (1024, 16, 4096, 12, 12)}


def _bart_model(size: str):
  if size not in BART_SIZES:
    raise ValueError(
        f'size={size!r} is unknown; use one of {sorted(BART_SIZES)}'
    )
  model = common.encoder_decoder_model('base')
  d_model, heads, ffn, encoder_layers, decoder_layers = BART_SIZES[size]
  model.d_model = d_model
  model.num_heads = heads
  model.ffn_dim = ffn
  model.encoder_layers = encoder_layers
  model.decoder_layers = decoder_layers
  model.max_positions = 1024  # BART's learned positions (offset 2 is kept)
  return model


def get_config(arg=None):
  arg = common.parse_arg(
      arg,
      runlocal=False,
      biobart=False,
      size='base',
      noise='',
      pubmedqa='/work/shared/data/pubmedqa',
      init_from='',
  )
  config = common.default_config()
  config.task.name = 'denoise'
  noise = denoise.preset(arg.noise or ('biobart' if arg.biobart else 'bart'))
  for key, value in dataclasses.asdict(noise).items():
    config.task[key] = value
  config.task.full_stop_id = -1  # the tokenizer's '.'
  config.task.label_smoothing = 0.0

  config.model = common.encoder_decoder_model('small')
  config.data.train = 'hpo:definitions:train'
  config.data.eval = 'hpo:definitions:valid'
  config.data.test = 'hpo:definitions:test'
  config.data.max_source_length = 128
  config.data.max_target_length = 128
  config.data.bucket_boundaries = (32, 64, 128)
  config.data.max_eval_examples = 200
  config.tokenizer.vocab_size = 8000

  config.train.steps = 20_000
  config.train.batch_size = 128
  config.train.eval_every = 2000
  config.optimizer.learning_rate = 5e-4
  config.optimizer.warmup_steps = 1000
  config.checkpoint.every = 2000

  if arg.biobart:
    config.model = _bart_model(arg.size)
    config.model.dropout_rate = 0.1
    config.model.dtype = 'bfloat16'
    # BioBART continues from the released BART weights and keeps BART's
    # byte-level BPE (50,265 ids): pass init_from=hf:/path/to/bart-base (a
    # local facebook/bart-{base,large} folder), which also gives the
    # tokenizer and the architecture.
    config.init_from = arg.init_from
    config.tokenizer.vocab_size = 50_265  # only used without init_from
    config.data.train = f'pubmedqa:{arg.pubmedqa}:train'
    config.data.eval = f'pubmedqa:{arg.pubmedqa}:valid'
    config.data.test = f'pubmedqa:{arg.pubmedqa}:test'
    config.data.max_source_length = 512  # <s> + 510 tokens + </s>
    config.data.max_target_length = 512
    config.data.bucket_boundaries = ()
    config.data.max_eval_examples = 64
    config.train.steps = 40_000
    config.train.batch_size = 2560  # 32 per GPU x 8 GPUs x accumulation 10
    config.train.grad_accum_steps = 10
    config.train.eval_every = 2000
    config.train.eval_batch_size = 64
    config.optimizer.name = 'adamw'
    config.optimizer.learning_rate = 1e-4
    config.optimizer.warmup_steps = int(0.02 * config.train.steps)
    config.optimizer.decay = 'linear'
    config.optimizer.end_lr_fraction = 0.0
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-6
    config.optimizer.weight_decay = 0.01
    config.optimizer.grad_clip_norm = 1.0
    config.checkpoint.every = 2000

  if arg.runlocal:
    # About 12 minutes on 2 busy CPU cores (load ~5): the tiny model starts
    # rebuilding masked definitions (test BLEU ~23, ROUGE-L ~56 with the
    # bart noise).
    config.model = common.encoder_decoder_model('tiny')
    config.model.dropout_rate = 0.0
    config.model.max_positions = 64
    config.tokenizer.path = ''
    config.tokenizer.vocab_size = 2000
    config.data.train = 'hpo:definitions:train'
    config.data.eval = 'hpo:definitions:valid'
    config.data.test = 'hpo:definitions:test'
    config.data.max_source_length = 48
    config.data.max_target_length = 48
    config.data.bucket_boundaries = (24, 48)
    config.data.max_eval_examples = 64
    config.train.steps = 1500
    config.train.batch_size = 32
    config.train.grad_accum_steps = 1
    config.train.log_every = 100
    config.train.eval_every = 500
    config.train.eval_batch_size = 32
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 150
    config.optimizer.decay = 'cosine'
    config.checkpoint.every = 500
  return config
