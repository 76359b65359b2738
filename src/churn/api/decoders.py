"""Request bodies decoded and checked in one pass of C (msgspec), when in their common form.

Two requests spent most of their time before scoring: parsing the body into Python objects,
then reading them back to check their types. Their common, well-typed form is decoded here
with msgspec straight into typed objects, each value checked as it is read; whatever else
(a numeric string, a blank, any error) returns None and takes the general path, which
accepts the other forms and names the field of every refusal.

`BatchDecoder`: ``POST /predict/batch``. A 1,000-record body took 1.1-1.3 ms to parse
(orjson: 1,000 dicts, 20,000 values) and 1.5-1.7 ms to check; here it takes about 0.6 ms,
then 0.8 to take its columns. It accepts ``{"instances": [customer, ...]}`` with

* each categorical field one of its exact spellings;
* ``SeniorCitizen`` and ``tenure`` JSON integers (never booleans), ``MonthlyCharges`` and
  ``TotalCharges`` JSON numbers, each within its range; ``TotalCharges`` also null;
* ``customerID`` absent or a string of at most `MAX_ID_LENGTH` characters;
* no other field, between 1 and ``max_batch`` customers, nothing around ``instances``.

What it accepts, the contract (`churn.api.contract.Customer`) accepts with the same values
(tests/unit/api/test_decoders.py checks both on generated bodies); the general path is
`churn.api.jsonio.loads`, then `CustomerValidator.validate_many`. The records come back as a
`churn.records.Records` with their columns, as `CustomerValidator.validate_many` gives them.

`InferDecoder`: the Open Inference Protocol's infer request all in JSON, whose 19 input
tensors (any order) each have their declared datatype, shape ``[n]`` and ``n`` valid values
(as for a batch: exact spellings, JSON integers for whole numbers, numbers in range), and no
parameters; beside ``inputs`` only ``id``, ``parameters`` and ``outputs``, left as parsed for
the view to judge. It gives the rows `churn.api.v2` would take from those tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Annotated, Any, Literal, Union

import msgspec
import numpy as np

from churn.api.contract import MAX_ID_LENGTH
from churn.records import Records, schema_indices
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, ID_COLUMN, NUMERIC, NumericField

__all__ = ["BatchDecoder", "InferDecoder", "TypedRecord"]


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


def _value_type(name: str) -> Any:
    """Return the msgspec type of a valid value of ``name``: a spelling, or a number in range."""
    return Literal[CATEGORICAL[name]] if name in CATEGORICAL else _number_type(NUMERIC[name])


def _record_type() -> type[TypedRecord]:
    """Build the record type of `churn.schema`: its 19 features and the optional customerID."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (name, _value_type(name)) for name in FEATURE_COLUMNS
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
        self._codes = schema_indices()

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


_DATA = attrgetter("data")
_SHAPE = attrgetter("shape")


class _Tensor(msgspec.Struct, forbid_unknown_fields=True, gc=False, tag_field="name"):
    """One V2 input tensor in the common form; its ``name`` is the subclass's tag."""


def _tensor_type(name: str, datatype: str) -> type[_Tensor]:
    """Build the tensor type of input ``name``: its datatype, a shape of one size, its values.

    Its values are the feature's valid ones (`_value_type`), so that every row decoded is a
    valid record: a value out of range or misspelt is judged, and worded, by the general path.
    """
    fields = [
        ("datatype", Literal[datatype]),
        ("shape", Annotated[list[int], msgspec.Meta(min_length=1, max_length=1)]),
        ("data", list[_value_type(name)]),  # type: ignore[misc]
    ]
    return msgspec.defstruct(  # type: ignore[no-any-return]
        f"Input_{name}", fields, bases=(_Tensor,), tag=name, forbid_unknown_fields=True, gc=False
    )


class InferDecoder:
    """Decodes V2 infer requests all in JSON in their common form (see the module doc)."""

    def __init__(self, input_types: Mapping[str, str], max_rows: int) -> None:
        tensors = [_tensor_type(name, datatype) for name, datatype in input_types.items()]
        fields = [
            ("inputs", list[Union[tuple(tensors)]]),  # noqa: UP007 (a union of built types)
            ("id", Any, msgspec.UNSET),
            ("parameters", Any, msgspec.UNSET),
            ("outputs", Any, msgspec.UNSET),
        ]
        request = msgspec.defstruct("InferRequest", fields, forbid_unknown_fields=True)
        self._decoder = msgspec.json.Decoder(request)
        self._names = {tensor: tensor.__struct_config__.tag for tensor in tensors}
        self._width = len(tensors)
        self._max_rows = max_rows

    def decode(self, data: bytes) -> tuple[dict[str, Any], list[dict[str, object]]] | None:
        """Return the request's other members (as parsed) and its rows, or None.

        None: not in the common form; parse it as JSON and take its rows the general way.
        """
        try:
            request = self._decoder.decode(data)
        except msgspec.DecodeError:  # ValidationError too
            return None
        inputs = request.inputs
        if len(inputs) != self._width or len(set(map(type, inputs))) != self._width:
            return None  # an input missing or given twice
        columns = list(map(_DATA, inputs))
        n = len(columns[0])
        # Every shape [n], every tensor n values (C-level comparisons, no loop in Python).
        if not 0 < n <= self._max_rows or list(map(_SHAPE, inputs)).count([n]) != self._width:
            return None
        if list(map(len, columns)).count(n) != self._width:
            return None
        names = list(map(self._names.__getitem__, map(type, inputs)))
        rows = [dict(zip(names, cells, strict=True)) for cells in zip(*columns, strict=True)]
        others = {
            key: getattr(request, key)
            for key in ("id", "parameters", "outputs")
            if getattr(request, key) is not msgspec.UNSET
        }
        return others, rows
