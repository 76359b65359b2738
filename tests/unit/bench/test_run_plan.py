"""The bench's plan: which scenarios are repeated, and that nothing of its own disturbs them."""

from __future__ import annotations

from pathlib import Path

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


def test_only_picks_parts_and_the_skip_options_take_theirs_away() -> None:
    assert run._parse_args([]).parts == set(run.PARTS)
    assert run._parse_args(["--only", "mlflow,bentoml"]).parts == {"mlflow", "bentoml"}
    assert run._parse_args(["--only", "mlflow, bentoml", "--skip-bentoml"]).parts == {"mlflow"}
    assert "docker" not in run._parse_args(["--skip-docker"]).parts
    for wrong in ("mlflow,gunicorn", ","):
        with pytest.raises(SystemExit) as refused:
            run._parse_args(["--only", wrong])
        assert refused.value.code == 2
    args = run._parse_args(["--only", "bentoml", "--skip-mlflow"])
    assert run._not_selected("mlflow", args) == "skipped (--skip-mlflow)"
    assert run._not_selected("api", args) == "not selected (--only bentoml)"


def test_both_comparisons_get_the_same_body_and_the_same_workers() -> None:
    by_name = {scenario.name: scenario for scenario in run._scenarios([_record()])}
    mlflow, bentoml = by_name["mlflow_v2"], by_name["bentoml_v2"]
    assert (mlflow.server, bentoml.server) == ("mlflow", "bentoml")
    assert mlflow.body == bentoml.body and mlflow.body is not None
    assert bentoml.connections is None and mlflow.connections is None  # the suite's load
    assert run._parse_args([]).comparison_workers == 1
    assert run._parse_args(["--comparison-workers", "2"]).comparison_workers == 2
    with pytest.raises(SystemExit):
        run._parse_args(["--comparison-workers", "0"])


def test_the_model_check_keeps_each_comparison_s_probability() -> None:
    same = {"api_v2": 0.3, "theirs": 0.3, "abs_diff": 0.0}
    check = run._model_check({"mlflow": {"same_model": same}, "bentoml": {"error": "offline"}})
    assert check == {"api_v2": 0.3, "mlflow": 0.3, "abs_diff": 0.0}
    check = run._model_check({"mlflow": None, "bentoml": {"same_model": same}})
    assert check == {"api_v2": 0.3, "bentoml": 0.3, "bentoml_abs_diff": 0.0}
    assert run._model_check({"mlflow": None, "bentoml": None}) is None


def _record() -> dict[str, object]:
    from churn.api.openapi import EXAMPLE_CUSTOMER

    return dict(EXAMPLE_CUSTOMER)


def test_bentoml_is_not_measured_with_the_reason_when_its_venv_cannot_be_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import bento_serve

    from .conftest import write_pickles

    write_pickles(tmp_path)

    def offline(root: Path, log_file: Path) -> bento_serve.BentoEnv:
        raise bento_serve.BentoServeError("cannot install requirements/bentoml.lock (offline?)")

    monkeypatch.setattr(bento_serve, "ensure_env", offline)
    args = run._parse_args(["--root", str(tmp_path), "--only", "bentoml"])
    scenario = next(s for s in run._scenarios([_record()]) if s.server == "bentoml")
    entry, facts = run._bentoml_scenario(scenario, tmp_path, args, [_record()])
    assert entry["result"] is None and "offline?" in entry["error"]
    assert facts == {"workers": 1, "error": entry["error"]}
