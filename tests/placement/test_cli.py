"""``tensorweave plan`` on a script and on a GraphDef JSON file, through ``cli.main``."""

import json
import os
import textwrap

import pytest

import tensorweave as tw
from tensorweave.cli import main
from tensorweave.graph.serialization import to_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOUR_GPUS = os.path.join(REPO, "examples", "clusters", "4gpu.json")
EIGHT_NODES = os.path.join(REPO, "examples", "clusters", "8node.json")

SCRIPT = textwrap.dedent("""\
    import sys
    import tensorweave as tw

    width = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    x = tw.placeholder(tw.float32, [None, width], name="x")
    W = tw.Variable(tw.zeros([width, width]), name="W")
    branches = [tw.tanh(tw.matmul(x, W)) for _ in range(4)]
    y = tw.add_n(branches, name="y")
    if __name__ == "__main__":
        print("script ran as __main__ with", sys.argv[1:])
""")


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(SCRIPT)
    return str(path)


def test_plan_a_script_prints_the_table(graph, script, capsys):
    status = main(["plan", script, "--cluster", FOUR_GPUS, "--strategy", "etf",
                   "--fetch", "y", "--feed", "x=512,256", "--", "512"])
    out = capsys.readouterr().out
    assert status == 0
    assert "script ran as __main__ with ['512']" in out
    assert "Placement plan (etf): " in out and "Critical path (" in out
    assert graph.get_operation_by_name("W").outputs[0].shape.as_list() == [512, 512]


def test_plan_a_graph_json_in_each_format(graph, tmp_path, capsys):
    x = tw.placeholder(tw.float32, [64, 32], name="x")
    with tw.device("/job:worker/task:1/device:GPU:0"):
        y = tw.matmul(x, tw.ones([32, 32]), name="y")
    tw.reduce_sum(y, name="total")
    graph_file = tmp_path / "graph.json"
    graph_file.write_text(to_json(graph))

    assert main(["plan", str(graph_file), "--cluster", EIGHT_NODES]) == 0
    table = capsys.readouterr().out
    assert "pinned to /job:worker/task:1/device:GPU:0" in table
    assert "/job:worker/task:1/GPU:0  (/job:worker/replica:0/task:1/device:GPU:0)" in table

    for fmt, check in [("json", lambda t: json.loads(t)["format"]),
                       ("dot", lambda t: t.startswith("digraph placement {")),
                       ("trace", lambda t: json.loads(t)["traceEvents"])]:
        out = tmp_path / f"plan.{fmt}"
        assert main(["plan", str(graph_file), "--cluster", EIGHT_NODES, "--format", fmt,
                     "--strategy", "critical_path", "-o", str(out)]) == 0
        assert check(out.read_text())
        assert f"wrote {out}" in capsys.readouterr().err
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["strategy"] == "critical_path" and "placement_seconds" in data


def test_errors_are_one_line_and_exit_with_status_1(graph, tmp_path, capsys):
    assert main(["plan", str(tmp_path / "missing.json")]) == 1
    assert "no such file" in capsys.readouterr().err

    pinned = tmp_path / "pinned.json"
    with tw.device("/gpu:9"):
        tw.constant(1.0, name="c")
    pinned.write_text(to_json(graph))
    assert main(["plan", str(pinned), "--cluster", FOUR_GPUS]) == 1
    assert "Cannot place op 'c'" in capsys.readouterr().err
    assert main(["plan", str(pinned), "--cluster", FOUR_GPUS, "--soft-placement"]) == 0
    assert "soft placement from /device:GPU:9" in capsys.readouterr().out

    assert main(["plan", str(pinned), "--feed", "c=two"]) == 1
    assert "--feed 'c=two'" in capsys.readouterr().err
    assert main(["plan", str(pinned), "--fetch", "nothing"]) == 1
    assert "'nothing' names nothing in the graph" in capsys.readouterr().err


def test_a_script_that_leaves_the_default_graph_empty_is_an_error(tmp_path, capsys):
    path = tmp_path / "empty.py"
    path.write_text("import tensorweave as tw\nwith tw.Graph().as_default():\n"
                    "    tw.constant(1.0)\n")
    with tw.Graph().as_default():
        assert main(["plan", str(path)]) == 1
    assert "left the default graph empty" in capsys.readouterr().err


def test_an_unknown_strategy_is_a_usage_error(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", script, "--strategy", "fastest"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fastest'" in capsys.readouterr().err
