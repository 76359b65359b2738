"""Validated customer records, and their columns taken once for a whole batch.

A batch that the API's validator accepted column by column is a `Records`: the records
themselves (the request's own objects, not copied) plus each feature column as the validator
extracted and normalised it: a numeric column as a float64 array (NaN for an unknown
``TotalCharges``), a categorical column as the index of each value among the spellings of
`churn.schema.CATEGORICAL`. The preprocessor and the drift counters translate those indices
with one array lookup instead of walking every record again. Any other sequence of records
works as well: `numbers` then reads the column from the records, and `schema_codes` says
there are no indices.

This module is part of the shared bottom layer: it imports only `churn.schema`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter

import numpy as np

from churn.schema import CATEGORICAL

__all__ = [
    "Record",
    "Records",
    "column",
    "concat",
    "numbers",
    "schema_codes",
    "schema_indices",
    "schema_table",
]

#: One validated record: every feature column of `churn.schema` mapped to its value.
Record = Mapping[str, object]


class Records(list[Record]):
    """A list of validated records that also holds their feature columns.

    Attributes:
        numeric: numeric feature -> float64 array in record order (NaN for unknown).
        codes: categorical feature -> intp array: each value's index in
            ``churn.schema.CATEGORICAL[feature]``.

    """

    __slots__ = ("codes", "numeric")

    def __init__(
        self,
        records: Iterable[Record],
        numeric: Mapping[str, np.ndarray],
        codes: Mapping[str, np.ndarray],
    ) -> None:
        super().__init__(records)
        self.numeric = dict(numeric)
        self.codes = dict(codes)


def concat(parts: Sequence[Sequence[Record]]) -> Sequence[Record]:
    """Return the records of ``parts`` in order: one `Records` with their columns if all hold them.

    One part is returned as it is; parts that are not all `Records` become a plain list.
    """
    if len(parts) == 1:
        return parts[0]
    records = [record for part in parts for record in part]
    if not all(isinstance(part, Records) for part in parts):
        return records
    batches: list[Records] = list(parts)  # type: ignore[arg-type]
    numeric = set.intersection(*(set(part.numeric) for part in batches))
    codes = set.intersection(*(set(part.codes) for part in batches))
    return Records(
        records,
        {name: np.concatenate([part.numeric[name] for part in batches]) for name in numeric},
        {name: np.concatenate([part.codes[name] for part in batches]) for name in codes},
    )


def column(records: Sequence[Record], name: str) -> list[object]:
    """Return the values of feature ``name`` of ``records``, in order, as given."""
    return list(map(itemgetter(name), records))


def numbers(records: Sequence[Record], name: str) -> np.ndarray:
    """Return numeric feature ``name`` of ``records`` as a float64 array (None -> NaN)."""
    if isinstance(records, Records) and name in records.numeric:
        return records.numeric[name]
    return np.array(column(records, name), dtype=np.float64)


def schema_codes(records: Sequence[Record], name: str) -> np.ndarray | None:
    """Return the schema indices of categorical ``name`` if ``records`` hold them, else None."""
    if isinstance(records, Records):
        return records.codes.get(name)
    return None


def schema_indices() -> dict[str, dict[str, int]]:
    """Return, per categorical column, each spelling's index in `churn.schema.CATEGORICAL`.

    The indices a `Records` batch holds in ``codes``; a new dict each call (callers own it).
    """
    return {
        name: {value: i for i, value in enumerate(values)} for name, values in CATEGORICAL.items()
    }


def schema_table(name: str, lookup: Callable[[str], int]) -> np.ndarray | None:
    """Return an array taking a schema index of categorical ``name`` to ``lookup(value)``.

    None when ``name`` is not a categorical column of the schema or ``lookup`` raises
    ``KeyError`` for one of its spellings (then the values themselves must be looked up).
    """
    spellings = CATEGORICAL.get(name)
    if spellings is None:
        return None
    try:
        return np.array([lookup(value) for value in spellings], dtype=np.intp)
    except KeyError:
        return None
