"""An early-exit amateur: the first k layers of a LLaMA-family target.

The amateur (or draft) runs the target's embedding, its first `num_layers`
layers, then the target's final norm and LM head, all with the target's own
weights and no training. It is a `decoder.Decoder` of `num_layers` layers
whose params are a view of the target's: the same arrays for unrolled
layers, the first rows of the stacked arrays for scanned ones. Its KV cache
is its own (it runs ahead of the target on drafted tokens).
"""

from typing import Any

import flax.linen as nn
import jax

from flaxllm import errors
from flaxllm.models import decoder


def early_exit_config(
    config: decoder.DecoderConfig, num_layers: int
) -> decoder.DecoderConfig:
  """The target's config cut to its first `num_layers` layers.

  Args:
    config: the target's config.
    num_layers: layers kept, in [1, config.num_layers).

  Returns:
    The amateur's config.

  Raises:
    UserInputError: if num_layers is out of range.
  """
  if not 1 <= num_layers < config.num_layers:
    raise errors.UserInputError(
        f'early-exit num_layers={num_layers} must be in [1,'
        f' {config.num_layers}) for a target of {config.num_layers} layers'
    )
  return config.replace(num_layers=num_layers)


def early_exit_params(
    params: Any, config: decoder.DecoderConfig, num_layers: int
) -> Any:
  """The amateur's params: the target's, without the layers past k.

  Args:
    params: the target's params (boxed or not).
    config: the target's config.
    num_layers: layers kept (see `early_exit_config`).

  Returns:
    A params tree for `Decoder(early_exit_config(config, num_layers))`
    sharing the target's arrays (sliced when the layers are scanned).
  """
  early_exit_config(config, num_layers)  # Validates.
  params = nn.unbox(params)
  if config.scan_layers:
    # [num_layers, ...] stacked leaves -> their first rows.
    first_layers = jax.tree.map(
        lambda leaf: leaf[:num_layers], params['layers']
    )
    return {**params, 'layers': first_layers}
  dropped = {
      f'layers_{index}' for index in range(num_layers, config.num_layers)
  }
  return {name: value for name, value in params.items() if name not in dropped}


def early_exit_model(
    config: decoder.DecoderConfig, params: Any, num_layers: int
) -> tuple[decoder.Decoder, Any]:
  """The early-exit amateur as a model and its params.

  Args:
    config: the target's config.
    params: the target's params.
    num_layers: layers kept, in [1, config.num_layers).

  Returns:
    (model, params), ready for `model_steps.decoder_tokens_to_logits` and
    `model_steps.decoder_prefill`.
  """
  return (
      decoder.Decoder(early_exit_config(config, num_layers)),
      early_exit_params(params, config, num_layers),
  )
