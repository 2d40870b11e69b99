"""``benchmarks.common.quiet_rounds`` keeps the quiet rounds, stops when it has enough or has
tried enough, and falls back to every round when none was quiet (the benchmarks share it)."""

from __future__ import annotations

import pytest

from benchmarks.common import quiet_rounds


class ScriptedMeter:
    """Says, round after round, how much CPU others used; above 1 second is not quiet."""

    def __init__(self, others: list):
        self.others = list(others)

    def start(self) -> None:
        pass

    def others_seconds(self) -> float:
        return self.others.pop(0)

    def quiet(self, others: float) -> bool:
        return others <= 1.0


def counting_round():
    """A round whose samples are its own number, so the test sees which rounds were kept."""
    counter = {"round": 0}

    def one_round():
        counter["round"] += 1
        return {"a": counter["round"], "b": -counter["round"]}

    return one_round


@pytest.mark.parametrize("others, wanted, at_most, kept_rounds, tried", [
    ([0, 0, 0], 2, 6, [1, 2], 2),                # enough quiet rounds: stop
    ([5, 0, 5, 0, 0], 3, 5, [2, 4, 5], 5),       # noisy rounds set aside
    ([5, 0, 5, 5], 3, 4, [2], 4),                # at_most reached: the quiet ones count
    ([5, 5, 5], 2, 3, [1, 2, 3], 3),             # none quiet: every round counts
])
def test_quiet_rounds(others, wanted, at_most, kept_rounds, tried):
    rounds = quiet_rounds(counting_round(), wanted, at_most, meter=ScriptedMeter(others))
    assert rounds.samples == {"a": kept_rounds, "b": [-r for r in kept_rounds]}
    assert rounds.kept == (len(kept_rounds) if min(others[:tried]) <= 1.0 else 0)
    assert rounds.tried == tried
    assert rounds.others_cpu_seconds == others[:tried]
    assert rounds.counts()["rounds_tried"] == tried
