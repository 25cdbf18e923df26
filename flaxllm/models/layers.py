"""Building blocks shared by the model families (BART, LLaMA, BERT).

Every parameter is created through `nn.with_logical_partitioning` and every
block boundary constrains its activations with `nn.with_logical_constraint`,
using the logical axis names of the project: batch, length, embed, heads, kv
(the per-head dimension), mlp and vocab. Outside a mesh and axis rules the
constraints do nothing, so these layers also run as plain linen modules.

Attention supports self- and cross-attention, key padding and causal masks,
grouped-query attention (fewer key/value heads than query heads) and a KV cache
in the 'cache' collection for autoregressive decoding. Positions are learned,
sinusoidal (`sinusoidal_embedding`, also used for diffusion times) or rotary.
"""

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxllm import errors

Dtype = Any
Initializer = Callable[..., jax.Array]

# BART, LLaMA and BERT all initialise weights from N(0, 0.02^2).
DEFAULT_KERNEL_INIT = nn.initializers.normal(stddev=0.02)

ATTENTION_IMPLS = ('xla', 'cudnn')

ACTIVATIONS = {
    # Hugging Face's 'gelu' is the exact (erf) form.
    'gelu': functools.partial(nn.gelu, approximate=False),
    'relu': nn.relu,
    'silu': nn.silu,
}


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
  """Looks up an activation function by name.

  Args:
    name: one of the keys of `ACTIVATIONS`.

  Returns:
    The elementwise activation function.

  Raises:
    UserInputError: for an unknown name.
  """
  if name not in ACTIVATIONS:
    raise errors.UserInputError(
        f'unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}'
    )
  return ACTIVATIONS[name]


def check_attention_impl(attention_impl: str, dtype: Dtype) -> None:
  """Raises UserInputError unless `attention_impl` can run here in `dtype`.

  Args:
    attention_impl: 'xla' or 'cudnn'.
    dtype: the attention's computation dtype (cuDNN takes only 16-bit floats).
  """
  if attention_impl not in ATTENTION_IMPLS:
    raise errors.UserInputError(
        f'unknown attention_impl {attention_impl!r}; choose one of'
        f' {list(ATTENTION_IMPLS)}'
    )
  if attention_impl != 'cudnn':
    return
  if jax.default_backend() != 'gpu':
    raise errors.UserInputError(
        "attention_impl='cudnn' needs a GPU backend, but JAX runs on"
        f" {jax.default_backend()!r}; use attention_impl='xla'"
    )
  if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    raise errors.UserInputError(
        "attention_impl='cudnn' computes in bfloat16 or float16, not"
        f' {jnp.dtype(dtype).name}; set the model dtype to bfloat16'
    )


class DenseGeneral(nn.Module):
  """Contracts input axes `axis` with a kernel [*contracted, *features].

  The kernel is created in its final shape (flax's `nn.DenseGeneral` creates
  it flat and reshapes, which breaks logical-partitioning metadata of a
  kernel with more than two axes under a mesh).

  Attributes:
    features: output feature sizes.
    kernel_axes: logical names of the kernel's axes, contracted axes first.
    axis: input axes to contract (negative counts from the end).
    use_bias: whether to add a bias over the feature axes.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    kernel_init: initializer of the kernel.
  """

  features: tuple[int, ...]
  kernel_axes: tuple[str | None, ...]
  axis: tuple[int, ...] = (-1,)
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = DEFAULT_KERNEL_INIT

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    axis = tuple(sorted(a % inputs.ndim for a in self.axis))
    contracted = tuple(inputs.shape[a] for a in axis)
    kernel = self.param(
        'kernel',
        nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
        contracted + self.features,
        self.param_dtype,
    )
    bias = None
    if self.use_bias:
      bias = self.param(
          'bias',
          nn.with_logical_partitioning(
              nn.initializers.zeros_init(),
              self.kernel_axes[len(contracted) :],
          ),
          self.features,
          self.param_dtype,
      )
    inputs, kernel, bias = nn.dtypes.promote_dtype(
        inputs, kernel, bias, dtype=self.dtype
    )
    # [*free input axes, *features]
    outputs = jax.lax.dot_general(
        inputs, kernel, ((axis, tuple(range(len(axis)))), ((), ()))
    )
    if bias is not None:
      outputs = outputs + bias
    return outputs


def dense_general(
    features: int | tuple[int, ...],
    kernel_axes: tuple[str | None, ...],
    *,
    axis: int | tuple[int, ...] = -1,
    use_bias: bool = True,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    kernel_init: Initializer = DEFAULT_KERNEL_INIT,
    name: str | None = None,
) -> DenseGeneral:
  """A `DenseGeneral` whose kernel and bias carry logical axis names.

  Args:
    features: output feature size(s).
    kernel_axes: logical names of the kernel's axes, contracted axes first,
      e.g. ('embed', 'heads', 'kv'). The bias takes the output axes' names.
    axis: input axis or axes to contract.
    use_bias: whether to add a bias.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    kernel_init: initializer of the kernel.
    name: module name.

  Returns:
    The configured (unbound) module.
  """
  features = (features,) if isinstance(features, int) else tuple(features)
  axis = (axis,) if isinstance(axis, int) else tuple(axis)
  return DenseGeneral(
      features=features,
      kernel_axes=tuple(kernel_axes),
      axis=axis,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=param_dtype,
      kernel_init=kernel_init,
      name=name,
  )


class LayerNorm(nn.LayerNorm):
  """`nn.LayerNorm` with epsilon 1e-5 and scale/bias named ('embed',).

  Statistics are computed in float32 whatever the compute dtype.
  """

  epsilon: float = 1e-5
  scale_init: Initializer = nn.with_logical_partitioning(
      nn.initializers.ones_init(), ('embed',)
  )
  bias_init: Initializer = nn.with_logical_partitioning(
      nn.initializers.zeros_init(), ('embed',)
  )


class Embed(nn.Embed):
  """Token embedding whose table is named ('vocab', 'embed')."""

  embedding_init: Initializer = nn.with_logical_partitioning(
      DEFAULT_KERNEL_INIT, ('vocab', 'embed')
  )


class LearnedPositionalEmbedding(nn.Module):
  """A learned table of position vectors; position p reads row p + offset.

  BART keeps two unused rows in front of its table (offset 2), so the table has
  `num_positions + offset` rows and its checkpoints load unchanged.

  Attributes:
    num_positions: the largest number of positions the model accepts.
    features: embedding size.
    offset: rows skipped in front of the table.
    dtype: output dtype.
    param_dtype: table dtype.
    embedding_init: initializer of the table.
  """

  num_positions: int
  features: int
  offset: int = 0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  embedding_init: Initializer = DEFAULT_KERNEL_INIT

  @nn.compact
  def __call__(self, positions: jax.Array) -> jax.Array:
    """Looks up position vectors.

    Args:
      positions: int positions, [length] or [batch, length].

    Returns:
      [length, embed] or [batch, length, embed] in `dtype`.
    """
    table = self.param(
        'embedding',
        nn.with_logical_partitioning(self.embedding_init, (None, 'embed')),
        (self.num_positions + self.offset, self.features),
        self.param_dtype,
    )
    return jnp.take(table, positions + self.offset, axis=0).astype(self.dtype)


def sinusoidal_embedding(
    positions: jax.Array,
    features: int,
    *,
    max_period: float = 10000.0,
    dtype: Dtype = jnp.float32,
) -> jax.Array:
  """Fixed sine/cosine features of (possibly fractional) positions.

  The first half of the features are sines, the second half cosines, at
  frequencies max_period^(-i / half) for i = 0 .. half - 1 (the layout of the
  transformer paper's table and of diffusion models' time embeddings). An odd
  `features` gets one trailing zero.

  Args:
    positions: positions or diffusion times, any shape [...], int or float.
    features: size of each embedding.
    max_period: the longest wavelength.
    dtype: output dtype; the features are computed in float32.

  Returns:
    [..., features] embeddings.
  """
  if features < 2:
    raise errors.UserInputError(
        f'a sinusoidal embedding needs at least 2 features, got {features}'
    )
  half = features // 2
  frequencies = jnp.exp(
      -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half
  )  # [half]
  angles = jnp.asarray(positions, jnp.float32)[..., None] * frequencies
  embedding = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  if features % 2:
    embedding = jnp.pad(
        embedding, [(0, 0)] * (embedding.ndim - 1) + [(0, 1)]
    )
  return embedding.astype(dtype)  # [..., features]


def make_attention_mask(
    query_mask: jax.Array, key_mask: jax.Array, causal: bool = False
) -> jax.Array:
  """Builds a boolean attention mask from padding masks.

  Args:
    query_mask: [batch, query_length], nonzero on real query positions.
    key_mask: [batch, key_length], nonzero on real key positions.
    causal: also forbid query i to attend to keys j > i (query and key
      positions both counted from 0).

  Returns:
    bool [batch, 1, query_length, key_length]: True where attention is allowed.
    The singleton axis broadcasts over heads.
  """
  mask = (query_mask[:, :, None] != 0) & (key_mask[:, None, :] != 0)
  if causal:
    query_positions = jnp.arange(query_mask.shape[1])[:, None]
    key_positions = jnp.arange(key_mask.shape[1])[None, :]
    mask &= key_positions <= query_positions  # [query_length, key_length]
  return mask[:, None, :, :]


def _xla_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    mask: jax.Array | None,
    dropout: Callable[[jax.Array], jax.Array],
    dtype: Dtype,
) -> jax.Array:
  """Softmax attention with einsums; scores and softmax in float32.

  Args:
    query: [batch, q_length, heads, kv].
    key: [batch, kv_length, kv_heads, kv]; kv_heads divides heads.
    value: [batch, kv_length, kv_heads, kv].
    mask: bool, broadcastable to [batch, heads, q_length, kv_length], or None.
    dropout: applied to the attention probabilities.
    dtype: dtype of the probabilities multiplied into the values.

  Returns:
    [batch, q_length, heads, kv].
  """
  batch, q_length, num_heads, head_dim = query.shape
  num_kv_heads = key.shape[2]
  group_size = num_heads // num_kv_heads
  # Query head h uses key/value head h // group_size.
  grouped_query = query.reshape(
      batch, q_length, num_kv_heads, group_size, head_dim
  )  # [batch, q_length, kv_heads, group, kv]
  scores = jnp.einsum(
      'bqhgd,bkhd->bhgqk',
      grouped_query,
      key,
      preferred_element_type=jnp.float32,
  )  # [batch, kv_heads, group, q_length, kv_length]
  scores *= head_dim**-0.5
  if mask is not None:
    mask = mask.reshape(
        mask.shape[0], -1, 1, *mask.shape[2:]
    )  # [batch, 1 or kv_heads, 1, q_length, kv_length]
    # A finite fill keeps fully masked rows finite (uniform) instead of NaN.
    scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  probs = dropout(jax.nn.softmax(scores, axis=-1)).astype(dtype)
  output = jnp.einsum(
      'bhgqk,bkhd->bqhgd', probs, value
  )  # [batch, q_length, kv_heads, group, kv]
  return output.reshape(batch, q_length, num_heads, head_dim)


class MultiHeadAttention(nn.Module):
  """Multi-head (optionally grouped-query) dot-product attention.

  Self-attention when `inputs_kv` is None, cross-attention otherwise. With
  `decode=True` the module keeps a KV cache in the 'cache' collection:

  * The first decode call (the cache does not exist yet, as in `init` or a
    `apply(..., mutable=['cache'])` prefill) creates it. Self-attention sizes
    its cache from that call's length (the static maximum length) and writes
    nothing; cross-attention stores the projected keys and values of
    `inputs_kv`, which later calls reuse instead of projecting again.
  * Later self-attention calls append their tokens (usually one) at
    `cache_index` and attend causally to everything cached so far.
    `cache_index` is int32 [batch]: each row has its own length, so rows can
    be rolled back to different lengths (speculative decoding) by lowering
    their index; positions at or past a row's index are masked out and get
    overwritten by its next tokens.

  Attributes:
    num_heads: number of query heads.
    head_dim: size of each head.
    num_kv_heads: number of key/value heads (grouped-query attention); None
      means `num_heads`.
    dropout_rate: dropout on the attention probabilities.
    use_bias: whether the projections have biases.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    kernel_init: initializer of the projection kernels.
    attention_impl: 'xla' (einsum softmax) or 'cudnn' (fused, GPU only).
  """

  num_heads: int
  head_dim: int
  num_kv_heads: int | None = None
  dropout_rate: float = 0.0
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = DEFAULT_KERNEL_INIT
  attention_impl: str = 'xla'

  def _project(self, features_count: int, name: str) -> DenseGeneral:
    return dense_general(
        (features_count, self.head_dim),
        ('embed', 'heads', 'kv'),
        use_bias=self.use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
        name=name,
    )

  @nn.compact
  def __call__(
      self,
      inputs_q: jax.Array,
      inputs_kv: jax.Array | None = None,
      mask: jax.Array | None = None,
      *,
      deterministic: bool = True,
      decode: bool = False,
  ) -> jax.Array:
    """Attends from `inputs_q` to `inputs_kv` (or to itself).

    Args:
      inputs_q: [batch, q_length, embed].
      inputs_kv: [batch, kv_length, embed] for cross-attention; None for
        self-attention.
      mask: bool, broadcastable to [batch, heads, q_length, kv_length], True
        where attention is allowed. In cached self-attention decoding it must
        span the whole cache ([..., q_length, max_length]) and is combined
        with the causal mask over the cache.
      deterministic: disables dropout.
      decode: use and update the KV cache (see the class docstring).

    Returns:
      [batch, q_length, embed] in `dtype`.
    """
    check_attention_impl(self.attention_impl, self.dtype)
    num_kv_heads = self.num_kv_heads or self.num_heads
    if self.num_heads % num_kv_heads:
      raise errors.UserInputError(
          f'num_heads={self.num_heads} is not a multiple of'
          f' num_kv_heads={num_kv_heads}'
      )
    is_cross_attention = inputs_kv is not None
    head_axes = ('batch', 'length', 'heads', 'kv')

    query = self._project(self.num_heads, 'q_proj')(inputs_q)
    query = nn.with_logical_constraint(query, head_axes)
    key_proj = self._project(num_kv_heads, 'k_proj')
    value_proj = self._project(num_kv_heads, 'v_proj')

    if (
        decode
        and is_cross_attention
        and self.has_variable('cache', 'cached_key')
    ):
      key = self.get_variable('cache', 'cached_key')
      value = self.get_variable('cache', 'cached_value')
    else:
      kv_source = inputs_kv if is_cross_attention else inputs_q
      key = key_proj(kv_source)  # [batch, kv_length, kv_heads, kv]
      value = value_proj(kv_source)  # [batch, kv_length, kv_heads, kv]
      if decode and is_cross_attention:
        self.put_variable('cache', 'cached_key', key)
        self.put_variable('cache', 'cached_value', value)
      elif decode:
        key, value, mask = self._update_self_attention_cache(key, value, mask)
    key = nn.with_logical_constraint(key, head_axes)
    value = nn.with_logical_constraint(value, head_axes)

    use_dropout = not deterministic and self.dropout_rate > 0.0
    if self.attention_impl == 'cudnn':
      if use_dropout:
        raise errors.UserInputError(
            "attention_impl='cudnn' has no attention dropout; set the"
            ' attention dropout rate to 0 or use attention_impl=xla'
        )
      output = jax.nn.dot_product_attention(
          query,
          key,
          value,
          mask=None if mask is None else jnp.asarray(mask, jnp.bool_),
          implementation='cudnn',
      )
    else:
      dropout = nn.Dropout(self.dropout_rate, deterministic=not use_dropout)
      output = _xla_attention(query, key, value, mask, dropout, self.dtype)
    output = nn.with_logical_constraint(output, head_axes)

    output = dense_general(
        inputs_q.shape[-1],
        ('heads', 'kv', 'embed'),
        axis=(-2, -1),
        use_bias=self.use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
        name='out_proj',
    )(output)
    return nn.with_logical_constraint(output, ('batch', 'length', 'embed'))

  def _update_self_attention_cache(
      self, key: jax.Array, value: jax.Array, mask: jax.Array | None
  ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Creates the self-attention cache, or appends to it and masks it.

    Each row writes its new tokens at its own `cache_index` (int32 [batch])
    and advances it; the caller must leave room (index + length <= the cache
    length), since writes past the end are clamped onto earlier positions.

    Args:
      key: [batch, length, kv_heads, kv], the new tokens' keys.
      value: [batch, length, kv_heads, kv], the new tokens' values.
      mask: the caller's mask (see `__call__`), or None.

    Returns:
      (key, value, mask): on creation the inputs unchanged; afterwards the
      whole cache ([batch, max_length, kv_heads, kv] each) and a mask
      [batch, 1, length, max_length] allowing each new token the cached
      positions of its row up to and including its own.
    """
    batch, new_length = key.shape[:2]
    has_cache = self.has_variable('cache', 'cached_key')
    cached_key = self.variable('cache', 'cached_key', jnp.zeros_like, key)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros_like, value)
    cache_index = self.variable(
        'cache', 'cache_index', lambda: jnp.zeros((batch,), jnp.int32)
    )
    if not has_cache:
      return key, value, mask
    index = cache_index.value  # [batch]
    max_length = cached_key.value.shape[1]
    write_rows = jax.vmap(
        lambda cache, new, start: jax.lax.dynamic_update_slice(
            cache, new, (start, 0, 0)
        )
    )
    cached_key.value = write_rows(
        cached_key.value, key.astype(cached_key.value.dtype), index
    )
    cached_value.value = write_rows(
        cached_value.value, value.astype(cached_value.value.dtype), index
    )
    cache_index.value = index + new_length
    query_positions = index[:, None] + jnp.arange(new_length)  # [batch, length]
    cache_mask = (
        jnp.arange(max_length)[None, None, :] <= query_positions[:, :, None]
    )  # [batch, length, max_length]
    cache_mask = cache_mask[:, None, :, :]
    if mask is not None:
      cache_mask = cache_mask & mask
    return cached_key.value, cached_value.value, cache_mask


class Mlp(nn.Module):
  """Position-wise feed-forward block: fc1 -> activation -> fc2.

  Attributes:
    hidden_dim: width of the hidden layer.
    activation: 'gelu' (exact), 'relu' or 'silu'.
    use_bias: whether fc1 and fc2 have biases.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    kernel_init: initializer of the kernels.
  """

  hidden_dim: int
  activation: str = 'gelu'
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = DEFAULT_KERNEL_INIT

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Applies the block.

    Args:
      inputs: [batch, length, embed].

    Returns:
      [batch, length, embed] in `dtype`.
    """
    activation = activation_fn(self.activation)
    dense = functools.partial(
        dense_general,
        use_bias=self.use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
    )
    hidden = dense(self.hidden_dim, ('embed', 'mlp'), name='fc1')(inputs)
    hidden = activation(hidden)  # [batch, length, mlp]
    hidden = nn.with_logical_constraint(hidden, ('batch', 'length', 'mlp'))
    output = dense(inputs.shape[-1], ('mlp', 'embed'), name='fc2')(hidden)
    return nn.with_logical_constraint(output, ('batch', 'length', 'embed'))


# ---------------------------------------------------------------------------
# LLaMA-style pieces: RMSNorm, gated MLP, rotary position embeddings.
# ---------------------------------------------------------------------------

ROPE_TYPES = ('default', 'linear', 'dynamic', 'llama3', 'yarn')


class RMSNorm(nn.Module):
  """Root-mean-square norm with a learned scale named ('embed',).

  The statistics are computed in float32; the normalised activations are cast
  back to `dtype` before the scale multiplies them, as in LLaMA.

  Attributes:
    epsilon: added to the mean square.
    dtype: output dtype.
    param_dtype: scale dtype.
  """

  epsilon: float = 1e-6
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Normalises over the last axis.

    Args:
      inputs: [..., embed].

    Returns:
      [..., embed] in `dtype`.
    """
    scale = self.param(
        'scale',
        nn.with_logical_partitioning(nn.initializers.ones_init(), ('embed',)),
        (inputs.shape[-1],),
        self.param_dtype,
    )
    x = inputs.astype(jnp.float32)
    mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    x = (x * jax.lax.rsqrt(mean_square + self.epsilon)).astype(self.dtype)
    return x * scale.astype(self.dtype)


class GatedMlp(nn.Module):
  """SwiGLU-style block: down_proj(act(gate_proj(x)) * up_proj(x)).

  Attributes:
    hidden_dim: width of the hidden layer.
    activation: 'silu' (LLaMA), 'gelu' or 'relu'.
    use_bias: whether the three projections have biases.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    kernel_init: initializer of the kernels.
  """

  hidden_dim: int
  activation: str = 'silu'
  use_bias: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = DEFAULT_KERNEL_INIT

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Applies the block.

    Args:
      inputs: [batch, length, embed].

    Returns:
      [batch, length, embed] in `dtype`.
    """
    dense = functools.partial(
        dense_general,
        use_bias=self.use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
    )
    gate = dense(self.hidden_dim, ('embed', 'mlp'), name='gate_proj')(inputs)
    up = dense(self.hidden_dim, ('embed', 'mlp'), name='up_proj')(inputs)
    hidden = activation_fn(self.activation)(gate) * up  # [batch, length, mlp]
    hidden = nn.with_logical_constraint(hidden, ('batch', 'length', 'mlp'))
    output = dense(inputs.shape[-1], ('mlp', 'embed'), name='down_proj')(hidden)
    return nn.with_logical_constraint(output, ('batch', 'length', 'embed'))


def check_rope_scaling(scaling: Any) -> None:
  """Raises UserInputError unless `scaling` is None or a usable dict.

  Args:
    scaling: None, or a mapping with 'rope_type' (one of `ROPE_TYPES`) and
      that type's keys, as in Hugging Face's `rope_scaling`.
  """
  if scaling is None:
    return
  if not hasattr(scaling, 'get') or scaling.get('rope_type') not in ROPE_TYPES:
    raise errors.UserInputError(
        f'model.rope_scaling={scaling!r} needs a rope_type in {ROPE_TYPES}'
    )
  required = {
      'default': (),
      'linear': ('factor',),
      'dynamic': ('factor',),
      'llama3': ('factor', 'low_freq_factor', 'high_freq_factor'),
      'yarn': ('factor',),
  }[scaling['rope_type']]
  missing = [key for key in required if key not in scaling]
  if missing:
    raise errors.UserInputError(
        f'model.rope_scaling of type {scaling["rope_type"]!r} lacks {missing}'
    )


def _yarn_frequencies(
    exponents: jax.Array, theta: float, scaling: Any, max_positions: int
) -> tuple[jax.Array, float]:
  """YaRN: blends interpolated and extrapolated frequencies per dimension."""
  dim = 2 * exponents.shape[0]
  factor = scaling['factor']
  original = scaling.get('original_max_position_embeddings', max_positions)
  beta_fast = scaling.get('beta_fast') or 32
  beta_slow = scaling.get('beta_slow') or 1

  def mscale(scale, coefficient=1.0):
    return 1.0 if scale <= 1 else 0.1 * coefficient * math.log(scale) + 1.0

  attention_factor = scaling.get('attention_factor')
  if attention_factor is None:
    if scaling.get('mscale') and scaling.get('mscale_all_dim'):
      attention_factor = mscale(factor, scaling['mscale']) / mscale(
          factor, scaling['mscale_all_dim']
      )
    else:
      attention_factor = mscale(factor)

  def correction_dim(rotations):
    return (dim * math.log(original / (rotations * 2 * math.pi))) / (
        2 * math.log(theta)
    )

  low, high = correction_dim(beta_fast), correction_dim(beta_slow)
  if scaling.get('truncate', True):
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, dim - 1)
  if low == high:
    high += 0.001
  ramp = jnp.clip(
      (jnp.arange(dim // 2, dtype=jnp.float32) - low) / (high - low), 0, 1
  )
  extrapolation = 1.0 / theta**exponents
  interpolation = extrapolation / factor
  inv_freq = interpolation * ramp + extrapolation * (1 - ramp)
  return inv_freq, float(attention_factor)


def _llama3_frequencies(inv_freq: jax.Array, scaling: Any, max_positions: int):
  """Llama 3.1: scales low frequencies, keeps high ones, blends between."""
  factor = scaling['factor']
  low_factor = scaling['low_freq_factor']
  high_factor = scaling['high_freq_factor']
  original = scaling.get('original_max_position_embeddings', max_positions)
  low_freq_wavelength = original / low_factor
  high_freq_wavelength = original / high_factor
  wavelength = 2 * math.pi / inv_freq
  scaled = jnp.where(
      wavelength > low_freq_wavelength, inv_freq / factor, inv_freq
  )
  smooth = (original / wavelength - low_factor) / (high_factor - low_factor)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  is_medium = (wavelength >= high_freq_wavelength) & (
      wavelength <= low_freq_wavelength
  )
  return jnp.where(is_medium, smoothed, scaled)


def rope_frequencies(
    head_dim: int,
    theta: float,
    scaling: Any = None,
    max_positions: int = 2048,
    length: jax.Array | int | None = None,
) -> tuple[jax.Array, float]:
  """Inverse frequencies of rotary embeddings, as transformers computes them.

  Args:
    head_dim: the rotated size of each head (even).
    theta: the base wavelength.
    scaling: None or a `rope_scaling` dict (see `check_rope_scaling`).
    max_positions: the model's maximum length; the default for
      'original_max_position_embeddings', and the threshold of 'dynamic'.
    length: for 'dynamic', the current sequence length (largest position +
      1, may be traced); ignored by the other types.

  Returns:
    (inv_freq float32 [head_dim // 2], attention_factor), the factor that
    multiplies cos and sin (1 except for YaRN).
  """
  check_rope_scaling(scaling)
  rope_type = 'default' if scaling is None else scaling['rope_type']
  exponents = jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim
  if rope_type == 'yarn':
    return _yarn_frequencies(exponents, theta, scaling, max_positions)
  if rope_type == 'dynamic':
    length = max_positions if length is None else length
    length = jnp.maximum(length, max_positions).astype(jnp.float32)
    factor = scaling['factor']
    theta = theta * ((factor * length / max_positions) - (factor - 1)) ** (
        head_dim / (head_dim - 2)
    )
  inv_freq = 1.0 / theta**exponents
  if rope_type == 'linear':
    inv_freq /= scaling['factor']
  elif rope_type == 'llama3':
    inv_freq = _llama3_frequencies(inv_freq, scaling, max_positions)
  return inv_freq, 1.0


def apply_rope(
    inputs: jax.Array,
    positions: jax.Array,
    inv_freq: jax.Array,
    attention_factor: float = 1.0,
) -> jax.Array:
  """Rotates query or key heads by their positions (half-split layout).

  The head is split into halves [x1, x2] and dimension pair (i, i + d/2) is
  rotated by angle position * inv_freq[i], Hugging Face's `rotate_half`
  convention (llama.cpp's interleaved pairs are converted at load time).

  Args:
    inputs: [batch, length, heads, kv].
    positions: int [batch, length] or [length].
    inv_freq: float32 [kv // 2].
    attention_factor: multiplies cos and sin.

  Returns:
    [batch, length, heads, kv] in the dtype of `inputs`.
  """
  positions = jnp.broadcast_to(positions, inputs.shape[:2])
  angles = positions[..., None].astype(jnp.float32) * inv_freq
  angles = jnp.concatenate([angles, angles], axis=-1)  # [batch, length, kv]
  cos = (jnp.cos(angles) * attention_factor).astype(inputs.dtype)[:, :, None]
  sin = (jnp.sin(angles) * attention_factor).astype(inputs.dtype)[:, :, None]
  first, second = jnp.split(inputs, 2, axis=-1)
  rotated = jnp.concatenate([-second, first], axis=-1)
  return inputs * cos + rotated * sin


@dataclasses.dataclass(frozen=True)
class Rope:
  """Static rotary-embedding settings (hashable, so usable as a field).

  Attributes:
    theta: the base wavelength.
    scaling: None or a tuple of sorted (key, value) pairs of `rope_scaling`.
    max_positions: see `rope_frequencies`.
  """

  theta: float = 10000.0
  scaling: tuple[tuple[str, Any], ...] | None = None
  max_positions: int = 2048

  def __call__(self, inputs: jax.Array, positions: jax.Array) -> jax.Array:
    """`apply_rope` with this object's frequencies; see there."""
    scaling = None if self.scaling is None else dict(self.scaling)
    inv_freq, attention_factor = rope_frequencies(
        inputs.shape[-1],
        self.theta,
        scaling,
        self.max_positions,
        length=jnp.max(positions) + 1,
    )
    return apply_rope(inputs, positions, inv_freq, attention_factor)


class _RotaryDenseGeneral(DenseGeneral):
  """A head projection followed by rotary embedding of its output."""

  rope: Rope = Rope()
  positions: jax.Array | None = None

  def __call__(self, inputs: jax.Array) -> jax.Array:
    return self.rope(super().__call__(inputs), self.positions)


class RotaryMultiHeadAttention(MultiHeadAttention):
  """Self-attention whose queries and keys carry rotary position embeddings.

  Keys are rotated before they enter the KV cache, so with `decode=True` the
  caller passes the absolute positions of the new tokens (continuing from
  the cache index).

  Attributes:
    rope: the rotary-embedding settings.
    positions: int [batch, length] or [length], the query tokens' positions.
  """

  rope: Rope = Rope()
  positions: jax.Array | None = None

  def _project(self, features_count: int, name: str) -> DenseGeneral:
    if name not in ('q_proj', 'k_proj'):
      return super()._project(features_count, name)
    return _RotaryDenseGeneral(
        features=(features_count, self.head_dim),
        kernel_axes=('embed', 'heads', 'kv'),
        use_bias=self.use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
        rope=self.rope,
        positions=self.positions,
        name=name,
    )
