"""Features: the split, the fitted preprocessor (unseen categories, blank TotalCharges)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder

from churn import dataset
from churn.config import ArtifactPaths, ModelFiles
from churn.features import build_preprocessor, features
from churn.schema import CATEGORICAL, CATEGORICAL_FEATURES, NUMERIC_FEATURES

from .conftest import Trained


def _test_rows(prepared: ArtifactPaths, n: int = 20) -> pd.DataFrame:
    return features(dataset.load_csv(prepared.test_csv)).head(n).reset_index(drop=True)


def test_preprocessor_is_the_documented_column_transformer() -> None:
    pre = build_preprocessor()
    assert isinstance(pre, ColumnTransformer)
    (num_name, num, num_cols), (cat_name, cat, cat_cols) = pre.transformers
    assert (num_name, num_cols) == ("num", list(NUMERIC_FEATURES))
    assert [name for name, _ in num.steps] == ["impute", "scale"]
    assert num.named_steps["impute"].strategy == "median"
    assert (cat_name, cat_cols) == ("cat", list(CATEGORICAL_FEATURES))
    assert isinstance(cat, OneHotEncoder)
    assert cat.handle_unknown == "ignore"
    assert cat.sparse_output is False


def test_fitted_preprocessor_outputs_a_dense_float_array(prepared: ArtifactPaths) -> None:
    pre = joblib.load(prepared.preprocessor)
    out = pre.transform(_test_rows(prepared))
    n_onehot = sum(len(v) for v in CATEGORICAL.values())
    assert isinstance(out, np.ndarray)
    assert out.shape == (20, len(NUMERIC_FEATURES) + n_onehot)
    assert out.dtype == np.float64


def test_unseen_categories_encode_as_zeros_without_error(prepared: ArtifactPaths) -> None:
    pre = joblib.load(prepared.preprocessor)
    rows = _test_rows(prepared, 3)
    unseen = rows.copy()
    unseen["Contract"] = "Three year"
    unseen["PaymentMethod"] = "Bitcoin"
    names = list(pre.get_feature_names_out())
    known, strange = pre.transform(rows), pre.transform(unseen)
    contract = [i for i, n in enumerate(names) if n.startswith("cat__Contract_")]
    payment = [i for i, n in enumerate(names) if n.startswith("cat__PaymentMethod_")]
    assert (known[:, contract].sum(axis=1) == 1).all()
    assert (strange[:, contract] == 0).all()
    assert (strange[:, payment] == 0).all()
    others = [i for i in range(len(names)) if i not in contract + payment]
    np.testing.assert_array_equal(strange[:, others], known[:, others])


def test_blank_total_charges_get_the_training_median(prepared: ArtifactPaths) -> None:
    pre = joblib.load(prepared.preprocessor)
    train = dataset.load_csv(prepared.train_csv)
    assert train["TotalCharges"].isna().any()  # the blanks of tenure-0 customers
    rows = _test_rows(prepared, 2)
    rows.loc[0, "TotalCharges"] = np.nan
    out = pre.transform(rows)
    assert np.isfinite(out).all()
    col = list(pre.get_feature_names_out()).index("num__TotalCharges")
    scaler = pre.named_transformers_["num"].named_steps["scale"]
    median = train["TotalCharges"].median()
    expected = (median - scaler.mean_[NUMERIC_FEATURES.index("TotalCharges")]) / scaler.scale_[
        NUMERIC_FEATURES.index("TotalCharges")
    ]
    assert out[0, col] == pytest.approx(expected, rel=1e-12)


def test_split_is_stratified_disjoint_and_complete(prepared: ArtifactPaths) -> None:
    raw = dataset.read_raw(prepared.raw_csv)
    train, test = dataset.read_raw(prepared.train_csv), dataset.read_raw(prepared.test_csv)
    assert len(train) + len(test) == len(raw)
    assert set(train["customerID"]).isdisjoint(test["customerID"])
    assert abs(len(test) / len(raw) - 0.2) < 0.001
    rates = [(f["Churn"] == "Yes").mean() for f in (raw, train, test)]
    assert max(rates) - min(rates) < 0.005
    # The split keeps the raw file's spellings (e.g. the blank TotalCharges " ").
    blanks = (raw["TotalCharges"] == " ").sum()
    assert (train["TotalCharges"] == " ").sum() + (test["TotalCharges"] == " ").sum() == blanks


def test_label_encoder_maps_no_to_0_and_yes_to_1(prepared: ArtifactPaths) -> None:
    encoder = joblib.load(prepared.label_encoder)
    assert encoder.classes_.tolist() == ["No", "Yes"]
    assert encoder.transform(["No", "Yes"]).tolist() == [0, 1]


def test_artifacts_unpickle_and_work_without_pandas(trained: Trained, tmp_path: Path) -> None:
    """The API image has no pandas: the pickles must hold only numpy and Python objects."""
    prepared = trained.paths
    model_files = {}
    for version, model in trained.models.items():
        model_files[version] = str(ModelFiles(tmp_path).model(version))
        joblib.dump(model, model_files[version])
    script = textwrap.dedent(
        f"""
        import sys

        class NoPandas:
            def find_spec(self, name, path=None, target=None):
                if name == "pandas" or name.startswith("pandas."):
                    raise ImportError("pandas is not installed here")

        sys.meta_path.insert(0, NoPandas())
        import joblib
        import numpy as np

        pre = joblib.load({str(prepared.preprocessor)!r})
        enc = joblib.load({str(prepared.label_encoder)!r})
        cat = pre.named_transformers_["cat"]
        num = pre.named_transformers_["num"]
        assert all(c.dtype == object for c in cat.categories_)
        assert all(type(v) is str for c in cat.categories_ for v in c)
        assert type(enc.classes_[0]) is str
        assert np.isfinite(num.named_steps["impute"].statistics_).all()
        width = len(pre.get_feature_names_out())
        for path in {list(model_files.values())!r}:
            proba = joblib.load(path).predict_proba(np.zeros((2, width)))
            assert proba.shape == (2, 2), proba.shape
        assert "pandas" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
