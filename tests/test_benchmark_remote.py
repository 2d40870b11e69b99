"""``benchmarks/remote.py --quick`` runs as a fresh process and writes its JSON.

A smoke test: it checks that the benchmark still builds its graph and its Ray baselines against
the current API (the benchmark checks the transfers each step makes and the values it gets),
not how fast anything is. The benchmark starts its own local Ray instance in the child process
and shuts it down there, so this test process never connects to Ray and the remote tests that
start theirs are not disturbed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="the remote benchmark needs the 'distributed' extra (Ray)")


def test_quick_run_writes_the_json(tmp_path):
    output = tmp_path / "remote.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "benchmarks.remote", "--quick",
                           "--output", str(output)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(output.read_text())
    assert result["quick"] is True
    assert set(result["empty_step"]) >= {"tensorweave", "Ray, actor calls"}
    assert set(result["cut_edge"]) == {"4"}
    assert set(result["cut_edge"]["4"]) >= {"tensorweave", "Ray, same pattern (A -> B actor call)",
                                            "Ray, object ref (B(A()))"}
    assert {"empty_step_tw_vs_ray_actor_calls",
            "cut_4mb_tw_vs_ray_same_pattern"} <= set(result["ratios"])
    assert all(value > 0 for value in result["ratios"].values())
    # Compiled Graphs are beta: either they ran, or the JSON says why not.
    dag = result["compiled_graph"]["empty"]
    assert dag["works"] or dag["error"]
    assert "Cut edge task 0 -> task 1" in done.stdout
