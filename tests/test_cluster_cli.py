"""``tensorweave cluster up|down``: the Ray commands it runs, and a real round trip."""

import os
import subprocess
import sys
import textwrap

import pytest

from tensorweave.cli import main


def test_dry_run_prints_rays_commands(capsys):
    assert main(["cluster", "up", "--workers", "3", "--port", "6391", "--dry-run"]) == 0
    up = capsys.readouterr().out.strip()
    assert up.startswith("RAY_AUTH_MODE=token ") and " start --head " in up
    assert "--port=6391" in up and "--num-cpus=3" in up and "--include-dashboard=false" in up
    assert main(["cluster", "down", "--dry-run"]) == 0
    assert capsys.readouterr().out.strip().endswith(" stop")


def test_up_needs_a_worker(capsys):
    assert main(["cluster", "up", "--workers", "0", "--dry-run"]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err


def test_up_then_a_remote_session_then_down(tmp_path):
    pytest.importorskip("ray", reason="needs the 'distributed' extra (Ray)")
    port = "6397"
    cli = [sys.executable, "-m", "tensorweave.cli"]
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(f"""
        import tensorweave as tw
        with tw.device("/job:worker/task:1"):
            y = tw.constant([1.0, 2.0]) * 3.0
        config = tw.ConfigProto(cluster_def={{"worker": 2}})
        with tw.Session("ray://127.0.0.1:{port}", config=config) as sess:
            print("result", sess.run(y).tolist(), sorted(sess.remote_tasks))
    """))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    up = subprocess.run(cli + ["cluster", "up", "--workers", "2", "--port", port],
                        capture_output=True, text=True, env=env, timeout=180)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        assert f'tw.Session("ray://127.0.0.1:{port}"' in up.stdout
        client = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                env=env, timeout=180)
        assert client.returncode == 0, client.stderr[-2000:]
        assert "result [3.0, 6.0] ['/job:worker/task:0', '/job:worker/task:1']" in client.stdout
    finally:
        down = subprocess.run(cli + ["cluster", "down"], capture_output=True, text=True,
                              env=env, timeout=180)
    assert down.returncode == 0, down.stderr[-2000:]
