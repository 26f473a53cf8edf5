#!/usr/bin/env bash
# Fetch what benchmarks/gpu_suite.sh needs on the GPU machine and does not find there (it has
# torch, numpy, opencv, onnx, onnxruntime and no network): Meta's sam2 (for the side-by-side
# SAM2VideoPredictorVOS) and what sam2 imports, as wheels in .whl/ (git-ignored), for Python 3.12.
#
#   bash benchmarks/gpu_wheels.sh      # here, with PyPI access; then carry .whl with the run
#
# sam2 ships as an sdist: it is built here into a pure-Python wheel (SAM2_BUILD_CUDA=0: no CUDA
# extension; the post-processing it would build is optional upstream).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
  hydra-core==1.3.8 omegaconf==2.3.1
# antlr4 and iopath publish sdists only: build those (pure Python) here.
for pkg in antlr4-python3-runtime==4.9.3 iopath==0.1.10; do
  name="${pkg%%==*}"; ls .whl | grep -qi "^${name//-/_}-" || "$PY" -m pip wheel -q --no-deps -w .whl "$pkg"
done
SAM2_BUILD_CUDA=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl sam2==1.1.0
ls -la .whl
