"""The drift module on generator data: a seeded shift is flagged, plain traffic is not."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from churn import dataset
from churn.drift import (
    PSI_ALERT,
    SCORE_COLUMN,
    DriftMonitor,
    Reference,
    build_reference,
    psi,
    write_reference,
)
from churn.features import build_preprocessor, features
from churn.schema import FEATURE_COLUMNS, TARGET_COLUMN

WINDOW = 2000


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as the API's validator hands them on (int, float, None for a blank total)."""
    out = []
    for row in features(frame).to_dict("records"):
        total = row["TotalCharges"]
        row["TotalCharges"] = None if pd.isna(total) else float(total)
        row["tenure"] = int(row["tenure"])
        row["SeniorCitizen"] = int(row["SeniorCitizen"])
        row["MonthlyCharges"] = float(row["MonthlyCharges"])
        out.append(row)
    return out


@pytest.fixture(scope="module")
def trained() -> tuple[Pipeline, dict[str, Any]]:
    """A model fitted on generator data, and its reference built as the train stage does."""
    frame = dataset.to_typed(dataset.generate(n_rows=7043, seed=42))
    train, test = frame.iloc[:5600], frame.iloc[5600:]
    model = Pipeline([("pre", build_preprocessor()), ("clf", LogisticRegression(max_iter=1000))])
    model.fit(features(train), train[TARGET_COLUMN])
    inputs = features(train)
    scores = model.predict_proba(features(test))[:, 1]
    reference = build_reference("v1", {c: inputs[c].tolist() for c in inputs}, scores.tolist())
    return model, reference


def _serve(monitor: DriftMonitor, model: Pipeline, frame: pd.DataFrame) -> None:
    records = _records(frame)
    scores = model.predict_proba(pd.DataFrame(records)[list(FEATURE_COLUMNS)])[:, 1]
    for start in range(0, len(records), 50):  # in requests of 50, as a client would send
        monitor.observe("v1", records[start : start + 50], scores[start : start + 50].tolist())


def _shifted(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Tenure towards 0 and contracts towards month-to-month, for half the customers."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    moved = rng.random(len(out)) < 0.5
    out.loc[moved, "tenure"] = (out.loc[moved, "tenure"] * 0.2).round().astype(int)
    out.loc[moved, "Contract"] = "Month-to-month"
    out.loc[moved, "TotalCharges"] = out.loc[moved, "tenure"] * out.loc[moved, "MonthlyCharges"]
    return out


def test_the_reference_has_every_column_and_shares_summing_to_one(
    trained: tuple[Pipeline, dict[str, Any]],
) -> None:
    _, reference = trained
    assert list(reference["columns"]) == list(FEATURE_COLUMNS)
    for entry in [*reference["columns"].values(), reference["score"]]:
        assert sum(entry["shares"]) == pytest.approx(1.0, abs=1e-5)
    assert len(reference["score"]["edges"]) == 9  # deciles of distinct probabilities


def test_the_reference_bytes_are_the_same_for_the_same_data(
    trained: tuple[Pipeline, dict[str, Any]], tmp_path: Path
) -> None:
    _, reference = trained
    copy = json.loads(json.dumps(reference))
    first = write_reference(tmp_path / "a.json", reference).read_bytes()
    assert write_reference(tmp_path / "b.json", copy).read_bytes() == first
    assert Reference.load(tmp_path / "a.json").size > len(FEATURE_COLUMNS)


def test_a_seeded_shift_is_flagged_within_one_window(
    trained: tuple[Pipeline, dict[str, Any]],
) -> None:
    model, reference = trained
    monitor = DriftMonitor({"v1": Reference(reference)}, window_records=WINDOW)
    traffic = dataset.to_typed(dataset.generate(n_rows=WINDOW, seed=1001))
    _serve(monitor, model, _shifted(traffic, seed=7))
    window = monitor.snapshot("v1")["last_window"]
    assert window is not None and window["records"] == WINDOW
    values = {name: column["psi"] for name, column in window["columns"].items()}
    assert values["tenure"] > PSI_ALERT
    assert values["Contract"] > PSI_ALERT
    assert values[SCORE_COLUMN] > 0.1  # the shifted customers look riskier (0.22 measured)
    assert values["gender"] < 0.05  # an untouched column stays quiet


def test_ten_windows_of_generator_traffic_raise_no_alarm(
    trained: tuple[Pipeline, dict[str, Any]],
) -> None:
    model, reference = trained
    monitor = DriftMonitor({"v1": Reference(reference)}, window_records=WINDOW)
    worst = 0.0
    for window in range(10):
        traffic = dataset.to_typed(dataset.generate(n_rows=WINDOW, seed=2000 + window))
        _serve(monitor, model, traffic)
        snapshot = monitor.snapshot("v1")
        assert snapshot["windows_closed"] == window + 1
        worst = max(worst, *(c["psi"] for c in snapshot["last_window"]["columns"].values()))
    assert worst < PSI_ALERT / 2


def test_a_window_closes_by_time_only_once_it_holds_enough_records() -> None:
    reference = Reference(_tiny_reference())
    now = [1000.0]
    monitor = DriftMonitor(
        {"v1": reference},
        window_records=1000,
        window_seconds=60,
        min_records=3,
        clock=lambda: now[0],
    )
    record = _tiny_record()
    monitor.observe("v1", [record, record], [0.1, 0.2])
    now[0] += 120
    assert monitor.snapshot("v1")["last_window"] is None  # old, but only 2 records
    monitor.observe("v1", [record], [0.3])
    snapshot = monitor.snapshot("v1")
    assert snapshot["last_window"]["records"] == 3
    assert snapshot["current_window"]["records"] == 0


def test_counts_from_many_threads_add_up() -> None:
    monitor = DriftMonitor({"v1": Reference(_tiny_reference())}, window_records=10**9)
    record = _tiny_record()

    def serve() -> None:
        for _ in range(500):
            monitor.observe("v1", [record], [0.5])

    threads = [threading.Thread(target=serve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    current = monitor.snapshot("v1")["current_window"]
    assert current["records"] == 4000
    assert sum(current["columns"]["tenure"]["counts"]) == 4000


def test_psi_is_zero_for_the_reference_itself_and_grows_with_the_shift() -> None:
    shares = [0.25, 0.25, 0.5]
    assert psi(shares, [25, 25, 50]) == pytest.approx(0.0)
    assert 0 < psi(shares, [30, 25, 45]) < psi(shares, [60, 20, 20])
    assert psi(shares, [0, 0, 0]) == 0.0


def test_a_reference_missing_a_column_is_refused() -> None:
    document = _tiny_reference()
    del document["columns"]["tenure"]
    with pytest.raises(ValueError, match="tenure"):
        Reference(document)


def test_the_collector_exports_psi_per_column_and_the_score_histogram() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    monitor = DriftMonitor({"v1": Reference(_tiny_reference())}, window_records=2)
    registry = CollectorRegistry()
    registry.register(monitor)
    monitor.observe("v1", [_tiny_record(), _tiny_record()], [0.15, 0.95])
    text = generate_latest(registry).decode()
    assert 'churn_api_drift_psi{column="tenure",model="v1"}' in text
    assert f'churn_api_drift_psi{{column="{SCORE_COLUMN}",model="v1"}}' in text
    assert 'churn_api_drift_windows_total{model="v1"} 1.0' in text
    assert 'churn_api_churn_probability_bucket{le="0.2",model="v1"} 1.0' in text
    assert 'churn_api_churn_probability_bucket{le="+Inf",model="v1"} 2.0' in text


def test_the_monitor_exports_the_cpu_time_its_counting_took() -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    monitor = DriftMonitor({"v1": Reference(_tiny_reference())}, window_records=10_000)
    registry = CollectorRegistry()
    registry.register(monitor)

    def spent() -> float:
        text = generate_latest(registry).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return families["churn_api_drift_observe_cpu_seconds"].samples[0].value

    assert spent() == 0.0
    record = _tiny_record()
    for _ in range(200):
        monitor.observe("v1", [record], [0.5])
    after = spent()
    assert after > 0.0
    monitor.observe("v9", [record], [0.5])  # an unmonitored version costs nothing
    assert spent() == after


def _tiny_record() -> dict[str, object]:
    frame = dataset.to_typed(dataset.generate(n_rows=1, seed=3))
    return _records(frame)[0]


def _tiny_reference() -> dict[str, Any]:
    frame = features(dataset.to_typed(dataset.generate(n_rows=300, seed=5)))
    return build_reference(
        "v1", {c: frame[c].tolist() for c in frame}, np.linspace(0, 1, 300).tolist()
    )


def test_a_batch_is_counted_exactly_as_its_records_one_by_one() -> None:
    """The numpy path for batches gives the same bins as the per-record one, edges included."""
    reference = Reference(_tiny_reference())
    frame = dataset.to_typed(dataset.generate(n_rows=400, seed=11))
    records = _records(frame)
    records[0]["TotalCharges"] = None  # a missing value: its own bin
    tenure_edges = next(c.edges for c in reference.columns if c.name == "tenure")
    records[1]["tenure"] = int(tenure_edges[0]) if float(tenure_edges[0]).is_integer() else 0
    scores = np.linspace(0.0, 1.0, len(records)).tolist()  # 0.0, 1.0 and the edges themselves
    one_by_one = DriftMonitor({"v1": reference}, window_records=10_000)
    for record, score in zip(records, scores, strict=True):
        one_by_one.observe("v1", [record], [score])
    batched = DriftMonitor({"v1": reference}, window_records=10_000)
    batched.observe("v1", records, scores)
    assert batched._copies("v1")[3] == one_by_one._copies("v1")[3]  # the score histogram
    assert batched._copies("v1")[0].counts == one_by_one._copies("v1")[0].counts
