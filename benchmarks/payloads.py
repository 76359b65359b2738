"""Request bodies of the scenarios: real customers from the held-out split, as JSON.

Records come from ``data/processed/test.csv`` (the pipeline's held-out split, in the Telco
schema) with numeric fields typed as the API documents them; when the file is missing, from a
seeded generator over `churn.schema`, so that the suite still runs on artifacts pulled from
DVC without the split. The same record is used for v1, v2 and `mlflow models serve`.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from churn.config import ArtifactPaths
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, ID_COLUMN, NUMERIC

__all__ = [
    "batch_body",
    "load_records",
    "mlflow_body",
    "predict_body",
    "typed_record",
]

Record = dict[str, object]

TEST_SPLIT = ArtifactPaths(Path()).test_csv


def typed_record(row: dict[str, str]) -> Record:
    """Turn one CSV row into a customer object: feature columns (and customerID) typed.

    Whole-number fields become ints, the others floats; a blank ``TotalCharges`` becomes
    ``None``. Other columns (``Churn``) are dropped.

    Raises:
        KeyError: a feature column is missing.
        ValueError: a numeric field is not a number.

    """
    record: Record = {}
    if row.get(ID_COLUMN):
        record[ID_COLUMN] = row[ID_COLUMN]
    for name in FEATURE_COLUMNS:
        value = row[name]
        spec = NUMERIC.get(name)
        if spec is None:
            record[name] = value
        elif spec.nullable and not value.strip():
            record[name] = None
        elif spec.integer:
            record[name] = int(value)
        else:
            record[name] = float(value)
    return record


def _synthetic(count: int, seed: int = 7) -> list[Record]:
    rng = random.Random(seed)
    records: list[Record] = []
    for i in range(count):
        record: Record = {ID_COLUMN: f"BENCH-{i:05d}"}
        for name in FEATURE_COLUMNS:
            if name in CATEGORICAL:
                record[name] = rng.choice(CATEGORICAL[name])
        tenure = rng.randint(0, 72)
        monthly = round(rng.uniform(18.25, 118.75), 2)
        record.update(
            SeniorCitizen=rng.randint(0, 1),
            tenure=tenure,
            MonthlyCharges=monthly,
            TotalCharges=round(tenure * monthly, 2) if tenure else None,
        )
        records.append({k: record[k] for k in (ID_COLUMN, *FEATURE_COLUMNS)})
    return records


def load_records(root: Path, count: int) -> tuple[list[Record], str]:
    """Return ``count`` customers (cycling through the file if it is shorter) and their source.

    The first record always has a known ``TotalCharges``, so that it is a valid input for
    `mlflow models serve` too (whose signature says double).
    """
    path = root / TEST_SPLIT
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as fh:
            records = [typed_record(row) for row in csv.DictReader(fh)]
        source = str(TEST_SPLIT)
    else:
        records, source = [], ""
    if not records:
        records = _synthetic(max(count, 1))
        source = "synthetic (seeded, from churn.schema)"
    known = next((i for i, r in enumerate(records) if r["TotalCharges"] is not None), 0)
    records.insert(0, records.pop(known))
    cycled = [records[i % len(records)] for i in range(count)]
    return cycled, source


def predict_body(record: Record) -> bytes:
    """Body of ``POST /predict``: the customer object itself."""
    return json.dumps(record).encode()


def batch_body(records: list[Record]) -> bytes:
    """Body of ``POST /predict/batch``: ``{"instances": [...]}``."""
    return json.dumps({"instances": records}).encode()


def mlflow_body(records: list[Record]) -> bytes:
    """Body of MLflow's ``POST /invocations`` in ``dataframe_records`` form (no customerID).

    The MLflow model's signature holds the 19 feature columns only.
    """
    rows = [{name: r[name] for name in FEATURE_COLUMNS} for r in records]
    return json.dumps({"dataframe_records": rows}).encode()


def v2_infer_body(records: list[Record]) -> bytes:
    """Body of the Open Inference Protocol's ``POST /v2/models/churn/infer``: a tensor a column."""
    inputs = [
        {
            "name": name,
            "datatype": "BYTES"
            if name in CATEGORICAL
            else ("INT64" if NUMERIC[name].integer else "FP64"),
            "shape": [len(records)],
            "data": [r[name] for r in records],
        }
        for name in FEATURE_COLUMNS
    ]
    return json.dumps({"inputs": inputs}).encode()
