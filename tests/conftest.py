"""Shared fixtures."""

import pytest

import tensorweave as tw


@pytest.fixture
def graph():
    """A fresh graph, made the default for the test."""
    g = tw.Graph()
    with g.as_default():
        yield g
