#!/usr/bin/env bash
# Quick-start demo over ROS 2 (see usage() below and README.md, "Quick start").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER_DIR="$PWD"  # relative --checkpoint and --out paths are the caller's, not the repository's
cd "$ROOT"
abspath() { [[ "$1" == /* ]] && printf '%s' "$1" || printf '%s' "$CALLER_DIR/$1"; }

usage() {
  cat <<'USAGE'
Usage: bash scripts/demo.sh [--checkpoint C] [--model tiny] [--image-size 512]
                            [--device auto] [--max-frames N] [--out DIR]
       bash scripts/demo.sh --api [ARGS]

Sets up .venv (scripts/setup.sh), starts the sam2_tracker node (python -m sam2_ros), plays the
bundled sample clip (data/sample/) into it over ROS 2 with its prompt and saves what the node
published in outputs/demo/: overlay.mp4 (the node's ~/overlay), overlay PNGs and a contact
sheet overlay_sheet.png, the mono16 label images masks_*.png (~/masks), summary.json (frames
answered, latency, checkpoint) and node.log.

Options:
  --checkpoint C     Meta's checkpoint file (.pt), a folder, or a Hugging Face Hub id
                     (facebook/sam2.1-hiera-small, or a SAM 2 saved by transformers);
                     default: the official checkpoint of --model, downloaded once
                     into the Hugging Face Hub cache (~/.cache/huggingface/hub)
  --model NAME       tiny | small | base_plus | large (SAM 2.1), or edgetam (EdgeTAM:
                     several times faster on a CPU; --image-size a multiple of 256)
                     (default: tiny)
  --image-size N     model input side, a multiple of 32 from 64 to 4096 (default: 512)
  --device DEV       auto | cpu | cuda | cuda:N (default: auto)
  --max-frames N     play the first N frames only (default: all 48; 16 with random weights)
  --out DIR          output folder (default: outputs/demo)
  --api [ARGS]       the same clip through the Python API, no ROS, into outputs/demo_api
                     (python -m sam2_ros.tools.demo --random-weights ARGS; ARGS: its --help)

Offline (no checkpoint): the demo writes a checkpoint with RANDOM weights
(OUT/RANDOM_WEIGHTS_*.pt), says so, plays 16 frames and stamps every saved overlay: those masks
are meaningless, they only show that the pipeline runs.

Environment: SAM2_ROS_VENV=DIR uses that venv; SAM2_ROS_SKIP_SETUP=1 uses it as it is (no
scripts/setup.sh); ROS_DOMAIN_ID (default: a random one from 1 to 100).
USAGE
}

die_usage() { echo "demo.sh: $*" >&2; echo "  (bash scripts/demo.sh --help lists the options)" >&2; exit 2; }

# --- options: all checked before anything is installed or started ---------------------------
API=0
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --api) API=1; shift ;;
esac
CHECKPOINT="" MODEL=tiny IMAGE_SIZE=512 DEVICE=auto MAX_FRAMES="" OUT="$ROOT/outputs/demo"
while [[ $API == 0 && $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --checkpoint|--model|--image-size|--device|--max-frames|--out)
      [[ $# -ge 2 ]] || die_usage "$1 needs a value" ;;&
    --checkpoint)  # a path (the caller's), or a Hub id (namespace/name) that is no path here
      CHECKPOINT="$(abspath "$2")"
      if [[ ! -e "$CHECKPOINT" && "$2" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$ \
            && ! "$2" =~ \.(pt|pth|safetensors)$ ]]; then CHECKPOINT="$2"; fi
      shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --image-size) IMAGE_SIZE="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --max-frames) MAX_FRAMES="$2"; shift 2 ;;
    --out) OUT="$(abspath "$2")"; shift 2 ;;
    *) die_usage "unknown option '$1'" ;;
  esac
done
if [[ $API == 0 ]]; then
  case "$MODEL" in
    tiny|small|base_plus|large|edgetam) ;;
    *) die_usage "unknown --model '$MODEL': use tiny, small, base_plus, large or edgetam" ;;
  esac
  if ! [[ "$IMAGE_SIZE" =~ ^[0-9]+$ ]] || (( IMAGE_SIZE < 64 || IMAGE_SIZE > 4096 || IMAGE_SIZE % 32 )); then
    die_usage "--image-size must be a multiple of 32 from 64 to 4096 (e.g. 256, 512, 1024), got '$IMAGE_SIZE'"
  fi
  if [[ "$MODEL" == edgetam ]] && (( IMAGE_SIZE % 256 )); then
    die_usage "--image-size $IMAGE_SIZE does not fit --model edgetam: a multiple of 256 (e.g. 512, 1024)"
  fi
  [[ "$DEVICE" =~ ^(auto|cpu|cuda|cuda:[0-9]+)$ ]] \
    || die_usage "unknown --device '$DEVICE': use auto, cpu, cuda or cuda:N"
  if [[ -n "$MAX_FRAMES" ]] && ! [[ "$MAX_FRAMES" =~ ^[1-9][0-9]*$ ]]; then
    die_usage "--max-frames must be a positive whole number, got '$MAX_FRAMES'"
  fi
  if [[ "$CHECKPOINT" == /* && ! -e "$CHECKPOINT" ]]; then
    echo "[demo] error: no such checkpoint: $CHECKPOINT" >&2; exit 2
  fi
fi

[[ "${SAM2_ROS_SKIP_SETUP:-0}" == 1 ]] || bash scripts/setup.sh
PY="${SAM2_ROS_VENV:-$ROOT/.venv}/bin/python"

if [[ $API == 1 ]]; then
  exec "$PY" -m sam2_ros.tools.demo --random-weights "$@"
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

shout() { # a boxed warning on stderr
  local line; printf '%s\n' "$(printf '!%.0s' {1..78})" >&2
  while IFS= read -r line; do printf '! %-74s !\n' "$line" >&2; done
  printf '%s\n' "$(printf '!%.0s' {1..78})" >&2
}

# --- the checkpoint: given, cached / downloaded, or (offline) random weights -----------------
RANDOM_WEIGHTS=0
if [[ -z "$CHECKPOINT" ]]; then
  set +e
  CHECKPOINT="$("$PY" -c 'import sys
from sam2_ros.model.checkpoint import CheckpointError, resolve_checkpoint
try:
    print(resolve_checkpoint(None, sys.argv[1]))
except CheckpointError as error:
    print(error, file=sys.stderr)
    sys.exit(3)' "$MODEL")"
  rc=$?
  set -e
  # only 3 is "no checkpoint to be had"; anything else is a bug to show, not to paper over
  if [[ $rc != 0 && $rc != 3 ]]; then
    echo "[demo] error: looking for the checkpoint failed (exit status $rc, above)" >&2; exit 1
  fi
fi
if [[ -n "$CHECKPOINT" ]]; then
  echo "[demo] checkpoint: $CHECKPOINT"
else
  if [[ "$MODEL" == edgetam ]]; then CHECKPOINT="$OUT/RANDOM_WEIGHTS_edgetam.pt"
  else CHECKPOINT="$OUT/RANDOM_WEIGHTS_sam2.1_hiera_${MODEL}.pt"; fi
  fold -s -w 74 <<MSG | shout
No checkpoint: the official $MODEL checkpoint could not be downloaded (see above). Going on with RANDOM WEIGHTS ($CHECKPOINT): the masks are meaningless and only show that the pipeline runs end to end. Real masks need the checkpoint: run once with internet access (it is cached in the Hugging Face Hub cache) or pass --checkpoint PATH.
MSG
  if [[ ! -f "$CHECKPOINT" ]]; then
    "$PY" -c 'import sys, torch
from sam2_ros.model.build import build_random_model
torch.save({"model": build_random_model(sys.argv[1], 1024, "cpu", seed=0).state_dict()}, sys.argv[2])' \
      "$MODEL" "$CHECKPOINT"
  fi
  RANDOM_WEIGHTS=1
  MAX_FRAMES="${MAX_FRAMES:-16}"
fi

# --- the node, on a DDS domain of its own on this machine --------------------------------------
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}"
NS=/sam2_demo
echo "[demo] starting the node: $NS/sam2_tracker (ROS_DOMAIN_ID=$ROS_DOMAIN_ID), log in $OUT/node.log"
"$PY" -m sam2_ros --ros-args -r __ns:=$NS -p checkpoint:="$CHECKPOINT" -p model:="$MODEL" \
  -p image_size:="$IMAGE_SIZE" -p device:="$DEVICE" -p frame_policy:=all \
  -p image_qos:=reliable -p qos_depth:=10 >"$OUT/node.log" 2>&1 &
NODE_PID=$!
stop_node() {
  if kill -0 "$NODE_PID" 2>/dev/null; then
    kill -INT "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
}
trap stop_node EXIT

# --- play the clip into it and save what it publishes ---------------------------------------
# --node-pid: the player stops waiting as soon as the node exits (a bad checkpoint, a refused
# parameter) and prints the end of its log, the node's reason
PLAY=("$PY" -m sam2_ros.tools.play_clip --namespace "$NS" --out "$OUT" --node-pid "$NODE_PID"
      --node-log "$OUT/node.log" --checkpoint "$CHECKPOINT")
[[ -n "$MAX_FRAMES" ]] && PLAY+=(--max-frames "$MAX_FRAMES")
[[ $RANDOM_WEIGHTS == 1 ]] && PLAY+=(--random-weights)
set +e
"${PLAY[@]}"
rc=$?
set -e
if [[ $rc == 3 ]]; then  # the node exited; the player has shown why
  exit 1
elif [[ $rc != 0 ]]; then
  echo "[demo] the node's log ($OUT/node.log):" >&2
  tail -n 20 "$OUT/node.log" >&2
  exit 1
fi
stop_node
if [[ $RANDOM_WEIGHTS == 1 ]]; then
  echo "These overlays come from RANDOM WEIGHTS: the masks are meaningless. For real masks, get Meta's checkpoint (downloaded on first use when online) or pass --checkpoint PATH." \
    | fold -s -w 74 | shout
fi
echo "[demo] done: $OUT/overlay.mp4 and $OUT/overlay_sheet.png"
