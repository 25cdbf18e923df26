r"""Speculative contrastive decoding of a prompts jsonl (--mode=decode).

SCD (Yuan et al. 2023; /work/shared/specs/scd_zooter.md part A): one small
amateur both drafts gamma tokens and contrasts with the expert; the expert
verifies the drafts against the contrastive distribution
p_c = softmax((1 + beta) log p_e - beta log p_a) on {p_e >= alpha max p_e}.
Greedy SCD emits exactly greedy contrastive decoding's tokens, in fewer expert
calls. The default expert is SmolLM2-135M-Instruct (GGUF) and the amateur its
first 8 layers (early exit, no training):

  python -m flaxllm.main --mode=decode --config=configs/scd.py \
      --config.decode.prompts=prompts.jsonl --workdir=/tmp/scd
  # A distilled draft instead (configs/distill_draft.py trains one):
  ... --config.decode.amateur=workdir:/tmp/draft

Variants: `runlocal`, `form=original|improved`, `layers=K` (early-exit depth),
`sample` (temperature 1 instead of greedy).
"""

from configs import common
from configs import decode


def get_config(arg=None):
  arg = common.parse_arg(
      arg, runlocal=False, form='improved', layers=8, sample=False
  )
  config = decode.get_config('runlocal' if arg.runlocal else None)
  config.decode.method = 'scd'
  config.decode.amateur = f'early_exit:{arg.layers}'
  config.decode.form = arg.form
  config.decode.alpha = 0.1
  config.decode.beta = 0.5 if arg.form == 'improved' else 0.0
  config.decode.gamma = 4  # the paper's draft length
  config.decode.temperature = 1.0 if arg.sample else 0.0
  return config
