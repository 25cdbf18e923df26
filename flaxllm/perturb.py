"""HyPe and NEFTune: noise on hidden representations while fine-tuning.

HyPe (Yuan et al., ACL 2023) adds fresh i.i.d. noise to the input of every
Transformer layer: the embedding output is the first layer's input, and the
last layer's output (what the head reads) stays clean. The residual stream
carries the noised tensor. Distributions:

  normal            eps ~ sigma * N(0, 1)       HyPe-N (paper and code)
  uniform           eps ~ U(-sigma, sigma)      HyPe-U as the paper states it
  uniform_positive  eps ~ U(0, sigma)           the authors' code
                                                (sigma * torch.uniform_())

`layers` picks which layer inputs get noise: 'all', 'top:k' (the last k
layers of each stack) or 'bottom:k' (the first k; layer 0's input is the
embedding output). With `attention_output` the input of each selected layer's
feed-forward block is noised too (for post-LN BERT this is Hugging Face's
attention output, as in the code's `hype_intermediate`; for pre-LN LLaMA it is
the normalised input of the MLP).

NEFTune (Jain et al., 2023), the baseline: the token-embedding output gets
U(-1, 1) noise times alpha / sqrt(L * d), d the embedding width and L the real
length of the token's sequence: of its document in packed rows (segment ids),
of its row otherwise. With `neftune_mask_pads` padding positions get none.

Noise is drawn and added in float32, then the sum is cast back to the compute
dtype. It is applied only in training: inside `perturbation(...)`, which the
trainer enters around the task's loss, and only where the task's `model.apply`
supplied the 'perturb' rng stream (`training_rngs`); evaluation and prediction
pass neither. Every family (BERT `encoder`, LLaMA `decoder`, both stacks of
BART `encoder_decoder`, and models built from their layers) is covered, with
unrolled or `nn.scan`ned layers (the scans split the 'perturb' stream, so each
layer draws its own noise). Layer selection other than 'all' needs unrolled
layers: a scanned stack has no layer index to select by.

The mechanism is `flax.linen.intercept_methods`: no model code knows about the
noise, and a run with `kind='none'` traces exactly the model it had before.
"""

import contextlib
import dataclasses
import inspect
import re
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from flaxllm import configuration
from flaxllm.errors import UserInputError
from flaxllm.models import decoder
from flaxllm.models import encoder
from flaxllm.models import encoder_decoder
from flaxllm.models import layers

KINDS = ('none', 'hype', 'neftune')
DISTRIBUTIONS = ('normal', 'uniform', 'uniform_positive')
# The rng stream the noise is drawn from.
RNG_STREAM = 'perturb'
_RNG_SALT = 0x48795065  # folds the step key into the 'perturb' stream's key

# The Transformer layers whose inputs HyPe perturbs.
_LAYER_TYPES = (
    encoder.EncoderLayer,
    decoder.DecoderLayer,
    encoder_decoder.EncoderLayer,
    encoder_decoder.DecoderLayer,
)
_FEED_FORWARD_TYPES = (layers.Mlp, layers.GatedMlp)
_LAYER_SELECTION = re.compile(r'(top|bottom):([1-9][0-9]*)')


@dataclasses.dataclass(frozen=True)
class Settings:
  """What to perturb: the keys of `config.perturb`.

  See `flaxllm.configuration.default_config` for their defaults and meaning.
  """

  kind: str
  distribution: str
  sigma: float
  layers: str
  attention_output: bool
  neftune_alpha: float
  neftune_mask_pads: bool

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> 'Settings':
    """The settings of a run config (the defaults without a perturb section)."""
    section = config.get('perturb')
    if section is None:
      section = configuration.default_config().perturb
    return cls(**section.to_dict())


def check_config(config: ml_collections.ConfigDict) -> None:
  """Validates config.perturb against itself and config.model.

  Args:
    config: the run config.

  Raises:
    UserInputError: one line naming the key and the fix.
  """
  s = Settings.from_config(config)
  for key, allowed in (('kind', KINDS), ('distribution', DISTRIBUTIONS)):
    if getattr(s, key) not in allowed:
      raise UserInputError(
          f'config key perturb.{key}={getattr(s, key)!r}; use one of {allowed}'
      )
  if s.sigma < 0:
    raise UserInputError(f'config key perturb.sigma={s.sigma} must be >= 0')
  if s.neftune_alpha < 0:
    raise UserInputError(
        f'config key perturb.neftune_alpha={s.neftune_alpha} must be >= 0'
    )
  if s.layers != 'all' and not _LAYER_SELECTION.fullmatch(s.layers):
    raise UserInputError(
        f"config key perturb.layers={s.layers!r}; use 'all', 'top:k' or"
        " 'bottom:k' with k >= 1"
    )
  if s.kind != 'hype' and (s.layers != 'all' or s.attention_output):
    raise UserInputError(
        'config keys perturb.layers and perturb.attention_output apply to'
        f" kind='hype' only; perturb.kind is {s.kind!r}"
    )
  if s.kind == 'hype' and s.layers != 'all':
    if config.get('model') is not None and config.model.get('scan_layers'):
      raise UserInputError(
          f'config key perturb.layers={s.layers!r} needs unrolled layers (a'
          ' scanned stack has no layer index); set model.scan_layers=False'
          " or perturb.layers='all'"
      )


def training_rngs(rng: jax.Array) -> dict[str, jax.Array]:
  """The rngs of a training forward pass: 'dropout' and 'perturb' streams.

  Args:
    rng: the step's PRNG key; it stays the dropout key as before.

  Returns:
    {'dropout': rng, 'perturb': a key derived from rng}.
  """
  return {'dropout': rng, RNG_STREAM: jax.random.fold_in(rng, _RNG_SALT)}


# -----------------------------------------------------------------------------
# Noise.
# -----------------------------------------------------------------------------


def sample_noise(
    key: jax.Array, shape: tuple[int, ...], distribution: str, sigma: float
) -> jax.Array:
  """HyPe noise.

  Args:
    key: PRNG key.
    shape: the shape of the hidden states, e.g. [batch, length, embed].
    distribution: one of DISTRIBUTIONS.
    sigma: the scale.

  Returns:
    float32 noise of `shape`.
  """
  if distribution == 'normal':
    return sigma * jax.random.normal(key, shape, jnp.float32)
  low = -sigma if distribution == 'uniform' else 0.0
  return jax.random.uniform(key, shape, jnp.float32, low, sigma)


def add_in_float32(hidden: jax.Array, noise: jax.Array) -> jax.Array:
  """hidden + noise computed in float32, cast back to hidden's dtype.

  Args:
    hidden: [..., embed] in the compute dtype.
    noise: float32, broadcastable to hidden.

  Returns:
    The sum, in hidden's dtype.
  """
  return (hidden.astype(jnp.float32) + noise).astype(hidden.dtype)


def sequence_lengths(
    real: jax.Array, segment_ids: jax.Array | None
) -> jax.Array:
  """The real length of the sequence each token belongs to.

  Args:
    real: bool [batch, length], True on real tokens.
    segment_ids: int [batch, length] document ids of packed rows, or None
      (one sequence per row).

  Returns:
    float32 [batch, length]: per real token, the number of real tokens of its
    document (of its row without segment ids); per padding position, the
    number of real tokens of its row. At least 1.
  """
  counts = real.astype(jnp.float32)
  row_lengths = jnp.sum(counts, axis=1, keepdims=True)  # [batch, 1]
  lengths = jnp.broadcast_to(row_lengths, real.shape)
  if segment_ids is not None:
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    # [batch, length, length] -> [batch, length]
    documents = jnp.einsum('bqk,bk->bq', same.astype(jnp.float32), counts)
    lengths = jnp.where(real, documents, lengths)
  return jnp.maximum(lengths, 1.0)


def neftune_noise(
    key: jax.Array,
    real: jax.Array,
    segment_ids: jax.Array | None,
    features: int,
    alpha: float,
    mask_pads: bool,
) -> jax.Array:
  """NEFTune noise U(-1, 1) * alpha / sqrt(L * d), L per sequence.

  Args:
    key: PRNG key.
    real: bool [batch, length], True on real tokens.
    segment_ids: int [batch, length] or None, see `sequence_lengths`.
    features: d, the embedding width.
    alpha: NEFTune's alpha.
    mask_pads: zero the noise on padding positions.

  Returns:
    float32 [batch, length, features].
  """
  lengths = sequence_lengths(real, segment_ids)  # [batch, length]
  scale = alpha / jnp.sqrt(lengths * features)
  if mask_pads:
    scale = jnp.where(real, scale, 0.0)
  uniform = jax.random.uniform(
      key, (*real.shape, features), jnp.float32, -1.0, 1.0
  )
  return uniform * scale[..., None]


# -----------------------------------------------------------------------------
# Where the noise goes.
# -----------------------------------------------------------------------------


def _layer_position(layer: nn.Module) -> tuple[int | None, int]:
  """(index or None when scanned, number of layers) of a layer in its stack."""
  cfg = layer.config
  if isinstance(layer, encoder_decoder.EncoderLayer):
    count = cfg.encoder_layers
  elif isinstance(layer, encoder_decoder.DecoderLayer):
    count = cfg.decoder_layers
  else:
    count = cfg.num_layers
  match = re.fullmatch(r'.*_([0-9]+)', layer.name or '')
  return (int(match.group(1)) if match else None), count


def _selected(selection: str, layer: nn.Module) -> bool:
  """Whether `layer` is among the `selection` ('all', 'top:k', 'bottom:k')."""
  if selection == 'all':
    return True
  index, count = _layer_position(layer)
  if index is None:
    raise UserInputError(
        f'perturb.layers={selection!r} needs unrolled layers (a scanned stack'
        " has no layer index); set model.scan_layers=False or layers='all'"
    )
  side, k = _LAYER_SELECTION.fullmatch(selection).groups()
  return index >= count - int(k) if side == 'top' else index < int(k)


def _sequence_info(
    module: nn.Module, args: tuple, kwargs: dict
) -> tuple[jax.Array, jax.Array, jax.Array | None] | None:
  """(ids, real-token mask, segment ids) of a stack's call, or None.

  The stacks whose token embeddings NEFTune perturbs: BERT's encoder, the
  LLaMA decoder and BART's two stacks.
  """
  if not isinstance(
      module,
      (
          encoder.Encoder,
          decoder.Decoder,
          encoder_decoder.Encoder,
          encoder_decoder.Decoder,
      ),
  ):
    return None
  bound = inspect.signature(type(module).__call__).bind(module, *args, **kwargs)
  named = bound.arguments
  if isinstance(module, encoder.Encoder):
    return named['ids'], named['attention_mask'] != 0, None
  if isinstance(module, decoder.Decoder):
    ids, segment_ids = named['ids'], named.get('segment_ids')
    if segment_ids is None:
      return ids, jnp.ones(ids.shape, jnp.bool_), None
    return ids, segment_ids != 0, segment_ids
  if isinstance(module, encoder_decoder.Encoder):
    return named['inputs'], named['input_mask'] != 0, None
  ids, mask = named['decoder_inputs'], named['decoder_mask']
  if mask is None:
    return ids, ids != module.config.pad_id, None
  return ids, mask != 0, None


class _Interceptor:
  """The `nn.intercept_methods` hook that adds the configured noise."""

  def __init__(self, settings: Settings):
    self.settings = settings
    # Sequence info of the stacks being traced, innermost last (NEFTune).
    self.sequences: list[tuple[jax.Array, jax.Array, jax.Array | None]] = []

  def __call__(self, next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__' or not module.has_rng(RNG_STREAM):
      return next_fun(*args, **kwargs)
    s = self.settings
    if s.kind == 'hype':
      perturb_input = isinstance(module, _LAYER_TYPES) and _selected(
          s.layers, module
      )
      if s.attention_output and isinstance(module, _FEED_FORWARD_TYPES):
        parent = module.parent
        perturb_input = isinstance(parent, _LAYER_TYPES) and _selected(
            s.layers, parent
        )
      if perturb_input:
        hidden = args[0]  # [batch, length, embed]
        noise = sample_noise(
            module.make_rng(RNG_STREAM), hidden.shape, s.distribution, s.sigma
        )
        args = (add_in_float32(hidden, noise), *args[1:])
      return next_fun(*args, **kwargs)
    # NEFTune: remember the stack's sequences, noise its token embeddings.
    info = _sequence_info(module, args, kwargs)
    if info is not None:
      self.sequences.append(info)
      try:
        return next_fun(*args, **kwargs)
      finally:
        self.sequences.pop()
    embedded = next_fun(*args, **kwargs)
    if isinstance(module, layers.Embed) and self.sequences:
      ids, real, segment_ids = self.sequences[-1]
      if ids.shape == args[0].shape:
        noise = neftune_noise(
            module.make_rng(RNG_STREAM),
            real,
            segment_ids,
            embedded.shape[-1],
            s.neftune_alpha,
            s.neftune_mask_pads,
        )
        embedded = add_in_float32(embedded, noise)
    return embedded


@contextlib.contextmanager
def perturbation(settings: Settings) -> Iterator[None]:
  """Perturbs the model calls traced inside it, as `settings` say.

  Only `model.apply` calls given the 'perturb' rng stream (`training_rngs`)
  are perturbed. With kind 'none', or a zero scale (sigma or neftune_alpha),
  nothing is installed, so the traced step is the vanilla one bit for bit
  (an added zero would be exact, but it can change how XLA fuses the step).

  Args:
    settings: what to perturb (`Settings.from_config(config)`).

  Yields:
    None.
  """
  scale = {'hype': settings.sigma, 'neftune': settings.neftune_alpha}
  if scale.get(settings.kind, 0.0) == 0.0:
    yield
    return
  with nn.intercept_methods(_Interceptor(settings)):
    yield
