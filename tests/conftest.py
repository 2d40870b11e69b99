"""Shared fixtures, and the hypothesis profile of CI runs."""

import os

import pytest
from hypothesis import settings

import tensorweave as tw

# Generated graphs explore new cases on every local run; CI (TENSORWEAVE_TEST_PROFILE=ci, set by
# .ci/run) runs the cases of a fixed seed, so a landing is decided by the change, not by which
# cases a random seed drew. Loaded here, before the test modules build their own settings.
settings.register_profile("ci", derandomize=True)
if os.environ.get("TENSORWEAVE_TEST_PROFILE") == "ci":
    settings.load_profile("ci")


@pytest.fixture
def graph():
    """A fresh graph, made the default for the test."""
    g = tw.Graph()
    with g.as_default():
        yield g
