"""Data recipes that are not losses: what to train on, and in what order.

  dmt          stage mixtures of specialist and general SFT data (DMT, Dong
               et al. 2024): single-source, multi-task, sequential, mixed
               sequential and dual-stage mixed fine-tuning with a fraction k
  mugglemath   math data augmentation (MuggleMath, Li et al. 2024): query and
               response augmentation through a generator callable, rule-based
               number changes of GSM8K items, the log-linear scaling fit

Recipes are plain functions of example lists and a seed; they hand the
trainer finished, deterministic lists and never touch a model themselves.
"""
