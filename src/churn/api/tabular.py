"""Rows of customers sent as tables (columns of values, or rows of cells), for the protocols.

The Open Inference Protocol and MLflow's scoring protocol send a batch as named columns or as
rows; both end here as a list of customer objects checked by the same `CustomerValidator` as
``/predict``. Problems are reported per row and column, for the protocol's own error shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from churn.api.validation import MAX_DETAILS, CustomerValidator

if TYPE_CHECKING:
    from churn.api.observe import Exchange
    from churn.api.state import ApiState

__all__ = ["TableError", "check_rows", "checked_batch", "columns_to_rows"]

#: Problems quoted in an error message (all of them, up to MAX_DETAILS, are in the details).
_IN_MESSAGE = 5


@dataclass
class TableError(Exception):
    """A bad table: a message for a person, and per-field details (``field``, ``problem``)."""

    message: str
    details: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def columns_to_rows(columns: Mapping[str, Sequence[object]], what: str) -> list[dict[str, object]]:
    """Turn ``{column: [value, ...]}`` into row objects; every column must have the same length.

    Raises:
        TableError: the columns differ in length (``what`` names them in the message).

    """
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{name!r}: {n}" for name, n in list(lengths.items())[:20])
        raise TableError(
            f"every {what} must hold the same number of values; got {listing}",
            [{"field": name, "problem": f"holds {n} values"} for name, n in lengths.items()],
        )
    names = list(columns)
    return [dict(zip(names, cells, strict=True)) for cells in zip(*columns.values(), strict=True)]


def check_rows(
    validator: CustomerValidator, rows: Sequence[object], max_rows: int
) -> tuple[list[dict[str, object]], list[str | None]]:
    """Validate rows of customers; return the normalised records and their customerIDs.

    Raises:
        TableError: no rows, more than ``max_rows``, or any problem in any row; each detail's
            field reads ``row <i>: <column>``.

    """
    if not rows:
        raise TableError(
            "no rows: send at least 1 customer", [{"field": "rows", "problem": "empty"}]
        )
    if len(rows) > max_rows:
        raise TableError(
            f"{len(rows)} rows; at most {max_rows} are accepted per request",
            [{"field": "rows", "problem": f"must hold at most {max_rows} customers"}],
        )
    records: list[dict[str, object]] = []
    ids: list[str | None] = []
    problems: list[dict[str, str]] = []
    for i, row in enumerate(rows):
        record, customer_id, found = validator.validate(row)
        if found:
            problems += [
                {"field": f"row {i}: {p['field']}", "problem": p["problem"]} for p in found
            ]
        elif record is not None:
            records.append(record)
            ids.append(customer_id)
    if problems:
        shown = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:_IN_MESSAGE])
        more = f" (and {len(problems) - _IN_MESSAGE} more)" if len(problems) > _IN_MESSAGE else ""
        noun = "problem" if len(problems) == 1 else "problems"
        raise TableError(
            f"{len(problems)} {noun} in the rows: {shown}{more}", problems[:MAX_DETAILS]
        )
    return records, ids


def checked_batch(
    state: ApiState,
    exchange: Exchange,
    rows: Sequence[object],
    error: Callable[[int, str], Exception],
) -> list[dict[str, object]]:
    """Count ``rows`` as the request's batch, then return them validated (`check_rows`).

    Raises:
        Exception: ``error(400, message)``, the protocol's own error, for a bad table.

    """
    exchange.batch_size = len(rows)
    try:
        records, _ = check_rows(state.validator, rows, state.settings.max_batch)
    except TableError as exc:
        raise error(400, exc.message) from None
    return records
