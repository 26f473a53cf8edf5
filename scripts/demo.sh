#!/usr/bin/env bash
# Quick-start demo over ROS 2: sets up .venv (scripts/setup.sh), starts the sam2_tracker node
# (python -m sam2_ros), plays the bundled sample clip (data/sample/) into it over ROS 2 with its
# prompt (tools/play_clip.py) and saves what the node published in outputs/demo/: overlay.mp4
# (the node's ~/overlay), overlay PNGs and a contact sheet overlay_sheet.png, the mono16 label
# images masks_*.png (~/masks) and summary.json (frames answered, latency).
#
# Real masks need Meta's SAM 2.1 checkpoint, downloaded once on first use (or pass
# --checkpoint PATH). Without it (offline), the demo writes a checkpoint file with RANDOM
# weights (outputs/demo/RANDOM_WEIGHTS_*.pt), says so loudly, plays only the first 16 frames and
# stamps every saved overlay: those masks are meaningless, they only show the pipeline runs.
#
#   bash scripts/demo.sh [--checkpoint PATH] [--model tiny] [--image-size 512] [--device auto]
#                        [--max-frames N] [--out DIR]
#   bash scripts/demo.sh --api [ARGS]   # the same clip through the Python API, no ROS
#                                       # (python -m sam2_ros.tools.demo --random-weights ARGS)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

case "${1:-}" in -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;; esac
bash scripts/setup.sh
PY="${SAM2_ROS_VENV:-$ROOT/.venv}/bin/python"

if [[ "${1:-}" == "--api" ]]; then
  shift
  exec "$PY" -m sam2_ros.tools.demo --random-weights "$@"
fi

CHECKPOINT="" MODEL=tiny IMAGE_SIZE=512 DEVICE=auto MAX_FRAMES="" OUT="$ROOT/outputs/demo"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --checkpoint) CHECKPOINT="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --image-size) IMAGE_SIZE="$2"; shift 2 ;;
    --device) DEVICE="$2"; shift 2 ;;
    --max-frames) MAX_FRAMES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

shout() { # a boxed warning on stderr
  local line; printf '%s\n' "$(printf '!%.0s' {1..78})" >&2
  while IFS= read -r line; do printf '! %-74s !\n' "$line" >&2; done
  printf '%s\n' "$(printf '!%.0s' {1..78})" >&2
}

# --- the checkpoint: given, cached / downloaded, or (offline) random weights -----------------
STAMP=""
if [[ -n "$CHECKPOINT" ]]; then
  [[ -f "$CHECKPOINT" ]] || { echo "[demo] error: no such checkpoint: $CHECKPOINT" >&2; exit 2; }
elif CHECKPOINT="$("$PY" -c 'import sys
from sam2_ros.model.checkpoint import CheckpointError, resolve_checkpoint
try:
    print(resolve_checkpoint(None, sys.argv[1]))
except CheckpointError as error:
    print(error, file=sys.stderr)
    sys.exit(3)' "$MODEL")"; then
  echo "[demo] checkpoint: $CHECKPOINT"
else
  CHECKPOINT="$OUT/RANDOM_WEIGHTS_sam2.1_hiera_${MODEL}.pt"
  fold -s -w 74 <<MSG | shout
No checkpoint: Meta's SAM 2.1 checkpoint could not be downloaded (see above). Going on with RANDOM WEIGHTS ($CHECKPOINT): the masks are meaningless and only show that the pipeline runs end to end. Real masks need the checkpoint: run once with internet access (it is cached) or pass --checkpoint PATH.
MSG
  if [[ ! -f "$CHECKPOINT" ]]; then
    "$PY" -c 'import sys, torch
from sam2_ros.model.build import build_random_model
torch.save({"model": build_random_model(sys.argv[1], 1024, "cpu", seed=0).state_dict()}, sys.argv[2])' \
      "$MODEL" "$CHECKPOINT"
  fi
  STAMP="RANDOM WEIGHTS: masks are meaningless; pass --checkpoint"
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
PLAY=("$PY" -m sam2_ros.tools.play_clip --namespace "$NS" --out "$OUT")
[[ -n "$MAX_FRAMES" ]] && PLAY+=(--max-frames "$MAX_FRAMES")
[[ -n "$STAMP" ]] && PLAY+=(--stamp "$STAMP")
if ! "${PLAY[@]}"; then
  echo "[demo] the node's log ($OUT/node.log):" >&2
  tail -n 20 "$OUT/node.log" >&2
  exit 1
fi
stop_node
if [[ -n "$STAMP" ]]; then
  echo "These overlays come from RANDOM WEIGHTS: the masks are meaningless. For real masks, get Meta's checkpoint (downloaded on first use when online) or pass --checkpoint PATH." \
    | fold -s -w 74 | shout
fi
echo "[demo] done: $OUT/overlay.mp4 and $OUT/overlay_sheet.png"
