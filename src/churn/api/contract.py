"""The request contract: one pydantic model of a customer record, built from `churn.schema`.

`Customer` decides which records the API accepts (the validator's full path runs it) and what
they become (ints for whole-number fields, floats for the others, None for an unknown
TotalCharges); its JSON schema is the OpenAPI document's Customer component. The category
spellings and numeric ranges are never restated here. The accepted forms:

* categorical fields: a string spelled exactly as in the data set;
* numeric fields: a JSON number, or a numeric string as CSV exports write it (``"29.85"``,
  ``"1"``: digits with an optional decimal part, no sign, exponent or spaces); whole-number
  fields (``SeniorCitizen``, ``tenure``) take integral numbers only (``5`` or ``5.0``, not
  ``5.5``) and digit-only strings; booleans, ``NaN`` and ``Infinity`` are rejected;
* ``TotalCharges`` may also be ``null`` or a blank string (spaces or tabs only), meaning unknown,
  as the raw file has for customers with tenure 0;
* ``customerID``: optional string, echoed back; any other field is rejected by name.

The model is strict (no ``true`` read as 1, no number read from a string except through the
numeric-string patterns) and its patterns run on Python's `re`, as JSON-schema validators do, so
the published patterns mean what the model does. It is built at import but compiled on first
use (``defer_build``): importing this module validates nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    create_model,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from churn.schema import CATEGORICAL, FEATURE_COLUMNS, ID_COLUMN, NUMERIC, NumericField

__all__ = [
    "BLANK_PATTERN",
    "EXAMPLE_CUSTOMER",
    "MAX_ID_LENGTH",
    "Customer",
    "bound",
    "string_pattern",
]

#: Longest accepted customerID.
MAX_ID_LENGTH = 128
#: A blank TotalCharges. `$` also allows one trailing newline, as in every pattern here: the
#: model and JSON-schema validators both run them with Python's `re`.
BLANK_PATTERN = r"^[ \t]*$"

#: A valid customer (row 1 of the public file), used in the docs and as the page's defaults.
EXAMPLE_CUSTOMER: dict[str, object] = {
    "gender": "Female",
    "SeniorCitizen": 0,
    "Partner": "Yes",
    "Dependents": "No",
    "tenure": 1,
    "PhoneService": "No",
    "MultipleLines": "No phone service",
    "InternetService": "DSL",
    "OnlineSecurity": "No",
    "OnlineBackup": "Yes",
    "DeviceProtection": "No",
    "TechSupport": "No",
    "StreamingTV": "No",
    "StreamingMovies": "No",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Electronic check",
    "MonthlyCharges": 29.85,
    "TotalCharges": 29.85,
}
_EXAMPLE_ID = "7590-VHVEG"


def bound(value: float) -> int | float:
    """Return a range bound as written in messages and documents (``1200``, not ``1200.0``)."""
    return int(value) if float(value).is_integer() else value


def _int_at_most(limit: int) -> str:
    """Regex (unanchored) for the decimal digits of the integers 0..limit, no leading zeros."""
    digits = str(limit)
    if len(digits) == 1:
        return f"[0-{digits}]"
    alternatives = ["[0-9]"]
    if len(digits) > 2:
        alternatives.append(f"[1-9][0-9]{{1,{len(digits) - 2}}}")
    for i, char in enumerate(digits):
        low, high = (1 if i == 0 else 0), int(char) - 1
        if high >= low:
            rest = len(digits) - i - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            alternatives.append(f"{digits[:i]}[{low}-{high}]{tail}")
    alternatives.append(digits)
    return "|".join(alternatives)


def string_pattern(spec: NumericField) -> str:
    """Return the exact regex of the numeric strings accepted for a field of this spec.

    Digits with an optional decimal part (digits only for whole-number fields) whose value is
    in the spec's range; leading zeros are allowed, as in ``"007"``. The model accepts a string
    for a numeric field exactly when it matches.
    """
    if spec.minimum != 0 or not float(spec.maximum).is_integer() or spec.maximum < 1:
        raise ValueError("string patterns are only derived for ranges 0..N with an integer N")
    top = int(spec.maximum)
    if spec.integer:
        return rf"^0*({_int_at_most(top)})$"
    below = _int_at_most(top - 1)
    return rf"^0*(({below})(\.[0-9]+)?|{top}(\.0+)?)$"


# --------------------------------------------------------------------------------------------
# Field types
# --------------------------------------------------------------------------------------------


def _whole(value: float) -> int:
    if not value.is_integer():
        raise PydanticCustomError("whole_number", "must be a whole number")
    return int(value)


class _WholeNumber:
    """Take integral numbers only, as ints, and say so in the JSON schema (``multipleOf: 1``).

    Exact, unlike pydantic's own ``multiple_of`` (which tolerates a relative 1e-9 on floats).
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(_whole, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["multipleOf"] = 1
        return json_schema


def _unknown(_: str) -> None:
    return None


def _numeric_type(name: str, spec: NumericField) -> tuple[Any, Any]:
    """Return the annotation and field info of a numeric field: number or numeric string."""
    low, high = bound(spec.minimum), bound(spec.maximum)
    # A (strict) float takes JSON integers too, as floats; whole-number fields turn them back.
    number: Any = Annotated[float, Field(ge=low, le=high, allow_inf_nan=False)]
    parse: Callable[[str], int | float] = float
    if spec.integer:
        number, parse = Annotated[number, _WholeNumber()], int
    branches: list[Any] = [
        number,
        Annotated[str, StringConstraints(pattern=string_pattern(spec)), AfterValidator(parse)],
    ]
    description = f"{low} to {high}" + (", a whole number" if spec.integer else "")
    if spec.nullable:
        branches += [
            Annotated[str, StringConstraints(pattern=BLANK_PATTERN), AfterValidator(_unknown)],
            None,
        ]
        description += "; null or a blank string means unknown"
    info = Field(
        union_mode="left_to_right",
        description=description + "; also as a numeric string.",
        examples=[EXAMPLE_CUSTOMER[name]],
    )
    return Union[tuple(branches)], info  # noqa: UP007 (a union of a runtime-built tuple)


def _fields() -> dict[str, Any]:
    fields: dict[str, Any] = {
        ID_COLUMN: (
            Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)],
            Field(
                default=None,
                description="Optional; echoed back with the prediction.",
                examples=[_EXAMPLE_ID],
            ),
        )
    }
    for name in FEATURE_COLUMNS:
        if name in CATEGORICAL:
            fields[name] = (Literal[CATEGORICAL[name]], ...)
        else:
            fields[name] = _numeric_type(name, NUMERIC[name])
    return fields


#: A customer record: the 19 feature columns (required) and an optional customerID.
Customer: type[BaseModel] = create_model(
    "Customer",
    __config__=ConfigDict(
        strict=True,
        extra="forbid",
        regex_engine="python-re",
        defer_build=True,
        json_schema_extra={"examples": [{ID_COLUMN: _EXAMPLE_ID, **EXAMPLE_CUSTOMER}]},
    ),
    **_fields(),
)
