r"""Sentence(-pair) classification / regression with a BERT-style encoder.

By default: embedded HPO term names classified into their top-level phenotype
branch (23 classes, splits by concept id), reporting accuracy and macro F1.
With `glue=<task>`: GLUE RTE (accuracy), MRPC (accuracy, F1), CoLA (Matthews
correlation) or STS-B (Pearson, Spearman; regression), trained with the HyPe
paper's fine-tuning recipe (AdamW lr 2e-5, batch 16, 3 epochs, 10% warmup,
weight decay 0.01, eps 1e-6, 128 tokens) and scored on the dev split.

  python -m flaxllm.main --config=configs/classify.py:runlocal --workdir=/tmp/c
  python -m flaxllm.main \
      --config=configs/classify.py:glue=rte,init_from=hf:/ckpt/bert-large \
      --workdir=/tmp/rte

Variants (comma-separated):
  runlocal          tiny BERT from scratch on the HPO branches, CPU minutes.
  glue=rte|mrpc|cola|stsb   a GLUE task, read from `glue_dir`.
  glue_dir=<folder> the GLUE download layout (default /work/shared/data/glue);
                    or set --config.data.train=glue:rte:/my/train.tsv etc.
  size=tiny|mini|base|large  the BERT shape (large: BERT-large, HyPe's).
  tokenizer=<folder> a local tokenizer folder (a WordPiece BERT one gives
                    [CLS]/[SEP] and token types); empty trains a BPE.
  init_from=hf:<folder> start from a local BERT checkpoint (HyPe's setting);
                    its shape and tokenizer then win over size/tokenizer.
"""

import math

import ml_collections

from configs import common

GLUE_DIR = '/work/shared/data/glue'
# GLUE train examples, for turning the recipe's epochs into steps.
GLUE_TRAIN_SIZES = {'rte': 2490, 'mrpc': 3668, 'cola': 8551, 'stsb': 5749}
# BERT shapes: (d_model, heads, ffn, layers).
BERT_SIZES = {
    'tiny': (128, 2, 512, 2),
    'mini': (256, 4, 1024, 4),
    'base': (768, 12, 3072, 12),
    'large': (1024, 16, 4096, 24),
}


def bert_model(size: str) -> ml_collections.ConfigDict:
  """config.model for a BERT-style encoder of a named size."""
  if size not in BERT_SIZES:
    raise ValueError(
        f'size={size!r} is unknown; use one of {sorted(BERT_SIZES)}'
    )
  d_model, heads, ffn, num_layers = BERT_SIZES[size]
  m = ml_collections.ConfigDict()
  m.family = 'encoder'
  m.d_model = d_model
  m.num_heads = heads
  m.ffn_dim = ffn
  m.num_layers = num_layers
  m.max_positions = 512
  m.type_vocab_size = 2
  m.layer_norm_eps = 1e-12
  m.activation = 'gelu'
  m.dropout_rate = 0.1
  m.attention_dropout = 0.1
  m.num_labels = 0  # 0: the dataset's
  m.pooler = True
  m.dtype = 'float32'
  m.param_dtype = 'float32'
  m.scan_layers = False
  m.remat = False
  m.attention_impl = 'xla'
  return m


def get_config(arg=None):
  arg = common.parse_arg(
      arg,
      runlocal=False,
      glue='',
      glue_dir=GLUE_DIR,
      size='mini',
      tokenizer='',
      init_from='',
  )
  config = common.default_config()
  config.task.name = 'classify'
  config.task.label_smoothing = 0.0
  config.model = bert_model(arg.size)
  config.tokenizer.path = arg.tokenizer
  # HyPe fine-tunes a pretrained BERT: init_from=hf:/path/to/bert-large-uncased
  # gives the encoder (a fresh head is added) and its WordPiece tokenizer.
  config.init_from = arg.init_from
  config.tokenizer.vocab_size = 8000

  config.data.train = 'hpo:branch:train'
  config.data.eval = 'hpo:branch:valid'
  config.data.test = 'hpo:branch:test'
  config.data.max_source_length = 64
  config.data.bucket_boundaries = (16, 32, 64)
  config.train.steps = 5000
  config.train.batch_size = 64
  config.train.eval_every = 1000
  config.optimizer.learning_rate = 5e-4
  config.optimizer.warmup_steps = 500
  config.checkpoint.every = 1000

  if arg.glue:
    if arg.glue not in GLUE_TRAIN_SIZES:
      raise ValueError(
          f'glue={arg.glue!r} is unknown; use one of {sorted(GLUE_TRAIN_SIZES)}'
      )
    config.data.train = f'glue:{arg.glue}:train@{arg.glue_dir}'
    config.data.eval = f'glue:{arg.glue}:dev@{arg.glue_dir}'
    # Only MRPC's original test file has labels.
    config.data.test = (
        f'glue:mrpc:test@{arg.glue_dir}' if arg.glue == 'mrpc' else ''
    )
    config.data.max_source_length = 128
    config.data.bucket_boundaries = (32, 64, 128)
    if arg.glue == 'stsb':
      config.model.num_labels = 1
      config.model.problem = 'regression'
    batch_size, epochs = 16, 3
    config.train.batch_size = batch_size
    config.train.steps = math.ceil(
        epochs * GLUE_TRAIN_SIZES[arg.glue] / batch_size
    )
    config.train.eval_every = 0
    config.train.eval_batch_size = 64
    config.optimizer.name = 'adamw'
    config.optimizer.learning_rate = 2e-5
    config.optimizer.warmup_steps = math.ceil(0.1 * config.train.steps)
    config.optimizer.decay = 'linear'
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-6
    config.optimizer.weight_decay = 0.01
    config.checkpoint.every = 0

  if arg.runlocal:
    # About 6 minutes on 2 busy CPU cores (load ~5); HPO branches reach test
    # accuracy ~0.78, macro F1 ~0.63.
    config.model = bert_model('tiny')
    config.model.max_positions = 64
    config.model.dropout_rate = 0.0
    config.model.attention_dropout = 0.0
    config.tokenizer.vocab_size = 2000
    config.data.max_source_length = 32
    config.data.bucket_boundaries = (16, 32)
    config.data.max_eval_examples = 0
    config.train.steps = 1500
    config.train.batch_size = 64
    config.train.log_every = 100
    config.train.eval_every = 500
    config.train.eval_batch_size = 128
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 100
    config.optimizer.decay = 'cosine'
    config.checkpoint.every = 500
  return config
