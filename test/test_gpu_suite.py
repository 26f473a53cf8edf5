"""benchmarks/gpu_suite.sh --smoke: the GPU suite's script runs end to end on the CPU (tiny
sizes), so it is known to work before a lent GPU's minutes are spent on it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_smoke_runs_every_section(tmp_path):
    out = tmp_path / "smoke.json"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--smoke", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == [], result["errors"]
    assert result["skipped"] == []
    assert result["sync"] is not None
    assert {row["mode"] for row in result["speed"]} == {"eager", "compiled", "cudagraphs", "cudagraphs_samurai",
                                                        "official_vos"}
    # EdgeTAM beside tiny, in each mode of ours (at 256 px: its smallest size)
    assert {(row["mode"], row["image_size"]) for row in result["speed"] if row["model"] == "edgetam"} == {
        ("eager", 256), ("compiled", 256), ("cudagraphs", 256)}
    for row in result["speed"]:
        assert row["fps"] > 0 and row["p95_ms"] >= row["p50_ms"] > 0
    parity = result["parity"]
    assert set(parity) == {"float32_exact", "float32_static", "bfloat16_static"}
    # The smoke checkpoint is alive: masks exist, so the comparison means something.
    assert parity["float32_exact"]["max_rel_logit_err"] == 0.0 and parity["float32_exact"]["object_frames"] > 0
    assert parity["float32_static"]["max_rel_logit_err"] < 1e-3
    # one process with 1 and 3 cameras against as many separate processes
    rows = result["multi_camera"]
    assert {(r["kind"], r["cameras"]) for r in rows} == {(k, n) for k in ("one process", "separate processes")
                                                          for n in (1, 3)}
    for row in rows:
        assert row["total_fps"] > 0 and row["rss_mb"] > 0 and len(row["latency"]) == row["cameras"]
