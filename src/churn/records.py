"""Validated customer records, and their columns taken once for a whole batch.

A batch that the API's validator accepted column by column is a `Records`: the records
themselves (the request's own objects, not copied) plus each feature column as the validator
extracted and normalised it (a list of category strings, or a float64 array of numbers with
NaN for an unknown ``TotalCharges``). The preprocessor and the drift counters read those
columns instead of walking every record again. Any other sequence of records works as well:
`column` and `numbers` then take the column from the records.

This module is part of the shared bottom layer: it imports nothing of the project.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter

import numpy as np

__all__ = ["Record", "Records", "column", "numbers"]

#: One validated record: every feature column of `churn.schema` mapped to its value.
Record = Mapping[str, object]


class Records(list[Record]):
    """A list of validated records that also holds their feature columns.

    Attributes:
        columns: feature name -> the column in record order: a list of strings for a
            categorical feature, a float64 array (NaN for unknown) for a numeric one.

    """

    __slots__ = ("columns",)

    def __init__(self, records: Iterable[Record], columns: Mapping[str, object]) -> None:
        super().__init__(records)
        self.columns = dict(columns)


def column(records: Sequence[Record], name: str) -> Sequence[object]:
    """Return the values of feature ``name`` of ``records``, in order."""
    if isinstance(records, Records):
        found = records.columns.get(name)
        if found is not None:
            return found  # type: ignore[return-value]
    return list(map(itemgetter(name), records))


def numbers(records: Sequence[Record], name: str) -> np.ndarray:
    """Return numeric feature ``name`` of ``records`` as a float64 array (None -> NaN)."""
    values = column(records, name)
    if isinstance(values, np.ndarray):
        return values
    return np.array(values, dtype=np.float64)
