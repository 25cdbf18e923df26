"""BART-style encoder-decoder transformer.

Parameter names follow Hugging Face's BART (`shared`, `encoder/layers_0/
self_attn/q_proj`, `decoder/layers_0/encoder_attn`, `fc1`, `final_layer_norm`,
`layernorm_embedding`, `embed_positions`, `final_logits_bias`) so that BART
checkpoints map onto them one to one. With `scan_layers` the layers of a stack
live under `layers` with a leading axis of size num_layers (logical name
'layers') instead of under `layers_0`, `layers_1`, ...

The decoder supports a KV cache (`decode=True`, see `layers.MultiHeadAttention`)
for autoregressive generation: one call with the full target length creates
the cache (and caches the cross-attention keys/values of the encoder output),
then each call feeds the next token.
"""

import functools
from typing import Any, Callable

from flax import struct
import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.models import family_config
from flaxllm.models import layers

_EMBED_AXES = ('batch', 'length', 'embed')


@struct.dataclass
class EncoderDecoderConfig(family_config.FromDict):
  """Hyperparameters of `EncoderDecoder` (defaults: a small BART)."""

  FAMILY = 'encoder-decoder'

  vocab_size: int
  d_model: int = 256
  num_heads: int = 4
  ffn_dim: int = 1024
  encoder_layers: int = 2
  decoder_layers: int = 2
  max_positions: int = 256
  dropout_rate: float = 0.1
  attention_dropout: float = 0.0
  activation: str = 'gelu'
  # BART normalises after each residual block; pre_ln normalises before it
  # and adds a final norm ('layer_norm') to each stack, as mBART does.
  pre_ln: bool = False
  layernorm_embedding: bool = True
  scale_embedding: bool = False
  tie_embeddings: bool = True
  final_logits_bias: bool = True
  position_offset: int = 2
  pad_id: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = False
  remat: bool = False
  attention_impl: str = 'xla'

  def validate(self) -> None:
    """Raises UserInputError if the hyperparameters cannot build a model."""
    if self.d_model % self.num_heads:
      raise errors.UserInputError(
          f'model.d_model={self.d_model} is not divisible by'
          f' model.num_heads={self.num_heads}'
      )
    layers.activation_fn(self.activation)
    layers.check_attention_impl(self.attention_impl, self.dtype)

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads


class _LayerParts(nn.Module):
  """Factories for the submodules that both layer types build."""

  config: EncoderDecoderConfig

  def _attention(self, name: str) -> layers.MultiHeadAttention:
    cfg = self.config
    return layers.MultiHeadAttention(
        num_heads=cfg.num_heads,
        head_dim=cfg.head_dim,
        dropout_rate=cfg.attention_dropout,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        attention_impl=cfg.attention_impl,
        name=name,
    )

  def _norm(self, name: str) -> layers.LayerNorm:
    cfg = self.config
    return layers.LayerNorm(
        dtype=cfg.dtype, param_dtype=cfg.param_dtype, name=name
    )

  def _residual(
      self,
      sublayer: Callable[[jax.Array], jax.Array],
      norm_name: str,
      hidden: jax.Array,
      deterministic: bool,
  ) -> jax.Array:
    """hidden + dropout(sublayer(.)), normalised before (pre-LN) or after."""
    cfg = self.config
    norm = self._norm(norm_name)
    update = sublayer(norm(hidden) if cfg.pre_ln else hidden)
    update = nn.Dropout(cfg.dropout_rate)(update, deterministic=deterministic)
    hidden += update
    if not cfg.pre_ln:
      hidden = norm(hidden)
    return nn.with_logical_constraint(hidden, _EMBED_AXES)

  def _mlp(self) -> layers.Mlp:
    cfg = self.config
    return layers.Mlp(
        hidden_dim=cfg.ffn_dim,
        activation=cfg.activation,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='mlp',
    )


class EncoderLayer(_LayerParts):
  """Self-attention and MLP blocks of one encoder layer."""

  @nn.compact
  def __call__(
      self, hidden: jax.Array, attention_mask: jax.Array, deterministic: bool
  ) -> tuple[jax.Array, None]:
    """Applies the layer.

    Args:
      hidden: [batch, src, embed].
      attention_mask: bool [batch, 1, src, src].
      deterministic: disables dropout.

    Returns:
      ([batch, src, embed], None); the pair is the `nn.scan` carry protocol.
    """
    self_attention = functools.partial(
        self._attention('self_attn'),
        mask=attention_mask,
        deterministic=deterministic,
    )
    hidden = self._residual(
        self_attention, 'self_attn_layer_norm', hidden, deterministic
    )
    hidden = self._residual(
        self._mlp(), 'final_layer_norm', hidden, deterministic
    )
    return hidden, None


class DecoderLayer(_LayerParts):
  """Causal self-attention, cross-attention and MLP blocks of one layer."""

  @nn.compact
  def __call__(
      self,
      hidden: jax.Array,
      encoded: jax.Array,
      self_attention_mask: jax.Array | None,
      cross_attention_mask: jax.Array,
      deterministic: bool,
      decode: bool,
  ) -> tuple[jax.Array, None]:
    """Applies the layer.

    Args:
      hidden: [batch, tgt, embed].
      encoded: [batch, src, embed], the encoder output.
      self_attention_mask: bool [batch, 1, tgt, tgt], or None in decode mode
        (the KV cache masks itself).
      cross_attention_mask: bool [batch, 1, tgt, src].
      deterministic: disables dropout.
      decode: use the KV cache.

    Returns:
      ([batch, tgt, embed], None); the pair is the `nn.scan` carry protocol.
    """
    self_attention = functools.partial(
        self._attention('self_attn'),
        mask=self_attention_mask,
        deterministic=deterministic,
        decode=decode,
    )
    hidden = self._residual(
        self_attention, 'self_attn_layer_norm', hidden, deterministic
    )
    cross_attention = functools.partial(
        self._attention('encoder_attn'),
        inputs_kv=encoded,
        mask=cross_attention_mask,
        deterministic=deterministic,
        decode=decode,
    )
    hidden = self._residual(
        cross_attention, 'encoder_attn_layer_norm', hidden, deterministic
    )
    hidden = self._residual(
        self._mlp(), 'final_layer_norm', hidden, deterministic
    )
    return hidden, None


class LayerStack(nn.Module):
  """Embedding prologue and layer loop shared by the encoder and decoder."""

  config: EncoderDecoderConfig
  embed_tokens: nn.Module

  def _embed(
      self, ids: jax.Array, positions: jax.Array, deterministic: bool
  ) -> jax.Array:
    """Token + position embeddings, optional norm, dropout.

    Args:
      ids: int32 [batch, length].
      positions: int32 [length], or [batch, length] in cached decoding.
      deterministic: disables dropout.

    Returns:
      [batch, length, embed] in the compute dtype.
    """
    cfg = self.config
    hidden = self.embed_tokens(ids)  # [batch, length, embed]
    if cfg.scale_embedding:
      hidden *= cfg.d_model**0.5
    # [length, embed] or [batch, length, embed]; either broadcasts.
    hidden += layers.LearnedPositionalEmbedding(
        num_positions=cfg.max_positions,
        features=cfg.d_model,
        offset=cfg.position_offset,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='embed_positions',
    )(positions)
    if cfg.layernorm_embedding:
      hidden = layers.LayerNorm(
          dtype=cfg.dtype,
          param_dtype=cfg.param_dtype,
          name='layernorm_embedding',
      )(hidden)
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
    return nn.with_logical_constraint(hidden, _EMBED_AXES)

  def _run_layers(
      self,
      layer_cls: type[nn.Module],
      num_layers: int,
      hidden: jax.Array,
      array_args: tuple[Any, ...],
      static_args: tuple[bool, ...],
  ) -> jax.Array:
    """Applies `num_layers` layers, unrolled or scanned, optionally remat'ed.

    Args:
      layer_cls: EncoderLayer or DecoderLayer.
      num_layers: number of layers.
      hidden: [batch, length, embed].
      array_args: the layer's array arguments after `hidden`.
      static_args: the layer's trailing Python bool arguments.

    Returns:
      [batch, length, embed], optionally followed by the final norm (pre-LN).
    """
    cfg = self.config
    if cfg.remat:
      # Argument 0 is self, 1 is hidden; the static bools come last.
      first_static = 2 + len(array_args)
      layer_cls = nn.remat(
          layer_cls,
          prevent_cse=not cfg.scan_layers,
          static_argnums=tuple(
              range(first_static, first_static + len(static_args))
          ),
      )
    if cfg.scan_layers:
      stacked = nn.scan(
          layer_cls,
          variable_axes={'params': 0, 'cache': 0},
          split_rngs={'params': True, 'dropout': True, 'perturb': True},
          in_axes=(nn.broadcast,) * (len(array_args) + len(static_args)),
          length=num_layers,
          metadata_params={nn.PARTITION_NAME: 'layers'},
      )
      hidden, _ = stacked(cfg, name='layers')(hidden, *array_args, *static_args)
    else:
      for index in range(num_layers):
        hidden, _ = layer_cls(cfg, name=f'layers_{index}')(
            hidden, *array_args, *static_args
        )
    if cfg.pre_ln:
      hidden = layers.LayerNorm(
          dtype=cfg.dtype, param_dtype=cfg.param_dtype, name='layer_norm'
      )(hidden)
    return hidden


class Encoder(LayerStack):
  """The encoder stack."""

  @nn.compact
  def __call__(
      self, inputs: jax.Array, input_mask: jax.Array, deterministic: bool
  ) -> jax.Array:
    """Encodes source tokens.

    Args:
      inputs: int32 [batch, src].
      input_mask: [batch, src], nonzero on real tokens.
      deterministic: disables dropout.

    Returns:
      [batch, src, embed] in the compute dtype.
    """
    hidden = self._embed(inputs, jnp.arange(inputs.shape[1]), deterministic)
    # Every query row attends to the real keys, padded ones included, so no
    # row is fully masked; their outputs are never read.
    attention_mask = layers.make_attention_mask(
        jnp.ones_like(input_mask), input_mask
    )
    return self._run_layers(
        EncoderLayer,
        self.config.encoder_layers,
        hidden,
        (attention_mask,),
        (deterministic,),
    )


class Decoder(LayerStack):
  """The decoder stack (final hidden states; the LM head is in the parent)."""

  @nn.compact
  def __call__(
      self,
      encoded: jax.Array,
      input_mask: jax.Array,
      decoder_inputs: jax.Array,
      decoder_mask: jax.Array | None,
      deterministic: bool,
      decode: bool,
  ) -> jax.Array:
    """Decodes target tokens given the encoder output.

    Args:
      encoded: [batch, src, embed].
      input_mask: [batch, src], nonzero on real source tokens.
      decoder_inputs: int32 [batch, tgt].
      decoder_mask: [batch, tgt], nonzero on real target tokens, or None;
        ignored in decode mode.
      deterministic: disables dropout.
      decode: use and advance the KV cache.

    Returns:
      [batch, tgt, embed] in the compute dtype.
    """
    batch, target_length = decoder_inputs.shape
    positions = jnp.arange(target_length)  # [tgt]
    if decode:
      # Per row, like the self-attention caches' index ([batch]).
      has_cache = self.has_variable('cache', 'position_index')
      position_index = self.variable(
          'cache', 'position_index', lambda: jnp.zeros((batch,), jnp.int32)
      )
      positions = positions[None] + position_index.value[:, None]
      if has_cache:
        position_index.value += target_length
    hidden = self._embed(decoder_inputs, positions, deterministic)

    query_mask = jnp.ones_like(decoder_inputs)
    if decode:
      self_attention_mask = None
    else:
      self_attention_mask = layers.make_attention_mask(
          query_mask,
          query_mask if decoder_mask is None else decoder_mask,
          causal=True,
      )
    cross_attention_mask = layers.make_attention_mask(query_mask, input_mask)
    return self._run_layers(
        DecoderLayer,
        self.config.decoder_layers,
        hidden,
        (encoded, self_attention_mask, cross_attention_mask),
        (deterministic, decode),
    )


class EncoderDecoder(nn.Module):
  """BART-style sequence-to-sequence transformer with a shared embedding.

  Attributes:
    config: the model hyperparameters.
  """

  config: EncoderDecoderConfig

  def setup(self):
    cfg = self.config
    cfg.validate()
    self.shared = layers.Embed(
        num_embeddings=cfg.vocab_size,
        features=cfg.d_model,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
    )
    self.encoder = Encoder(cfg, self.shared)
    self.decoder = Decoder(cfg, self.shared)
    if not cfg.tie_embeddings:
      self.lm_head = self.param(
          'lm_head',
          nn.with_logical_partitioning(
              layers.DEFAULT_KERNEL_INIT, ('embed', 'vocab')
          ),
          (cfg.d_model, cfg.vocab_size),
          cfg.param_dtype,
      )
    if cfg.final_logits_bias:
      self.final_logits_bias = self.param(
          'final_logits_bias',
          nn.with_logical_partitioning(
              nn.initializers.zeros_init(), ('vocab',)
          ),
          (cfg.vocab_size,),
          cfg.param_dtype,
      )

  def encode(
      self,
      inputs: jax.Array,
      input_mask: jax.Array,
      *,
      deterministic: bool = True,
  ) -> jax.Array:
    """Encodes source tokens.

    Args:
      inputs: int32 [batch, src].
      input_mask: [batch, src], nonzero on real tokens.
      deterministic: disables dropout.

    Returns:
      [batch, src, embed] in the compute dtype.
    """
    return self.encoder(inputs, input_mask, deterministic)

  def decode(
      self,
      encoded: jax.Array,
      input_mask: jax.Array,
      decoder_inputs: jax.Array,
      *,
      decoder_mask: jax.Array | None = None,
      deterministic: bool = True,
      decode: bool = False,
  ) -> jax.Array:
    """Computes next-token logits for the decoder inputs.

    Args:
      encoded: [batch, src, embed], from `encode`.
      input_mask: [batch, src], nonzero on real source tokens.
      decoder_inputs: int32 [batch, tgt].
      decoder_mask: [batch, tgt], nonzero on real target tokens; None treats
        all as real (causal masking alone keeps right padding harmless).
      deterministic: disables dropout.
      decode: use the KV cache (call with `mutable=['cache']`). The first call
        creates the cache, sized by its `tgt`; later calls feed new tokens.

    Returns:
      float32 logits [batch, tgt, vocab].
    """
    cfg = self.config
    hidden = self.decoder(
        encoded, input_mask, decoder_inputs, decoder_mask, deterministic, decode
    )  # [batch, tgt, embed]
    if cfg.tie_embeddings:
      head = self.shared.embedding.T  # [embed, vocab]
    else:
      head = self.lm_head
    logits = jnp.einsum(
        'bte,ev->btv',
        hidden,
        head.astype(cfg.dtype),
        preferred_element_type=jnp.float32,
    )  # [batch, tgt, vocab]
    if cfg.final_logits_bias:
      logits += self.final_logits_bias.astype(jnp.float32)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))

  def __call__(
      self,
      inputs: jax.Array,
      input_mask: jax.Array,
      decoder_inputs: jax.Array,
      *,
      deterministic: bool = True,
  ) -> jax.Array:
    """Teacher-forced forward pass.

    Args:
      inputs: int32 [batch, src].
      input_mask: [batch, src], nonzero on real source tokens.
      decoder_inputs: int32 [batch, tgt].
      deterministic: disables dropout.

    Returns:
      float32 logits [batch, tgt, vocab].
    """
    encoded = self.encode(inputs, input_mask, deterministic=deterministic)
    return self.decode(
        encoded, input_mask, decoder_inputs, deterministic=deterministic
    )
