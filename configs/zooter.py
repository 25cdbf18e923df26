r"""ZOOTER: route each query to the one expert of an LLM zoo (--mode=route).

  # CPU: a zoo of three tiny LLaMA experts, one per synthetic domain (train
  # them first, a few CPU minutes each, with configs/sft.py; see below).
  python -m flaxllm.main --mode=route --config=configs/zooter.py:runlocal \
      --workdir=/tmp/zooter --config.route.queries=queries.jsonl
  # GPU: SmolLM2-135M-Instruct and SFT'd SmolLM2 experts.
  python -m flaxllm.main --mode=route --config=configs/zooter.py \
      --workdir=/tmp/zooter_smol --config.route.queries=queries.jsonl \
      --config.route.members='base=gguf:...;math=workdir:/runs/smol_math;...'

The first run builds the router (every member answers `route.train`,
task-grounded rewards -> softmax labels -> tag smoothing with beta = 0.3 ->
all-MiniLM-L6-v2 + a linear head trained with soft-label cross-entropy) in
workdir/router; later runs only route. experiments/zooter.py trains the
runlocal experts:

  python -m flaxllm.main --config=configs/sft.py:runlocal \
      --workdir=/tmp/zooter_experts/math \
      --config.data.train=synthetic:math:train:3000 \
      --config.data.max_source_length=128 --config.data.max_target_length=48 \
      --config.train.steps=900   # likewise code, general

and compares ZOOTER with each single member, random routing, reward-model
ranking and the oracle. Variants: `runlocal`, `experts=DIR` (where the
runlocal experts live), `scorer=task|reward_model`, `tags=none|field|kmeans`.
"""

from configs import common


def _smollm2_spec() -> str:
  from flaxllm import errors  # pylint: disable=g-import-not-at-top
  from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

  try:
    return f'gguf:{gguf.smollm2_path()}'
  except errors.UserInputError:
    return 'gguf:/path/to/SmolLM2-135M-Instruct.gguf'


def get_config(arg=None):
  arg = common.parse_arg(
      arg,
      runlocal=False,
      experts='/tmp/zooter_experts',
      scorer='task',
      tags='kmeans',
  )
  config = common.default_config()
  config.task.name = 'lm'  # the members' family; nothing is trained here
  config.model = common.decoder_model('tiny')  # run-time keys only
  config.data.train = config.data.eval = config.data.test = ''
  config.train.batch_size = config.train.eval_batch_size = 8
  r = config.route
  r.scorer = arg.scorer
  r.tags = arg.tags
  r.beta = 0.3
  # Full variant: SmolLM2-135M-Instruct and three experts fine-tuned from it
  # with configs/sft.py:smollm2 on GSM8K, Code Alpaca and a general set.
  r.members = (
      f'base={_smollm2_spec()};math=workdir:/runs/smol_math;'
      'code=workdir:/runs/smol_code;general=workdir:/runs/smol_general'
  )
  r.chat_template = 'auto'
  r.temperature = 0.7  # the paper's sampling for the training answers
  r.max_new_tokens = 256
  r.batch_size = 16
  r.max_prompt_length = 512
  r.train = (
      'jsonl:/path/to/gsm8k/train.jsonl;jsonl:/path/to/code_alpaca.jsonl;'
      'jsonl:/path/to/general.jsonl'
  )
  r.label_temperature = 1.0
  r.num_clusters = 32
  r.router_steps = 3000
  r.router_batch_size = 32
  r.router_learning_rate = 1e-5  # the paper's
  r.rm_train = r.train
  r.rm_steps = 2000

  if arg.runlocal:
    experts = arg.experts
    r.members = ';'.join(
        f'{d}=workdir:{experts}/{d}' for d in ('math', 'code', 'general')
    )
    r.chat_template = 'auto'  # the experts have no template: Alpaca
    r.temperature = 0.0
    r.max_new_tokens = 48
    r.max_prompt_length = 128  # the experts' data.max_source_length
    r.train = ';'.join(
        f'synthetic:{d}:valid:64' for d in ('math', 'code', 'general')
    )
    r.test = ';'.join(
        f'synthetic:{d}:test:48' for d in ('math', 'code', 'general')
    )
    r.rm_train = ';'.join(
        f'synthetic:{d}:train:32' for d in ('math', 'code', 'general')
    )
    # Task scores lie in [0, 1]; a plain softmax of them is nearly flat.
    r.label_temperature = 0.2
    r.num_clusters = 6
    r.max_query_length = 64
    # CPU budget: frozen MiniLM embeddings, trained heads (an MLP for the
    # reward model); the full variant fine-tunes both encoders.
    r.router_train_encoder = False
    r.router_steps = 400
    r.router_batch_size = 32
    r.router_learning_rate = 3e-3
    r.rm_train_encoder = False
    r.rm_head_hidden = 256
    r.rm_steps = 600
    r.rm_batch_size = 32
    r.rm_learning_rate = 1e-3
    r.rm_max_length = 128
  return config
