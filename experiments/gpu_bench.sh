#!/usr/bin/env bash
# One lent-GPU call: the seq2seq train-step benchmark at the BART-base shape
# (batch 64, 128 + 128 tokens, bf16 compute, fp32 params) against transformers'
# BART on the same card, with XLA and cuDNN attention. The GPU image lacks
# ml_collections: carry it as wheels in .whl/ (see experiments/README.md).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
python3 -c "import jax, flax, torch, transformers; print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, jax.devices())"
bench="python3 experiments/bench_train_step.py --size=base --vocab=50265 --batch=64 --src_len=128 --tgt_len=128 --dtype=bfloat16 --peak_tflops=989 --steps=20 --repeats=3 --results=$OUT/bench_train_step.md"
$bench 2>&1 | tee "$OUT/bench_xla.log"
$bench --attention_impl=cudnn --skip_torch 2>&1 | tee "$OUT/bench_cudnn.log"
