r"""Greedy decode speed: our jitted loop vs transformers `generate` (static cache).

Both sides decode the same model with the same weights, the same prompt and
the same number of new tokens (EOS ignored), in one run:

  ours   model_steps.decoder_prefill + sampling.sample_decode at temperature
         0, jitted once (compilation excluded), KV cache in the linen model
  HF     LlamaForCausalLM.generate(do_sample=False,
         cache_implementation='static'), weights written from ours by
         hf.save_pretrained, after one warm-up call

  # CPU: SmolLM2-135M-Instruct (GGUF weights, float32)
  .venv/bin/python experiments/bench_decode.py --model=smollm2
  # GPU: the LLaMA 1.1B shape, random weights, bfloat16 (peer figure in
  # /work/shared/anchors.md: HF static cache 349 tokens/s at batch 1 on H200)
  python experiments/bench_decode.py --model=tinyllama --dtype=bfloat16

Prints tokens/s of each and the ratio, and appends them to
experiments/results/bench_decode.md (--results='' to skip).
"""

import datetime
import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flaxllm.decoding import model_steps  # pylint: disable=g-import-not-at-top
from flaxllm.decoding import sampling  # pylint: disable=g-import-not-at-top
from flaxllm.models import decoder  # pylint: disable=g-import-not-at-top
from flaxllm.models import hf  # pylint: disable=g-import-not-at-top

_MODEL = flags.DEFINE_enum(
    'model', 'smollm2', ['smollm2', 'tinyllama'], 'Which model.'
)
_DTYPE = flags.DEFINE_enum(
    'dtype', 'float32', ['float32', 'bfloat16'], 'Weights and compute dtype.'
)
_BATCH = flags.DEFINE_integer('batch_size', 1, 'Rows decoded together.')
_PROMPT = flags.DEFINE_integer('prompt_length', 32, 'Prompt tokens.')
_NEW = flags.DEFINE_integer('new_tokens', 128, 'Generated tokens per row.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats (median).')
_RESULTS = flags.DEFINE_string(
    'results',
    os.path.join(os.path.dirname(__file__), 'results', 'bench_decode.md'),
    'Markdown file the result is appended to ("" to skip).',
)


def build_model(name: str, dtype: str) -> tuple[decoder.DecoderConfig, dict]:
  """Our config and params: SmolLM2 from its GGUF, or a random 1.1B shape."""
  if name == 'smollm2':
    from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top
    from flaxllm.models import pretrained  # pylint: disable=g-import-not-at-top

    spec = f'gguf:{gguf.smollm2_path()}'
    fields = {'dtype': dtype, 'param_dtype': dtype}
    config = pretrained.model_config(spec, decoder.DecoderConfig, fields)
    return config, pretrained.load_params(spec, config)
  from configs import common  # pylint: disable=g-import-not-at-top

  fields = common.decoder_model('tinyllama').to_dict()
  fields.pop('family')
  fields.update(dtype=dtype, param_dtype=dtype, tie_embeddings=False)
  config = decoder.DecoderConfig.from_dict(fields, vocab_size=32000, pad_id=0)
  model = decoder.Decoder(config)
  shapes = jax.eval_shape(
      model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32)
  )['params']
  keys = iter(jax.random.split(jax.random.key(0), 1000))

  def draw(path, leaf):
    if jax.tree_util.keystr(path).endswith("['scale']"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return (0.02 * jax.random.normal(next(keys), leaf.shape)).astype(leaf.dtype)

  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  return config, jax.tree_util.tree_map_with_path(draw, nn.unbox(shapes))


def time_ours(config, params, prompt: np.ndarray, new_tokens: int):
  """Median seconds of one jitted greedy decode; and its tokens."""
  model = decoder.Decoder(config)
  step = model_steps.decoder_tokens_to_logits(model)

  def generate(params, prompt):
    lengths = jnp.full((prompt.shape[0],), prompt.shape[1], jnp.int32)
    cache, start = model_steps.decoder_prefill(
        model,
        params,
        prompt,
        lengths,
        cache_length=prompt.shape[1] + new_tokens,
    )
    return sampling.sample_decode(
        step,
        params,
        cache,
        start,
        max_length=new_tokens,
        eos_id=None,
        pad_id=0,
        temperature=0.0,
    )

  compiled = jax.jit(generate).lower(params, prompt).compile()
  tokens = jax.block_until_ready(compiled(params, prompt))  # Warm-up.
  seconds = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, prompt))
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds), np.asarray(tokens)


def time_hf(
    folder: str,
    dtype: str,
    prompt: np.ndarray,
    new_tokens: int,
    cache_implementation: str | None,
):
  """Median seconds of transformers' greedy generate (static cache or not)."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch_dtype = torch.bfloat16 if dtype == 'bfloat16' else torch.float32
  model = transformers.LlamaForCausalLM.from_pretrained(
      folder, dtype=torch_dtype
  ).to(device)
  model.eval()
  ids = torch.as_tensor(prompt, device=device)
  kwargs = dict(
      max_new_tokens=new_tokens,
      min_new_tokens=new_tokens,
      do_sample=False,
      cache_implementation=cache_implementation,
      pad_token_id=0,
      eos_token_id=None,
  )
  with torch.inference_mode():
    tokens = model.generate(ids, **kwargs)[:, prompt.shape[1] :]  # Warm-up.
    seconds = []
    for _ in range(_REPEATS.value):
      if device == 'cuda':
        torch.cuda.synchronize()
      start = time.perf_counter()
      model.generate(ids, **kwargs)
      if device == 'cuda':
        torch.cuda.synchronize()
      seconds.append(time.perf_counter() - start)
  return statistics.median(seconds), tokens.cpu().numpy(), device


def main(argv):
  del argv
  config, params = build_model(_MODEL.value, _DTYPE.value)
  rng = np.random.default_rng(0)
  prompt = rng.integers(
      3, config.vocab_size, (_BATCH.value, _PROMPT.value)
  ).astype(np.int32)
  new = _NEW.value
  ours_s, ours_tokens = time_ours(config, params, prompt, new)
  with tempfile.TemporaryDirectory() as folder:
    hf.save_pretrained(folder, config, params)
    hf_s, hf_tokens, device = time_hf(
        folder, _DTYPE.value, prompt, new, 'static'
    )
    dynamic_s = time_hf(folder, _DTYPE.value, prompt, new, None)[0]
  tokens = _BATCH.value * new
  agree = float(np.mean(ours_tokens[:, :16] == hf_tokens[:, :16]))
  line = (
      f'| {_MODEL.value} | {_DTYPE.value} | {_BATCH.value} | {_PROMPT.value}'
      f' | {new} | {jax.devices()[0].device_kind} / torch {device} |'
      f' {tokens / ours_s:.1f} | {tokens / hf_s:.1f} |'
      f' {hf_s / ours_s:.2f}x | {tokens / dynamic_s:.1f} | {agree:.2f} |'
  )
  header = (
      '| model | dtype | batch | prompt | new | device (jax / torch) |'
      ' ours tokens/s | HF static tokens/s | ours / HF static |'
      ' HF dynamic tokens/s | first-16 agree |\n'
      '|---|---|---|---|---|---|---|---|---|---|---|'
  )
  print(header)
  print(line)
  if _RESULTS.value:
    command = ' '.join(['python experiments/bench_decode.py'] + sys.argv[1:])
    with open(_RESULTS.value, 'a') as f:
      f.write(
          f'\n## {datetime.date.today()}, {os.cpu_count()} cores\n\n'
          f'    {command}\n\n{header}\n{line}\n'
      )


if __name__ == '__main__':
  app.run(main)
