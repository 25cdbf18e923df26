"""SeqDiffuSeq's training objective: x0 MSE + rounding NLL + prior term.

For target ids w with embeddings Emb(w), per row:

  z0   = Emb(w) + sqrt(1 - ᾱ_0) ε0           (the sampled clean latent)
  z_t  = sqrt(ᾱ_t) z0 + sqrt(1 - ᾱ_t) ε       (per position, t ~ U{0..T-1})
  mse  = mean over positions and dims of (f(z_t) - z0)^2, target Emb(w) at
         t = 0; pad positions included (the model learns to emit pad)
  nll  = mean over positions of CE(head(z0), w), on the sampled z0
  tT   = mean((sqrt(ᾱ_{T-1}) z0)^2), which keeps Emb from growing
  loss = mse + nll + tT

Emb gets gradients through the MSE target and the NLL (paper Eq. 6).

Self-conditioning: one coin per batch with probability p; when it fires, a
first pass f(z_t, x̂0 = 0) under stop_gradient gives the x̂0 that the second
(trained) pass receives, concatenated with z_t; otherwise that input is zero.
The first pass runs inside `lax.cond`, so batches without it skip its cost.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from flaxllm.diffusion import schedules

# (noisy [batch, length, dim], timesteps [batch], self_condition
# [batch, length, dim], dropout rng) -> x̂0 [batch, length, dim]
DenoiseFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]
# [batch, length, dim] -> [batch, length, vocab]
LogitsFn = Callable[[jax.Array], jax.Array]


def diffusion_loss_terms(
    *,
    denoise_fn: DenoiseFn,
    logits_fn: LogitsFn,
    target_embeddings: jax.Array,
    target_ids: jax.Array,
    schedule: schedules.NoiseSchedule,
    timesteps: jax.Array,
    rng: jax.Array,
    self_condition_prob: float,
) -> dict[str, jax.Array]:
  """Computes the per-row loss terms and the per-token denoising loss.

  Args:
    denoise_fn: the network's x0 prediction (encoder output bound).
    logits_fn: the rounding head.
    target_embeddings: Emb(w).  # float32 [batch, length, dim]
    target_ids: w.  # int32 [batch, length]
    schedule: the noise schedule, tables [steps, length].
    timesteps: t of each row.  # int32 [batch]
    rng: PRNG key for the latent noise, the coin and dropout.
    self_condition_prob: probability that the batch self-conditions (0
      disables self-conditioning, with no extra pass).

  Returns:
    'loss', 'mse', 'nll', 'prior': float32 [batch], loss = mse + nll + prior;
    'per_token_mse': float32 [batch, length], the squared error of the
    trained pass averaged over dims (what the adaptive schedule bins);
    'x_start_prediction': the trained pass's x̂0 [batch, length, dim].
  """
  start_rng, noise_rng, coin_rng, first_rng, second_rng = jax.random.split(
      rng, 5
  )
  start_std = schedule.sqrt_one_minus_alphas_cumprod[0]  # [length]
  x_start = target_embeddings + start_std[None, :, None] * jax.random.normal(
      start_rng, target_embeddings.shape, target_embeddings.dtype
  )  # [batch, length, dim]
  noise = jax.random.normal(noise_rng, x_start.shape, x_start.dtype)
  noisy = schedules.q_sample(schedule, x_start, timesteps, noise)
  zeros = jnp.zeros_like(noisy)

  if self_condition_prob > 0:
    fires = jax.random.bernoulli(coin_rng, self_condition_prob)
    self_condition = jax.lax.cond(
        fires,
        lambda: jax.lax.stop_gradient(
            denoise_fn(noisy, timesteps, zeros, first_rng)
        ),
        lambda: zeros,
    )
  else:
    self_condition = zeros
  prediction = denoise_fn(noisy, timesteps, self_condition, second_rng)

  target = jnp.where(
      (timesteps == 0)[:, None, None], target_embeddings, x_start
  )  # [batch, length, dim]
  per_token_mse = jnp.mean(jnp.square(prediction - target), axis=-1)
  logits = logits_fn(x_start)  # [batch, length, vocab]
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  token_nll = -jnp.take_along_axis(log_probs, target_ids[..., None], axis=-1)
  nll = jnp.mean(token_nll[..., 0], axis=-1)  # [batch]
  last_scale = schedule.sqrt_alphas_cumprod[-1]  # [length]
  prior = jnp.mean(
      jnp.square(last_scale[None, :, None] * x_start), axis=(1, 2)
  )  # [batch]
  mse = jnp.mean(per_token_mse, axis=-1)  # [batch]
  return {
      'loss': mse + nll + prior,
      'mse': mse,
      'nll': nll,
      'prior': prior,
      'per_token_mse': per_token_mse,
      'x_start_prediction': prediction,
  }
