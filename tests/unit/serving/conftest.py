"""Fixtures for the serving-core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="package")
def _one_openmp_thread() -> Iterator[None]:
    """Run scikit-learn's references single-threaded: on a busy 2-core machine OpenMP's
    spinning threads make HistGradientBoosting fit and predict several times slower."""
    with threadpool_limits(1):
        yield
