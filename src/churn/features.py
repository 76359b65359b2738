"""Features: the stratified split and the fitted preprocessing (imputation, scaling, one-hot).

The ``prepare`` stage of the pipeline: read the raw CSV (schema-checked), split it, fit the
preprocessor and the label encoder on the training part, and write them as joblib files.
The fitted objects hold only numpy arrays and Python scalars, so they unpickle where pandas is
not installed (the API image), and the API can compile them into plain numpy.
"""

from __future__ import annotations

import logging

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler

from churn import dataset
from churn.config import ArtifactPaths, SplitParams
from churn.schema import (
    CATEGORICAL_FEATURES,
    FEATURE_COLUMNS,
    NUMERIC_FEATURES,
    TARGET_CLASSES,
    TARGET_COLUMN,
)

log = logging.getLogger(__name__)


def build_preprocessor() -> ColumnTransformer:
    """Return the unfitted preprocessor: median-impute and scale numbers, one-hot categories.

    Unseen categories encode as all zeros; a blank ``TotalCharges`` (NaN) gets the training
    median. Input: a DataFrame with the 19 feature columns, ``TotalCharges`` as float.
    """
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer(
        [
            ("num", numeric, list(NUMERIC_FEATURES)),
            ("cat", categorical, list(CATEGORICAL_FEATURES)),
        ]
    )


def features(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the 19 model inputs of a typed frame (see `churn.dataset.to_typed`), in order."""
    return frame[list(FEATURE_COLUMNS)]


def fit_label_encoder(labels: pd.Series) -> LabelEncoder:
    """Fit the encoder of ``Churn`` (``No`` -> 0, ``Yes`` -> 1); both classes must occur."""
    values = np.asarray(labels, dtype=object)  # plain str objects: no pandas in the pickle
    found = sorted(set(values))
    if found != sorted(TARGET_CLASSES):
        raise ValueError(f"{TARGET_COLUMN}: expected both classes {TARGET_CLASSES}, found {found}")
    return LabelEncoder().fit(values)


def split(raw: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a checked frame into train and test parts, stratified on ``Churn``."""
    train, test = train_test_split(
        raw,
        test_size=params.test_size,
        random_state=params.seed,
        stratify=raw[TARGET_COLUMN],
    )
    return train, test


def prepare(paths: ArtifactPaths, params: SplitParams) -> None:
    """Run the ``prepare`` stage: split the raw CSV, fit and save the preprocessing.

    The split files keep the raw CSV's spellings (they are that file's rows); the preprocessor
    and label encoder are fitted on the training part only.
    """
    raw = dataset.read_raw(paths.raw_csv)
    dataset.check_schema(raw, str(paths.raw_csv))
    train_raw, test_raw = split(raw, params)
    paths.processed.mkdir(parents=True, exist_ok=True)
    dataset.write_csv(train_raw, paths.train_csv)
    dataset.write_csv(test_raw, paths.test_csv)

    train = dataset.to_typed(train_raw)
    preprocessor = build_preprocessor().fit(features(train))
    encoder = fit_label_encoder(train[TARGET_COLUMN])
    joblib.dump(preprocessor, paths.preprocessor)
    joblib.dump(encoder, paths.label_encoder)
    log.info(
        "prepare: %d train / %d test rows (churn rate %.3f / %.3f), %d features after encoding",
        len(train_raw),
        len(test_raw),
        (train_raw[TARGET_COLUMN] == "Yes").mean(),
        (test_raw[TARGET_COLUMN] == "Yes").mean(),
        len(preprocessor.get_feature_names_out()),
    )
