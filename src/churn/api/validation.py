"""Request validation: read a JSON body within limits and check customers against the contract.

Which records are valid, and what they become, is decided by the pydantic model
`churn.api.contract.Customer` (its docstring lists the accepted forms); this module adds a fast
path for the common well-typed record and turns the model's errors into the API's details:
one ``{"field", "problem"}`` per field, in words that say what to send instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np
from flask import Request
from pydantic import TypeAdapter, ValidationError

from churn.api.contract import MAX_ID_LENGTH, Customer, bound
from churn.api.errors import ApiError
from churn.api.jsonio import loads as json_loads
from churn.records import Records, schema_indices
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, ID_COLUMN, NUMERIC, NumericField

#: Most field problems reported in one error response (the message gives the total).
MAX_DETAILS = 100
#: Longest user-supplied text quoted back in an error message.
_QUOTE_LIMIT = 40

Detail = dict[str, str]

# The general shapes of numeric strings: when the model rejects a string of the right shape,
# its value is out of range (the model's patterns check shape and range at once).
_INT_SHAPE = re.compile(r"^[0-9]+$")
_DECIMAL_SHAPE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
#: pydantic's error types that mean "not an accepted key" (a non-string key: not JSON).
_UNKNOWN_KEY = frozenset({"extra_forbidden", "invalid_key"})


def _quote(value: object) -> str:
    """Describe a rejected value briefly (never echo long input)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= _QUOTE_LIMIT else f"a string of {len(value)} chars"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return text if len(text) <= _QUOTE_LIMIT else "a very long number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


#: From this many records, a batch is first checked column by column (`_fast_columns`).
_COLUMNS_MIN_RECORDS = 8
_STR = frozenset({str})
_DICT = {dict}
_NUMBER_TYPES = frozenset({int, float})
_NULLABLE_TYPES = frozenset({int, float, type(None)})


def _number_column(values: list[object], spec: NumericField) -> np.ndarray | None:
    """Return a numeric column as float64 (None -> NaN) if every value passes, else None.

    Passing: a JSON int or float (never a boolean) within the range, whole for a whole-number
    field; ``None`` too for a nullable field.
    """
    types = set(map(type, values))
    if not (_NULLABLE_TYPES if spec.nullable else _NUMBER_TYPES).issuperset(types):
        return None
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range: out of range anyway
        return None
    present = array
    if type(None) in types:
        unknown = np.isnan(array)
        if int(unknown.sum()) != values.count(None):  # a float NaN, not a null
            return None
        present = array[~unknown]
    if present.size and not (spec.minimum <= present.min() and present.max() <= spec.maximum):
        return None  # NaN compares False: refused too
    if spec.integer and not np.array_equal(present, np.floor(present)):
        return None
    return array


def _field_name(key: str) -> str:
    return key if len(key) <= 100 else key[:100] + "..."


def _number_problem(spec: NumericField, value: object, kinds: set[str]) -> str:
    """Say why the model rejected ``value`` for a numeric field (``kinds``: its error types)."""
    kind = "a whole number" if spec.integer else "a number"
    range_text = f"must be between {bound(spec.minimum)} and {bound(spec.maximum)}"
    if isinstance(value, bool):
        return f"must be {kind}, not a boolean"
    if value is None:
        return f"must be {kind}, not null"
    if isinstance(value, str):
        shape = _INT_SHAPE if spec.integer else _DECIMAL_SHAPE
        if shape.match(value):
            return f"{range_text}; got {_quote(value)}"
        allowed = "digits only" if spec.integer else "digits with an optional decimal part"
        return f"must be {kind} or a numeric string ({allowed}); got {_quote(value)}"
    if not isinstance(value, int | float):
        return f"must be {kind}; got {_quote(value)}"
    if "finite_number" in kinds:
        return f"must be a finite number; got {_quote(value)}"
    if "whole_number" in kinds:
        return f"must be a whole number; got {_quote(value)}"
    # Out of range (`less_than_equal`, `greater_than_equal`), or an integer past a double's.
    return f"{range_text}; got {_quote(value)}"


class CustomerValidator:
    """Checks customer objects; build once, then call `validate` per record."""

    def __init__(self) -> None:
        self.fields: tuple[str, ...] = FEATURE_COLUMNS
        #: Per categorical column: each allowed spelling -> its index in `churn.schema`.
        #: The fast paths' one lookup structure: `_fast` tests membership, `_fast_columns`
        #: takes the index.
        self._category_codes = schema_indices()
        self._choices_text: dict[str, str] = {
            name: ", ".join(repr(v) for v in values) for name, values in CATEGORICAL.items()
        }
        self._known = frozenset(FEATURE_COLUMNS) | {ID_COLUMN}
        self._known_lower = {k.lower(): k for k in self._known}
        # The fast path's lookups (see `_fast`).
        self._get_fields = itemgetter(*FEATURE_COLUMNS)
        self._get_categories = itemgetter(*CATEGORICAL)
        self._category_sets = tuple(self._category_codes.values())
        self._numeric_specs = tuple(NUMERIC.items())
        # The full path: the contract's model, compiled here (not at import, nor on the first
        # record that needs it), and the order of its problems: the feature columns,
        # customerID, then unknown fields as sent.
        self._customer = TypeAdapter(Customer)
        self._customer.rebuild(force=True)
        self._order = (*FEATURE_COLUMNS, ID_COLUMN)

    # -- records ----------------------------------------------------------------------------

    def validate(
        self, obj: object, prefix: str = ""
    ) -> tuple[dict[str, object] | None, str | None, list[Detail]]:
        """Check one customer object.

        Returns ``(record, customer_id, problems)``: the record holds the 19 feature columns
        with normalised values (None when there are problems); field names in problems are
        prefixed with ``prefix`` (e.g. ``instances[3].``).
        """
        if type(obj) is dict:
            checked = self._fast(obj)
            if checked is not None:
                return checked
        return self._full(obj, prefix)

    def _full(
        self, obj: object, prefix: str
    ) -> tuple[dict[str, object] | None, str | None, list[Detail]]:
        """Every check, with exact messages: what `validate` does when `_fast` declines.

        The `Customer` model decides and normalises; its errors become one problem per field.
        """
        try:
            customer = self._customer.validate_python(obj)
        except ValidationError as error:
            return None, None, self._problems(obj, error, prefix)
        record = dict(vars(customer))
        customer_id = record.pop(ID_COLUMN)
        return record, customer_id, []

    def validate_many(
        self, instances: list[object]
    ) -> tuple[list[dict[str, object]], list[str | None], list[Detail]]:
        """Check the customers of a batch: ``(records, customer_ids, problems)``.

        Field names in problems are prefixed with ``instances[i].``; when there is any
        problem, the records are incomplete and must not be used. Well-formed records take
        the fast path directly (no per-record prefix is built unless a record has problems).
        """
        whole = self._fast_columns(instances)
        if whole is not None:
            return whole
        records: list[dict[str, object]] = []
        ids: list[str | None] = []
        problems: list[Detail] = []
        fast = self._fast
        for i, obj in enumerate(instances):
            checked = fast(obj) if type(obj) is dict else None
            if checked is None:
                checked = self._full(obj, f"instances[{i}].")
            record, customer_id, found = checked
            if found:
                problems.extend(found)
            elif not problems:
                records.append(record)  # type: ignore[arg-type]
                ids.append(customer_id)
        return records, ids, problems

    def _fast_columns(
        self, instances: list[object]
    ) -> tuple[Records, list[str | None], list[Detail]] | None:
        """Accept a whole batch of common-case records column by column, or return None.

        The same acceptance as `_fast` record by record, checked per column in C (``map``,
        set operations) and numpy: every instance an object with exactly the 19 fields (and
        optionally a customerID string), every category an allowed string, every number a
        JSON int or float in range (whole for whole-number fields), TotalCharges possibly
        null. The records are the request's own objects; the normalised columns travel with
        them (`churn.records.Records`: numbers as arrays, categories as their index among the
        schema's spellings), so encoding and drift counting read them directly.
        Anything else returns None and the batch is checked record by record.
        """
        n = len(instances)
        width = len(self.fields)
        if n < _COLUMNS_MIN_RECORDS or set(map(type, instances)) != _DICT:
            return None
        sizes = list(map(len, instances))
        with_id = sizes.count(width + 1)
        if with_id + sizes.count(width) != n:
            return None
        ids: list[str | None] = list(map(dict.get, instances, repeat(ID_COLUMN)))  # type: ignore[arg-type]
        if with_id:
            given = [value for value in ids if value is not None]
            if len(given) != with_id or not _STR.issuperset(map(type, given)):
                return None
            if max(map(len, given)) > MAX_ID_LENGTH:  # type: ignore[arg-type]
                return None
        numeric: dict[str, np.ndarray] = {}
        codes: dict[str, np.ndarray] = {}
        try:
            # The 19 columns in one pass: a tuple of values per record, then transposed
            # (about a tenth faster than one pass per column). A field missing raises KeyError (19
            # keys then hold an unknown one).
            rows = map(self._get_fields, instances)
            columns = dict(zip(self.fields, zip(*rows, strict=True), strict=True))
            for name, code_of in self._category_codes.items():
                # A value that is not an allowed string has no code (KeyError; unhashable:
                # TypeError); the dict's keys are strings, so no other type is equal to one.
                values = map(code_of.__getitem__, columns[name])
                codes[name] = np.fromiter(values, np.intp, count=n)
            for name, spec in self._numeric_specs:
                array = _number_column(list(columns[name]), spec)
                if array is None:
                    return None
                numeric[name] = array
        except (KeyError, TypeError):
            return None
        return Records(instances, numeric, codes), ids, []  # type: ignore[arg-type]

    def _fast(
        self, obj: dict[str, object]
    ) -> tuple[dict[str, object], str | None, list[Detail]] | None:
        """Accept the common case in one pass, or return None to let `validate` decide.

        The common case: exactly the 19 fields (and optionally a customerID string), every
        categorical value an allowed string, every number a JSON int or float in range
        (whole for whole-number fields), TotalCharges possibly null. The result is the one
        the full checks give; anything else (numeric strings, blanks, any problem) returns
        None and goes through them, so that messages stay exact. The lookups and category
        checks run in C (itemgetter, map); only the four numbers are checked in Python.
        """
        size = len(obj)
        customer_id = None
        if size != len(self.fields):
            if size != len(self.fields) + 1 or ID_COLUMN not in obj:
                return None
            customer_id = obj[ID_COLUMN]
            if type(customer_id) is not str or len(customer_id) > MAX_ID_LENGTH:
                return None
        try:
            values = self._get_fields(obj)
            # `in` a dict of strings is True only for an equal string (unhashable: TypeError).
            categories = self._get_categories(obj)
            if not all(map(dict.__contains__, self._category_sets, categories)):
                return None
        except (KeyError, TypeError):
            return None
        # 19 distinct known names among 19 (or 20 with customerID) keys: nothing extra.
        record = dict(zip(self.fields, values, strict=True))
        for name, spec in self._numeric_specs:
            value = record[name]
            if type(value) is int:
                if not spec.minimum <= value <= spec.maximum:
                    return None
                if not spec.integer:
                    record[name] = float(value)
            elif type(value) is float:
                if not spec.minimum <= value <= spec.maximum:  # also False for NaN
                    return None
                if spec.integer:
                    if not value.is_integer():
                        return None
                    record[name] = int(value)
            elif value is not None or not spec.nullable:
                return None
        return record, customer_id, []

    # -- the model's errors in words ---------------------------------------------------------

    def _problems(self, obj: object, error: ValidationError, prefix: str) -> list[Detail]:
        """Turn the model's errors into one problem per field, in the contract's words."""
        kinds: dict[str | int, set[str]] = {}
        for found in error.errors(include_url=False, include_context=False, include_input=False):
            if not found["loc"]:  # the record itself
                where = prefix.rstrip(".") or "body"
                return [{"field": where, "problem": f"must be a JSON object; got {_quote(obj)}"}]
            kinds.setdefault(found["loc"][0], set()).add(found["type"])
        values: Mapping[object, object] = obj if isinstance(obj, Mapping) else {}
        keys = [k for k in self._order if k in kinds] + [k for k in kinds if k not in self._known]
        return [
            {
                "field": prefix + _field_name(str(key)),
                "problem": self._problem(str(key), values.get(key), kinds[key]),
            }
            for key in keys
        ]

    def _problem(self, key: str, value: object, kinds: set[str]) -> str:
        if "missing" in kinds:
            return "required field is missing"
        if kinds & _UNKNOWN_KEY:
            return self._unknown(key)
        if key == ID_COLUMN:
            if "string_too_long" in kinds:
                return f"must be a string of at most {MAX_ID_LENGTH} characters"
            return f"must be a string; got {_quote(value)}"
        spec = NUMERIC.get(key)
        if spec is not None:
            return _number_problem(spec, value, kinds)
        problem = f"must be one of {self._choices_text[key]}; got {_quote(value)}"
        if isinstance(value, str):
            folded = value.strip().casefold()
            for choice in CATEGORICAL[key]:
                if choice.casefold() == folded:
                    problem += f" (did you mean {choice!r}?)"
                    break
        return problem

    def _unknown(self, key: str) -> str:
        problem = "unknown field"
        hint = self._known_lower.get(key.lower()) or next(
            iter(difflib.get_close_matches(key, self._known, n=1, cutoff=0.8)), None
        )
        if hint:
            problem += f"; did you mean {hint!r}?"
        elif key == "instances":
            problem += "; send batches to /predict/batch"
        return problem


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def _is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def read_body(request: Request, max_bytes: int) -> bytes:
    """Return the body of a JSON request, enforcing type and size (`parse_json_body` parses it).

    Raises:
        ApiError: 413 when the body is larger than ``max_bytes`` (checked on the declared
            Content-Length before reading, and again while reading), 415 when the content
            type is not JSON, 400 when the body is empty.

    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    if not _is_json_mimetype(request.mimetype):
        given = request.mimetype or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json; got {_quote(given)}",
        )
    data: bytes = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    if not data.strip():
        raise ApiError(400, "malformed_json", "the request body is empty; expected JSON")
    return data


def parse_json_body(data: bytes) -> Any:
    """Return the parsed JSON of a body `read_body` gave.

    Raises:
        ApiError: 400 when it is not valid JSON.

    """
    try:
        return json_loads(data)
    except RecursionError:
        raise ApiError(400, "malformed_json", "the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int-digits limit
        reason = str(exc).splitlines()[0][:200]
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {reason}") from None


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413, "payload_too_large", f"the request body is larger than the limit of {max_bytes} bytes"
    )


def summarize(problems: list[Detail], subject: str) -> tuple[str, list[Detail]]:
    """Return an error message and at most `MAX_DETAILS` details for a list of problems."""
    count = len(problems)
    noun = "problem" if count == 1 else "problems"
    message = f"{count} {noun} in {subject}"
    if count > MAX_DETAILS:
        message += f" (the first {MAX_DETAILS} are listed)"
    return message, problems[:MAX_DETAILS]
