"""The drift report: HTML with a plot per column, and a run in MLflow's churn-monitoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from churn import dataset
from churn.drift import DriftMonitor, Reference, build_reference
from churn.drift_report import EXPERIMENT, log_to_mlflow, render
from churn.features import features
from churn.schema import FEATURE_COLUMNS


@pytest.fixture(scope="module")
def snapshot() -> dict:
    frame = features(dataset.to_typed(dataset.generate(n_rows=600, seed=5)))
    columns = {c: frame[c].tolist() for c in frame}
    reference = build_reference("v2", columns, np.linspace(0, 1, 600).tolist())
    monitor = DriftMonitor({"v2": Reference(reference)}, window_records=300)
    served = features(dataset.to_typed(dataset.generate(n_rows=300, seed=6)))
    served["Contract"] = "Month-to-month"  # every customer on a monthly contract
    records = served.to_dict("records")
    for record in records:
        total = record["TotalCharges"]
        record["TotalCharges"] = None if np.isnan(total) else float(total)
    monitor.observe("v2", records, np.linspace(0, 1, 300).tolist())
    return monitor.snapshot("v2")


def test_the_report_plots_every_column_and_names_the_drifted_ones(snapshot: dict) -> None:
    page, values = render(snapshot)
    assert set(values) == {*FEATURE_COLUMNS, "churn_probability"}
    assert values["Contract"] > 0.2 > values["gender"]
    assert "<svg" in page and "last closed window: 300 records" in page
    assert "Drift above 0.2 in: Contract" in page
    assert page.count("PSI ") >= len(FEATURE_COLUMNS)  # one panel title per column


def test_no_closed_window_is_refused_unless_the_open_one_is_asked_for(snapshot: dict) -> None:
    empty = {**snapshot, "last_window": None}
    with pytest.raises(ValueError, match="no drift window has closed"):
        render(empty, "last")
    page, values = render(empty, "current")
    assert "open window: 0 records" in page and values == {}


@pytest.mark.slow
def test_the_report_is_logged_to_the_monitoring_experiment(
    snapshot: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    page, values = render(snapshot)
    report = tmp_path / "drift_v2.html"
    report.write_text(page, encoding="utf-8")
    run_id = log_to_mlflow(tmp_path, report, snapshot, values, "http://api.invalid")
    run = mlflow.get_run(run_id)
    assert mlflow.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.metrics["psi_Contract"] == pytest.approx(values["Contract"])
    assert run.data.tags["drifted"] == "true"
    artifacts = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "a"))
    assert (Path(artifacts) / "drift_v2.html").read_text(encoding="utf-8") == page
