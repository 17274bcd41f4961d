#!/usr/bin/env bash
# Make .venv-llama: llama-cpp-python (pinned in requirements/bench-llama.txt) for make bench-generation.
# The wheel is built from source once per machine into .cache/wheels/ (CMAKE_BUILD_PARALLEL_LEVEL jobs, niced) and
# every later install takes it from there (--only-binary: pip never compiles it again). The wheel is tagged
# py3-none-linux_x86_64 (the library is loaded with ctypes) but holds code compiled on and for this machine.
#   usage: scripts/llama_venv.sh [VENV]    (default .venv-llama)
#   env:   PYTHON  interpreter that makes the venv and builds the wheel (default: python3)
set -euo pipefail
venv=${1:-.venv-llama}
py=${PYTHON:-python3}
req=requirements/bench-llama.txt
wheels=.cache/wheels
pin=$(grep -m1 '^llama-cpp-python==' "$req")
version=${pin#llama-cpp-python==}
mkdir -p "$wheels"
if ! compgen -G "$wheels/llama_cpp_python-$version-*.whl" > /dev/null; then
  echo "building the $pin wheel from source into $wheels (once; about 13 minutes on 2 cores)" >&2
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    nice -n 19 "$py" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" "$pin"
fi
test -x "$venv/bin/python" || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  --find-links "$wheels" --only-binary llama-cpp-python -r "$req"
"$venv/bin/python" -c 'import llama_cpp; print("llama-cpp-python", llama_cpp.__version__)'
