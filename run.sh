#!/usr/bin/env bash
# flaxllm's two commands (and a few more):
#   ./run.sh                       set up .venv, then the main job: configs/seqdiffuseq.py:runlocal
#   ./run.sh test [PYTEST_ARGS]    set up with the test extras, then the whole test suite
#   ./run.sh CONFIG[:variant] [FLAGS]   train any config, e.g. configs/seq2seq.py:runlocal --config.train.steps=50
#   ./run.sh experiments/X.py [ARGS]    run an experiment or benchmark script
#   ./run.sh notebooks [NAMES]     set up with the notebook extras, run notebooks/*.ipynb headless (CPU size)
# Set-up is idempotent: .venv is created once and reinstalled only when setup.py changes.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON_BIN=${PYTHON:-python3}

setup() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    echo "+ $PYTHON_BIN -m venv $VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed${extras:+-$extras}"
  local want
  want=$(cat setup.py | sha256sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "+ pip install -e .${extras:+[$extras]}  (into $VENV)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".${extras:+[$extras]}"
    echo "$want" > "$stamp"
  else
    echo "+ $VENV is up to date with setup.py${extras:+ [$extras]}"
  fi
}

run_config() {
  local config=$1; shift
  local name
  name=$(basename "${config%%:*}" .py)
  local args=("--config=$config")
  case " $* " in
    *" --workdir="*) ;;
    *) args+=("--workdir=runs/${name}_$(date +%Y%m%d_%H%M%S)") ;;
  esac
  echo "+ python -m flaxllm.main ${args[*]} $*"
  exec "$VENV/bin/python" -m flaxllm.main "${args[@]}" "$@"
}

case "${1:-}" in
  test)
    shift
    setup "test,tfds"
    # One worker per core (FLAXLLM_TEST_WORKERS overrides; 0 runs in-process);
    # a file's tests stay on one worker (class fixtures are built once), except
    # the modules tests/conftest.py spreads test by test (SPREAD_MODULES).
    workers="${FLAXLLM_TEST_WORKERS:-$(nproc)}"
    echo "+ python -m pytest -n $workers --dist loadgroup tests $*"
    exec "$VENV/bin/python" -m pytest -q -ra --durations=15 \
      -n "$workers" --dist loadgroup tests "$@"
    ;;
  "")
    setup ""
    run_config configs/seqdiffuseq.py:runlocal
    ;;
  notebooks)
    shift
    setup "notebooks"
    echo "+ python notebooks/run_notebooks.py $*"
    exec "$VENV/bin/python" notebooks/run_notebooks.py "$@"
    ;;
  experiments/*.py)
    setup "test,tfds"
    script=$1; shift
    echo "+ python $script $*"
    exec "$VENV/bin/python" "$script" "$@"
    ;;
  *)
    setup ""
    run_config "$@"
    ;;
esac
