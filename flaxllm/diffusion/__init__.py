"""Continuous diffusion over word embeddings (SeqDiffuSeq).

schedules: per-position noise tables (sqrt, linear, cosine) and the adaptive
  schedule that makes the denoising loss linear in the time step;
denoiser: the encoder-decoder network that predicts x0;
losses: the training objective with self-conditioning;
sampler: ancestral DDPM, respaced and DDIM sampling, rounding to tokens.
"""
