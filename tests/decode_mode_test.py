"""--mode=decode: prompts jsonl in, outputs jsonl out, through the CLI.

A tiny random LLaMA and a BPE tokenizer are saved as a Hugging Face folder
(the target, `init_from=hf:`); its first layer is the early-exit amateur.
"""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
import jax.numpy as jnp
import numpy as np

from configs import decode as decode_config
from flaxllm import configuration
from flaxllm import decode_mode
from flaxllm.data import tokenizer as tokenizer_lib
from flaxllm.errors import UserInputError
from flaxllm.models import decoder
from flaxllm.models import hf
from flaxllm.tasks import lm
from tests import decoding_helpers
from tests import run_helpers

PROMPTS = [
    'fever cough rash',
    'ataxia tremor',
    'seizure anemia edema myopia',
    'ptosis',
    'scoliosis apnea fever',
]
MAX_NEW_TOKENS = 6


def _write_target(folder: str) -> tokenizer_lib.Tokenizer:
  """A 2-layer random LLaMA with peaked logits and its tokenizer."""
  tokenizer = tokenizer_lib.train_bpe(
      [' '.join(run_helpers.WORDS)] * 20, vocab_size=300
  )
  config = decoder.DecoderConfig.from_dict(
      dict(
          vocab_size=tokenizer.vocab_size,
          pad_id=tokenizer.pad_id,
          d_model=16,
          num_heads=4,
          num_kv_heads=2,
          ffn_dim=32,
          num_layers=2,
          max_positions=64,
          tie_embeddings=False,
      )
  )
  model = decoder.Decoder(config)
  params = decoding_helpers.random_params(
      model, 0, jnp.zeros((1, 4), jnp.int32)
  )
  params['lm_head'] = params['lm_head'] * 40.0
  hf.save_pretrained(folder, config, params)
  # Tokenizer.save replaces its folder: save aside, then move the files in.
  tokenizer_folder = f'{folder}_tokenizer'
  tokenizer.save(tokenizer_folder)
  for name in os.listdir(tokenizer_folder):
    shutil.move(os.path.join(tokenizer_folder, name), folder)
  return tokenizer


def _write_prompts(path: str, field: str = 'prompt') -> str:
  with open(path, 'w') as f:
    for index, text in enumerate(PROMPTS):
      f.write(json.dumps({'id': index, field: text}) + '\n')
  return path


def _read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


class DecodeModeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.target = os.path.join(cls.root, 'target')
    cls.tokenizer = _write_target(cls.target)
    cls.prompts = _write_prompts(os.path.join(cls.root, 'prompts.jsonl'))

  def _config(self, **decode):
    config = decode_config.get_config()
    config.init_from = f'hf:{self.target}'
    config.decode.prompts = self.prompts
    config.decode.max_new_tokens = MAX_NEW_TOKENS
    config.decode.batch_size = 2  # 5 prompts: a padded last batch
    for key, value in decode.items():
      config.decode[key] = value
    return config

  def _cli_args(self, output: str, **decode) -> list[str]:
    args = [
        '--mode=decode',
        '--config=configs/decode.py',
        f'--workdir={self.root}/run',
        f'--config.init_from=hf:{self.target}',
        f'--config.decode.prompts={self.prompts}',
        f'--config.decode.output={output}',
        f'--config.decode.max_new_tokens={MAX_NEW_TOKENS}',
        '--config.decode.batch_size=2',
    ]
    return args + [f'--config.decode.{k}={v}' for k, v in decode.items()]

  def _lm_greedy(self) -> list[list[int]]:
    """The lm task's own greedy continuation of the same prompt ids."""
    config = self._config()
    config.data.max_source_length = 16
    config.data.max_target_length = MAX_NEW_TOKENS
    task = lm.LMTask(
        config,
        vocab_size=self.tokenizer.vocab_size,
        pad_id=self.tokenizer.pad_id,
        eos_id=self.tokenizer.eos_id,
    )
    target, _ = decode_mode.load_target(config, self.root)
    prompts = decode_mode.encode_prompts(
        self.tokenizer,
        PROMPTS,
        chat_template='auto',
        add_bos=True,
        max_prompt_length=16,
    )
    ids, lengths = decode_mode.pad_prompts(prompts, 16, self.tokenizer.pad_id)
    rows = np.asarray(
        task.predict(target.params, {'prompt': ids, 'prompt_length': lengths})
    )
    outputs = []
    for row in rows.tolist():
      if self.tokenizer.eos_id in row:
        row = row[: row.index(self.tokenizer.eos_id) + 1]
      outputs.append(row)
    return outputs

  def test_cli_greedy_equals_lm_task_greedy_and_writes_every_field(self):
    output = os.path.join(self.root, 'greedy.jsonl')
    result = run_helpers.run_cli(self._cli_args(output))
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    records = _read_jsonl(output)
    self.assertEqual([r['id'] for r in records], list(range(len(PROMPTS))))
    self.assertEqual([r['tokens'] for r in records], self._lm_greedy())
    for record in records:
      self.assertEqual(record['num_tokens'], len(record['tokens']))
      self.assertEqual(record['tokens_per_target_call'], 1.0)
      self.assertIsNone(record['acceptance_rate'])
      self.assertGreater(record['tokens_per_second'], 0)
      self.assertEqual(
          record['output'], self.tokenizer.decode(record['tokens'])
      )

  def test_cli_scd_writes_acceptance_and_tokens_per_call(self):
    output = os.path.join(self.root, 'scd.jsonl')
    result = run_helpers.run_cli(
        self._cli_args(output, method='scd', amateur='early_exit:1', gamma=3)
    )
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn('tokens per target call', result.stdout)
    records = _read_jsonl(output)
    self.assertLen(records, len(PROMPTS))
    for record in records:
      self.assertBetween(record['acceptance_rate'], 0.0, 1.0)
      self.assertGreaterEqual(record['tokens_per_target_call'], 1.0)
      self.assertLessEqual(record['tokens_per_target_call'], 4.0)
      self.assertEqual(record['num_tokens'], len(record['tokens']))

  def test_greedy_speculative_and_scd_equal_greedy_and_contrastive(self):
    """Speculative == greedy and SCD == CD, decoded in-process."""

    def tokens(method, **knobs):
      config = self._config(
          method=method, amateur='early_exit:1', output='', **knobs
      )
      configuration.validate(config, num_devices=1)
      output = os.path.join(self.root, f'{method}.jsonl')
      config.decode.output = output
      decode_mode.decode_file(config, self.root)
      records = _read_jsonl(output)
      return [r['tokens'] for r in records], records

    greedy, _ = tokens('greedy')
    speculative, records = tokens('speculative', gamma=2)
    self.assertEqual(speculative, greedy)
    self.assertIsNotNone(records[0]['acceptance_rate'])
    contrastive, _ = tokens('contrastive')
    scd, _ = tokens('scd', gamma=2)
    self.assertEqual(scd, contrastive)
    self.assertNotEqual(contrastive, greedy)  # The contrast changes outputs.

  def test_bad_prompts_file_is_a_one_line_error_and_writes_nothing(self):
    bad = os.path.join(self.root, 'bad.jsonl')
    with open(bad, 'w') as f:
      f.write('{"prompt": "fever"}\n{"text": "no prompt field"}\n')
    output = os.path.join(self.root, 'never.jsonl')
    args = self._cli_args(output)
    args[args.index(f'--config.decode.prompts={self.prompts}')] = (
        f'--config.decode.prompts={bad}'
    )
    result = run_helpers.run_cli(args, devices=1)
    self.assertEqual(result.returncode, 2)
    error_lines = result.stderr.strip().splitlines()
    self.assertLen(error_lines, 1, result.stderr)
    self.assertIn(f'{bad}:2', error_lines[0])
    self.assertIn("'prompt'", error_lines[0])
    self.assertFalse(os.path.exists(output))
    self.assertEmpty(
        [n for n in os.listdir(self.root) if n.startswith('never.jsonl')]
    )

  def test_validation_names_the_decode_key(self):
    config = self._config(method='scd', amateur='')
    with self.assertRaisesRegex(UserInputError, 'needs an amateur'):
      configuration.validate(config, num_devices=1)
    config = self._config(method='beam')
    with self.assertRaisesRegex(UserInputError, 'decode.method'):
      configuration.validate(config, num_devices=1)
    config = self._config(amateur='early_exit:x')
    with self.assertRaisesRegex(UserInputError, 'early_exit:K'):
      configuration.validate(config, num_devices=1)


if __name__ == '__main__':
  absltest.main()
