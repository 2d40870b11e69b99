"""``benchmarks/scaling.py --quick`` runs as a fresh process and writes its JSON.

A smoke test: the benchmark still builds the replicated steps of the data-parallel example on
Ray workers, virtual CPUs and the simulated 8-GPU clusters, checks that every Ray worker runs
one BLAS thread, and reports efficiencies; not how fast anything is. The benchmark starts its
own local Ray instance in the child process and shuts it down there, so this test process
never connects to Ray.
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
                                reason="the scaling benchmark needs the 'distributed' extra (Ray)")


def test_quick_run_writes_the_json(tmp_path):
    output = tmp_path / "scaling.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--quick",
                           "--output", str(output)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(output.read_text())
    assert result["quick"] is True
    assert set(result["thread_vars"].values()) == {"1"}
    assert all(env[var] == "1" for case in result["measured"].values()
               for env in case["workers"]["worker_environments"].values()
               for var in result["thread_vars"])
    for case in result["measured"].values():
        efficiencies = [r["scaling_efficiency"] for r in case["results"].values()
                        if "scaling_efficiency" in r]
        assert len(efficiencies) == 4 and all(e > 0 for e in efficiencies)
        workers = case["workers"]
        assert len(workers["worker_environments"]) == 5  # 1 + 2 + 2 Ray worker processes
        in_task = workers["blas_in_a_ray_task"]
        assert in_task or importlib.util.find_spec("threadpoolctl") is None
        assert all(b["num_threads"] == 1 for b in in_task)
    simulated = result["simulated"]
    assert {r["mode"] for r in simulated} == {"allreduce", "ps-sync"}
    assert all(0 < r["efficiency"] for r in simulated)
    assert "CNN scaling efficiency with 2 worker processes" in done.stdout
