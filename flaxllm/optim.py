"""Optimizers: optax chains, learning-rate schedules, weight-decay masks, EMA.

Everything is built from `config.optimizer` (see `flaxllm.configuration`):

  name            'adamw' | 'adafactor' | 'sgd'
  learning_rate   peak learning rate
  warmup_steps    linear warmup from 0
  decay           'cosine' | 'linear' | 'constant' (after warmup, to
                  end_lr_fraction * learning_rate at train.steps)
  weight_decay    decoupled, applied to matrices only (ndim >= 2)
  grad_clip_norm  global-norm clipping, 0 disables
  ema_decay       EMA of params kept in the train state, 0 disables
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from flaxllm.errors import UserInputError


def learning_rate_schedule(
    config: ml_collections.ConfigDict, total_steps: int
) -> optax.Schedule:
  """Warmup then cosine / linear / constant decay over `total_steps`."""
  peak = config.learning_rate
  warmup = min(config.warmup_steps, total_steps)
  end = peak * config.end_lr_fraction
  decay_steps = max(total_steps - warmup, 1)
  if config.decay == 'cosine':
    decay = optax.cosine_decay_schedule(
        peak, decay_steps, alpha=config.end_lr_fraction
    )
  elif config.decay == 'linear':
    decay = optax.linear_schedule(peak, end, decay_steps)
  elif config.decay == 'constant':
    decay = optax.constant_schedule(peak)
  else:
    raise UserInputError(
        f"optimizer.decay={config.decay!r} is unknown; use 'cosine',"
        " 'linear' or 'constant'"
    )
  if warmup == 0:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, warmup), decay], [warmup]
  )


def weight_decay_mask(params: Any) -> Any:
  """True for matrices and embeddings, False for biases and norm scales."""
  return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(
    config: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optax chain of `config.optimizer`.

  Args:
    config: the `optimizer` section of the run config.
    total_steps: the run's number of optimizer steps (schedule length).

  Returns:
    (transformation, learning-rate schedule).
  """
  schedule = learning_rate_schedule(config, total_steps)
  if config.name == 'adamw':
    core = optax.adamw(
        schedule,
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        mask=weight_decay_mask,
    )
  elif config.name == 'adafactor':
    core = optax.adafactor(
        schedule,
        weight_decay_rate=config.weight_decay or None,
        weight_decay_mask=weight_decay_mask,
    )
  elif config.name == 'sgd':
    core = optax.chain(
        optax.add_decayed_weights(config.weight_decay, weight_decay_mask),
        optax.sgd(schedule, momentum=config.b1 or None),
    )
  else:
    raise UserInputError(
        f"optimizer.name={config.name!r} is unknown; use 'adamw', 'adafactor'"
        " or 'sgd'"
    )
  if config.grad_clip_norm > 0:
    core = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), core)
  return core, schedule


def update_ema(ema_params: Any, params: Any, decay: float) -> Any:
  """One step of the exponential moving average of params."""
  return jax.tree.map(
      lambda e, p: (decay * e + (1.0 - decay) * p).astype(e.dtype),
      ema_params,
      params,
  )
