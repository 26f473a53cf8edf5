#!/usr/bin/env bash
# Every check that needs a GPU, in one command that writes one JSON (README.md, "The static frame step"):
#
#   bash benchmarks/gpu_suite.sh                      # on the GPU machine: under 8 minutes
#   bash benchmarks/gpu_suite.sh --smoke --out F.json # anywhere, on the CPU, in seconds
#
# Wheels in .whl/ (Meta's sam2 and what it imports: `bash benchmarks/gpu_wheels.sh` fetches
# them on a machine with PyPI access) are installed into /tmp/site first, without network.
# Other arguments go to benchmarks/gpu_suite.py (--help lists them). PYTHON picks the
# interpreter (default: python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" benchmarks/gpu_suite.py "$@"
