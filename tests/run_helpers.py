"""Helpers shared by the trainer's tests: a tiny dataset, configs, CLI runs."""

import json
import os
import random
import subprocess
import sys

import ml_collections

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = (
    'fever cough rash ataxia tremor seizure anemia edema myopia ptosis'
    ' scoliosis apnea'
).split()


def write_sort_dataset(path: str, count: int, seed: int) -> str:
  """jsonl of {'src': words, 'tgt': the same words sorted}: learnable, tiny."""
  rng = random.Random(seed)
  with open(path, 'w') as f:
    for _ in range(count):
      words = rng.sample(WORDS, rng.randint(2, 5))
      f.write(
          json.dumps({'src': ' '.join(words), 'tgt': ' '.join(sorted(words))})
          + '\n'
      )
  return path


def make_data_dir(directory: str) -> dict[str, str]:
  os.makedirs(directory, exist_ok=True)
  return {
      split: write_sort_dataset(
          os.path.join(directory, f'{split}.jsonl'), count, seed
      )
      for split, count, seed in (
          ('train', 256, 0),
          ('eval', 32, 1),
          ('test', 32, 2),
      )
  }


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: dict
) -> ml_collections.ConfigDict:
  """Sets `section__key=value` overrides, e.g. train__steps=3."""
  for key, value in overrides.items():
    section, name = key.split('__')
    config[section][name] = value
  return config


def shrink_to_toy_model(model: ml_collections.ConfigDict, max_positions: int):
  """Makes an encoder-decoder model config one layer each side at width 32."""
  model.d_model = 32
  model.num_heads = 2
  model.ffn_dim = 64
  model.encoder_layers = 1
  model.decoder_layers = 1
  model.max_positions = max_positions


def tiny_config(data: dict[str, str], **train) -> ml_collections.ConfigDict:
  """A seq2seq config small enough for one CPU step in well under a second."""
  from configs import seq2seq  # pylint: disable=g-import-not-at-top

  config = seq2seq.get_config('runlocal')
  shrink_to_toy_model(config.model, max_positions=32)
  config.model.dropout_rate = 0.0
  config.data.train, config.data.eval, config.data.test = (
      data['train'],
      data['eval'],
      data['test'],
  )
  config.data.max_source_length = 16
  config.data.max_target_length = 12
  config.data.bucket_boundaries = ()
  config.data.max_eval_examples = 16
  config.tokenizer.vocab_size = 300
  config.train.steps = 6
  config.train.batch_size = 8
  config.train.eval_batch_size = 8
  config.train.log_every = 1
  config.train.eval_every = 0
  config.train.num_samples = 1
  config.optimizer.warmup_steps = 2
  config.checkpoint.every = 2
  config.checkpoint.keep = 10
  return apply_overrides(config, train)


def lm_tiny_config(data: dict[str, str], **train) -> ml_collections.ConfigDict:
  """A causal-LM config (tiny LLaMA, packed rows) on the sort dataset."""
  from configs import lm  # pylint: disable=g-import-not-at-top

  config = lm.get_config('runlocal')
  config.model.d_model = 32
  config.model.num_heads = 4
  config.model.num_kv_heads = 2
  config.model.ffn_dim = 64
  config.model.num_layers = 1
  config.model.max_positions = 32
  config.data.train, config.data.eval, config.data.test = (
      data['train'],
      data['eval'],
      data['test'],
  )
  config.data.max_source_length = 16
  config.data.max_target_length = 12
  config.data.max_eval_examples = 16
  config.tokenizer.vocab_size = 300
  config.train.steps = 6
  config.train.batch_size = 8
  config.train.eval_batch_size = 8
  config.train.log_every = 1
  config.train.eval_every = 0
  config.train.num_samples = 1
  config.optimizer.warmup_steps = 2
  config.checkpoint.every = 0
  return apply_overrides(config, train)


def write_config_file(path: str, data: dict[str, str], **train) -> str:
  """A config file for CLI runs that builds `tiny_config(data, **train)`."""
  with open(path, 'w') as f:
    f.write(
        '"""Tiny test config."""\n'
        'from tests import run_helpers\n\n\n'
        'def get_config(arg=None):\n'
        f'  return run_helpers.tiny_config({data!r}, **{train!r})\n'
    )
  return path


def run_cli(
    args: list[str], *, devices: int = 8, timeout: float = 300, env=None
) -> subprocess.CompletedProcess:
  """Runs `python -m flaxllm.main ARGS` on `devices` fake CPU devices."""
  full_env = dict(os.environ)
  full_env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  full_env['JAX_PLATFORMS'] = 'cpu'
  full_env['PYTHONUNBUFFERED'] = '1'
  full_env.update(env or {})
  return subprocess.run(
      [sys.executable, '-m', 'flaxllm.main', *args],
      cwd=ROOT,
      env=full_env,
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def train_losses(workdir: str) -> dict[int, float]:
  """step -> train loss, from workdir/metrics.jsonl (last record per step)."""
  losses = {}
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    for line in f:
      record = json.loads(line)
      if record['split'] == 'train':
        losses[record['step']] = record['loss']
  return losses
