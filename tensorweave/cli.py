"""The ``tensorweave`` command line.

    tensorweave plan model.py --cluster examples/clusters/4gpu.json --strategy etf
    tensorweave plan graph.json --cluster cluster.yaml --format dot -o plan.dot
    tensorweave plan model.py --fetch loss --feed x=64,784 --format trace -o step.json
    tensorweave plan model.py -- --model-flag 3      (arguments after -- go to the script)
    tensorweave cluster up --workers 2 / tensorweave cluster down

``plan`` loads a graph — a GraphDef JSON file (``tw.graph.serialization.to_json``), or a Python
script run as ``__main__`` whose default graph is taken when it returns — places it on a
cluster file (default: this machine) and prints the plan as a table, JSON, DOT or a Chrome
trace of the simulated step.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

from tensorweave import cluster_cmd, errors
from tensorweave.graph import core
from tensorweave.graph.shapes import TensorShape
from tensorweave.placement.api import plan as make_plan
from tensorweave.placement.strategies import STRATEGIES

FORMATS = ("table", "json", "dot", "trace")


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    args = _parser().parse_args(argv)
    try:
        return args.run(args, script_args)
    except (errors.OpError, ValueError, KeyError, TypeError, OSError) as e:
        print(f"tensorweave {args.command}: {_message(e)}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensorweave", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser(
        "plan", help="place a graph on a cluster and print the plan",
        description="Place a graph (a GraphDef JSON file or a Python script building the "
                    "default graph) on a cluster and print the placement plan.")
    plan.add_argument("source", metavar="SCRIPT_OR_GRAPH_JSON",
                      help="a .json GraphDef, or a Python script (run as __main__)")
    plan.add_argument("--cluster", metavar="FILE", default=None,
                      help="cluster file (JSON or YAML); default: this machine's devices")
    plan.add_argument("--strategy", choices=list(STRATEGIES), default="default")
    plan.add_argument("--format", choices=FORMATS, default="table")
    plan.add_argument("--fetch", metavar="NAME", action="append", default=None,
                      help="plan only what this tensor or op needs (repeatable)")
    plan.add_argument("--feed", metavar="NAME=SHAPE", action="append", default=[],
                      help="a fed tensor and its shape, e.g. x=64,784 (repeatable)")
    plan.add_argument("--soft-placement", action="store_true",
                      help="relax device pins that cannot be met (allow_soft_placement)")
    plan.add_argument("-o", "--output", metavar="PATH", default=None,
                      help="write here instead of printing")
    plan.set_defaults(run=_run_plan)
    cluster_cmd.add_parser(commands)
    return parser


def _run_plan(args, script_args) -> int:
    graph = load_graph(args.source, script_args)
    result = make_plan(graph, args.cluster, strategy=args.strategy, fetches=args.fetch,
                       feed_dict=_feeds(args.feed),
                       allow_soft_placement=args.soft_placement)
    text = {"table": result.summary,
            "json": lambda: result.to_json(include_timing=True),
            "dot": result.to_dot,
            "trace": result.to_chrome_trace}[args.format]()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.output} ({len(result.ops)} ops, strategy {result.strategy}, "
              f"simulated step {result.step_time * 1e3:.3f} ms)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def load_graph(source: str, script_args=()):
    """The graph of a GraphDef JSON file, or the default graph a script leaves behind."""
    if not os.path.exists(source):
        raise OSError(f"no such file: {source}")
    if source.endswith(".json"):
        from tensorweave.ops.importer import import_graph_def
        graph = core.Graph()
        import_graph_def(source, name="", graph=graph)
        return graph
    return _graph_of_script(source, list(script_args))


def _graph_of_script(path: str, script_args: list):
    saved_argv = sys.argv
    sys.argv = [path] + script_args
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise ValueError(f"the script {path} exited with status {e.code}") from None
    finally:
        sys.argv = saved_argv
    graph = core.get_default_graph()
    if not graph.get_operations():
        raise ValueError(f"the script {path} left the default graph empty; build the model in "
                         f"the default graph (not inside `with tw.Graph().as_default():`)")
    return graph


def _feeds(specs) -> dict:
    feeds = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        if not sep or not name:
            raise ValueError(f"--feed {spec!r}: expected NAME=SHAPE, e.g. x=64,784")
        try:
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise ValueError(f"--feed {spec!r}: the shape must be integers separated by "
                             f"commas") from None
        feeds[name] = TensorShape(shape)
    return feeds


def _message(error) -> str:
    if isinstance(error, errors.OpError):
        return error.message
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
