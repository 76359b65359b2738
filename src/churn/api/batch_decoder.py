"""Batch bodies decoded and checked in one pass of C, when every customer in them is well typed.

``POST /predict/batch`` spent most of its time before scoring: parsing a 1,000-record body
into 20,000 Python objects (orjson), then reading them back column by column to check them.
`BatchDecoder` decodes the common body, ``{"instances": [customer, ...]}`` with every customer
well typed, with msgspec straight into typed records built from `churn.schema`, checking each
value as it is read:

* each categorical field one of its exact spellings;
* ``SeniorCitizen`` and ``tenure`` JSON integers (never booleans), ``MonthlyCharges`` and
  ``TotalCharges`` JSON numbers, each within its range; ``TotalCharges`` also null;
* ``customerID`` absent or a string of at most `MAX_ID_LENGTH` characters;
* no other field, between 1 and ``max_batch`` customers, nothing around ``instances``.

What it accepts, the contract (`churn.api.contract.Customer`) accepts with the same values
(tests/unit/api/test_contract.py checks both on generated bodies). Whatever it refuses,
a malformed body, a numeric string, a blank, a whole number sent as ``3.0``, a wrong
spelling, an unknown field, an empty or too long batch, is answered by the general path
(`churn.api.jsonio.loads`, then `CustomerValidator.validate_many`), whose errors name the
field. The records come back as a `churn.records.Records` with their columns, as
`CustomerValidator.validate_many` gives them, so encoding and drift counting read the columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from churn.api.contract import MAX_ID_LENGTH
from churn.records import Records
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, ID_COLUMN, NUMERIC, NumericField

__all__ = ["BatchDecoder", "TypedRecord"]


class TypedRecord(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A customer as `BatchDecoder` decodes it: its fields as attributes and by name.

    ``record[name]`` reads a field as a record mapping does (`churn.records.Record`), so that
    the models score these records as they score dicts. Not tracked by the garbage collector:
    its values are strings, numbers and None, which hold no references.
    """

    def __getitem__(self, name: str) -> object:
        """Return field ``name`` (KeyError for a name that is not a field)."""
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


def _number_type(spec: NumericField) -> Any:
    """Return the msgspec type of a numeric field: JSON integer or number, within its range."""
    if spec.integer:
        kind: Any = Annotated[int, msgspec.Meta(ge=int(spec.minimum), le=int(spec.maximum))]
    else:
        kind = Annotated[float, msgspec.Meta(ge=spec.minimum, le=spec.maximum)]
    return kind | None if spec.nullable else kind


def _record_type() -> type[TypedRecord]:
    """Build the record type of `churn.schema`: its 19 features and the optional customerID."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (name, Literal[CATEGORICAL[name]] if name in CATEGORICAL else _number_type(NUMERIC[name]))
        for name in FEATURE_COLUMNS
    ]
    # Absent: None. A null customerID is refused here and judged by the general path.
    fields.append((ID_COLUMN, Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)], None))
    return msgspec.defstruct(  # type: ignore[no-any-return]
        "Customer", fields, bases=(TypedRecord,), forbid_unknown_fields=True, gc=False
    )


class BatchDecoder:
    """Decodes well-typed batch bodies (see the module doc); build once per settings."""

    def __init__(self, max_batch: int) -> None:
        record = _record_type()
        sized = msgspec.Meta(min_length=1, max_length=max_batch)
        instances = Annotated[list[record], sized]  # type: ignore[valid-type]
        fields = [("instances", instances)]
        body = msgspec.defstruct("BatchBody", fields, forbid_unknown_fields=True)
        self._decoder = msgspec.json.Decoder(body)
        #: The record type's fields, in order: `msgspec.structs.astuple` gives its values so.
        self._names = record.__struct_fields__
        #: Per categorical column: each spelling -> its index in `churn.schema.CATEGORICAL`.
        self._codes = {
            name: {value: i for i, value in enumerate(values)}
            for name, values in CATEGORICAL.items()
        }

    def decode(self, data: bytes) -> tuple[Records, list[str | None]] | None:
        """Return the batch's records (with their columns) and customerIDs, or None.

        None: the body is not a well-typed batch; parse and check it the general way.
        """
        instances = self.parse(data)
        return None if instances is None else self.columns(instances)

    def parse(self, data: bytes) -> Sequence[TypedRecord] | None:
        """Parse and check a body in one pass: its typed records, or None (see `decode`)."""
        try:
            return self._decoder.decode(data).instances  # type: ignore[no-any-return]
        except msgspec.DecodeError:  # ValidationError too
            return None

    def columns(self, instances: Sequence[TypedRecord]) -> tuple[Records, list[str | None]]:
        """Return typed records with their columns, and their customerIDs (`decode`'s answer)."""
        n = len(instances)
        # The 20 columns in one pass: a tuple of values per record, then transposed.
        rows = map(msgspec.structs.astuple, instances)
        columns = dict(zip(self._names, zip(*rows, strict=True), strict=True))
        codes = {
            name: np.fromiter(map(code_of.__getitem__, columns[name]), np.intp, count=n)
            for name, code_of in self._codes.items()
        }
        numeric = {name: np.array(columns[name], dtype=np.float64) for name in NUMERIC}
        return Records(instances, numeric, codes), list(columns[ID_COLUMN])  # type: ignore[arg-type]
