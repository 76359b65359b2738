"""The params loader: the committed file parses; bad values fail naming their key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from churn.config import ArtifactPaths, ParamsError, load_params, parse_params

from .conftest import PARAMS_FILE


@pytest.fixture
def raw() -> dict[str, Any]:
    return yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))


def test_committed_params_describe_both_versions() -> None:
    params = load_params(PARAMS_FILE)
    assert params.data.source == ""
    assert params.data.n_rows > 0
    assert list(params.models) == ["v1", "v2"]
    assert params.model("v1").algorithm == "LogisticRegression"
    assert params.model("v2").algorithm == "HistGradientBoostingClassifier"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (("data", "n_rows"), "many", "data.n_rows: expected an integer"),
        (("data", "source"), 3, "data.source: expected a path"),
        (("split", "test_size"), 1.5, "split.test_size: 1.5 must be between 0 and 1"),
        (("models", "v2", "algorithm"), "XGBoost", "models.v2.algorithm: 'XGBoost' is not"),
        (("models",), {}, "models: at least one model version"),
    ],
)
def test_bad_values_name_their_key(
    raw: dict[str, Any], key: tuple[str, ...], value: Any, message: str
) -> None:
    broken = copy.deepcopy(raw)
    target = broken
    for part in key[:-1]:
        target = target[part]
    target[key[-1]] = value
    with pytest.raises(ParamsError, match=message):
        parse_params(broken)


def test_unknown_version_and_missing_file_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="no model version 'v9'"):
        load_params(PARAMS_FILE).model("v9")
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "nope.yaml")


def test_artifact_paths_follow_the_architecture_document(tmp_path: Path) -> None:
    paths = ArtifactPaths(tmp_path)
    rel = paths.relative
    assert rel(paths.raw_csv) == "data/raw/telco_churn.csv"
    assert rel(paths.train_csv) == "data/processed/train.csv"
    assert rel(paths.test_csv) == "data/processed/test.csv"
    assert rel(paths.preprocessor) == "data/processed/preprocessor.pkl"
    assert rel(paths.label_encoder) == "data/processed/label_encoder.pkl"
    assert rel(paths.model("v1")) == "models/model_v1.pkl"
    assert rel(paths.metadata("v2")) == "models/model_v2.json"
    assert rel(paths.metrics) == "models/metrics.json"
