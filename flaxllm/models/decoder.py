"""LLaMA-style decoder-only transformer.

Pre-norm layers of rotary grouped-query self-attention and a gated (SwiGLU)
MLP, RMSNorm everywhere, an optionally tied LM head. Parameter names follow
Hugging Face's LLaMA (`embed_tokens`, `layers_0/self_attn/q_proj`,
`layers_0/mlp/gate_proj`, `input_layernorm`, `post_attention_layernorm`,
`norm`, `lm_head`), except that the attention output projection is
`out_proj` as everywhere in `layers`. With `scan_layers` the layers live under
`layers` with a leading axis of size num_layers (logical name 'layers').

Packed sequences: `segment_ids` make attention block-diagonal inside the
causal mask, and (unless `positions` are given) rotary positions restart at
each document, so a packed row computes what its documents would alone.

Cached decoding (`decode=True`, see `layers.MultiHeadAttention`): a first call
with the full static length creates the cache, then calls with `mutable=
['cache']` feed a prompt (prefill) and then one token at a time; rotary
positions continue, per row, from the number of tokens already cached
(`position_index`, int32 [batch], which `flaxllm.decoding.cache` rolls back
together with the attention caches' `cache_index`).
"""

from typing import Any, Mapping

from flax import struct
import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.models import family_config
from flaxllm.models import layers

_EMBED_AXES = ('batch', 'length', 'embed')


@struct.dataclass
class DecoderConfig(family_config.FromDict):
  """Hyperparameters of `Decoder` (defaults: a small LLaMA)."""

  FAMILY = 'decoder'

  vocab_size: int
  d_model: int = 256
  num_heads: int = 4
  num_kv_heads: int | None = None  # None: as many as num_heads (no GQA).
  head_dim: int | None = None  # None: d_model // num_heads.
  ffn_dim: int = 688
  num_layers: int = 2
  max_positions: int = 2048
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  # None or a Hugging Face `rope_scaling` dict with 'rope_type' in
  # layers.ROPE_TYPES ('linear', 'dynamic', 'llama3', 'yarn').
  rope_scaling: Mapping[str, Any] | None = None
  tie_embeddings: bool = False
  attention_bias: bool = False
  mlp_bias: bool = False
  pad_id: int = 0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  scan_layers: bool = False
  remat: bool = False
  attention_impl: str = 'xla'

  @classmethod
  def normalize_fields(cls, fields: dict[str, Any]) -> dict[str, Any]:
    if fields.get('rope_scaling') is not None:
      fields['rope_scaling'] = dict(fields['rope_scaling'])
    return fields

  def validate(self) -> None:
    """Raises UserInputError if the hyperparameters cannot build a model."""
    if self.head_dim is None and self.d_model % self.num_heads:
      raise errors.UserInputError(
          f'model.d_model={self.d_model} is not divisible by'
          f' model.num_heads={self.num_heads}; set model.head_dim'
      )
    if self.num_heads % self.kv_heads:
      raise errors.UserInputError(
          f'model.num_heads={self.num_heads} is not a multiple of'
          f' model.num_kv_heads={self.kv_heads}'
      )
    if self.dim_per_head % 2:
      raise errors.UserInputError(
          f'model.head_dim={self.dim_per_head} must be even for rotary'
          ' embeddings'
      )
    layers.check_rope_scaling(self.rope_scaling)
    layers.check_attention_impl(self.attention_impl, self.dtype)

  @property
  def kv_heads(self) -> int:
    """The number of key/value heads."""
    return self.num_kv_heads or self.num_heads

  @property
  def dim_per_head(self) -> int:
    """The size of each attention head."""
    return self.head_dim or self.d_model // self.num_heads

  def rope(self) -> layers.Rope:
    """The (hashable) rotary-embedding settings."""
    scaling = self.rope_scaling
    if scaling is not None:
      scaling = tuple(sorted(scaling.items()))
    return layers.Rope(
        theta=float(self.rope_theta),
        scaling=scaling,
        max_positions=self.max_positions,
    )


class DecoderLayer(nn.Module):
  """One pre-norm layer: rotary self-attention, then the gated MLP."""

  config: DecoderConfig

  @nn.compact
  def __call__(
      self,
      hidden: jax.Array,
      positions: jax.Array,
      mask: jax.Array | None,
      deterministic: bool,
      decode: bool,
  ) -> tuple[jax.Array, None]:
    """Applies the layer.

    Args:
      hidden: [batch, length, embed].
      positions: int32 [batch, length], rotary positions.
      mask: bool [batch, 1, length, length], or None in decode mode (the KV
        cache masks itself).
      deterministic: disables dropout.
      decode: use and update the KV cache.

    Returns:
      ([batch, length, embed], None); the pair is the `nn.scan` carry protocol.
    """
    cfg = self.config
    norm = lambda name: layers.RMSNorm(
        epsilon=cfg.rms_norm_eps,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name=name,
    )
    attention = layers.RotaryMultiHeadAttention(
        num_heads=cfg.num_heads,
        head_dim=cfg.dim_per_head,
        num_kv_heads=cfg.kv_heads,
        use_bias=cfg.attention_bias,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        attention_impl=cfg.attention_impl,
        rope=cfg.rope(),
        positions=positions,
        name='self_attn',
    )
    update = attention(
        norm('input_layernorm')(hidden),
        mask=mask,
        deterministic=deterministic,
        decode=decode,
    )
    hidden = nn.with_logical_constraint(hidden + update, _EMBED_AXES)
    mlp = layers.GatedMlp(
        hidden_dim=cfg.ffn_dim,
        activation='silu',
        use_bias=cfg.mlp_bias,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='mlp',
    )
    update = mlp(norm('post_attention_layernorm')(hidden))
    return nn.with_logical_constraint(hidden + update, _EMBED_AXES), None


def segment_positions(segment_ids: jax.Array) -> jax.Array:
  """Positions that restart at 0 wherever the segment id changes.

  Args:
    segment_ids: int [batch, length]; each document a run of one id.

  Returns:
    int32 [batch, length].
  """
  index = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)
  starts = jnp.concatenate(
      [
          jnp.ones_like(segment_ids[:, :1], jnp.bool_),
          segment_ids[:, 1:] != segment_ids[:, :-1],
      ],
      axis=1,
  )  # [batch, length]
  first = jax.lax.cummax(jnp.where(starts, index, 0), axis=1)
  return index - first


class Decoder(nn.Module):
  """LLaMA-style causal language model.

  Attributes:
    config: the model hyperparameters.
  """

  config: DecoderConfig

  def _run_layers(
      self,
      hidden: jax.Array,
      positions: jax.Array,
      mask: jax.Array | None,
      deterministic: bool,
      decode: bool,
  ) -> jax.Array:
    """Applies the layers, unrolled or scanned, optionally remat'ed."""
    cfg = self.config
    layer_cls = DecoderLayer
    if cfg.remat:
      # Argument 0 is self; deterministic and decode (4, 5) are static.
      layer_cls = nn.remat(
          layer_cls, prevent_cse=not cfg.scan_layers, static_argnums=(4, 5)
      )
    if cfg.scan_layers:
      stacked = nn.scan(
          layer_cls,
          variable_axes={'params': 0, 'cache': 0},
          split_rngs={'params': True, 'dropout': True, 'perturb': True},
          in_axes=(nn.broadcast,) * 4,
          length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: 'layers'},
      )
      hidden, _ = stacked(cfg, name='layers')(
          hidden, positions, mask, deterministic, decode
      )
    else:
      for index in range(cfg.num_layers):
        hidden, _ = layer_cls(cfg, name=f'layers_{index}')(
            hidden, positions, mask, deterministic, decode
        )
    return hidden

  @nn.compact
  def __call__(
      self,
      ids: jax.Array,
      *,
      positions: jax.Array | None = None,
      segment_ids: jax.Array | None = None,
      deterministic: bool = True,
      decode: bool = False,
  ) -> jax.Array:
    """Computes next-token logits.

    Args:
      ids: int32 [batch, length].
      positions: int32 [batch, length] rotary positions; None means 0, 1, ...
        per document (per row without `segment_ids`, continuing from the
        cache in decode mode).
      segment_ids: int [batch, length] document ids of packed rows; tokens
        attend only within their document. Not supported with `decode`.
      deterministic: disables dropout (the model has none; kept for the
        task interface).
      decode: use the KV cache (call with `mutable=['cache']`). The first
        call creates the cache, sized by its length; later calls feed tokens.

    Returns:
      float32 logits [batch, length, vocab].
    """
    cfg = self.config
    cfg.validate()
    batch, length = ids.shape
    if decode and segment_ids is not None:
      raise errors.UserInputError(
          'segment_ids (packing) cannot be used with cached decoding'
      )
    if positions is None:
      if segment_ids is not None:
        positions = segment_positions(segment_ids)
      else:
        positions = jnp.arange(length, dtype=jnp.int32)[None]
        if decode:
          # Per row, like the attention caches' index, so that rows can be
          # rolled back to different lengths.
          has_cache = self.has_variable('cache', 'position_index')
          position_index = self.variable(
              'cache', 'position_index', lambda: jnp.zeros((batch,), jnp.int32)
          )
          positions = positions + position_index.value[:, None]
          if has_cache:
            position_index.value += length
    positions = jnp.broadcast_to(positions, (batch, length)).astype(jnp.int32)

    mask = None
    if not decode:
      ones = jnp.ones_like(ids)
      mask = layers.make_attention_mask(ones, ones, causal=True)
      if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]
        mask &= same[:, None]  # [batch, 1, length, length]

    embed = layers.Embed(
        num_embeddings=cfg.vocab_size,
        features=cfg.d_model,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='embed_tokens',
    )
    hidden = nn.with_logical_constraint(embed(ids), _EMBED_AXES)
    hidden = self._run_layers(hidden, positions, mask, deterministic, decode)
    hidden = layers.RMSNorm(
        epsilon=cfg.rms_norm_eps,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='norm',
    )(hidden)
    if cfg.tie_embeddings:
      head = embed.embedding.T  # [embed, vocab]
    else:
      head = self.param(
          'lm_head',
          nn.with_logical_partitioning(
              layers.DEFAULT_KERNEL_INIT, ('embed', 'vocab')
          ),
          (cfg.d_model, cfg.vocab_size),
          cfg.param_dtype,
      )
    logits = jnp.einsum(
        'ble,ev->blv',
        hidden,
        head.astype(cfg.dtype),
        preferred_element_type=jnp.float32,
    )  # [batch, length, vocab]
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))
