r"""SCD at small scale: target alone vs speculative vs contrastive vs SCD.

Target SmolLM2-135M-Instruct (GGUF, float32); amateurs: the target's first
K layers (early exit, no training) and, with --distilled=workdir:/run, a
small LLaMA trained by configs/distill_draft.py. Two workloads:

  gsm8k     test questions (plus --gsm8k_instruction, if given) through the
            chat template; accuracy with the MuggleMath answer rule
            (flaxllm.eval.gsm8k); --show_outputs=N prints some outputs
  wikitext  WikiText-2 test paragraphs: the first --wikitext_prompt_words
            words as a prompt (no template), the model continues; distinct-2,
            rep-4 (1 - distinct 4-grams) and the target's mean log-likelihood
            per continuation token given the prompt

For each method: acceptance rate (accepted / drafted), tokens per target call,
tokens/s over batch wall time (compilation excluded) and the speedup over the
target's own greedy decoding on the same prompts. All decoding is greedy
(temperature 0), so speculative == target greedy and SCD == CD token for
token; the quality columns show what the contrast does. With greedy among
--methods, each amateur's teacher-forced argmax agreement with the target on
the target's greedy outputs is reported too (what greedy drafting can hope
to get accepted). --early_exit_layers=0 leaves the early-exit amateur out.

  .venv/bin/python experiments/scd_eval.py --gsm8k_prompts=100 \
      --wikitext_prompts=32 --max_new_tokens=64 --batch_size=8

Appends a table to experiments/results/scd.md (--results='' to skip).
"""

import datetime
import math
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flaxllm import decode_mode  # pylint: disable=g-import-not-at-top
from flaxllm.eval import diversity  # pylint: disable=g-import-not-at-top
from flaxllm.eval import gsm8k  # pylint: disable=g-import-not-at-top
from flaxllm.models import gguf  # pylint: disable=g-import-not-at-top

DATA = '/work/shared/data'
_GSM8K = flags.DEFINE_integer('gsm8k_prompts', 100, 'GSM8K test prompts.')
_SHOW_OUTPUTS = flags.DEFINE_integer(
    'show_outputs', 0, 'Print the first N outputs of each (task, method).'
)
_GSM8K_INSTRUCTION = flags.DEFINE_string(
    'gsm8k_instruction',
    '',
    'Appended to each GSM8K question after a blank line, e.g. to ask for the'
    " '#### <number>' line the spec's extraction reads ('' = the bare"
    ' question, as in the runs of record).',
)
_WIKITEXT = flags.DEFINE_integer('wikitext_prompts', 32, 'WikiText prompts.')
_PROMPT_WORDS = flags.DEFINE_integer(
    'wikitext_prompt_words', 32, 'Words of each WikiText prompt.'
)
_NEW_TOKENS = flags.DEFINE_integer('max_new_tokens', 64, 'Tokens per answer.')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Prompts per batch.')
_GAMMA = flags.DEFINE_integer('gamma', 4, 'Draft tokens per round.')
_LAYERS = flags.DEFINE_integer(
    'early_exit_layers', 15, 'Early-exit depth K (0: no early-exit amateur).'
)
_DISTILLED = flags.DEFINE_string(
    'distilled', '', "A second amateur spec, e.g. 'workdir:/tmp/draft'."
)
_METHODS = flags.DEFINE_list(
    'methods', ['greedy', 'speculative', 'contrastive', 'scd'], 'Methods.'
)
_ALPHA = flags.DEFINE_float('alpha', 0.1, 'CD plausibility threshold.')
_BETA = flags.DEFINE_float('beta', 0.5, "CD strength ('improved' form).")
_RESULTS = flags.DEFINE_string(
    'results',
    os.path.join(os.path.dirname(__file__), 'results', 'scd.md'),
    'Markdown file the table is appended to ("" to skip).',
)


def gsm8k_workload(count: int) -> tuple[list[str], list[str]]:
  """(questions, reference solutions) of the first `count` test examples."""
  examples = gsm8k.load_examples(os.path.join(DATA, 'gsm8k', 'test.jsonl'))
  examples = examples[: max(count, 0)]
  suffix = f'\n\n{_GSM8K_INSTRUCTION.value}' if _GSM8K_INSTRUCTION.value else ''
  questions = [e['question'] + suffix for e in examples]
  return questions, [e['answer'] for e in examples]


def wikitext_workload(count: int, words: int) -> list[str]:
  """The first `words` words of the first `count` long WikiText paragraphs."""
  prompts = []
  if count <= 0:
    return prompts
  with open(os.path.join(DATA, 'wikitext2', 'raw', 'wiki.test.raw')) as f:
    for line in f:
      tokens = line.strip().split()
      if len(tokens) < 3 * words or line.strip().startswith('='):
        continue
      prompts.append(' '.join(tokens[:words]))
      if len(prompts) == count:
        break
  return prompts


def repetition(texts: list[str], n: int = 4) -> float:
  """rep-n: 1 - distinct n-grams / n-grams within a text, averaged."""
  return 1.0 - diversity.distinct_n(texts, n)


def target_log_likelihood(
    target: decode_mode.LoadedModel,
    prompts: list[list[int]],
    continuations: list[list[int]],
) -> float:
  """Mean per-token log p_target(continuation | prompt) over the set."""
  apply = jax.jit(target.model.apply)
  total, count = 0.0, 0
  for prompt, continuation in zip(prompts, continuations):
    if not continuation:
      continue
    ids = jnp.asarray([prompt + continuation], jnp.int32)
    logits = apply({'params': target.params}, ids)[0]  # [length, vocab]
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    positions = np.arange(len(prompt) - 1, len(prompt) + len(continuation) - 1)
    picked = log_probs[positions, np.asarray(continuation)]
    total += float(jnp.sum(picked))
    count += len(continuation)
  return total / max(count, 1)


def argmax_agreement(
    target: decode_mode.LoadedModel,
    amateur: decode_mode.LoadedModel,
    prompts: list[list[int]],
    continuations: list[list[int]],
    batch_size: int = 8,
) -> float:
  """Share of continuation positions where the two models' argmax agree.

  Teacher-forced on the given text (the target's greedy output), this is the
  greedy acceptance rate a draft would see with no rollback effects. Rows are
  right-padded to one width (causal models: padding after a position does
  not change it), so each model compiles once.
  """
  texts = [p + c for p, c in zip(prompts, continuations) if c]
  spans = [(len(p), len(c)) for p, c in zip(prompts, continuations) if c]
  if not texts:
    return math.nan
  width = max(len(t) for t in texts)
  target_apply = jax.jit(target.model.apply)
  amateur_apply = jax.jit(amateur.model.apply)
  agree, count = 0, 0
  for begin in range(0, len(texts), batch_size):
    chunk = texts[begin : begin + batch_size]
    chunk += [chunk[-1]] * (batch_size - len(chunk))
    ids = np.zeros((batch_size, width), np.int32)  # [batch, width]
    for row, text in enumerate(chunk):
      ids[row, : len(text)] = text
    ids = jnp.asarray(ids)
    target_top = np.asarray(
        jnp.argmax(target_apply({'params': target.params}, ids), -1)
    )  # [batch, width]
    amateur_top = np.asarray(
        jnp.argmax(amateur_apply({'params': amateur.params}, ids), -1)
    )  # [batch, width]
    for row, (start, length) in enumerate(spans[begin : begin + batch_size]):
      window = slice(start - 1, start + length - 1)
      agree += int(np.sum(target_top[row, window] == amateur_top[row, window]))
      count += length
  return agree / max(count, 1)


def run_method(settings, target, amateur, tokenizer, prompts):
  """Decodes `prompts`; returns (results, summary, compile seconds)."""
  generator = decode_mode.Generator(settings, target, amateur, tokenizer)
  results = generator.generate(prompts)
  return results, decode_mode.summarize(results), generator.compile_seconds


def main(argv):
  del argv
  start = time.time()
  config = ml_collections.ConfigDict(
      {'init_from': f'gguf:{gguf.smollm2_path()}', 'model': {}}
  )
  target, tokenizer = decode_mode.load_target(config, '')
  amateurs = {}
  if _LAYERS.value > 0:
    amateurs[f'early_exit:{_LAYERS.value}'] = None
  if _DISTILLED.value:
    amateurs[_DISTILLED.value] = None
  for spec in amateurs:
    amateurs[spec] = decode_mode.load_amateur(spec, target, config)

  questions, solutions = gsm8k_workload(_GSM8K.value)
  wiki_texts = wikitext_workload(_WIKITEXT.value, _PROMPT_WORDS.value)
  workloads = {
      'gsm8k': decode_mode.encode_prompts(
          tokenizer,
          questions,
          chat_template='tokenizer',
          add_bos=False,
          max_prompt_length=1024,
      ),
      'wikitext': decode_mode.encode_prompts(
          tokenizer,
          wiki_texts,
          chat_template='none',
          add_bos=False,
          max_prompt_length=1024,
      ),
  }
  rows = []
  agreement_rows = []
  for task, prompts in workloads.items():
    if not prompts:
      continue
    baseline_speed = None
    runs = [('greedy', None)] if 'greedy' in _METHODS.value else []
    runs += [
        (method, spec)
        for spec in amateurs
        for method in _METHODS.value
        if method != 'greedy'
    ]
    for method, spec in runs:
      settings = decode_mode.Settings(
          method=method,
          max_new_tokens=_NEW_TOKENS.value,
          batch_size=_BATCH.value,
          gamma=_GAMMA.value,
          alpha=_ALPHA.value,
          beta=_BETA.value,
      )
      amateur = amateurs[spec] if spec else None
      results, summary, compile_s = run_method(
          settings, target, amateur, tokenizer, prompts
      )
      texts = [tokenizer.decode(r['tokens']) for r in results]
      for text in texts[: _SHOW_OUTPUTS.value]:
        print(f'--- {task} {method} output:\n{text}', flush=True)
      if task == 'gsm8k':
        quality = gsm8k.score(texts, solutions[: len(texts)])
        quality = f'acc {quality["accuracy"]:.1f}%'
      else:
        continuation = [
            [t for t in r['tokens'] if t != tokenizer.eos_id] for r in results
        ]
        ll = target_log_likelihood(target, prompts, continuation)
        quality = (
            f'dist-2 {diversity.distinct_n(texts, 2):.3f}, rep-4'
            f' {repetition(texts):.3f}, LL {ll:.3f}'
        )
      if method == 'greedy':
        baseline_speed = summary['tokens_per_second']
        greedy_tokens = [r['tokens'] for r in results]
        for name, model in amateurs.items():
          share = argmax_agreement(target, model, prompts, greedy_tokens)
          agreement_rows.append(f'| {task} | {name} | {share:.3f} |')
          print(agreement_rows[-1], flush=True)
      speedup = (
          summary['tokens_per_second'] / baseline_speed
          if baseline_speed
          else math.nan
      )
      accept = summary['acceptance_rate']
      row = (
          f'| {task} | {method} | {spec or "-"} |'
          f' {"-" if accept is None else f"{accept:.3f}"} |'
          f' {summary["tokens_per_target_call"]:.2f} |'
          f' {summary["tokens_per_second"]:.1f} | {speedup:.2f}x |'
          f' {quality} |'
      )
      print(row, f'(compile {compile_s:.0f} s)', flush=True)
      rows.append(row)
  header = (
      '| task | method | amateur | acceptance | tokens/target call |'
      ' tokens/s | speedup vs greedy | quality |\n'
      '|---|---|---|---|---|---|---|---|'
  )
  command = ' '.join(
      ['.venv/bin/python experiments/scd_eval.py']
      + [
          f'--{name}={flags.FLAGS[name].value}'
          for name in (
              'gsm8k_prompts',
              'wikitext_prompts',
              'max_new_tokens',
              'batch_size',
              'gamma',
              'early_exit_layers',
              'alpha',
              'beta',
          )
      ]
      + ([f'--distilled={_DISTILLED.value}'] if _DISTILLED.value else [])
      + [f'--methods={",".join(_METHODS.value)}']
  )
  table = '\n'.join([header] + rows)
  if agreement_rows:
    table += '\n\n' + '\n'.join(
        [
            "Teacher-forced argmax agreement with the target on the target's"
            ' greedy outputs:\n',
            '| task | amateur | agreement |',
            '|---|---|---|',
        ]
        + agreement_rows
    )
  print(table)
  if _RESULTS.value:
    with open(_RESULTS.value, 'a') as f:
      f.write(
          f'\n## Run of {datetime.date.today()} on'
          f' {jax.devices()[0].platform} ({jax.device_count()} device(s),'
          f' {os.cpu_count()} cores), {time.time() - start:.0f} s\n\n'
          f'    {command}\n\n{table}\n'
      )


if __name__ == '__main__':
  app.run(main)
