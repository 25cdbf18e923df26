"""Tests for BPE training, saving and loading tokenizers."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from unittest import mock

from absl.testing import absltest
import numpy as np
import tokenizers

from flaxllm.data import hpo
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError

_VOCAB_SIZE = 800


def _hpo_texts() -> list[str]:
  concepts = list(hpo.load_kb().values())[:3000]
  return [c.name for c in concepts] + [
      c.definition for c in concepts if c.definition
  ]


class TokenizerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.texts = _hpo_texts()
    cls.tokenizer = tokenizer_lib.train_bpe(cls.texts, _VOCAB_SIZE)

  def setUp(self):
    super().setUp()
    self.directory = self.enterContext(tempfile.TemporaryDirectory())

  def test_special_ids_in_bart_order(self):
    tokenizer = self.tokenizer
    self.assertEqual(
        (tokenizer.bos_id, tokenizer.pad_id, tokenizer.eos_id),
        (0, 1, 2),
    )
    self.assertEqual((tokenizer.unk_id, tokenizer.mask_id), (3, 4))
    self.assertEqual(tokenizer.vocab_size, _VOCAB_SIZE)

  def test_round_trip_on_hpo_text(self):
    samples = self.texts[::97] + ['Ünïcödé — 5 µm, “quoted”']
    for text, ids in zip(samples, self.tokenizer.encode_batch(samples)):
      self.assertEqual(self.tokenizer.encode(text), ids)
      self.assertNotIn(self.tokenizer.bos_id, ids)
      self.assertNotIn(self.tokenizer.eos_id, ids)
      self.assertEqual(self.tokenizer.decode(ids), text)

  def test_merges_compress_text(self):
    text = self.texts[-1]
    self.assertLess(len(self.tokenizer.encode(text)), len(text.encode()) / 2)

  def test_decode_stops_at_eos_and_drops_specials(self):
    tokenizer = self.tokenizer
    first = tokenizer.encode('Short stature')
    second = tokenizer.encode(' and more')
    row = [tokenizer.bos_id, tokenizer.mask_id] + first + [tokenizer.pad_id]
    row += [tokenizer.eos_id] + second
    self.assertEqual(tokenizer.decode(row), 'Short stature')
    unended = first + second
    unended += [tokenizer.pad_id] * (len(row) - len(unended))
    batch = np.array([row, unended])  # [2, length]
    self.assertEqual(
        tokenizer.decode_batch(batch),
        ['Short stature', 'Short stature and more'],
    )

  def test_saved_folder_reloads_identically(self):
    path = os.path.join(self.directory, 'tok')
    self.tokenizer.save(path)
    self.assertCountEqual(
        os.listdir(path),
        ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'],
    )
    with open(os.path.join(path, 'special_tokens_map.json')) as f:
      self.assertEqual(json.load(f)['pad_token'], '<pad>')
    reloaded = tokenizer_lib.load_tokenizer(path)
    self.assertEqual(
        reloaded.encode_batch(self.texts),
        self.tokenizer.encode_batch(self.texts),
    )
    for attribute in (
        'pad_id',
        'bos_id',
        'eos_id',
        'unk_id',
        'mask_id',
        'vocab_size',
    ):
      self.assertEqual(
          getattr(reloaded, attribute), getattr(self.tokenizer, attribute)
      )

  def test_save_replaces_a_folder_and_leaves_no_staging(self):
    path = os.path.join(self.directory, 'tok')
    os.makedirs(path)
    with open(os.path.join(path, 'stale.txt'), 'w') as f:
      f.write('old')
    self.tokenizer.save(path)
    self.assertNotIn('stale.txt', os.listdir(path))
    self.assertEqual(os.listdir(self.directory), ['tok'])

  def test_failed_save_leaves_nothing(self):
    path = os.path.join(self.directory, 'tok')
    with mock.patch.object(
        tokenizer_lib.json, 'dump', side_effect=OSError('disk full')
    ):
      with self.assertRaises(OSError):
        self.tokenizer.save(path)
    self.assertEmpty(os.listdir(self.directory))

  def _backend(self) -> tokenizers.Tokenizer:
    """A fresh `tokenizers.Tokenizer` equal to the trained one."""
    path = os.path.join(self.directory, 'saved')
    self.tokenizer.save(path)
    return tokenizers.Tokenizer.from_file(os.path.join(path, 'tokenizer.json'))

  def test_vocab_and_merges_folder(self):
    folder = os.path.join(self.directory, 'gpt2_style')
    os.makedirs(folder)
    self._backend().model.save(folder)
    self.assertCountEqual(os.listdir(folder), ['vocab.json', 'merges.txt'])
    reloaded = tokenizer_lib.load_tokenizer(folder)
    self.assertEqual(reloaded.eos_id, 2)
    self.assertEqual(
        reloaded.encode(self.texts[5]), self.tokenizer.encode(self.texts[5])
    )
    self.assertEqual(
        reloaded.decode(reloaded.encode(self.texts[5])), self.texts[5]
    )

  def test_special_tokens_from_config(self):
    self.tokenizer.save(self.directory)
    config_path = os.path.join(self.directory, 'tokenizer_config.json')
    with open(config_path) as f:
      config = json.load(f)
    config['pad_token'] = {'content': '</s>', 'special': True}  # AddedToken.
    del config['mask_token']
    with open(config_path, 'w') as f:
      json.dump(config, f)
    os.remove(os.path.join(self.directory, 'special_tokens_map.json'))
    reloaded = tokenizer_lib.load_tokenizer(self.directory)
    self.assertEqual(reloaded.pad_id, 2)
    self.assertEqual(reloaded.mask_id, 4)  # BART's name is the fallback.

  def test_missing_pad_falls_back_to_eos(self):
    tokenizer = tokenizer_lib.Tokenizer(
        self._backend(), pad_token='<nope>', mask_token=None
    )
    self.assertEqual(tokenizer.pad_id, tokenizer.eos_id)
    self.assertIsNone(tokenizer.mask_id)

  def test_missing_eos_is_a_user_error(self):
    with self.assertRaisesRegex(UserInputError, "eos_token '<eot>'"):
      tokenizer_lib.Tokenizer(self._backend(), eos_token='<eot>')

  def test_bad_folders(self):
    with self.assertRaisesRegex(UserInputError, 'not found: /no/such/dir'):
      tokenizer_lib.load_tokenizer('/no/such/dir')
    with self.assertRaisesRegex(UserInputError, 'neither tokenizer.json'):
      tokenizer_lib.load_tokenizer(self.directory)
    with open(os.path.join(self.directory, 'tokenizer.json'), 'w') as f:
      f.write('{"not": "a tokenizer"}')
    with self.assertRaisesRegex(UserInputError, 'cannot read the tokenizer'):
      tokenizer_lib.load_tokenizer(self.directory)

  def test_too_small_vocab(self):
    with self.assertRaisesRegex(UserInputError, 'vocab_size 100'):
      tokenizer_lib.train_bpe(['abc'], 100)

  def test_get_or_train_reuses_the_workdir_tokenizer(self):
    calls = []

    def texts():
      calls.append(1)
      return self.texts[:500]

    first = tokenizer_lib.get_or_train_tokenizer('', texts, 500, self.directory)
    self.assertTrue(
        os.path.isfile(
            os.path.join(self.directory, 'tokenizer', 'tokenizer.json')
        )
    )
    # A resumed run must not retrain, even if asked for another size.
    second = tokenizer_lib.get_or_train_tokenizer(
        '', texts, 700, self.directory
    )
    self.assertLen(calls, 1)
    self.assertEqual(second.vocab_size, first.vocab_size)
    self.assertEqual(second.encode(self.texts[7]), first.encode(self.texts[7]))

  def test_get_or_train_prefers_the_given_path(self):
    path = os.path.join(self.directory, 'given')
    self.tokenizer.save(path)
    loaded = tokenizer_lib.get_or_train_tokenizer(
        path, lambda: self.fail('must not train'), 500, self.directory
    )
    self.assertEqual(loaded.vocab_size, _VOCAB_SIZE)
    self.assertFalse(os.path.exists(os.path.join(self.directory, 'tokenizer')))

  def test_get_or_train_without_workdir(self):
    tokenizer = tokenizer_lib.get_or_train_tokenizer(
        '', lambda: self.texts[:300], 400, None
    )
    self.assertEqual(tokenizer.vocab_size, 400)

  def test_transformers_is_not_needed(self):
    folder = os.path.join(self.directory, 'tok')
    script = textwrap.dedent(f"""
        import sys
        sys.modules['transformers'] = None  # Any import of it now fails.
        from flaxllm.data import tokenizer
        trained = tokenizer.train_bpe(['a b c a b c'] * 10, 300)
        trained.save({folder!r})
        loaded = tokenizer.load_tokenizer({folder!r})
        assert loaded.decode(loaded.encode('a b c')) == 'a b c'
    """)
    result = subprocess.run(
        [sys.executable, '-c', script],
        capture_output=True,
        text=True,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    self.assertEqual(result.returncode, 0, result.stderr)


if __name__ == '__main__':
  absltest.main()
