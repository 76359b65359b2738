"""The compiled preprocessor and scorers, checked piece by piece against scikit-learn."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from churn.config import ArtifactPaths
from churn.export import ExportError, compile_classifier, compile_preprocessor
from churn.schema import FEATURE_COLUMNS
from churn.serving import scorers
from churn.serving.artifacts import ArtifactError
from churn.serving.compiled import FORMAT, FORMAT_VERSION, load_compiled
from churn.serving.encoding import CompiledPreprocessor
from churn.serving.scorers import Scorer, TreeEnsembleScorer

TOLERANCE = 1e-9


def compile_model(model: object, pre: CompiledPreprocessor, positive_column: int) -> Scorer:
    """Export ``model`` as the pipeline does and load it back as the API does."""
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": "test",
        "positive_column": positive_column,
        "preprocessor": {
            "numeric_columns": list(pre.numeric_columns),
            "fill": pre.fill.tolist(),
            "mean": pre.mean.tolist(),
            "scale": pre.scale.tolist(),
            "categorical_columns": list(pre.categorical_columns),
            "categories": [list(c) for c in pre.categories],
        },
        "model": compile_classifier(model, pre.n_features),
    }
    return load_compiled(json.dumps(document).encode(), "test.compiled.json")


def frame_of(records: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=list(FEATURE_COLUMNS))
    frame["TotalCharges"] = frame["TotalCharges"].astype("float64")
    return frame


@pytest.fixture(scope="module")
def fitted(artifact_root: Path) -> dict[str, object]:
    processed = artifact_root / "data" / "processed"
    return {
        "preprocessor": joblib.load(processed / "preprocessor.pkl"),
        "v1": joblib.load(ArtifactPaths(artifact_root).model("v1")),
        "v2": joblib.load(ArtifactPaths(artifact_root).model("v2")),
        "train": pd.read_csv(processed / "train.csv"),
    }


@pytest.fixture(scope="module")
def compiled(fitted) -> CompiledPreprocessor:
    return CompiledPreprocessor(**compile_preprocessor(fitted["preprocessor"]))


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
    ],
    ids=["hgb-over-64-leaves", "hgb-stumps", "lr-strong-penalty"],
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


def test_an_estimator_the_compiler_does_not_know_is_refused_at_export(train_xy) -> None:
    model = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(*train_xy)
    with pytest.raises(ExportError, match="cannot export RandomForestClassifier: the serving"):
        compile_classifier(model, train_xy[0].shape[1])


def test_an_ensemble_too_large_to_tabulate_is_refused(monkeypatch, fitted, compiled) -> None:
    monkeypatch.setattr(scorers, "MAX_COMPILED_BYTES", 1000)
    with pytest.raises(ArtifactError, match="exceed MAX_COMPILED_BYTES"):
        compile_model(fitted["v2"], compiled, 1)


def test_concurrent_callers_get_their_own_answers(artifact_root: Path, make_records) -> None:
    from churn.serving.prediction import ServingModels

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
    from churn.serving.prediction import ServingModels

    models = ServingModels.load(artifact_root)
    records = make_records(5, seed=1)
    tagged = [{"customerID": f"id-{i}", **r} for i, r in enumerate(records)]
    for version in models.versions:
        np.testing.assert_array_equal(
            models.predict_proba(version, records), models.predict_proba(version, tagged)
        )


def test_an_unsupported_preprocessor_is_refused_at_export(fitted) -> None:
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(ExportError, match="cannot export the preprocessor: expected a fitted"):
        compile_preprocessor(StandardScaler())
    preprocessor = fitted["preprocessor"]
    encoder = preprocessor.named_transformers_["cat"]
    original = encoder.handle_unknown
    encoder.handle_unknown = "error"
    try:
        with pytest.raises(ExportError, match="handle_unknown='error'"):
            compile_preprocessor(preprocessor)
    finally:
        encoder.handle_unknown = original
