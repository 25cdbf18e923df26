"""Tokenizers: training byte-level BPE, loading local Hugging Face folders.

`Tokenizer` wraps a `tokenizers.Tokenizer` (the Rust library, not
`transformers`) and knows its special ids. `train_bpe` trains a BART-style
byte-level BPE vocabulary; `load_tokenizer` reads a tokenizer folder written
by Hugging Face or by `Tokenizer.save`; `get_or_train_tokenizer` is what the
trainer calls, so that a resumed run reuses the vocabulary it started with.
"""

import json
import os
import shutil
import tempfile
from typing import Any, Callable, Iterable, Sequence

from absl import logging
import numpy as np
import tokenizers
from tokenizers import decoders
from tokenizers import models
from tokenizers import pre_tokenizers
from tokenizers import processors
from tokenizers import trainers

from flaxllm.errors import UserInputError

# BART's special tokens, in BART's id order: <s>=0, <pad>=1, </s>=2, <unk>=3,
# <mask>=4. Keys are the Hugging Face names of the roles.
BART_SPECIAL_TOKENS = {
    'bos_token': '<s>',
    'pad_token': '<pad>',
    'eos_token': '</s>',
    'unk_token': '<unk>',
    'mask_token': '<mask>',
}
TOKENIZER_SUBDIR = 'tokenizer'  # Where a trained tokenizer lives in a workdir.


class Tokenizer:
  """A `tokenizers.Tokenizer` with its special token ids.

  Attributes:
    pad_id: the padding id.
    bos_id: the beginning-of-sequence id.
    eos_id: the end-of-sequence id; decoding stops there.
    unk_id: the unknown-token id.
    mask_id: the mask id, or None when the vocabulary has no mask token.
    vocab_size: the number of ids, added tokens included.
  """

  def __init__(
      self,
      tokenizer: tokenizers.Tokenizer,
      *,
      bos_token: str = '<s>',
      pad_token: str | None = '<pad>',
      eos_token: str = '</s>',
      unk_token: str = '<unk>',
      mask_token: str | None = '<mask>',
      chat_template: str | None = None,
  ):
    """Wraps a tokenizer.

    Args:
      tokenizer: the underlying tokenizer.
      bos_token: the beginning-of-sequence token.
      pad_token: the padding token; when missing from the vocabulary (or
        None) padding uses the eos id, as LLaMA-style vocabularies do.
      eos_token: the end-of-sequence token.
      unk_token: the unknown token.
      mask_token: the mask token; None or missing gives mask_id None.
      chat_template: the Jinja chat template the tokenizer ships, if any
        (see `flaxllm.data.chat_templates`).

    Raises:
      UserInputError: bos, eos or unk is not in the vocabulary.
    """
    self._tokenizer = tokenizer
    self.chat_template = chat_template
    self._tokens = {
        'bos_token': bos_token,
        'pad_token': pad_token,
        'eos_token': eos_token,
        'unk_token': unk_token,
        'mask_token': mask_token,
    }
    self.bos_id = self._required_id('bos_token')
    self.eos_id = self._required_id('eos_token')
    self.unk_id = self._required_id('unk_token')
    self.pad_id = self._optional_id('pad_token')
    if self.pad_id is None:
      logging.info('No pad token %r: padding with eos.', pad_token)
      self.pad_id = self.eos_id
      self._tokens['pad_token'] = eos_token
    self.mask_id = self._optional_id('mask_token')
    if self.mask_id is None:
      self._tokens['mask_token'] = None
    # Mark the specials (all already in the vocabulary) so decoding drops
    # them.
    tokenizer.add_special_tokens(
        [token for token in self._tokens.values() if token is not None]
    )
    self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

  def special_tokens(self) -> dict[str, str]:
    """{'bos_token': '<s>', 'eos_token': ..., ...}, roles without one left out."""
    return {role: token for role, token in self._tokens.items() if token}

  def _optional_id(self, role: str) -> int | None:
    token = self._tokens[role]
    return None if token is None else self._tokenizer.token_to_id(token)

  def _required_id(self, role: str) -> int:
    token_id = self._optional_id(role)
    if token_id is None:
      raise UserInputError(
          f'tokenizer has no {role} {self._tokens[role]!r}; name the right'
          f' token as "{role}" in its tokenizer_config.json'
      )
    return token_id

  def encode(self, text: str) -> list[int]:
    """Returns the ids of `text`, without special tokens."""
    return self._tokenizer.encode(text, add_special_tokens=False).ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """Returns the ids of each text, without special tokens (in parallel)."""
    encodings = self._tokenizer.encode_batch(
        list(texts), add_special_tokens=False
    )
    return [encoding.ids for encoding in encodings]

  def decode(self, ids: Sequence[int]) -> str:
    """Turns ids back into text.

    Args:
      ids: token ids, e.g. one row of a model output.  # [length]

    Returns:
      The text of the ids before the first eos, special tokens dropped.
    """
    ids = [int(token_id) for token_id in np.asarray(ids).reshape(-1)]
    if self.eos_id in ids:
      ids = ids[: ids.index(self.eos_id)]
    return self._tokenizer.decode(ids, skip_special_tokens=True)

  def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
    """Decodes each row of `batch` (a list of id lists or an array).

    Args:
      batch: token ids.  # [batch, length]

    Returns:
      One text per row, as `decode` gives it.
    """
    return [self.decode(ids) for ids in batch]

  def save(self, directory: str) -> None:
    """Writes a folder that `load_tokenizer` and Hugging Face can load.

    The folder (tokenizer.json, tokenizer_config.json,
    special_tokens_map.json) is written in a temporary sibling folder and
    renamed into place, so a crash never leaves a half-written folder. An
    existing folder at `directory` is replaced.

    Args:
      directory: the folder to write.
    """
    directory = os.path.abspath(directory)
    parent = os.path.dirname(directory)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.tokenizer-', dir=parent)
    try:
      self._tokenizer.save(os.path.join(staging, 'tokenizer.json'))
      special_tokens = {
          role: token for role, token in self._tokens.items() if token
      }
      config = {
          'tokenizer_class': 'PreTrainedTokenizerFast',
          'add_prefix_space': False,
          **special_tokens,
      }
      if self.chat_template:
        config['chat_template'] = self.chat_template
      for name, content in (
          ('tokenizer_config.json', config),
          ('special_tokens_map.json', special_tokens),
      ):
        with open(os.path.join(staging, name), 'w', encoding='utf-8') as f:
          json.dump(content, f, indent=2)
      if os.path.exists(directory):
        retired = tempfile.mkdtemp(prefix='.tokenizer-old-', dir=parent)
        os.replace(directory, os.path.join(retired, 'old'))
        os.replace(staging, directory)
        shutil.rmtree(retired)
      else:
        os.replace(staging, directory)
    finally:
      if os.path.exists(staging):
        shutil.rmtree(staging)


def train_bpe(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> Tokenizer:
  """Trains a BART-style byte-level BPE tokenizer.

  Args:
    texts: the training texts.
    vocab_size: the vocabulary size, special tokens and the 256 byte tokens
      included.
    min_frequency: pairs seen fewer times are never merged.

  Returns:
    The tokenizer, with <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.
  """
  special_tokens = list(BART_SPECIAL_TOKENS.values())
  minimum_size = len(special_tokens) + len(pre_tokenizers.ByteLevel.alphabet())
  if vocab_size < minimum_size:
    raise UserInputError(
        f'tokenizer vocab_size {vocab_size} is below the {minimum_size} ids'
        ' that byte-level BPE needs for bytes and specials; raise it'
    )
  tokenizer = tokenizers.Tokenizer(models.BPE(unk_token='<unk>'))
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  # Only used by Hugging Face callers that add special tokens; our encode
  # never does.
  tokenizer.post_processor = processors.TemplateProcessing(
      single='<s> $A </s>',
      pair='<s> $A </s> </s> $B </s>',
      special_tokens=[('<s>', 0), ('</s>', 2)],
  )
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size,
      min_frequency=min_frequency,
      special_tokens=special_tokens,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
  )
  tokenizer.train_from_iterator(texts, trainer=trainer)
  return Tokenizer(tokenizer, **BART_SPECIAL_TOKENS)


def _read_special_tokens(path: str) -> dict[str, str | None]:
  """The special tokens a folder's config files name, else BART's names."""
  special_tokens = dict(BART_SPECIAL_TOKENS)
  # tokenizer_config.json wins over special_tokens_map.json: read it last.
  for name in ('special_tokens_map.json', 'tokenizer_config.json'):
    config_path = os.path.join(path, name)
    if not os.path.isfile(config_path):
      continue
    try:
      with open(config_path, encoding='utf-8') as f:
        config = json.load(f)
    except json.JSONDecodeError as error:
      raise UserInputError(
          f'{config_path}:{error.lineno}: not valid JSON ({error.msg}); fix'
          ' the file'
      ) from None
    for role in special_tokens:
      value = config.get(role)
      if isinstance(value, dict):  # An AddedToken: {"content": "<s>", ...}.
        value = value.get('content')
      if isinstance(value, str):
        special_tokens[role] = value
  return special_tokens


def _read_chat_template(path: str) -> str | None:
  """The chat template of a folder's tokenizer_config.json, if it has one.

  Hugging Face stores either one template string or a list of named ones;
  the list's 'default' template (else its first) is used.
  """
  config_path = os.path.join(path, 'tokenizer_config.json')
  if not os.path.isfile(config_path):
    return None
  with open(config_path, encoding='utf-8') as f:
    template = json.load(f).get('chat_template')
  if isinstance(template, list):
    named = {t.get('name'): t.get('template') for t in template}
    template = named.get('default') or next(iter(named.values()), None)
  return template if isinstance(template, str) else None


def _byte_level_bpe_from_files(
    vocab_path: str, merges_path: str
) -> tokenizers.Tokenizer:
  """Builds a GPT-2/BART style tokenizer from vocab.json and merges.txt."""
  tokenizer = tokenizers.Tokenizer(
      models.BPE.from_file(vocab_path, merges_path)
  )
  tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tokenizer.decoder = decoders.ByteLevel()
  return tokenizer


def load_tokenizer(path: str) -> Tokenizer:
  """Loads a tokenizer from a local Hugging Face tokenizer folder.

  Args:
    path: a folder with tokenizer.json (preferred), or vocab.json and
      merges.txt of a byte-level BPE; special tokens are read from
      tokenizer_config.json / special_tokens_map.json, falling back to BART's
      names.

  Returns:
    The tokenizer.

  Raises:
    UserInputError: the folder is missing or holds no usable tokenizer.
  """
  if not os.path.isdir(path):
    raise UserInputError(
        f'tokenizer folder not found: {path}; point the tokenizer path at a'
        ' local folder (nothing is downloaded)'
    )
  tokenizer_json = os.path.join(path, 'tokenizer.json')
  vocab_json = os.path.join(path, 'vocab.json')
  merges_txt = os.path.join(path, 'merges.txt')
  if os.path.isfile(tokenizer_json):
    read = lambda: tokenizers.Tokenizer.from_file(tokenizer_json)
  elif os.path.isfile(vocab_json) and os.path.isfile(merges_txt):
    read = lambda: _byte_level_bpe_from_files(vocab_json, merges_txt)
  else:
    raise UserInputError(
        f'{path} has neither tokenizer.json nor vocab.json + merges.txt;'
        ' save a Hugging Face tokenizer there'
    )
  try:
    tokenizer = read()
  except Exception as error:  # pylint: disable=broad-exception-caught
    # The Rust library raises a bare Exception for unreadable files.
    raise UserInputError(
        f'cannot read the tokenizer in {path} ({error}); re-save it'
    ) from None
  # Batching pads and truncates; a saved tokenizer.json may carry its own.
  tokenizer.no_padding()
  tokenizer.no_truncation()
  return Tokenizer(
      tokenizer,
      **_read_special_tokens(path),
      chat_template=_read_chat_template(path),
  )


def get_or_train_tokenizer(
    path: str,
    texts: Callable[[], Iterable[str]],
    vocab_size: int,
    workdir: str | None,
) -> Tokenizer:
  """Loads the configured tokenizer, or the run's own, or trains one.

  Args:
    path: a tokenizer folder; empty to use or train the run's own.
    texts: returns the training texts; only called when training.
    vocab_size: the vocabulary size of a trained tokenizer.
    workdir: the run's folder; a trained tokenizer is saved to
      `workdir/tokenizer` and reloaded from there when the run resumes.

  Returns:
    The tokenizer.
  """
  if path:
    return load_tokenizer(path)
  saved_path = workdir and os.path.join(workdir, TOKENIZER_SUBDIR)
  if saved_path and os.path.isdir(saved_path):
    logging.info('Reusing the tokenizer saved in %s.', saved_path)
    return load_tokenizer(saved_path)
  logging.info('Training a byte-level BPE tokenizer of %d ids.', vocab_size)
  tokenizer = train_bpe(texts(), vocab_size)
  if saved_path:
    tokenizer.save(saved_path)
  return tokenizer


def run_tokenizer(
    config: Any, training_text: Callable[[], Iterable[str]], workdir: str | None
) -> Tokenizer:
  """A run's tokenizer: tokenizer.path, else init_from's, else a new BPE.

  Args:
    config: the run config (tokenizer section and init_from).
    training_text: yields the texts a new tokenizer is trained on.
    workdir: where a trained tokenizer is saved and looked for (None: not
      saved, on processes other than 0).

  Returns:
    The tokenizer.
  """
  if config.get('init_from') and not config.tokenizer.path:
    from flaxllm.models import pretrained  # pylint: disable=g-import-not-at-top

    return pretrained.load_tokenizer(config.init_from)
  return get_or_train_tokenizer(
      config.tokenizer.path,
      training_text,
      config.tokenizer.vocab_size,
      workdir,
  )
