"""BERT-style bidirectional transformer encoder.

Word, learned position and token-type embeddings are summed and normalised,
then post-LN layers of self-attention and MLP follow, as in BERT. On top sit an
optional pooler (tanh dense layer on the first token) and an optional
sequence-level head that gives `num_labels` class logits or regression
outputs. `mean_pool` averages the real tokens' hidden states, the sentence
embedding of sentence-transformers models such as all-MiniLM-L6-v2.

Parameter names follow Hugging Face's BERT where the shared layers allow:
`embeddings/{word,position,token_type}_embeddings`, `embeddings/LayerNorm`,
`layer_N/attention` (the shared attention: `q_proj`, `k_proj`, `v_proj`,
`out_proj`), `layer_N/attention_LayerNorm`, `layer_N/mlp` (`fc1`, `fc2`, HF's
intermediate and output dense layers), `layer_N/output_LayerNorm`,
`pooler/dense` and `classifier`. With `scan_layers` the layers live under
`layer` with a leading axis of size num_layers (logical name 'layers').
"""

from typing import Any

from flax import struct
import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.models import family_config
from flaxllm.models import layers

_EMBED_AXES = ('batch', 'length', 'embed')
PROBLEMS = ('classification', 'regression')


@struct.dataclass
class EncoderConfig(family_config.FromDict):
  """Hyperparameters of `Encoder` (defaults: a small BERT)."""

  FAMILY = 'encoder'

  vocab_size: int
  d_model: int = 256
  num_heads: int = 4
  ffn_dim: int = 1024
  num_layers: int = 4
  max_positions: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  activation: str = 'gelu'
  dropout_rate: float = 0.1
  attention_dropout: float = 0.1
  pad_id: int = 0
  # 0 means no sequence-level head; the head reads the pooled vector.
  num_labels: int = 0
  # What the head's outputs are: class logits or regression values. The
  # network is the same; the task picks the loss from this.
  problem: str = 'classification'
  pooler: bool = True
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
    if self.num_labels < 0:
      raise errors.UserInputError(
          f'model.num_labels={self.num_labels} must be >= 0 (0: no head)'
      )
    if self.num_labels and not self.pooler:
      raise errors.UserInputError(
          f'model.num_labels={self.num_labels} needs model.pooler=True: the'
          ' head reads the pooled first token'
      )
    if self.problem not in PROBLEMS:
      raise errors.UserInputError(
          f'model.problem={self.problem!r} is not one of {list(PROBLEMS)}'
      )
    if self.type_vocab_size < 1:
      raise errors.UserInputError(
          f'model.type_vocab_size={self.type_vocab_size} must be >= 1'
      )
    layers.activation_fn(self.activation)
    layers.check_attention_impl(self.attention_impl, self.dtype)

  @property
  def head_dim(self) -> int:
    return self.d_model // self.num_heads


def _layer_norm(config: EncoderConfig, name: str) -> layers.LayerNorm:
  # The shared norm defaults to epsilon 1e-5; BERT uses 1e-12, small enough
  # that the two-pass variance is the safer way to compute the statistics.
  return layers.LayerNorm(
      epsilon=config.layer_norm_eps,
      use_fast_variance=False,
      dtype=config.dtype,
      param_dtype=config.param_dtype,
      name=name,
  )


class Embeddings(nn.Module):
  """Sum of word, position and token-type embeddings, normalised.

  Attributes:
    config: the model hyperparameters.
  """

  config: EncoderConfig

  @nn.compact
  def __call__(
      self, ids: jax.Array, token_type_ids: jax.Array, deterministic: bool
  ) -> jax.Array:
    """Embeds tokens.

    Args:
      ids: int [batch, length].
      token_type_ids: int [batch, length], segment of each token.
      deterministic: disables dropout.

    Returns:
      [batch, length, embed] in the compute dtype.
    """
    cfg = self.config
    hidden = layers.Embed(
        num_embeddings=cfg.vocab_size,
        features=cfg.d_model,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='word_embeddings',
    )(
        ids
    )  # [batch, length, embed]
    hidden += layers.LearnedPositionalEmbedding(
        num_positions=cfg.max_positions,
        features=cfg.d_model,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='position_embeddings',
    )(jnp.arange(ids.shape[1]))[None]
    # Few rows (2 in BERT): the table's first axis is left unsharded.
    hidden += nn.Embed(
        num_embeddings=cfg.type_vocab_size,
        features=cfg.d_model,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        embedding_init=nn.with_logical_partitioning(
            layers.DEFAULT_KERNEL_INIT, (None, 'embed')
        ),
        name='token_type_embeddings',
    )(token_type_ids)
    hidden = _layer_norm(cfg, 'LayerNorm')(hidden)
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
    return nn.with_logical_constraint(hidden, _EMBED_AXES)


class EncoderLayer(nn.Module):
  """Post-LN self-attention and MLP blocks of one BERT layer.

  Attributes:
    config: the model hyperparameters.
  """

  config: EncoderConfig

  def _residual(
      self,
      update: jax.Array,
      hidden: jax.Array,
      norm_name: str,
      deterministic: bool,
  ) -> jax.Array:
    """LayerNorm(hidden + dropout(update)), BERT's post-LN residual."""
    cfg = self.config
    update = nn.Dropout(cfg.dropout_rate)(update, deterministic=deterministic)
    hidden = _layer_norm(cfg, norm_name)(hidden + update)
    return nn.with_logical_constraint(hidden, _EMBED_AXES)

  @nn.compact
  def __call__(
      self, hidden: jax.Array, attention_mask: jax.Array, deterministic: bool
  ) -> tuple[jax.Array, None]:
    """Applies the layer.

    Args:
      hidden: [batch, length, embed].
      attention_mask: bool [batch, 1, length, length].
      deterministic: disables dropout.

    Returns:
      ([batch, length, embed], None); the pair is the `nn.scan` carry
      protocol.
    """
    cfg = self.config
    attended = layers.MultiHeadAttention(
        num_heads=cfg.num_heads,
        head_dim=cfg.head_dim,
        dropout_rate=cfg.attention_dropout,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        attention_impl=cfg.attention_impl,
        name='attention',
    )(hidden, mask=attention_mask, deterministic=deterministic)
    hidden = self._residual(
        attended, hidden, 'attention_LayerNorm', deterministic
    )
    transformed = layers.Mlp(
        hidden_dim=cfg.ffn_dim,
        activation=cfg.activation,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='mlp',
    )(hidden)
    hidden = self._residual(
        transformed, hidden, 'output_LayerNorm', deterministic
    )
    return hidden, None


class Pooler(nn.Module):
  """tanh dense layer on the first token's hidden state.

  Attributes:
    config: the model hyperparameters.
  """

  config: EncoderConfig

  @nn.compact
  def __call__(self, hidden: jax.Array) -> jax.Array:
    """Pools a sequence into one vector.

    Args:
      hidden: [batch, length, embed].

    Returns:
      [batch, embed] in the compute dtype.
    """
    cfg = self.config
    pooled = layers.dense_general(
        cfg.d_model,
        ('embed', None),
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='dense',
    )(hidden[:, 0])
    return jnp.tanh(pooled)


class Encoder(nn.Module):
  """BERT: embeddings, post-LN layers, optional pooler and sequence head.

  Attributes:
    config: the model hyperparameters.
  """

  config: EncoderConfig

  def _run_layers(
      self, hidden: jax.Array, attention_mask: jax.Array, deterministic: bool
  ) -> jax.Array:
    """Applies the layers, unrolled or scanned, optionally remat'ed.

    Args:
      hidden: [batch, length, embed].
      attention_mask: bool [batch, 1, length, length].
      deterministic: disables dropout.

    Returns:
      [batch, length, embed].
    """
    cfg = self.config
    layer_cls = EncoderLayer
    if cfg.remat:
      # Argument 0 is self; `deterministic` (argument 3) is a Python bool.
      layer_cls = nn.remat(
          layer_cls, prevent_cse=not cfg.scan_layers, static_argnums=(3,)
      )
    if cfg.scan_layers:
      stacked = nn.scan(
          layer_cls,
          variable_axes={'params': 0},
          split_rngs={'params': True, 'dropout': True, 'perturb': True},
          in_axes=(nn.broadcast, nn.broadcast),
          length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: 'layers'},
      )
      hidden, _ = stacked(cfg, name='layer')(
          hidden, attention_mask, deterministic
      )
    else:
      for index in range(cfg.num_layers):
        hidden, _ = layer_cls(cfg, name=f'layer_{index}')(
            hidden, attention_mask, deterministic
        )
    return hidden

  @nn.compact
  def __call__(
      self,
      ids: jax.Array,
      attention_mask: jax.Array,
      token_type_ids: jax.Array | None = None,
      *,
      deterministic: bool = True,
  ) -> dict[str, jax.Array | None]:
    """Encodes a batch of token sequences.

    Args:
      ids: int [batch, length].
      attention_mask: [batch, length], nonzero on real tokens.
      token_type_ids: int [batch, length] segment ids; None means all 0.
      deterministic: disables dropout.

    Returns:
      A dict with 'hidden' ([batch, length, embed], compute dtype), 'pooled'
      ([batch, embed], compute dtype; None without a pooler) and 'logits'
      (float32 [batch, num_labels]; None without a head).

    Raises:
      UserInputError: if the sequences are longer than `max_positions`.
    """
    cfg = self.config
    cfg.validate()
    if ids.shape[1] > cfg.max_positions:
      raise errors.UserInputError(
          f'sequence length {ids.shape[1]} exceeds'
          f' model.max_positions={cfg.max_positions}'
      )
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(ids)
    hidden = Embeddings(cfg, name='embeddings')(
        ids, token_type_ids, deterministic
    )  # [batch, length, embed]
    # Every query row attends to the real keys, so padded rows stay finite;
    # nothing downstream should read them.
    mask = layers.make_attention_mask(
        jnp.ones_like(attention_mask), attention_mask
    )  # [batch, 1, length, length]
    hidden = self._run_layers(hidden, mask, deterministic)

    pooled = logits = None
    if cfg.pooler:
      pooled = Pooler(cfg, name='pooler')(hidden)  # [batch, embed]
    if cfg.num_labels:
      head_input = nn.Dropout(cfg.dropout_rate)(
          pooled, deterministic=deterministic
      )
      logits = layers.dense_general(
          cfg.num_labels,
          ('embed', None),
          dtype=jnp.float32,
          param_dtype=cfg.param_dtype,
          name='classifier',
      )(
          head_input
      )  # [batch, num_labels]
    return {'hidden': hidden, 'pooled': pooled, 'logits': logits}


def mean_pool(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
  """Averages the hidden states of real tokens (sentence-transformers style).

  Args:
    hidden: [batch, length, embed].
    attention_mask: [batch, length], nonzero on real tokens.

  Returns:
    float32 [batch, embed]; a row without real tokens gives zeros.
  """
  weights = (attention_mask != 0).astype(jnp.float32)[..., None]
  total = jnp.sum(hidden.astype(jnp.float32) * weights, axis=1)
  # [batch, embed]
  count = jnp.maximum(jnp.sum(weights, axis=1), 1e-9)  # [batch, 1]
  return total / count
