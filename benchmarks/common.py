"""Helpers shared by the benchmark scripts: timing, quiet rounds on a shared machine, a table
printer, JSON output and the ``--quick``/``--output`` arguments."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import statistics
import time


def best_of(fn, repeats: int = 5, number: int = 1) -> float:
    """Best wall time in seconds of ``number`` calls of ``fn``, over ``repeats`` rounds, per call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def median_of(fn, repeats: int = 5, number: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def print_table(title: str, header: list, rows: list):
    widths = [max(len(str(h)), *(len(_fmt(r[i])) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_json(name: str, payload: dict, output: str | None = None) -> str:
    """Write ``payload``, after a description of the machine, to ``benchmarks/results/<name>.json``
    or to ``output`` (a smoke test's path, so a quick run never replaces the full run's figures);
    returns the path."""
    payload = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "processor": platform.processor() or platform.machine()},
               **payload}
    if output is None:
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.json")
    else:
        path = output
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    print(f"\nwrote {path}")
    return path


def argument_parser(description: str, quick_help: str,
                    output_help: str = "write the JSON here instead of benchmarks/results/"):
    """The arguments every benchmark takes: ``--quick`` (a smoke run) and ``--output``. A script
    with more arguments adds them to the parser this returns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--output", help=output_help)
    return parser


# -- BLAS threads ---------------------------------------------------------------------------------

def blas_report() -> list:
    """What threadpoolctl sees of the loaded BLAS libraries ([] when it is not installed)."""
    try:
        from threadpoolctl import threadpool_info  # noqa: PLC0415 - optional
    except ImportError:
        return []
    keys = ("internal_api", "version", "num_threads", "architecture")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()
            if info.get("user_api") == "blas"]


def check_single_threaded_blas(blas: list, module: str) -> None:
    """Refuse to measure with a multi-threaded BLAS: the comparison would be meaningless.
    ``module`` is the benchmark's, to say how to run it so that it can limit BLAS itself."""
    many = [b for b in blas if b["num_threads"] != 1]
    if many:
        raise SystemExit(f"BLAS runs {many[0]['num_threads']} threads ({many[0]['internal_api']}):"
                         f" run this benchmark as a fresh process, `python -m {module}`, so it "
                         "can limit BLAS before numpy loads")


def single_threaded_blas(module: str) -> list:
    """``blas_report()``, after ``check_single_threaded_blas``."""
    blas = blas_report()
    check_single_threaded_blas(blas, module)
    return blas


# -- quiet rounds ---------------------------------------------------------------------------------
# The machine is shared: a round in which other processes took a noticeable share of the cores
# says nothing about running on them, so it is set aside while there is hope of quiet ones.

def machine_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (``/proc/stat``; stolen
    time counts as busy), or None where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:9]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """CPU time that *other* processes used during a round: the machine's busy time minus our
    own. ``own_cpu_seconds`` says what "our own" is: by default this process (all its threads);
    a benchmark whose work runs in child processes (Ray workers) passes a function that counts
    its whole process tree. A round is quiet when others used at most a tenth of one core,
    plus ``slack_seconds`` for a few clock ticks of ``/proc/stat``'s sampling."""

    SHARE = 0.1

    def __init__(self, own_cpu_seconds=time.process_time, slack_seconds: float = 0.03):
        self.own_cpu_seconds = own_cpu_seconds
        self.slack_seconds = slack_seconds

    def start(self) -> None:
        self.wall = time.perf_counter()
        # The same order as in ``others_seconds``: machine first, then our own.
        self.busy = machine_busy_seconds()
        self.own = self.own_cpu_seconds()

    def others_seconds(self) -> float | None:
        """CPU seconds others used since ``start`` (None when it cannot be told)."""
        busy = machine_busy_seconds()
        if busy is None or self.busy is None:
            return None
        return max(0.0, (busy - self.busy) - (self.own_cpu_seconds() - self.own))

    def quiet(self, others: float | None) -> bool:
        if others is None:
            return True
        return others <= self.SHARE * (time.perf_counter() - self.wall) + self.slack_seconds


class WindowedLoadMeter(LoadMeter):
    """A ``LoadMeter`` that counts only inside the ``window()`` blocks of a round — the timed
    samples, not the setup between them (a benchmark that starts a session, and its worker
    processes, for each sample). ``slack_seconds`` is allowed per window."""

    def start(self) -> None:
        self.others_total, self.wall_total, self.windows, self.known = 0.0, 0.0, 0, True

    @contextlib.contextmanager
    def window(self):
        LoadMeter.start(self)
        try:
            yield
        finally:
            others = LoadMeter.others_seconds(self)
            self.known = self.known and others is not None
            self.others_total += others or 0.0
            self.wall_total += time.perf_counter() - self.wall
            self.windows += 1

    def others_seconds(self) -> float | None:
        return self.others_total if self.known else None

    def quiet(self, others: float | None) -> bool:
        if others is None:
            return True
        return others <= self.SHARE * self.wall_total + self.slack_seconds * self.windows


@dataclasses.dataclass
class Rounds:
    """The samples of each variant from the rounds kept (the quiet ones, or every round when
    none was quiet), how many rounds were kept and tried, and others' CPU seconds per round."""

    samples: dict
    kept: int
    tried: int
    others_cpu_seconds: list

    def counts(self) -> dict:
        return {"quiet_rounds": self.kept, "rounds_tried": self.tried,
                "others_cpu_seconds_per_round": self.others_cpu_seconds}


def quiet_rounds(time_round, wanted: int, at_most: int, meter: LoadMeter | None = None) -> Rounds:
    """Call ``time_round()`` (one sample of every variant, as ``{name: sample}``, always in the
    same order so load from other processes falls on all of them alike) until ``wanted`` rounds
    were quiet by ``meter`` or ``at_most`` rounds ran."""
    meter = LoadMeter() if meter is None else meter
    quiet: dict = {}
    every: dict = {}
    others = []
    kept = 0
    while len(others) < at_most and kept < wanted:
        meter.start()
        one = time_round()
        others.append(meter.others_seconds())
        is_quiet = meter.quiet(others[-1])
        if is_quiet:
            kept += 1
        for name, sample in one.items():
            every.setdefault(name, []).append(sample)
            if is_quiet:
                quiet.setdefault(name, []).append(sample)
    return Rounds(quiet if kept else every, kept, len(others), others)
