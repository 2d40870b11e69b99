"""``tensorweave cluster up|down``: a Ray cluster on this machine for remote Sessions.

    tensorweave cluster up --workers 2        # ray start --head, bound to 127.0.0.1
    python train.py                           # tw.Session("ray://127.0.0.1:6379", config=...)
    tensorweave cluster down                  # ray stop: every Ray process of this user here

These wrap Ray's own commands (``--dry-run`` prints them instead of running them) so a user
needs to learn nothing else for one machine. The head has no dashboard and requires Ray's
token authentication (``RAY_AUTH_MODE=token``; the token is generated once into
``~/.ray/auth_token``, and remote Sessions present it). Ray listens on all interfaces and
ignores ``--node-ip-address=127.0.0.1`` for a head (seen with ``ss -ltnp`` on Ray 2.60), so
the token is what keeps other hosts out; README "Remote workers" says what is and is not
protected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def up_command(workers: int, port: int) -> list:
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    return [_ray(), "start", "--head", f"--port={port}", f"--num-cpus={workers}",
            "--include-dashboard=false", "--disable-usage-stats"]


def down_command() -> list:
    return [_ray(), "stop"]


def run(args) -> int:
    if args.action == "up":
        command = up_command(args.workers, args.port)
    else:
        command = down_command()
    env = dict(os.environ, RAY_AUTH_MODE="token")
    if args.dry_run:
        print("RAY_AUTH_MODE=token " + " ".join(command))
        return 0
    if args.action == "up":
        subprocess.run([_ray(), "get-auth-token", "--generate"], env=env,
                       stdout=subprocess.DEVNULL, check=True)
    status = subprocess.call(command, env=env)
    if status == 0 and args.action == "up":
        print(f"\nconnect with:\n    tw.Session(\"ray://127.0.0.1:{args.port}\", config=tw.ConfigProto("
              f"cluster_def={{\"worker\": {args.workers}}}))")
    return status


def _ray() -> str:
    """The ``ray`` executable next to this Python (the distributed extra installs it)."""
    found = shutil.which("ray")
    if found is None:
        candidate = shutil.which("ray", path=sys.prefix + "/bin")
        if candidate is None:
            raise ValueError("the 'ray' command is not installed: pip install "
                             "'tensorweave[distributed]'")
        found = candidate
    return found


def add_parser(commands):
    cluster = commands.add_parser(
        "cluster", help="start or stop a Ray cluster on this machine for remote Sessions",
        description="Start (up) a Ray head on this machine, or stop (down) Ray here. 'down' is "
                    "Ray's `ray stop`: it ends every Ray process of this user on this machine, "
                    "including the local instances of running 'local:<n>' sessions.")
    cluster.add_argument("action", choices=["up", "down"])
    cluster.add_argument("--workers", type=int, default=2,
                         help="CPUs the head offers (one per worker task); default 2")
    cluster.add_argument("--port", type=int, default=6379)
    cluster.add_argument("--dry-run", action="store_true", help="print Ray's command only")
    cluster.set_defaults(run=lambda args, script_args: run(args))
    return cluster
