#!/usr/bin/env bash
# One lent-GPU call: the LLaMA 1.1B (TinyLlama shape) train step, batch 8 x 2048,
# bf16 compute, fp32 params, cuDNN attention, then transformers (sdpa) on the
# same card in a second process (JAX keeps the memory it reserved).
# Needs only jax, optax, flax, torch, transformers (all in the image).
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv
bench="python3 experiments/bench_llama_train_step.py --shape=tinyllama --dtype=bfloat16 --attention_impl=cudnn --peak_tflops=989 --steps=5 --repeats=3 --results=$OUT/bench_llama_train_step.md"
$bench --skip_torch 2>&1 | tee "$OUT/bench_llama_jax.log"
XLA_PYTHON_CLIENT_PREALLOCATE=false $bench --skip_jax 2>&1 | tee "$OUT/bench_llama_torch.log"
