"""`tokens_to_logits` and prefill for the model families.

Each family gets a step function on the samplers' contract (see `sampling`)
and a prefill that returns the decoding state and each row's first input
token, ready for any sampler:

  LLaMA family (`flaxllm.models.decoder.Decoder`): the cache is the model's
  linen 'cache' collection. A ragged batch of prompts comes right-padded;
  the prefill feeds all but the last column, rolls every row back to its
  own length minus one (`cache.set_lengths`) and hands each row's last
  prompt token to the sampler as its start token.

  BART family (`flaxllm.models.encoder_decoder.EncoderDecoder`): the source
  is encoded once; the state is {'cache', 'encoded', 'input_mask'} so that
  row operations (beam search) reorder the source with the decoder cache.
  The cross-attention keys and values are computed once, by the call that
  creates the cache.

`cache_length` is the static number of positions of the self-attention
caches: prompt + new tokens, plus `gamma + 1` for speculative decoding
(writes past it would land on earlier positions).
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxllm.decoding import cache as cache_lib
from flaxllm.decoding import sampling
from flaxllm.models import decoder as decoder_lib
from flaxllm.models import encoder_decoder as encoder_decoder_lib


def decoder_tokens_to_logits(
    model: decoder_lib.Decoder,
) -> sampling.TokensToLogits:
  """The step function of a LLaMA-family model.

  Args:
    model: the decoder-only model.

  Returns:
    tokens_to_logits(params, ids [batch, length], cache) -> (logits [batch,
    length, vocab], cache), feeding `ids` after the cached tokens.
  """

  def tokens_to_logits(params, ids, cache):
    logits, variables = model.apply(
        {'params': params, 'cache': cache}, ids, decode=True, mutable=['cache']
    )
    return logits, variables['cache']

  return tokens_to_logits


def init_decoder_cache(
    model: decoder_lib.Decoder, batch_size: int, cache_length: int
) -> Any:
  """An empty (all rows at length 0) cache of a LLaMA-family model.

  Args:
    model: the decoder-only model.
    batch_size: rows.
    cache_length: positions per row (static).

  Returns:
    The 'cache' collection, zeros.
  """
  shapes = jax.eval_shape(
      functools.partial(model.init, decode=True),
      jax.random.key(0),
      jnp.zeros((batch_size, cache_length), jnp.int32),
  )['cache']
  return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), nn.unbox(shapes))


def decoder_prefill(
    model: decoder_lib.Decoder,
    params: Any,
    prompt_ids: jax.Array,
    prompt_lengths: jax.Array,
    *,
    cache_length: int,
) -> tuple[Any, jax.Array]:
  """Caches all but the last token of each (right-padded) prompt.

  Args:
    model: the decoder-only model.
    params: its params.
    prompt_ids: int32 [batch, prompt_width], right-padded prompts.
    prompt_lengths: int32 [batch], each prompt's length (>= 1).
    cache_length: positions of the cache (static, > prompt_width).

  Returns:
    (cache, start_ids): the cache holding prompt[:length - 1] of each row,
    and int32 [batch] each row's last prompt token.
  """
  batch_size, prompt_width = prompt_ids.shape
  prompt_lengths = jnp.asarray(prompt_lengths, jnp.int32)
  cache = init_decoder_cache(model, batch_size, cache_length)
  if prompt_width > 1:
    _, cache = decoder_tokens_to_logits(model)(
        params, prompt_ids[:, :-1], cache
    )
  cache = cache_lib.set_lengths(cache, prompt_lengths - 1)
  start_ids = jnp.take_along_axis(
      prompt_ids, (prompt_lengths - 1)[:, None], axis=1
  )[:, 0]
  return cache, start_ids.astype(jnp.int32)


def encoder_decoder_tokens_to_logits(
    model: encoder_decoder_lib.EncoderDecoder,
) -> sampling.TokensToLogits:
  """The step function of a BART-family model.

  Args:
    model: the encoder-decoder model.

  Returns:
    tokens_to_logits(params, ids [batch, length], state) -> (logits [batch,
    length, vocab], state), with the state of `encoder_decoder_prefill`.
  """

  def tokens_to_logits(params, ids, state):
    logits, variables = model.apply(
        {'params': params, 'cache': state['cache']},
        state['encoded'],
        state['input_mask'],
        ids,
        decode=True,
        mutable=['cache'],
        method=encoder_decoder_lib.EncoderDecoder.decode,
    )
    return logits, {**state, 'cache': variables['cache']}

  return tokens_to_logits


def encoder_decoder_prefill(
    model: encoder_decoder_lib.EncoderDecoder,
    params: Any,
    inputs: jax.Array,
    input_mask: jax.Array,
    *,
    cache_length: int,
    decoder_start_id: int,
) -> tuple[dict[str, Any], jax.Array]:
  """Encodes the source and creates the decoder's cache.

  Args:
    model: the encoder-decoder model.
    params: its params.
    inputs: int32 [batch, src] source tokens.
    input_mask: [batch, src], nonzero on real source tokens.
    cache_length: positions of the decoder's self-attention caches (static).
    decoder_start_id: every row's first decoder input.

  Returns:
    (state, start_ids): {'cache', 'encoded', 'input_mask'} and int32 [batch]
    filled with `decoder_start_id`.
  """
  batch_size = inputs.shape[0]
  encoded = model.apply(
      {'params': params},
      inputs,
      input_mask,
      method=encoder_decoder_lib.EncoderDecoder.encode,
  )  # [batch, src, embed]
  # The creating call sizes the self-attention caches (writing nothing) and
  # caches the cross-attention keys and values of `encoded`.
  _, variables = model.apply(
      {'params': params},
      encoded,
      input_mask,
      jnp.zeros((batch_size, cache_length), jnp.int32),
      decode=True,
      mutable=['cache'],
      method=encoder_decoder_lib.EncoderDecoder.decode,
  )
  state = {
      'cache': variables['cache'],
      'encoded': encoded,
      'input_mask': jnp.asarray(input_mask),
  }
  return state, jnp.full((batch_size,), decoder_start_id, jnp.int32)
