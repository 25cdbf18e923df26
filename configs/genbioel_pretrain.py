r"""GenBioEL's KB-guided pre-training: learn to name concepts from the KB alone.

Every (concept, name) pair of the KB becomes a sample: another name of the
concept, marked START/END, sits in a definition or synonym template, and the
decoder, prompted with ' <mention> is', writes the name
(`flaxllm.linking.kb_pretraining`). Evaluation links real mentions
(zero-shot Recall@1 / Recall@5 under the KB trie).

  python -m flaxllm.main --config=configs/genbioel_pretrain.py:runlocal \
      --workdir=/tmp/el_pretrain
  python -m flaxllm.main \
      --config=configs/genbioel_pretrain.py:data_dir=/data/ncbi_disease \
      --config.init_from=hf:/path/to/bart-base --workdir=/tmp/el_pretrain_medic

Variants (comma-separated):
  runlocal          tiny model on the HPO KB (less the held-out mention
                    synonyms), CPU minutes.
  data_dir=<dir>    MEDIC (<dir>/medic) as the KB; evaluates on NCBI-disease
                    devel.
  size=tiny|small|base  the model shape (from scratch).
Start from our BART denoising run or a local HF BART with
--config.init_from=hf:<folder>. The authors' recipe (BART-large, UMLS
ST21pv, batch 384, 80k steps, lr 4e-5 with 2% warmup then linear decay,
AdamW(0.9, 0.999, eps 1e-6, wd 0.01), clip 1.0, label smoothing 0.1) sets
the optimizer here; steps and batch are scaled to the model.
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, data_dir='', size='small')
  config = common.default_config()
  config.task.name = 'linking'
  config.task.label_smoothing = 0.1
  config.task.num_beams = 5
  config.task.max_prompt_length = 24
  config.model = common.encoder_decoder_model(arg.size)

  if arg.data_dir:
    config.data.train = f'ncbi_disease:{arg.data_dir}:kb_pretraining'
    config.data.eval = f'ncbi_disease:{arg.data_dir}:devel'
  else:
    config.data.train = 'hpo:kb_pretraining'
    config.data.eval = 'hpo:mentions:valid'
  config.data.test = ''
  config.data.max_source_length = 192
  config.data.max_target_length = 64
  config.tokenizer.vocab_size = 8000

  config.train.steps = 80_000
  config.train.batch_size = 64
  config.train.eval_every = 10_000
  config.train.eval_batch_size = 32
  config.data.max_eval_examples = 512
  config.optimizer.learning_rate = 3e-4  # 4e-5 (the authors') from BART
  config.optimizer.warmup_steps = 1600  # 2% of the steps
  config.optimizer.decay = 'linear'
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-6
  config.optimizer.grad_clip_norm = 1.0
  config.checkpoint.every = 10_000

  if arg.runlocal:
    config.model = common.encoder_decoder_model('tiny')
    config.model.dropout_rate = 0.0
    config.tokenizer.vocab_size = 4000
    config.data.max_source_length = 96
    config.data.max_target_length = 48
    config.data.max_eval_examples = 128
    config.train.steps = 1500
    config.train.batch_size = 32
    config.train.log_every = 100
    config.train.eval_every = 0
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 30
    config.checkpoint.every = 0
  return config
