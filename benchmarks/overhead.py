"""Executor overhead: cost per op of a 1,000-op chain of tiny adds, and the cost of one
``Session.run`` of a trivial graph with one feed, against a plain-Python floor measured in the
same run (a loop of precomputed calls of the same numpy function).

    python benchmarks/overhead.py
"""

from __future__ import annotations

import numpy as np

import tensorweave as tw
from benchmarks.common import best_of, print_table, write_json

CHAIN = 1000


def chain_graph():
    graph = tw.Graph()
    with graph.as_default():
        x = tw.placeholder(tw.float32, [4], name="x")
        c = tw.constant(np.ones(4, np.float32))
        y = x
        for _ in range(CHAIN):
            y = tw.add(y, c)
    return graph, x, y


def measure():
    a = np.zeros(4, np.float32)
    b = np.ones(4, np.float32)
    calls = [np.add] * CHAIN

    def floor():
        v = a
        for f in calls:
            v = f(v, b)
        return v

    floor_s = best_of(floor, repeats=7, number=20) / CHAIN

    graph, x, y = chain_graph()
    feed = {x: a}
    results = {}
    for label, threads in (("sequential", 1), ("auto", 0)):
        sess = tw.Session(graph=graph, config=tw.ConfigProto(inter_op_parallelism_threads=threads))
        sess.run(y, feed)
        results[label] = best_of(lambda: sess.run(y, feed), repeats=7, number=20) / CHAIN
        sess.close()

    small = tw.Graph()
    with small.as_default():
        p = tw.placeholder(tw.float32, [4], name="p")
        q = tw.add(p, 1.0)
        r = tw.add(tw.constant(1.0), 1.0)
    sess = tw.Session(graph=small)
    sess.run(q, {p: a})
    sess.run(r)
    run_feed = best_of(lambda: sess.run(q, {p: a}), repeats=7, number=2000)
    run_nofeed = best_of(lambda: sess.run(r), repeats=7, number=2000)
    one_add = best_of(lambda: np.add(a, 1.0), repeats=7, number=2000)
    sess.close()
    return floor_s, results, run_feed, run_nofeed, one_add


def main():
    floor_s, chain, run_feed, run_nofeed, one_add = measure()
    rows = [
        ["plain-Python floor (np.add loop)", floor_s * 1e6, 1.0],
        ["tensorweave per op, sequential", chain["sequential"] * 1e6,
         chain["sequential"] / floor_s],
        ["tensorweave per op, default config", chain["auto"] * 1e6, chain["auto"] / floor_s],
    ]
    print_table("Per-op cost of a 1,000-op chain of tiny adds (us)",
                ["what", "us per op", "x floor"], rows)
    rows2 = [
        ["one np.add of the same data", one_add * 1e6, 1.0],
        ["Session.run, one feed", run_feed * 1e6, run_feed / one_add],
        ["Session.run, no feed", run_nofeed * 1e6, run_nofeed / one_add],
    ]
    print_table("Cost of one Session.run of a trivial graph (us)", ["what", "us", "x np.add"],
                rows2)
    print("\nGoals: per op within 2x of the floor; Session.run with one feed under 90 us "
          "(TF1's C++ session, measured on this machine class).")
    write_json("overhead", {
        "floor_us_per_op": floor_s * 1e6,
        "per_op_us": {k: v * 1e6 for k, v in chain.items()},
        "per_op_ratio_to_floor": {k: v / floor_s for k, v in chain.items()},
        "session_run_one_feed_us": run_feed * 1e6,
        "session_run_no_feed_us": run_nofeed * 1e6,
    })


if __name__ == "__main__":
    main()
