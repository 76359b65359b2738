"""A batch checked column by column: the same verdict, values, scores and drift counts.

`CustomerValidator.validate_many` first tries a whole batch per column
(`CustomerValidator._fast_columns`); what it accepts must be exactly what the record-by-record
checks accept, with the same normalised values, and the `churn.records.Records` it returns
must score and count for drift exactly as the plain records do.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from churn.api.validation import CustomerValidator
from churn.drift import Reference, build_reference
from churn.records import Records, concat, numbers
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, ID_COLUMN, NUMERIC
from churn.serving.prediction import ServingModels

V = CustomerValidator()

#: Values that a field may be given in a mutated record: good, bad and borderline.
ODD_VALUES: tuple[object, ...] = (
    None, True, False, 0, 1, 5.0, 5.5, -1, 1201, 10**400, math.nan, math.inf, -math.inf,
    "12", "29.85", " ", "", "Yes", "yes", "No internet service", [], {}, 1e308,
)  # fmt: skip


def _per_record(batch: list[object]) -> tuple[list[object], list[object], list[object]]:
    """What checking each record alone gives (the reference of the column path)."""
    records, ids, problems = [], [], []
    for i, obj in enumerate(batch):
        record, customer_id, found = V.validate(obj, f"instances[{i}].")
        problems += found
        records.append(record)
        ids.append(customer_id)
    return records, ids, problems


def _features(record: object) -> dict[str, object]:
    assert isinstance(record, dict)
    return {name: record[name] for name in FEATURE_COLUMNS}


def _same_values(a: dict[str, object], b: dict[str, object]) -> bool:
    return all(
        a[k] == b[k] or (a[k] is None and isinstance(b[k], float) and math.isnan(b[k])) for k in a
    )


def _mutations(make_records, seed: int) -> list[list[object]]:
    """Batches of 20 valid records, each with one record changed in one way."""
    rng = random.Random(seed)
    base: list[object] = list(make_records(20, seed=seed, null_total_rate=0.2))
    for i, obj in enumerate(base):
        if i % 3 == 0:
            obj[ID_COLUMN] = f"c-{i}"  # type: ignore[index]
    batches: list[list[object]] = [list(base)]
    fields = [*FEATURE_COLUMNS, ID_COLUMN, "Tenure", "extra"]
    for _ in range(400):
        batch = [dict(obj) for obj in base]  # type: ignore[call-overload]
        target = batch[rng.randrange(len(batch))]
        field = rng.choice(fields)
        action = rng.random()
        if action < 0.15:
            target.pop(field, None)
        elif action < 0.2:
            target.pop(rng.choice(FEATURE_COLUMNS))
            target[field] = 1
        else:
            target[field] = rng.choice(ODD_VALUES)
        batches.append(batch)
    batches.append([*base[:10], "not an object", *base[10:]])
    batches.append([{**base[0], ID_COLUMN: "x" * 129}, *base[1:]])  # type: ignore[dict-item]
    batches.append([{**base[0], ID_COLUMN: None}, *base[1:]])  # type: ignore[dict-item]
    return batches


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_column_path_accepts_exactly_what_each_record_alone_accepts(
    make_records, seed: int
) -> None:
    accepted = refused = 0
    for batch in _mutations(make_records, seed):
        records, ids, problems = V.validate_many(batch)
        expected_records, expected_ids, expected_problems = _per_record(batch)
        assert problems == expected_problems, batch
        if problems:
            refused += 1
            continue
        accepted += 1
        assert ids == expected_ids
        assert len(records) == len(batch)
        for got, want in zip(records, expected_records, strict=True):
            assert _same_values(_features(want), _features(got)), (got, want)
        if isinstance(records, Records):
            for name in NUMERIC:
                want_column = np.array(
                    [r[name] for r in expected_records],  # type: ignore[index]
                    dtype=np.float64,
                )
                np.testing.assert_array_equal(records.numeric[name], want_column)
            for name, spellings in CATEGORICAL.items():
                got_values = [spellings[i] for i in records.codes[name].tolist()]
                assert got_values == [r[name] for r in expected_records]  # type: ignore[index]
    # Both verdicts really occur, and the column path really ran on the good ones.
    assert accepted > 20 and refused > 100
    assert isinstance(V.validate_many(_mutations(make_records, seed)[0])[0], Records)


def test_numeric_strings_and_blanks_still_pass_record_by_record(make_records) -> None:
    batch: list[object] = list(make_records(20, seed=4))
    batch[3] = {**batch[3], "tenure": "12", "TotalCharges": " "}  # type: ignore[dict-item]
    records, _, problems = V.validate_many(batch)
    assert problems == [] and not isinstance(records, Records)
    assert records[3]["tenure"] == 12 and records[3]["TotalCharges"] is None


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_columns_batch_scores_explains_and_counts_like_plain_records(
    artifact_root: Path, make_records, version: str
) -> None:
    plain = make_records(500, seed=9, null_total_rate=0.1)
    given = [dict(r) for r in plain]
    for r in given[::2]:
        r["MonthlyCharges"] = int(r["MonthlyCharges"])  # a JSON int for a float field
    records, _, problems = V.validate_many(given)
    assert problems == [] and isinstance(records, Records)
    normalised = [V.validate(r)[0] for r in given]
    models = ServingModels.load(artifact_root)
    np.testing.assert_array_equal(
        models.predict_proba(version, records), models.predict_proba(version, normalised)
    )
    np.testing.assert_array_equal(
        models.explain(version, records).contributions,
        models.explain(version, normalised).contributions,
    )
    scores = models.predict_proba(version, normalised).tolist()
    training = make_records(2000, seed=10, null_total_rate=0.05)
    reference = Reference(
        build_reference(
            version, {name: [r[name] for r in training] for name in FEATURE_COLUMNS}, scores
        )
    )
    np.testing.assert_array_equal(
        reference.bin_counts(records, scores), reference.bin_counts(normalised, scores)
    )


def test_batches_gathered_together_keep_their_columns(make_records) -> None:
    a, b = (V.validate_many(make_records(n, seed=n))[0] for n in (12, 9))
    assert isinstance(a, Records) and isinstance(b, Records)
    assert concat([a]) is a  # one answer's batch: not copied
    both = concat([a, b])
    assert isinstance(both, Records) and list(both) == [*a, *b]
    plain = [dict(r) for r in both]
    for name in NUMERIC:
        np.testing.assert_array_equal(both.numeric[name], numbers(plain, name))
    for name, spellings in CATEGORICAL.items():
        assert [spellings[i] for i in both.codes[name]] == [r[name] for r in plain]
    single = [V.validate(make_records(1, seed=3)[0])[0]]
    mixed = concat([a, single])
    assert not isinstance(mixed, Records) and list(mixed) == [*a, *single]
