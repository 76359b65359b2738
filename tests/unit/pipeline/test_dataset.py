"""The data: the generator's schema and determinism, and the schema check of any CSV."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn import dataset
from churn.cli import main
from churn.config import DataParams
from churn.schema import CATEGORICAL, CSV_COLUMNS, TARGET_CLASSES

#: Rows of the public IBM file (its first three and a tenure-0 one), spelled exactly as there.
PUBLIC_ROWS = """\
customerID,gender,SeniorCitizen,Partner,Dependents,tenure,PhoneService,MultipleLines,InternetService,OnlineSecurity,OnlineBackup,DeviceProtection,TechSupport,StreamingTV,StreamingMovies,Contract,PaperlessBilling,PaymentMethod,MonthlyCharges,TotalCharges,Churn
7590-VHVEG,Female,0,Yes,No,1,No,No phone service,DSL,No,Yes,No,No,No,No,Month-to-month,Yes,Electronic check,29.85,29.85,No
5575-GNVDE,Male,0,No,No,34,Yes,No,DSL,Yes,No,Yes,No,No,No,One year,No,Mailed check,56.95,1889.5,No
3668-QPYBK,Male,0,No,No,2,Yes,No,DSL,Yes,Yes,No,No,No,No,Month-to-month,Yes,Mailed check,53.85,108.15,Yes
4472-LVYGI,Female,0,Yes,Yes,0,No,No phone service,DSL,Yes,No,Yes,Yes,Yes,No,Two year,Yes,Bank transfer (automatic),52.55, ,No
"""  # noqa: E501


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return dataset.generate(7043, seed=42)


def test_generated_frame_has_the_public_columns_in_order(generated: pd.DataFrame) -> None:
    assert tuple(generated.columns) == CSV_COLUMNS
    assert len(generated) == 7043
    assert dataset.schema_problems(generated) == []


def test_generated_values_use_only_the_public_spellings(generated: pd.DataFrame) -> None:
    for column, allowed in CATEGORICAL.items():
        assert set(generated[column]) <= set(allowed), column
        assert len(set(generated[column])) == len(allowed), f"{column}: a category never occurs"
    assert set(generated["Churn"]) == set(TARGET_CLASSES)
    assert set(generated["SeniorCitizen"]) == {"0", "1"}
    ids = generated["customerID"]
    assert ids.is_unique
    assert ids.str.fullmatch(r"\d{4}-[A-Z]{5}").all()


def test_generated_numbers_are_in_the_public_files_ranges(generated: pd.DataFrame) -> None:
    typed = dataset.to_typed(generated)
    assert typed["tenure"].between(0, 72).all()
    assert typed["MonthlyCharges"].between(18.25, 118.75).all()
    # Charges come in steps of 0.05, spelled without trailing zeros ("42.3", "20").
    cents = (typed["MonthlyCharges"] * 100).round().astype(int)
    assert (cents % 5 == 0).all()
    assert not generated["MonthlyCharges"].str.contains(r"\.\d*0$").any()
    billed = typed.dropna(subset=["TotalCharges"])
    ratio = billed["TotalCharges"] / (billed["tenure"] * billed["MonthlyCharges"])
    assert ratio.between(0.8, 1.2).all()


def test_total_charges_is_one_space_exactly_when_tenure_is_zero(generated: pd.DataFrame) -> None:
    blank = generated["TotalCharges"] == dataset.BLANK_TOTAL_CHARGES
    assert blank.any()
    assert (blank == (generated["tenure"] == "0")).all()
    assert dataset.to_typed(generated)["TotalCharges"].isna().sum() == blank.sum()


def test_generated_services_are_consistent(generated: pd.DataFrame) -> None:
    no_net = generated["InternetService"] == "No"
    for addon in ("OnlineSecurity", "TechSupport", "StreamingMovies"):
        assert (generated.loc[no_net, addon] == "No internet service").all()
        assert (generated.loc[~no_net, addon] != "No internet service").all()
    no_phone = generated["PhoneService"] == "No"
    assert (generated.loc[no_phone, "MultipleLines"] == "No phone service").all()
    assert (generated.loc[~no_phone, "MultipleLines"] != "No phone service").all()


def test_churn_follows_the_public_files_broad_pattern(generated: pd.DataFrame) -> None:
    churn = generated["Churn"] == "Yes"
    assert 0.22 <= churn.mean() <= 0.31  # public file: 26.5 %
    by_contract = churn.groupby(generated["Contract"]).mean()
    assert by_contract["Month-to-month"] > by_contract["One year"] > by_contract["Two year"]
    by_internet = churn.groupby(generated["InternetService"]).mean()
    assert by_internet["Fiber optic"] > by_internet["DSL"] > by_internet["No"]
    tenure = generated["tenure"].astype(int)
    assert churn[tenure <= 6].mean() > 2 * churn[tenure > 48].mean()


def test_same_seed_writes_a_byte_identical_file(tmp_path: Path) -> None:
    first = dataset.write_csv(dataset.generate(500, seed=7), tmp_path / "a.csv")
    second = dataset.write_csv(dataset.generate(500, seed=7), tmp_path / "b.csv")
    other = dataset.write_csv(dataset.generate(500, seed=8), tmp_path / "c.csv")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_row_count_is_configurable() -> None:
    assert len(dataset.generate(123, seed=1)) == 123
    with pytest.raises(ValueError, match="n_rows"):
        dataset.generate(0)


def test_rows_of_the_public_file_pass_the_check(tmp_path: Path) -> None:
    path = tmp_path / "public.csv"
    path.write_text(PUBLIC_ROWS, encoding="utf-8")
    typed = dataset.load_csv(path)
    assert typed["TotalCharges"].dtype == np.float64
    assert typed["TotalCharges"].isna().tolist() == [False, False, False, True]
    assert typed["tenure"].tolist() == [1, 34, 2, 0]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    return path


def _broken_csv(tmp_path: Path) -> Path:
    frame = dataset.read_raw(_write(tmp_path, PUBLIC_ROWS)).drop(
        columns=["Contract", "TechSupport"]
    )
    frame.loc[0, "gender"] = "F"
    frame.loc[1, "gender"] = "male"
    frame.loc[2, "PaymentMethod"] = "Cheque"
    frame.loc[0, "tenure"] = "twelve"
    frame.loc[1, "Churn"] = "1"
    path = tmp_path / "broken.csv"
    frame.to_csv(path, index=False)
    return path


def test_schema_error_lists_missing_columns_and_unknown_values(tmp_path: Path) -> None:
    with pytest.raises(dataset.DataSchemaError) as caught:
        dataset.load_csv(_broken_csv(tmp_path))
    message = str(caught.value)
    assert "missing columns: TechSupport, Contract" in message
    assert re.search(r"gender: unknown values 'F' \(1 row\), 'male' \(1 row\)", message)
    assert "expected one of Female, Male" in message
    assert "PaymentMethod: unknown values 'Cheque'" in message
    assert "tenure: non-numeric values 'twelve'" in message
    assert "Churn: unknown values '1'" in message
    assert len(caught.value.problems) == 5


def test_numbers_out_of_range_or_blank_are_reported(tmp_path: Path) -> None:
    frame = dataset.read_raw(_write(tmp_path, PUBLIC_ROWS))
    frame.loc[0, "MonthlyCharges"] = "-5"
    frame.loc[1, "SeniorCitizen"] = "0.5"
    frame.loc[2, "tenure"] = ""
    problems = dataset.schema_problems(frame)
    assert any(p.startswith("MonthlyCharges: values outside 0..100000") for p in problems)
    assert any(p.startswith("SeniorCitizen: non-integer values '0.5'") for p in problems)
    assert "tenure: 1 blank value(s)" in problems


def test_users_file_is_copied_byte_for_byte(tmp_path: Path) -> None:
    source = _write(tmp_path, PUBLIC_ROWS)
    target = tmp_path / "project" / "data" / "raw" / "telco_churn.csv"
    params = DataParams(source="../data.csv", n_rows=10, seed=0)
    dataset.materialize_raw(target, params, tmp_path / "project")
    assert target.read_bytes() == source.read_bytes()


def test_a_mismatching_users_file_fails_before_anything_is_written(tmp_path: Path) -> None:
    target = tmp_path / "raw" / "telco_churn.csv"
    params = DataParams(source=str(_broken_csv(tmp_path)), n_rows=10, seed=0)
    with pytest.raises(dataset.DataSchemaError, match="missing columns"):
        dataset.materialize_raw(target, params, tmp_path)
    assert not target.exists()
    with pytest.raises(FileNotFoundError, match="data.source"):
        dataset.materialize_raw(target, DataParams(source="nope.csv", n_rows=10, seed=0), tmp_path)


def test_cli_check_reports_problems_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(_write(tmp_path, PUBLIC_ROWS))]) == 0
    assert main(["check", str(_broken_csv(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert "does not match the Telco Customer Churn schema (5 problem(s))" in err
    assert "missing columns: TechSupport, Contract" in err
