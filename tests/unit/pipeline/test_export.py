"""Export: the data-only model files, checked against scikit-learn before they are written."""

from __future__ import annotations

import hashlib
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from churn import dataset, export
from churn.model_record import sha256_bytes
from churn.serving.compiled import load_compiled
from churn.train import LINEAR_DECIMALS, settle

from .conftest import Trained

VERSIONS = ("v1", "v2")


def _export(trained: Trained, version: str, path: Path, model: object | None = None) -> bytes:
    paths = trained.paths
    return export.export(
        path,
        version,
        joblib.load(paths.preprocessor),
        joblib.load(paths.label_encoder),
        trained.models[version] if model is None else model,
        check=dataset.load_csv(paths.test_csv),
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_the_export_is_written_with_the_bytes_it_returns_and_is_stable(
    trained: Trained, tmp_path: Path, version: str
) -> None:
    first = _export(trained, version, tmp_path / "a.json")
    assert (tmp_path / "a.json").read_bytes() == first
    assert _export(trained, version, tmp_path / "b.json") == first
    assert sha256_bytes(first) == hashlib.sha256((tmp_path / "b.json").read_bytes()).hexdigest()


def test_an_export_that_does_not_reproduce_sklearn_is_refused_and_not_written(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export.compile_classifier

    def off_by_a_little(model: object, n_features: int) -> dict:
        data = real(model, n_features)
        data["intercept"] += 1e-6  # far below any metric, far above the 1e-9 allowed
        return data

    monkeypatch.setattr(export, "compile_classifier", off_by_a_little)
    target = tmp_path / "model_v1.compiled.json"
    with pytest.raises(export.ExportError, match=r"compiled v1 differs from scikit-learn by"):
        _export(trained, "v1", target)
    assert not target.exists()


def test_an_unknown_estimator_is_refused_with_a_clear_message(
    trained: Trained, tmp_path: Path
) -> None:
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0)
    forest.fit(trained.x_test, trained.y_test)
    with pytest.raises(export.ExportError, match="cannot export RandomForestClassifier"):
        _export(trained, "v3", tmp_path / "model_v3.compiled.json", model=forest)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_compiled_file_scores_like_sklearn_on_10000_rows(
    trained: Trained, tmp_path: Path, version: str
) -> None:
    data = _export(trained, version, tmp_path / "m.json")
    scorer = load_compiled(data, "m.json")
    pre = joblib.load(trained.paths.preprocessor)
    frame = dataset.to_typed(dataset.generate(10_000, seed=3))[list(pre.feature_names_in_)]
    expected = trained.models[version].predict_proba(pre.transform(frame))[:, 1]
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.astype(object).to_dict(orient="records")
    ]
    assert np.abs(scorer.proba(records) - expected).max() <= export.TOLERANCE


def test_the_linear_model_is_rounded_and_stays_its_own_reference(trained: Trained) -> None:
    v1 = trained.models["v1"]
    step = 10.0**-LINEAR_DECIMALS
    assert np.allclose(v1.coef_ / step, np.round(v1.coef_ / step), atol=1e-3)
    assert settle(v1) is v1  # rounding twice changes nothing
    assert np.array_equal(np.round(v1.coef_, LINEAR_DECIMALS), v1.coef_)
