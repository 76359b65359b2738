"""The fitted ``ColumnTransformer`` compiled into numpy arrays and dict lookups.

A record is encoded as two small arrays: the numeric columns imputed and scaled exactly as
the fitted imputer and scaler do it, and one integer code per categorical column (the index
of its fitted category, or "unknown"). The models work from that encoding directly; `dense`
rebuilds the transformer's full output matrix when a model needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from churn.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from churn.serving.artifacts import ArtifactError

Record = Mapping[str, object]

#: handle_unknown settings whose output for an unseen category is all zeros.
_UNKNOWN_AS_ZEROS = ("ignore", "infrequent_if_exist", "warn")


class CodeMap(dict[object, Any]):
    """A category -> code (or weight) dict whose every other key maps to ``unknown``."""

    __slots__ = ("unknown",)

    def __init__(self, items: Iterable[tuple[object, Any]], unknown: Any) -> None:
        super().__init__(items)
        self.unknown = unknown

    def __missing__(self, key: object) -> Any:
        return self.unknown


def values_getter(columns: Sequence[str]) -> Callable[[Record], tuple[object, ...]]:
    """Return a function giving a record's values of ``columns`` as a tuple."""
    if len(columns) == 1:
        (column,) = columns
        return lambda record: (record[column],)
    return itemgetter(*columns)  # type: ignore[return-value]


@dataclass(frozen=True)
class Encoded:
    """Records encoded for the models.

    Attributes:
        numeric: shape ``(n, len(numeric_columns))``, imputed and scaled, never NaN.
        codes: shape ``(n, len(categorical_columns))``, the index of each value among its
            column's fitted categories; the number of categories for an unseen value.
            (A transposed view: read it, do not assume C order.)

    """

    numeric: np.ndarray
    codes: np.ndarray


class CompiledPreprocessor:
    """The fitted preprocessor as arrays: same output as ``transform``, no pandas.

    The output matrix of `dense` has the transformer's columns: the scaled numeric columns,
    then one indicator per fitted category. A value outside a column's fitted categories sets
    none of its indicators (``handle_unknown="ignore"``); ``None`` or NaN in a numeric column
    becomes the imputer's statistic (the training median).
    """

    def __init__(
        self,
        numeric_columns: Sequence[str],
        fill: np.ndarray,
        mean: np.ndarray,
        scale: np.ndarray,
        categorical_columns: Sequence[str],
        categories: Sequence[Sequence[object]],
    ) -> None:
        self.numeric_columns = tuple(numeric_columns)
        self.categorical_columns = tuple(categorical_columns)
        self.fill = np.asarray(fill, dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.categories = tuple(tuple(c) for c in categories)
        k = len(self.numeric_columns)
        #: output column of each categorical column's first indicator
        self.offsets = np.cumsum([k] + [len(c) for c in self.categories])[:-1].astype(np.intp)
        self.n_features = k + sum(len(c) for c in self.categories)
        self.code_maps = tuple(
            CodeMap(((v, i) for i, v in enumerate(c)), unknown=len(c)) for c in self.categories
        )
        self.numeric_values = values_getter(self.numeric_columns)
        self.categorical_values = values_getter(self.categorical_columns)

    @classmethod
    def from_fitted(cls, transformer: object, source: Path) -> CompiledPreprocessor:
        """Compile a fitted ``ColumnTransformer`` of the documented shape.

        Raises:
            ArtifactError: ``transformer`` is not a fitted ColumnTransformer made of one
                impute-then-scale pipeline over the numeric columns and one one-hot encoder
                over the categorical columns (the reason names ``source``).

        """
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        def unsupported(why: str) -> ArtifactError:
            return ArtifactError(f"{source}: wrong type (unsupported preprocessor: {why})")

        if not isinstance(transformer, ColumnTransformer) or not hasattr(
            transformer, "transformers_"
        ):
            name = type(transformer).__name__
            raise unsupported(f"expected a fitted ColumnTransformer, got {name}")
        parts: dict[str, tuple[object, tuple[str, ...]]] = {}
        for name, step, columns in transformer.transformers_:
            if isinstance(step, str) and step == "drop":
                continue
            if name == "remainder" and len(columns) == 0:
                continue
            kind = "num" if isinstance(step, Pipeline) else "cat"
            if kind in parts or not isinstance(step, Pipeline | OneHotEncoder):
                raise unsupported(f"unexpected transformer {name!r} ({type(step).__name__})")
            if kind == "num" and parts:
                raise unsupported("the numeric pipeline must come first")
            parts[kind] = (step, tuple(str(c) for c in columns))
        if set(parts) != {"num", "cat"}:
            raise unsupported("needs one numeric pipeline and one one-hot encoder")

        pipeline, numeric = parts["num"]
        assert isinstance(pipeline, Pipeline)
        steps = [step for _, step in pipeline.steps]
        if len(steps) != 2 or not (
            isinstance(steps[0], SimpleImputer) and isinstance(steps[1], StandardScaler)
        ):
            raise unsupported("the numeric pipeline must be SimpleImputer then StandardScaler")
        imputer, scaler = steps
        missing = imputer.missing_values
        if not (isinstance(missing, float) and np.isnan(missing)) or imputer.add_indicator:
            raise unsupported("the imputer must replace NaN and add no indicator")
        fill = np.asarray(imputer.statistics_, dtype=np.float64)
        if fill.shape != (len(numeric),) or np.isnan(fill).any():
            raise unsupported("the imputer has no finite statistic for every numeric column")
        n = len(numeric)
        mean = np.asarray(scaler.mean_, np.float64) if scaler.with_mean else np.zeros(n)
        scale = np.asarray(scaler.scale_, np.float64) if scaler.with_std else np.ones(n)
        if mean.shape != (n,) or scale.shape != (n,):
            raise unsupported("the scaler does not match the numeric columns")

        encoder, categorical = parts["cat"]
        assert isinstance(encoder, OneHotEncoder)
        if encoder.drop_idx_ is not None or getattr(encoder, "_infrequent_enabled", False):
            raise unsupported("the one-hot encoder drops or groups categories")
        if encoder.handle_unknown not in _UNKNOWN_AS_ZEROS:
            raise unsupported(f"one-hot handle_unknown={encoder.handle_unknown!r}")
        categories = [c.tolist() for c in encoder.categories_]
        if len(categories) != len(categorical):
            raise unsupported("the encoder does not match the categorical columns")

        if set(numeric) != set(NUMERIC_FEATURES) or set(categorical) != set(CATEGORICAL_FEATURES):
            raise unsupported("its columns are not the schema's feature columns")
        return cls(numeric, fill, mean, scale, categorical, categories)

    def encode(self, records: Sequence[Record]) -> Encoded:
        """Encode records: imputed, scaled numeric values and categorical codes."""
        n = len(records)
        numeric = np.array(list(map(self.numeric_values, records)), dtype=np.float64).reshape(
            n, len(self.numeric_columns)
        )  # None -> NaN
        missing = np.isnan(numeric)
        if missing.any():
            numeric = np.where(missing, self.fill, numeric)
        numeric -= self.mean
        numeric /= self.scale
        # Column by column (zip(*...) transposes), so each lookup loop runs in C.
        maps = self.code_maps
        columns = zip(*map(self.categorical_values, records), strict=True)
        codes = np.fromiter(
            chain.from_iterable(map(m.__getitem__, c) for m, c in zip(maps, columns, strict=False)),
            dtype=np.intp,
            count=n * len(maps),
        ).reshape(len(maps), n)
        return Encoded(numeric, codes.T)
        return Encoded(numeric, codes)

    def dense(self, encoded: Encoded) -> np.ndarray:
        """Return the transformer's output matrix, shape ``(n, n_features)``, float64."""
        n = encoded.codes.shape[0]
        k = len(self.numeric_columns)
        # One spare column takes the indicator of every unseen value, then is cut off.
        out = np.zeros((n, self.n_features + 1), dtype=np.float64)
        out[:, :k] = encoded.numeric
        sizes = np.array([len(c) for c in self.categories], dtype=np.intp)
        unseen = encoded.codes >= sizes
        columns = np.where(unseen, self.n_features, encoded.codes + self.offsets)
        np.put_along_axis(out, columns, 1.0, axis=1)
        return np.ascontiguousarray(out[:, : self.n_features])

    def transform(self, records: Sequence[Record]) -> np.ndarray:
        """Return what the fitted transformer's ``transform`` returns for these records."""
        return self.dense(self.encode(records))
