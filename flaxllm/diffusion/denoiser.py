"""The SeqDiffuSeq denoiser: a BART-style encoder-decoder predicting x0.

One low-dimensional word embedding (128 by default, N(0, 0.02^2), learned) is
shared by the source side, the diffusion targets and the rounding head:

  encoder input   emb(src) -> Linear -> tanh -> Linear      (then BART's
                  learned positions, layernorm_embedding, dropout, layers)
  decoder input   concat[x_t, self-condition x̂0] -> Linear -> tanh -> Linear
                  + time embedding, LayerNorm, dropout       (then BART's
                  positions, layernorm_embedding, dropout, layers)
  time embedding  sinusoid(t * 1000 / T) -> Linear -> SiLU -> Linear
  output          Linear -> tanh -> Linear to the embedding size: x̂0
  rounding head   logits = x @ E^T + bias (tied to the word embedding)

The decoder layers are `encoder_decoder`'s, run without a causal mask: every
target position attends to every other (non-autoregressive), and to the real
source tokens. `encode` runs once per source and `denoise` once per sampling
step. Parameters carry logical axis names, so the model shards like the other
families; the embedding's small feature axis stays replicated.

`encoder_input_init` picks the init of the encoder's input projection.
'normal' (the spec: N(0, 0.02^2) like every Linear) shrinks the 0.02-std
embedding by ~20x through the two layers, so after `layernorm_embedding` the
encoder sees almost only its 0.02-std position embeddings; 'fan_in'
(variance 1/fan_in) keeps the token signal at the embedding's scale,
comparable to the positions.
"""

from typing import Any

from flax import struct
import flax.linen as nn
import jax
import jax.numpy as jnp

from flaxllm import errors
from flaxllm.models import encoder_decoder
from flaxllm.models import layers

_EMBED_AXES = ('batch', 'length', 'embed')

# Kernel inits of the encoder's input projection, by config name.
PROJECTION_INITS = {
    'normal': layers.DEFAULT_KERNEL_INIT,  # N(0, 0.02^2), the spec
    'fan_in': nn.initializers.variance_scaling(1.0, 'fan_in', 'normal'),
}


@struct.dataclass
class DiffusionModelConfig(encoder_decoder.EncoderDecoderConfig):
  """`EncoderDecoderConfig` plus the size of the diffused word embedding.

  `tie_embeddings` ties the rounding head to the word embedding (the paper)
  and `final_logits_bias` gives the head its own bias. The embedding is never
  scaled, so `scale_embedding` must stay False. `encoder_input_init` names
  the init of the encoder's input projection in `PROJECTION_INITS`.
  """

  FAMILY = 'diffusion'

  embedding_dim: int = 128
  # 'normal' (the spec) or 'fan_in'; see the module docstring.
  encoder_input_init: str = 'normal'

  def validate(self) -> None:
    """Raises UserInputError if the hyperparameters cannot build a model."""
    super().validate()
    if self.encoder_input_init not in PROJECTION_INITS:
      raise errors.UserInputError(
          f'model.encoder_input_init={self.encoder_input_init!r} is unknown;'
          f' use one of {sorted(PROJECTION_INITS)}'
      )
    if self.embedding_dim < 1:
      raise errors.UserInputError(
          f'model.embedding_dim={self.embedding_dim} must be positive'
      )
    if self.scale_embedding:
      raise errors.UserInputError(
          'model.scale_embedding=True is not supported by the diffusion'
          ' model (its word embedding is unscaled); set it to False'
      )


class TanhProjection(nn.Module):
  """Linear -> tanh -> Linear, the denoiser's input and output adapters.

  Attributes:
    hidden_dim: width after the first Linear.
    features: output width.
    input_axis: logical name of the input feature axis.
    output_axis: logical name of the output feature axis.
    dtype: computation dtype.
    param_dtype: parameter dtype.
    kernel_init: init of both kernels.
  """

  hidden_dim: int
  features: int
  input_axis: str | None
  output_axis: str | None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Any = layers.DEFAULT_KERNEL_INIT

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Projects [..., in] to [..., features]."""
    hidden = layers.dense_general(
        self.hidden_dim,
        (self.input_axis, 'mlp'),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
        name='fc1',
    )(inputs)
    return layers.dense_general(
        self.features,
        ('mlp', self.output_axis),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
        name='fc2',
    )(jnp.tanh(hidden))


class ProjectedEmbedding(nn.Module):
  """Token ids -> word embedding -> TanhProjection to the model width.

  Attributes:
    word_embedding: the shared embedding table module.
    config: the model hyperparameters.
  """

  word_embedding: nn.Module
  config: DiffusionModelConfig

  @nn.compact
  def __call__(self, ids: jax.Array) -> jax.Array:
    """[batch, length] ids -> [batch, length, embed]."""
    cfg = self.config
    return TanhProjection(
        hidden_dim=cfg.d_model,
        features=cfg.d_model,
        input_axis=None,
        output_axis='embed',
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        kernel_init=PROJECTION_INITS[cfg.encoder_input_init],
        name='projection',
    )(self.word_embedding(ids))


class _Identity(nn.Module):
  """Hands prepared decoder inputs to BART's embedding prologue unchanged."""

  def __call__(self, inputs: jax.Array) -> jax.Array:
    return inputs


# pylint: disable-next=protected-access
class DiffusionDecoder(encoder_decoder.LayerStack):
  """Non-causal decoder from (x_t, x̂0, t) and the encoder output to x̂0.

  Reuses the BART stack: `_embed` (positions, layernorm_embedding, dropout)
  over the prepared inputs (`embed_tokens` is the identity) and `_run_layers`
  over `encoder_decoder.DecoderLayer` without a self-attention mask.

  Attributes:
    diffusion_steps: T; the network sees t * 1000 / T.
  """

  diffusion_steps: int = 2000

  @nn.compact
  def __call__(
      self,
      encoded: jax.Array,
      input_mask: jax.Array,
      noisy: jax.Array,
      self_condition: jax.Array,
      timesteps: jax.Array,
      deterministic: bool,
  ) -> jax.Array:
    """Predicts x0.

    Args:
      encoded: the encoder output.  # [batch, src, embed]
      input_mask: nonzero on real source tokens.  # [batch, src]
      noisy: x_t.  # [batch, tgt, emb_dim]
      self_condition: x̂0 of an earlier pass, or zeros.  # [batch, tgt, emb_dim]
      timesteps: t of each row, int or float.  # [batch]
      deterministic: disables dropout.

    Returns:
      x̂0 in float32.  # [batch, tgt, emb_dim]
    """
    cfg = self.config
    dense = lambda features, axes, name: layers.dense_general(
        features,
        axes,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name=name,
    )
    scaled_time = jnp.asarray(timesteps, jnp.float32) * (
        1000.0 / self.diffusion_steps
    )
    time = layers.sinusoidal_embedding(scaled_time, cfg.d_model)  # [batch, d]
    time = dense(cfg.d_model, ('embed', 'mlp'), 'time_fc1')(time)
    time = dense(cfg.d_model, ('mlp', 'embed'), 'time_fc2')(nn.silu(time))

    features = jnp.concatenate([noisy, self_condition], axis=-1)
    hidden = TanhProjection(
        hidden_dim=cfg.d_model,
        features=cfg.d_model,
        input_axis=None,
        output_axis='embed',
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='input_projection',
    )(features)
    hidden += time[:, None, :].astype(hidden.dtype)  # [batch, tgt, d]
    hidden = layers.LayerNorm(
        dtype=cfg.dtype, param_dtype=cfg.param_dtype, name='input_layer_norm'
    )(hidden)
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
    hidden = nn.with_logical_constraint(hidden, _EMBED_AXES)

    hidden = self._embed(hidden, jnp.arange(noisy.shape[1]), deterministic)
    cross_attention_mask = layers.make_attention_mask(
        jnp.ones(noisy.shape[:2], jnp.int32), input_mask
    )  # [batch, 1, tgt, src]
    # No self-attention mask: every position sees every other.
    hidden = self._run_layers(
        encoder_decoder.DecoderLayer,
        cfg.decoder_layers,
        hidden,
        (encoded, None, cross_attention_mask),
        (deterministic, False),
    )  # [batch, tgt, d]
    x_start = TanhProjection(
        hidden_dim=cfg.d_model,
        features=cfg.embedding_dim,
        input_axis='embed',
        output_axis=None,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        name='output_projection',
    )(hidden)
    return x_start.astype(jnp.float32)


class SeqDiffuSeqDenoiser(nn.Module):
  """The SeqDiffuSeq network (see the module docstring).

  Attributes:
    config: the model hyperparameters.
    diffusion_steps: T, which scales the time input.
  """

  config: DiffusionModelConfig
  diffusion_steps: int = 2000

  def setup(self):
    cfg = self.config
    cfg.validate()
    self.word_embedding = layers.Embed(
        num_embeddings=cfg.vocab_size,
        features=cfg.embedding_dim,
        dtype=jnp.float32,
        param_dtype=cfg.param_dtype,
        embedding_init=nn.with_logical_partitioning(
            layers.DEFAULT_KERNEL_INIT, ('vocab', None)
        ),
    )
    self.encoder_input = ProjectedEmbedding(self.word_embedding, cfg)
    self.encoder = encoder_decoder.Encoder(cfg, self.encoder_input)
    self.decoder = DiffusionDecoder(
        cfg, _Identity(), diffusion_steps=self.diffusion_steps
    )
    if not cfg.tie_embeddings:
      self.lm_head = self.param(
          'lm_head',
          nn.with_logical_partitioning(
              layers.DEFAULT_KERNEL_INIT, (None, 'vocab')
          ),
          (cfg.embedding_dim, cfg.vocab_size),
          cfg.param_dtype,
      )
    if cfg.final_logits_bias:
      self.logits_bias = self.param(
          'logits_bias',
          nn.with_logical_partitioning(
              nn.initializers.zeros_init(), ('vocab',)
          ),
          (cfg.vocab_size,),
          cfg.param_dtype,
      )

  def embed(self, ids: jax.Array) -> jax.Array:
    """Word embeddings of target ids, the diffusion's clean data.

    Args:
      ids: int32 [batch, tgt].

    Returns:
      float32 [batch, tgt, emb_dim].
    """
    return self.word_embedding(ids).astype(jnp.float32)

  def encode(
      self,
      inputs: jax.Array,
      input_mask: jax.Array,
      *,
      deterministic: bool = True,
  ) -> jax.Array:
    """Encodes source tokens (once per source, whatever the step count).

    Args:
      inputs: int32 [batch, src].
      input_mask: nonzero on real tokens.  # [batch, src]
      deterministic: disables dropout.

    Returns:
      [batch, src, d] in the compute dtype.
    """
    return self.encoder(inputs, input_mask, deterministic)

  def denoise(
      self,
      encoded: jax.Array,
      input_mask: jax.Array,
      noisy: jax.Array,
      timesteps: jax.Array,
      self_condition: jax.Array,
      *,
      deterministic: bool = True,
  ) -> jax.Array:
    """Predicts x0 from x_t (one decoder pass).

    Args:
      encoded: from `encode`.  # [batch, src, d]
      input_mask: nonzero on real source tokens.  # [batch, src]
      noisy: x_t.  # [batch, tgt, emb_dim]
      timesteps: t of each row.  # [batch]
      self_condition: x̂0 of an earlier pass, or zeros.
        # [batch, tgt, emb_dim]
      deterministic: disables dropout.

    Returns:
      x̂0, float32 [batch, tgt, emb_dim].
    """
    return self.decoder(
        encoded,
        input_mask,
        noisy,
        self_condition,
        timesteps,
        deterministic,
    )

  def logits(self, x: jax.Array) -> jax.Array:
    """Rounding head: token logits of embedding-space vectors.

    Args:
      x: [batch, tgt, emb_dim].

    Returns:
      float32 [batch, tgt, vocab].
    """
    if self.config.tie_embeddings:
      head = self.word_embedding.embedding.T  # [emb_dim, vocab]
    else:
      head = self.lm_head
    logits = jnp.einsum(
        'ble,ev->blv',
        x.astype(jnp.float32),
        head.astype(jnp.float32),
        preferred_element_type=jnp.float32,
    )
    if self.config.final_logits_bias:
      logits += self.logits_bias.astype(jnp.float32)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))

  def __call__(
      self,
      inputs: jax.Array,
      input_mask: jax.Array,
      noisy: jax.Array,
      timesteps: jax.Array,
      self_condition: jax.Array,
      *,
      deterministic: bool = True,
  ) -> tuple[jax.Array, jax.Array]:
    """Encodes, denoises once and rounds (touches every parameter).

    Args:
      inputs: int32 [batch, src].
      input_mask: nonzero on real source tokens.  # [batch, src]
      noisy: x_t.  # [batch, tgt, emb_dim]
      timesteps: t of each row.  # [batch]
      self_condition: x̂0 of an earlier pass, or zeros.
      deterministic: disables dropout.

    Returns:
      (x̂0 [batch, tgt, emb_dim], logits of x̂0 [batch, tgt, vocab]).
    """
    encoded = self.encode(inputs, input_mask, deterministic=deterministic)
    x_start = self.denoise(
        encoded,
        input_mask,
        noisy,
        timesteps,
        self_condition,
        deterministic=deterministic,
    )
    return x_start, self.logits(x_start)
