"""``benchmarks/multidevice.py --quick`` runs as a fresh process and writes its JSON.

A smoke test: it checks that the benchmark still builds and runs its graphs against the current
API (its variants check their results against numpy and the cut edges they claim), not how fast
anything is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_run_writes_the_json(tmp_path):
    output = tmp_path / "multidevice.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "benchmarks.multidevice", "--quick",
                           "--output", str(output)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(output.read_text())
    assert result["quick"] is True
    assert all(b["num_threads"] == 1 for b in result["blas"])
    assert set(result["ratios"]) >= {"tw_2_devices_vs_tw_1_device",
                                     "numpy_2_threads_vs_numpy_sequential"}
    assert all(value > 0 for value in result["ratios"].values())
    assert set(result["cut_edge"]) == {"1", "4"}
    assert "cut edge cpu:0 -> cpu:1" in result["cut_edge_fit"]
    assert "Cut edge cost" in done.stdout
