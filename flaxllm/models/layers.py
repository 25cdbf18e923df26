"""Building blocks shared by the model families (BART, LLaMA, BERT).

Every parameter is created through `nn.with_logical_partitioning` and every
block boundary constrains its activations with `nn.with_logical_constraint`,
using the logical axis names of the project: batch, length, embed, heads, kv
(the per-head dimension), mlp and vocab. Outside a mesh and axis rules the
constraints do nothing, so these layers also run as plain linen modules.

Attention supports self- and cross-attention, key padding and causal masks,
grouped-query attention (fewer key/value heads than query heads) and a KV cache
in the 'cache' collection for autoregressive decoding.
"""

import functools
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

    Args:
      key: [batch, length, kv_heads, kv], the new tokens' keys.
      value: [batch, length, kv_heads, kv], the new tokens' values.
      mask: the caller's mask (see `__call__`), or None.

    Returns:
      (key, value, mask): on creation the inputs unchanged; afterwards the
      whole cache ([batch, max_length, kv_heads, kv] each) and a mask
      [batch or 1, 1, length, max_length] allowing each new token the cached
      positions up to and including its own.
    """
    has_cache = self.has_variable('cache', 'cached_key')
    cached_key = self.variable('cache', 'cached_key', jnp.zeros_like, key)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros_like, value)
    cache_index = self.variable(
        'cache', 'cache_index', lambda: jnp.zeros((), jnp.int32)
    )
    if not has_cache:
      return key, value, mask
    index = cache_index.value
    new_length = key.shape[1]
    max_length = cached_key.value.shape[1]
    start = (0, index, 0, 0)
    cached_key.value = jax.lax.dynamic_update_slice(
        cached_key.value, key.astype(cached_key.value.dtype), start
    )
    cached_value.value = jax.lax.dynamic_update_slice(
        cached_value.value, value.astype(cached_value.value.dtype), start
    )
    cache_index.value = index + new_length
    query_positions = index + jnp.arange(new_length)
    cache_mask = (
        jnp.arange(max_length)[None, :] <= query_positions[:, None]
    )  # [length, max_length]
    cache_mask = cache_mask[None, None, :, :]
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
