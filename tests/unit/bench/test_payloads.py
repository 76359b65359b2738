from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks import payloads

from churn.api.contract import EXAMPLE_CUSTOMER
from churn.api.validation import CustomerValidator
from churn.schema import CSV_COLUMNS, FEATURE_COLUMNS, ID_COLUMN

#: A row as the CSV file holds it: every value a string (the API's example customer).
ROW = {
    ID_COLUMN: "0001-ABC",
    **{name: str(value) for name, value in EXAMPLE_CUSTOMER.items()},
    "Churn": "No",
}


def _write_split(root: Path, rows: list[dict[str, str]]) -> None:
    path = root / payloads.TEST_SPLIT
    path.parent.mkdir(parents=True)
    lines = [",".join(CSV_COLUMNS)] + [",".join(r[c] for c in CSV_COLUMNS) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def test_a_csv_row_becomes_a_typed_customer() -> None:
    record = payloads.typed_record(ROW)
    assert record["SeniorCitizen"] == 0 and record["tenure"] == 1
    assert record["MonthlyCharges"] == 29.85 and record["TotalCharges"] == 29.85
    assert record[ID_COLUMN] == "0001-ABC"
    assert "Churn" not in record
    assert payloads.typed_record({**ROW, "TotalCharges": " "})["TotalCharges"] is None


def test_records_from_the_split_cycle_and_start_with_a_known_total(tmp_path: Path) -> None:
    blank = {**ROW, "customerID": "blank", "TotalCharges": " ", "tenure": "0"}
    _write_split(tmp_path, [blank, ROW])
    records, source = payloads.load_records(tmp_path, 5)
    assert source == str(payloads.TEST_SPLIT)
    assert len(records) == 5
    assert records[0][ID_COLUMN] == "0001-ABC"  # the blank TotalCharges is not first
    assert [r[ID_COLUMN] for r in records] == ["0001-ABC", "blank"] * 2 + ["0001-ABC"]


@pytest.mark.parametrize("with_split", [True, False])
def test_every_record_is_valid_for_the_api(tmp_path: Path, with_split: bool) -> None:
    if with_split:
        _write_split(tmp_path, [ROW, {**ROW, "TotalCharges": " ", "tenure": "0"}])
    records, source = payloads.load_records(tmp_path, 300)
    assert ("synthetic" in source) is not with_split
    validator = CustomerValidator()
    for record in records:
        _, _, problems = validator.validate(record)
        assert problems == []
    assert records[0]["TotalCharges"] is not None


def test_bodies_have_the_shapes_of_each_endpoint(tmp_path: Path) -> None:
    records, _ = payloads.load_records(tmp_path, 3)
    assert json.loads(payloads.predict_body(records[0])) == records[0]
    assert json.loads(payloads.batch_body(records)) == {"instances": records}
    mlflow = json.loads(payloads.mlflow_body(records[:1]))
    assert list(mlflow) == ["dataframe_records"]
    assert list(mlflow["dataframe_records"][0]) == list(FEATURE_COLUMNS)  # no customerID
