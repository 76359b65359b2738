"""The fitted ``ColumnTransformer`` compiled into numpy arrays and dict lookups.

A record is encoded as two small arrays: the numeric columns imputed and scaled exactly as
the fitted imputer and scaler do it, and one integer code per categorical column (the index
of its fitted category, or "unknown"). The models work from that encoding directly; `dense`
rebuilds the transformer's full output matrix when a model needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

from churn.records import Record, Records, numbers, schema_codes, schema_table


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
        #: Per categorical column: schema index -> code (None: look the values up).
        self._from_schema = tuple(
            schema_table(name, m.__getitem__)
            for name, m in zip(self.categorical_columns, self.code_maps, strict=True)
        )

    def encode(self, records: Sequence[Record]) -> Encoded:
        """Encode records: imputed, scaled numeric values and categorical codes.

        A `churn.records.Records` batch is encoded from the columns it already holds.
        """
        n = len(records)
        k = len(self.numeric_columns)
        if isinstance(records, Records):
            numeric = np.empty((n, k), dtype=np.float64)
            for j, name in enumerate(self.numeric_columns):
                numeric[:, j] = numbers(records, name)
        else:
            numeric = np.array(list(map(self.numeric_values, records)), dtype=np.float64)
            numeric = numeric.reshape(n, k)  # None -> NaN
        missing = np.isnan(numeric)
        if missing.any():
            numeric = np.where(missing, self.fill, numeric)
        numeric -= self.mean
        numeric /= self.scale
        return Encoded(numeric, self._codes(records, n))

    def _codes(self, records: Sequence[Record], n: int) -> np.ndarray:
        """Return the categorical codes, shape ``(n, columns)``: from schema indices if given."""
        maps = self.code_maps
        codes = np.empty((len(maps), n), dtype=np.intp)
        looked_up: list[int] = []
        for j, (name, table) in enumerate(
            zip(self.categorical_columns, self._from_schema, strict=True)
        ):
            given = schema_codes(records, name) if table is not None else None
            if given is not None:
                codes[j] = table[given]  # type: ignore[index]
            else:
                looked_up.append(j)
        if looked_up and n == 1:  # one record: plain lookups, no array per column
            values = self.categorical_values(records[0])
            codes[looked_up, 0] = [maps[j][values[j]] for j in looked_up]
        elif looked_up:
            # Column by column (zip(*...) transposes), so each lookup loop runs in C.
            getter = values_getter([self.categorical_columns[j] for j in looked_up])
            columns = zip(*map(getter, records), strict=True)
            for j, values in zip(looked_up, columns, strict=False):
                codes[j] = np.fromiter(map(maps[j].__getitem__, values), np.intp, count=n)
        return codes.T

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
