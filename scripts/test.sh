#!/usr/bin/env bash
# Run the whole test suite: sets up .venv with the test dependencies (scripts/setup.sh --test),
# then runs pytest over test/. Extra arguments go to pytest (e.g. -k visualization, -x).
# Exit code: pytest's; "no tests collected" (pytest's 5) counts as a failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh --test

# Keep the DDS discovery of the tests' ROS nodes on this machine (the venv's ROS 2 is Kilted,
# which reads ROS_AUTOMATIC_DISCOVERY_RANGE; ROS_LOCALHOST_ONLY is deprecated there).
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"

set +e
"${SAM2_ROS_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
rc=$?
set -e
if [[ $rc == 5 ]]; then
  echo "[test] ERROR: pytest collected no tests" >&2
  exit 1
fi
exit $rc
