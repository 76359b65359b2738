"""The compiled preprocessor and scorers, checked piece by piece against scikit-learn."""

from __future__ import annotations

import threading
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from churn.schema import FEATURE_COLUMNS
from churn.serving import scorers
from churn.serving.artifacts import ArtifactError
from churn.serving.features import CompiledPreprocessor
from churn.serving.scorers import TreeEnsembleScorer, compile_model

TOLERANCE = 1e-9


def frame_of(records: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=list(FEATURE_COLUMNS))
    frame["TotalCharges"] = frame["TotalCharges"].astype("float64")
    return frame


@pytest.fixture(scope="module")
def fitted(artifact_root: Path) -> dict[str, object]:
    processed = artifact_root / "data" / "processed"
    return {
        "preprocessor": joblib.load(processed / "preprocessor.pkl"),
        "v1": joblib.load(artifact_root / "models" / "model_v1.pkl"),
        "v2": joblib.load(artifact_root / "models" / "model_v2.pkl"),
        "train": pd.read_csv(processed / "train.csv"),
    }


@pytest.fixture(scope="module")
def compiled(fitted) -> CompiledPreprocessor:
    return CompiledPreprocessor.from_fitted(fitted["preprocessor"], Path("preprocessor.pkl"))


@pytest.fixture(scope="module")
def train_xy(fitted) -> tuple[np.ndarray, np.ndarray]:
    train = fitted["train"]
    x = fitted["preprocessor"].transform(train[list(FEATURE_COLUMNS)])
    return x, (train["Churn"] == "Yes").to_numpy().astype(int)


def test_compiled_preprocessor_output_is_identical_to_transform(
    fitted, compiled: CompiledPreprocessor, make_records
) -> None:
    records = make_records(5000, seed=21, null_total_rate=0.2, unseen_rate=0.05)
    expected = fitted["preprocessor"].transform(frame_of(records))
    got = compiled.transform(records)
    assert got.shape == expected.shape == (5000, compiled.n_features)
    np.testing.assert_array_equal(got, expected)  # bit for bit, not just close


def test_nan_total_charges_is_treated_like_none(compiled: CompiledPreprocessor, make_records):
    records = make_records(3, seed=5)
    as_none = [{**r, "TotalCharges": None} for r in records]
    as_nan = [{**r, "TotalCharges": float("nan")} for r in records]
    np.testing.assert_array_equal(compiled.transform(as_none), compiled.transform(as_nan))


def _sklearn_proba(model, fitted, records) -> np.ndarray:
    return model.predict_proba(fitted["preprocessor"].transform(frame_of(records)))[:, 1]


@pytest.mark.parametrize(
    ("model", "engine"),
    [
        (
            HistGradientBoostingClassifier(max_iter=8, max_leaf_nodes=120, min_samples_leaf=4),
            "numpy-trees",
        ),
        (HistGradientBoostingClassifier(max_iter=30, max_depth=1), "numpy-trees"),
        (LogisticRegression(C=0.05, max_iter=500), "numpy-linear"),
        (RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0), "sklearn-estimator"),
    ],
    ids=["hgb-over-64-leaves", "hgb-stumps", "lr-strong-penalty", "random-forest-fallback"],
)
def test_other_fitted_models_compile_exactly(
    model, engine: str, fitted, compiled, train_xy, make_records
) -> None:
    model.fit(*train_xy)
    scorer = compile_model(model, compiled, 1)
    assert scorer.engine == engine
    if model.__class__ is HistGradientBoostingClassifier and model.max_leaf_nodes == 120:
        assert max(p[0].get_n_leaf_nodes() for p in model._predictors) > 64
        assert scorer.words == 2
    records = make_records(2000, seed=8, null_total_rate=0.1, unseen_rate=0.03)
    expected = _sklearn_proba(model, fitted, records)
    assert np.abs(scorer.proba(records) - expected).max() <= TOLERANCE
    singles = np.array([scorer.proba([r])[0] for r in records[:50]])
    assert np.abs(singles - expected[:50]).max() <= TOLERANCE


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_positive_class_in_column_zero_gives_the_complement(
    version: str, fitted, compiled, make_records
) -> None:
    model = fitted[version]
    records = make_records(100, seed=9)
    column_one = compile_model(model, compiled, 1)
    column_zero = compile_model(model, compiled, 0)
    expected = model.predict_proba(fitted["preprocessor"].transform(frame_of(records)))[:, 0]
    assert np.abs(column_zero.proba(records) - expected).max() <= TOLERANCE
    assert np.abs(column_zero.proba(records[:1]) - expected[:1]).max() <= TOLERANCE
    assert np.abs(column_one.proba(records) + column_zero.proba(records) - 1).max() <= 1e-12


def test_tree_tables_route_nan_like_the_estimator(fitted, compiled, train_xy) -> None:
    x, y = train_xy
    rng = np.random.default_rng(3)
    with_gaps = x.copy()
    with_gaps[rng.random(x.shape) < 0.1] = np.nan  # learned missing-value directions
    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(with_gaps, y)
    scorer = compile_model(model, compiled, 1)
    assert isinstance(scorer, TreeEnsembleScorer)
    directions = np.concatenate([p[0].nodes["missing_go_to_left"] for p in model._predictors])
    assert 0 < directions.mean() < 1  # both directions occur
    probe = x[:3000].copy()
    probe[rng.random(probe.shape) < 0.2] = np.nan
    expected = model._raw_predict(probe).ravel()
    assert np.abs(scorer.raw_predict(probe) - expected).max() <= TOLERANCE
    # The shipped v2 model too, on its own (never-NaN-trained) directions.
    v2 = compile_model(fitted["v2"], compiled, 1)
    assert (
        np.abs(v2.raw_predict(probe) - fitted["v2"]._raw_predict(probe).ravel()).max() <= TOLERANCE
    )


@pytest.mark.parametrize("group_rows", [1, 16, 4096])
def test_column_grouping_does_not_change_results(
    group_rows: int, monkeypatch, fitted, compiled, make_records
) -> None:
    monkeypatch.setattr(scorers, "MAX_GROUP_ROWS", group_rows)
    scorer = compile_model(fitted["v2"], compiled, 1)
    records = make_records(500, seed=12, unseen_rate=0.05)
    expected = _sklearn_proba(fitted["v2"], fitted, records)
    assert np.abs(scorer.proba(records) - expected).max() <= TOLERANCE
    if group_rows == 1:
        assert all(len(g) == 1 for g in scorer._groups)


def test_an_ensemble_too_large_to_tabulate_is_left_to_the_estimator(
    monkeypatch, fitted, compiled, make_records
) -> None:
    monkeypatch.setattr(scorers, "MAX_COMPILED_BYTES", 1000)
    scorer = compile_model(fitted["v2"], compiled, 1)
    assert scorer.engine == "sklearn-estimator"
    records = make_records(300, seed=13, unseen_rate=0.05)
    expected = _sklearn_proba(fitted["v2"], fitted, records)
    assert np.abs(scorer.proba(records) - expected).max() <= TOLERANCE


@pytest.mark.parametrize("size", [2, 31, 32, 33, 700])
def test_every_batch_size_path_agrees(size: int, fitted, compiled, make_records) -> None:
    scorer = compile_model(fitted["v2"], compiled, 1)
    records = make_records(size, seed=size)
    expected = _sklearn_proba(fitted["v2"], fitted, records)
    assert np.abs(scorer.proba(records) - expected).max() <= TOLERANCE


def test_concurrent_callers_get_their_own_answers(artifact_root: Path, make_records) -> None:
    from churn.predict import ServingModels

    models = ServingModels.load(artifact_root)
    batches = [make_records(n, seed=100 + n) for n in (1, 2, 40, 300) * 4]
    expected = [models.predict_proba(v, b) for v in ("v1", "v2") for b in batches]
    got: list[np.ndarray | None] = [None] * len(expected)

    def work(k: int) -> None:
        version, batch = ("v1", "v2")[k // len(batches)], batches[k % len(batches)]
        for _ in range(20):
            got[k] = models.predict_proba(version, batch)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(expected))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)


def test_records_may_carry_extra_keys(artifact_root: Path, make_records) -> None:
    from churn.predict import ServingModels

    models = ServingModels.load(artifact_root)
    records = make_records(5, seed=1)
    tagged = [{"customerID": f"id-{i}", **r} for i, r in enumerate(records)]
    for version in models.versions:
        np.testing.assert_array_equal(
            models.predict_proba(version, records), models.predict_proba(version, tagged)
        )


def test_an_unsupported_preprocessor_is_rejected_by_name(fitted) -> None:
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(ArtifactError, match=r"pre\.pkl: wrong type \(unsupported preprocessor"):
        CompiledPreprocessor.from_fitted(StandardScaler(), Path("pre.pkl"))
    preprocessor = fitted["preprocessor"]
    encoder = preprocessor.named_transformers_["cat"]
    original = encoder.handle_unknown
    encoder.handle_unknown = "error"
    try:
        with pytest.raises(ArtifactError, match="handle_unknown='error'"):
            CompiledPreprocessor.from_fitted(preprocessor, Path("pre.pkl"))
    finally:
        encoder.handle_unknown = original
