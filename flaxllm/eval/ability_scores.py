"""Scores generated responses by the ability each example tests.

Examples may carry a 'kind' (as `flaxllm.data.synthetic_sft` and SFT mixtures
do); each kind has its own checker:

  math     GSM8K answer checking (`flaxllm.eval.gsm8k`) against the example's
           'answer' (else its target): `math_accuracy`
  code     the response run against the example's 'test' in the sandbox of
           `flaxllm.eval.humaneval`: `code_pass@1`
  general  ROUGE-L F1 x 100 against the target: `general_rougeL`

Examples without a kind are scored together by BLEU and ROUGE-L.
"""

from collections.abc import Sequence

from flaxllm.eval import gsm8k
from flaxllm.eval import humaneval
from flaxllm.eval import text_metrics


def score_by_kind(
    predictions: Sequence[str], examples: Sequence[dict]
) -> dict[str, float]:
  """Per-ability metrics over examples with a 'kind' (module docstring)."""
  groups: dict[str, list[tuple[str, dict]]] = {}
  for prediction, example in zip(predictions, examples):
    groups.setdefault(example.get('kind', ''), []).append((prediction, example))
  metrics = {}
  for kind, pairs in sorted(groups.items()):
    texts = [prediction for prediction, _ in pairs]
    chosen = [example for _, example in pairs]
    if kind == 'math':
      references = [e.get('answer', e['tgt']) for e in chosen]
      metrics['math_accuracy'] = gsm8k.score(texts, references)['accuracy']
    elif kind == 'code':
      problems = [
          {
              'task_id': str(e.get('id', index)),
              'prompt': '',
              'test': e['test'],
              'entry_point': e['entry_point'],
          }
          for index, e in enumerate(chosen)
      ]
      scores = humaneval.score(problems, [[t] for t in texts], timeout_s=5.0)
      metrics['code_pass@1'] = scores['pass@1']
    else:
      references = [e['tgt'] for e in chosen]
      prefix = f'{kind}_' if kind else ''
      metrics[f'{prefix}rougeL'] = text_metrics.rouge_l(texts, references)
      if not kind:
        metrics['bleu'] = text_metrics.corpus_bleu(texts, references)
  return metrics
