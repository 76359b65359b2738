"""The customer validator: every rule, all problems at once, and the exact string patterns."""

from __future__ import annotations

import itertools
import random
import re
from decimal import Decimal

import pytest

from churn.api.contract import BLANK_PATTERN, EXAMPLE_CUSTOMER, string_pattern
from churn.api.validation import CustomerValidator
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, NUMERIC, NumericField

V = CustomerValidator()


def check(**changes: object) -> tuple[dict[str, object] | None, list[dict[str, str]]]:
    obj = {**EXAMPLE_CUSTOMER, **changes}
    record, _, problems = V.validate(obj)
    return record, problems


def only_problem(**changes: object) -> dict[str, str]:
    record, problems = check(**changes)
    assert record is None and len(problems) == 1, problems
    return problems[0]


def test_a_valid_customer_passes_with_normalised_types() -> None:
    record, customer_id, problems = V.validate({**EXAMPLE_CUSTOMER, "customerID": "7590-VHVEG"})
    assert problems == [] and customer_id == "7590-VHVEG"
    assert record is not None and list(record) == list(FEATURE_COLUMNS)
    assert type(record["tenure"]) is int and type(record["SeniorCitizen"]) is int
    assert type(record["MonthlyCharges"]) is float and type(record["TotalCharges"]) is float


@pytest.mark.parametrize(
    ("field", "given", "expected"),
    [
        ("MonthlyCharges", "29.85", 29.85),
        ("MonthlyCharges", "0", 0.0),
        ("MonthlyCharges", 70, 70.0),
        ("TotalCharges", "1889.5", 1889.5),
        ("TotalCharges", " ", None),
        ("TotalCharges", "", None),
        ("TotalCharges", "\t ", None),
        ("TotalCharges", None, None),
        ("tenure", "34", 34),
        ("tenure", "007", 7),
        ("tenure", 34.0, 34),
        ("SeniorCitizen", "1", 1),
        ("SeniorCitizen", 0, 0),
    ],
)
def test_csv_style_values_are_accepted(field: str, given: object, expected: object) -> None:
    record, problems = check(**{field: given})
    assert problems == [] and record is not None
    assert record[field] == expected and type(record[field]) is type(expected)


@pytest.mark.parametrize(
    ("field", "given", "words"),
    [
        ("tenure", 1.5, "whole number"),
        ("tenure", "1.5", "digits only"),
        ("tenure", -1, "between 0 and 1200"),
        ("tenure", 1201, "between 0 and 1200"),
        ("tenure", "99999999999999999999999", "between 0 and 1200"),
        ("tenure", True, "not a boolean"),
        ("tenure", None, "not null"),
        ("tenure", [], "got an array"),
        ("SeniorCitizen", 2, "between 0 and 1"),
        ("SeniorCitizen", "yes", "numeric string"),
        ("SeniorCitizen", False, "not a boolean"),
        ("MonthlyCharges", float("nan"), "finite"),
        ("MonthlyCharges", float("inf"), "finite"),
        ("MonthlyCharges", "NaN", "numeric string"),
        ("MonthlyCharges", "Infinity", "numeric string"),
        ("MonthlyCharges", "1e3", "numeric string"),
        ("MonthlyCharges", "-5", "numeric string"),
        ("MonthlyCharges", " 5", "numeric string"),
        ("MonthlyCharges", "1_000", "numeric string"),
        ("MonthlyCharges", "٣", "numeric string"),  # an Arabic-Indic digit is not a CSV digit
        ("MonthlyCharges", "", "numeric string"),
        ("MonthlyCharges", 100000.01, "between 0 and 100000"),
        ("MonthlyCharges", {}, "got an object"),
        ("TotalCharges", -0.01, "between 0 and 10000000"),
        ("TotalCharges", "12,5", "numeric string"),
        ("gender", "male", "did you mean 'Male'"),
        ("gender", "Other", "must be one of 'Female', 'Male'"),
        ("Contract", " One year", "did you mean 'One year'"),
        ("PaymentMethod", 3, "must be one of"),
        ("InternetService", None, "got null"),
    ],
)
def test_bad_values_are_named_with_the_problem(field: str, given: object, words: str) -> None:
    problem = only_problem(**{field: given})
    assert problem["field"] == field
    assert words in problem["problem"]


def test_long_values_are_not_echoed_back() -> None:
    problem = only_problem(gender="x" * 5000)
    assert "x" * 50 not in problem["problem"] and "5000 chars" in problem["problem"]


def test_every_problem_of_a_record_is_reported_at_once() -> None:
    obj = {k: v for k, v in EXAMPLE_CUSTOMER.items() if k not in ("tenure", "Contract")}
    obj.update(gender="F", MonthlyCharges="abc", Tenure=5, customerID=12, extra=None)
    record, customer_id, problems = V.validate(obj, "instances[3].")
    assert record is None and customer_id is None
    by_field = {p["field"]: p["problem"] for p in problems}
    assert by_field == {
        "instances[3].gender": by_field["instances[3].gender"],
        "instances[3].tenure": "required field is missing",
        "instances[3].Contract": "required field is missing",
        "instances[3].MonthlyCharges": by_field["instances[3].MonthlyCharges"],
        "instances[3].customerID": "must be a string; got 12",
        "instances[3].Tenure": "unknown field; did you mean 'tenure'?",
        "instances[3].extra": "unknown field",
    }


@pytest.mark.parametrize("obj", [[], "customer", 5, None, True])
def test_non_objects_are_rejected(obj: object) -> None:
    _, _, problems = V.validate(obj, "instances[0].")
    assert problems == [{"field": "instances[0]", "problem": problems[0]["problem"]}]
    assert "must be a JSON object" in problems[0]["problem"]
    _, _, problems = V.validate(obj)
    assert problems[0]["field"] == "body"


def test_customer_id_rules() -> None:
    assert check(customerID="")[1] == []
    assert "at most 128" in only_problem(customerID="x" * 129)["problem"]
    assert "must be a string" in only_problem(customerID=None)["problem"]


def test_every_category_spelling_of_the_schema_passes() -> None:
    for name, values in CATEGORICAL.items():
        for value in values:
            assert check(**{name: value})[1] == [], (name, value)


# -- the numeric-string patterns published in the OpenAPI document -------------------------


def _numeric_string(spec: NumericField, text: str) -> bool:
    """The rule in words: digits (and a decimal part unless whole), a value within the range."""
    shape = r"^[0-9]+$" if spec.integer else r"^[0-9]+(\.[0-9]+)?$"
    return bool(re.match(shape, text)) and spec.minimum <= Decimal(text.strip()) <= spec.maximum


def _accepts(name: str, text: str) -> bool:
    blank = NUMERIC[name].nullable and re.match(BLANK_PATTERN, text)
    return not check(**{name: text})[1] and not blank


def _candidates(spec: NumericField) -> list[str]:
    top = int(spec.maximum)
    rng = random.Random(7)
    texts = {"", "0", "00", "0.", ".5", "-0", "+1", "1e2", " 1", "1 ", "1\n", "1\n\n", "01.50"}
    for n in [0, 1, 2, 9, 10, 99, 100, top - 1, top, top + 1, top * 10, 10 ** len(str(top))]:
        texts |= {str(n), f"0{n}", f"{n}.0", f"{n}.00", f"{n}.5", f"{n}.", f"{n}.01"}
    for _ in range(3000):
        n = rng.randint(0, top * 2)
        texts.add(str(n))
        texts.add(f"{n}.{rng.randint(0, 999)}")
        texts.add(f"{n / 100:.2f}")
    texts |= {"".join(p) for p in itertools.product("019.", repeat=3)}
    return sorted(texts)


@pytest.mark.parametrize("name", sorted(NUMERIC))
def test_string_pattern_matches_exactly_what_the_validator_accepts(name: str) -> None:
    spec = NUMERIC[name]
    pattern = re.compile(string_pattern(spec))
    disagreements = [
        text
        for text in _candidates(spec)
        if len({bool(pattern.search(text)), _numeric_string(spec, text), _accepts(name, text)}) > 1
    ]
    assert disagreements == []


def test_string_pattern_needs_a_zero_based_integral_range() -> None:
    with pytest.raises(ValueError, match="0..N"):
        string_pattern(NumericField(1, 10, integer=True))


def test_validate_many_equals_validating_each_record() -> None:
    validator = CustomerValidator()
    good = dict(EXAMPLE_CUSTOMER)
    slow = {**EXAMPLE_CUSTOMER, "tenure": "12", "TotalCharges": " ", "customerID": "c-2"}
    batch: list[object] = [good, slow, {**good, "customerID": "c-3"}]
    records, ids, problems = validator.validate_many(batch)
    expected = [validator.validate(obj) for obj in batch]
    assert problems == [] and ids == [None, "c-2", "c-3"]
    assert records == [record for record, _, _ in expected]
    assert records[1]["tenure"] == 12 and records[1]["TotalCharges"] is None

    misspelt = {**{k: v for k, v in good.items() if k != "tenure"}, "Tenure": 3}
    bad: list[object] = [good, {**good, "tenure": -1}, "not an object", misspelt]
    _, _, problems = validator.validate_many(bad)
    fields = [p["field"] for p in problems]
    assert fields[:2] == ["instances[1].tenure", "instances[2]"]
    assert "instances[3].Tenure" in fields and "instances[3].tenure" in fields
