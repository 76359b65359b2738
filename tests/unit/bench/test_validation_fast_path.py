"""The validator's fast path (added for the benchmark's hot spot) must change no answer.

`CustomerValidator.validate` first tries `_fast`, which accepts the common well-typed record
in one pass and otherwise defers to the full checks. Here every answer is compared with the
full checks alone, on valid records and on many single-field mutations of them, including
the types: ``1`` and ``1.0`` compare equal in Python but are different answers.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from churn.api.validation import MAX_ID_LENGTH, CustomerValidator
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, ID_COLUMN, NUMERIC


class FullChecksOnly(CustomerValidator):
    def _fast(self, obj: dict[str, object]) -> None:
        return None


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (type(v), v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    return value


def _record(rng: random.Random) -> dict[str, object]:
    record: dict[str, object] = {name: rng.choice(CATEGORICAL[name]) for name in CATEGORICAL}
    record.update(
        SeniorCitizen=rng.choice([0, 1, 0.0, 1.0]),
        tenure=rng.choice([0, 5, 72, 1200, 12.0]),
        MonthlyCharges=rng.choice([0, 18.25, 70.5, 100_000, 50]),
        TotalCharges=rng.choice([None, 0, 29.85, 10_000_000, 1500]),
    )
    return {name: record[name] for name in FEATURE_COLUMNS}


ODD_VALUES: list[object] = [
    None,
    True,
    False,
    -1,
    0,
    1,
    2,
    1.5,
    -0.0,
    1e300,
    math.nan,
    math.inf,
    -math.inf,
    "",
    " ",
    "\t",
    "1",
    "29.85",
    "-1",
    "1e3",
    " 5",
    "Yes",
    "yes",
    "Male",
    "DSL",
    "No internet service",
    [],
    {},
    [1],
    10**30,
    1200,
    1201,
    100_000.0001,
    10_000_000,
    10_000_001,
]


def _variants(rng: random.Random) -> list[object]:
    base = _record(rng)
    out: list[object] = [base, {**base, ID_COLUMN: "7590-VHVEG"}]
    for name in FEATURE_COLUMNS:
        for value in rng.sample(ODD_VALUES, 6):
            out.append({**base, name: value})
        out.append({k: v for k, v in base.items() if k != name})
        out.append({**{k: v for k, v in base.items() if k != name}, ID_COLUMN: "x"})
        out.append({**{k: v for k, v in base.items() if k != name}, "Tenure": 5})
    for cid in ("", "a" * MAX_ID_LENGTH, "a" * (MAX_ID_LENGTH + 1), 7, None, ["x"]):
        out.append({**base, ID_COLUMN: cid})
    out += [{**base, "extra": 1}, {**base, ID_COLUMN: "x", "extra": 1}, [], "x", None, 3]
    return out


@pytest.mark.parametrize("seed", range(25))
def test_every_answer_equals_the_full_checks(seed: int) -> None:
    rng = random.Random(seed)
    fast, full = CustomerValidator(), FullChecksOnly()
    for obj in _variants(rng):
        assert _typed(fast.validate(obj, "instances[3].")) == _typed(
            full.validate(obj, "instances[3].")
        ), obj


def test_the_fast_path_takes_well_typed_records_and_nothing_else() -> None:
    validator = CustomerValidator()
    record = _record(random.Random(1))
    assert validator._fast(record) is not None
    assert validator._fast({**record, ID_COLUMN: "x"}) is not None
    assert validator._fast({**record, "TotalCharges": "29.85"}) is None  # a numeric string
    assert validator._fast({**record, "SeniorCitizen": True}) is None
    assert validator._fast({**record, "gender": "male"}) is None


def test_numbers_get_the_types_the_model_expects() -> None:
    record = {**_record(random.Random(2)), "tenure": 12.0, "MonthlyCharges": 70, "SeniorCitizen": 1}
    checked, _, problems = CustomerValidator().validate(record)
    assert problems == [] and checked is not None
    assert type(checked["tenure"]) is int and checked["tenure"] == 12
    assert type(checked["MonthlyCharges"]) is float and checked["MonthlyCharges"] == 70.0
    assert type(checked["SeniorCitizen"]) is int
    assert all(isinstance(checked[n], int | float | type(None)) for n in NUMERIC)
