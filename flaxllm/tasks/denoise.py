"""Denoising pretraining (BART, BioBART) on the encoder-decoder.

The network, loss and greedy prediction are `Seq2SeqTask`'s: the encoder reads
a noised document, the decoder reconstructs the whole original document, and
the cross-entropy covers every real target token (fairseq's loss, not the
masked-tokens-only loss of the Hugging Face Flax example). What this module
adds is the data (`flaxllm.data.documents` with the noise of
`flaxllm.data.denoise`, configured by the noise keys of config.task) and a
reconstruction score: BLEU, ROUGE-L and exact match of the greedy output
against the document.
"""

import dataclasses
from typing import Any

import ml_collections

from flaxllm import errors
from flaxllm.data import denoise
from flaxllm.eval import text_metrics
from flaxllm.tasks import seq2seq


class DenoiseTask(seq2seq.Seq2SeqTask):
  """Reconstructs documents from their noised copies (see the module doc)."""

  def evaluate(
      self, predictions: list[str], examples: list[dict]
  ) -> dict[str, float]:
    """Scores reconstructions against the documents.

    Args:
      predictions: the decoded greedy outputs.
      examples: the documents predicted, in order, each with its 'tgt' (the
        document as the model saw it, truncated).

    Returns:
      {'bleu', 'rougeL', 'exact_match'}, each on a 0-100 scale.
    """
    references = [example['tgt'] for example in examples]
    exact = sum(
        prediction.strip() == reference.strip()
        for prediction, reference in zip(predictions, references)
    )
    return {
        'bleu': text_metrics.corpus_bleu(predictions, references),
        'rougeL': text_metrics.rouge_l(predictions, references),
        'exact_match': 100.0 * exact / max(len(references), 1),
    }


# -----------------------------------------------------------------------------
# Registry hooks (see flaxllm.tasks): config keys, validation, construction.
# -----------------------------------------------------------------------------


def task_defaults() -> ml_collections.ConfigDict:
  """The keys `config.task` takes: the BART paper's noise by default.

  Besides 'name' and 'label_smoothing' every `denoise.NoiseConfig` field is a
  key, and 'full_stop_id' names the sentence-ending id (-1: the tokenizer's
  '.').
  """
  noise = denoise.preset('bart')
  return ml_collections.ConfigDict({
      'name': 'denoise',
      'label_smoothing': 0.0,
      'full_stop_id': -1,
      **dataclasses.asdict(noise),
  })


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates the noise keys, the model family and the lengths."""
  family = config.model.get('family')
  if family != 'encoder_decoder':
    raise errors.UserInputError(
        f"config key model.family={family!r} does not fit task 'denoise'; use"
        " 'encoder_decoder'"
    )
  denoise.noise_config_from_dict(config.task.to_dict())
  if config.data.max_target_length < 3:
    raise errors.UserInputError(
        'config key data.max_target_length must be >= 3 (bos, a token, eos)'
    )
  seq2seq.check_config(config)


def build(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    process_index: int,
    process_count: int,
) -> tuple[DenoiseTask, Any]:
  """Loads the documents (training the tokenizer if needed), builds the task.

  Args:
    config: the run config.
    workdir: where the tokenizer is saved (by process 0 only).
    process_index: this process.
    process_count: processes in the job.

  Returns:
    (task, `documents.DocumentsData` bundle).
  """
  del process_count  # Every process loads the same documents; iterators split.
  from flaxllm.data import documents  # pylint: disable=g-import-not-at-top

  data = documents.DocumentsData.from_config(
      config, workdir, save_tokenizer=process_index == 0
  )
  tokenizer = data.tokenizer
  task = DenoiseTask(
      config,
      vocab_size=tokenizer.vocab_size,
      pad_id=tokenizer.pad_id,
      eos_id=tokenizer.eos_id,
      decoder_start_id=tokenizer.eos_id,
  )
  return task, data
