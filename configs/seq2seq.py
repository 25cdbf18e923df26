r"""Seq2seq with a BART-style encoder-decoder on the embedded HPO corpus.

Learns to name a Human Phenotype Ontology concept from its definition
(`hpo_def2name`: ~13k train pairs, splits by concept id). Reports test BLEU
and ROUGE-1/2/L with greedy decoding (`beam=<k>`: beam search, k beams,
length penalty 1.0).

  python -m flaxllm.main --config=configs/seq2seq.py:runlocal --workdir=/tmp/s2s
  python -m flaxllm.main --config=configs/seq2seq.py:size=base \
      --config.mesh.shape='(-1,4,1)' --workdir=gs://bucket/s2s

Variants: `runlocal` (CPU-sized, minutes), `size=tiny|small|base`,
`dataset=def2name|name2syn`, `beam=<k>` (1 = greedy).
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(
      arg, runlocal=False, size='small', dataset='def2name', beam=1
  )
  config = common.default_config()
  config.task.name = 'seq2seq'
  config.task.label_smoothing = 0.1
  config.model = common.encoder_decoder_model(arg.size)

  config.data.train = f'hpo:{arg.dataset}:train'
  config.data.eval = f'hpo:{arg.dataset}:valid'
  config.data.test = f'hpo:{arg.dataset}:test'
  config.data.max_source_length = 128
  config.data.max_target_length = 32
  config.data.bucket_boundaries = (32, 64, 96, 128)
  config.tokenizer.vocab_size = 8000

  config.train.steps = 20_000
  config.train.batch_size = 128
  config.train.eval_every = 2000
  config.optimizer.learning_rate = 5e-4
  config.optimizer.warmup_steps = 1000
  config.checkpoint.every = 2000
  config.predict.beam_size = arg.beam

  if arg.runlocal:
    # About 7 minutes on 2 CPU cores: enough for the tiny model to start
    # copying and composing concept names (test BLEU in the high teens).
    config.model = common.encoder_decoder_model('tiny')
    config.model.dropout_rate = 0.0
    config.tokenizer.vocab_size = 4000
    config.data.max_source_length = 96
    config.data.max_target_length = 24
    config.data.bucket_boundaries = (32, 64, 96)
    config.data.max_eval_examples = 400
    config.train.steps = 3000
    config.train.batch_size = 32
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 300
    config.checkpoint.every = 1000
  return config
