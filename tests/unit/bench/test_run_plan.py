"""The bench's plan: which scenarios are repeated, and that nothing of its own disturbs them."""

from __future__ import annotations

import pytest
from benchmarks import run
from benchmarks.report import TARGETS


def test_the_judged_scenarios_are_repeated_and_never_share_the_cpu_with_docker_stats() -> None:
    names = {scenario.name for scenario in run._scenarios([_record()])}
    assert run.REPEATED.issubset(names) and set(run.MEMORY_SAMPLED).issubset(names)
    assert {"health", "predict_v1", "predict_v2"} <= run.REPEATED  # ratios and p99 targets
    assert not run.REPEATED & set(run.MEMORY_SAMPLED)
    assert "predict_p99_ms" in TARGETS


def test_repeat_must_be_at_least_one() -> None:
    assert run._parse_args(["--repeat", "2"]).repeat == 2
    assert run._parse_args([]).repeat == 3
    with pytest.raises(SystemExit) as refused:
        run._parse_args(["--repeat", "0"])
    assert refused.value.code == 2


def _record() -> dict[str, object]:
    from churn.api.openapi import EXAMPLE_CUSTOMER

    return dict(EXAMPLE_CUSTOMER)
