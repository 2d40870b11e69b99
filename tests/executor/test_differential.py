"""Differential: the Session (both runners) equals the reference interpreter, bitwise."""

import numpy as np
from hypothesis import HealthCheck, given, settings

import tensorweave as tw
from tensorweave.executor import reference
from tensorweave.executor.context import StepContext, VariableStore
from tensorweave.executor.local import DataflowProgram
from tests.graphgen import random_graphs

import concurrent.futures as cf

_POOL = cf.ThreadPoolExecutor(max_workers=2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_session_equals_reference_interpreter(sample):
    graph, _, feeds, fetches = sample
    want = reference.evaluate(fetches, feeds)
    with tw.Session(graph=graph) as sess:
        got = sess.run(fetches, feeds)
        step = sess._compiled_steps()[0]
        dataflow = DataflowProgram(step.schedule, _POOL)
        got_dataflow = dataflow.run(StepContext(VariableStore(), 1),
                                    [feeds[t] for t in step.feeds])
    for w, g, d in zip(want, got, got_dataflow):
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(d, w)
        assert np.asarray(g).dtype == np.asarray(w).dtype
