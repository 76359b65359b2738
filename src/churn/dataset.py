"""The data: a seeded generator of Telco-like customers, and a loader that checks the schema.

The generator writes a CSV with exactly the columns, order and value spellings of the public
IBM "Telco Customer Churn" file (``churn.schema``), including its quirk of a blank
``TotalCharges`` (a single space) for customers with tenure 0. The loader reads any such CSV,
real or synthetic, and refuses a file whose schema does not match with one error that lists
every missing column and every unknown value, column by column.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from churn.config import DataParams
from churn.schema import (
    CATEGORICAL,
    CSV_COLUMNS,
    ID_COLUMN,
    INTERNET_ADDONS,
    NUMERIC,
    TARGET_CLASSES,
    TARGET_COLUMN,
)

#: How the public file spells an unknown TotalCharges.
BLANK_TOTAL_CHARGES = " "
#: Most offending values quoted per column in a schema error.
_MAX_QUOTED = 8


class DataSchemaError(ValueError):
    """A CSV does not have the Telco schema; ``problems`` holds one line per column at fault."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{source} does not match the Telco Customer Churn schema "
            f"({len(self.problems)} problem(s)):\n{lines}"
        )


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _pick(rng: np.random.Generator, yes_probability: np.ndarray) -> np.ndarray:
    """Draw Yes/No per row with the given probability of Yes."""
    return np.where(rng.random(yes_probability.shape) < yes_probability, "Yes", "No")


def _customer_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Draw ``n`` unique IDs spelled like the public file's (``7590-VHVEG``)."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    seen: set[str] = set()
    ids: list[str] = []
    while len(ids) < n:
        k = n - len(ids)
        digits = rng.integers(0, 10_000, size=k)
        suffixes = rng.choice(letters, size=(k, 5))
        for d, s in zip(digits, suffixes, strict=True):
            cid = f"{d:04d}-{''.join(s)}"
            if cid not in seen:
                seen.add(cid)
                ids.append(cid)
    return ids


def generate(n_rows: int = 7043, seed: int = 42) -> pd.DataFrame:
    """Return ``n_rows`` synthetic customers with the Telco schema, as the CSV's strings.

    Marginals follow the public file (about 26.5 % churn, half the customers on monthly
    contracts, 44 % on fibre, tenure piled up at 1 and 72 months, a blank ``TotalCharges``
    and no churn for tenure 0). Churn is drawn from a logistic model of the known signals
    (contract, tenure, fibre, electronic check, missing tech support and online security,
    charges, seniority) with parts a linear model cannot fully capture (risk decays
    exponentially with tenure; fibre without tech support, new monthly fibre customers and
    expensive monthly plans are worse than the sum of their parts) plus unobserved
    per-customer noise, so no model is near perfect: on the default 7,043 rows a logistic
    regression scores about 0.83-0.86 ROC AUC, as on the public file, and gradient boosting
    a little more. The same ``seed`` gives the same frame, hence a byte-identical CSV.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be positive, got {n_rows}")
    rng = np.random.default_rng(seed)
    n = n_rows

    gender = rng.choice(np.array(CATEGORICAL["gender"]), size=n)
    senior = (rng.random(n) < 0.162).astype(int)
    partner = _pick(rng, np.full(n, 0.483))
    dependents = _pick(rng, np.where(partner == "Yes", 0.52, 0.10) * np.where(senior, 0.4, 1.0))

    # Tenure: new customers, a long flat middle and a heap of long-standing ones at 72.
    kind = rng.random(n)
    tenure = np.where(
        kind < 0.30,
        np.ceil(rng.exponential(7.0, n)),
        np.where(kind < 0.86, rng.integers(1, 73, n), 72 - np.floor(rng.exponential(3.0, n))),
    )
    tenure = np.clip(tenure, 1, 72).astype(int)
    tenure[rng.random(n) < 0.0016] = 0
    t = tenure / 72.0

    internet = rng.choice(np.array(CATEGORICAL["InternetService"]), size=n, p=[0.34, 0.44, 0.22])
    has_net = internet != "No"
    fibre = internet == "Fiber optic"
    phone = np.where(internet == "DSL", _pick(rng, np.full(n, 0.72)), "Yes")
    multi = np.where(
        phone == "No",
        "No phone service",
        _pick(rng, np.clip(0.25 + 0.25 * fibre + 0.35 * t, 0, 0.95)),
    )
    addon_base = {
        "OnlineSecurity": (0.42, 0.20),
        "OnlineBackup": (0.38, 0.32),
        "DeviceProtection": (0.34, 0.35),
        "TechSupport": (0.42, 0.18),
        "StreamingTV": (0.30, 0.55),
        "StreamingMovies": (0.30, 0.56),
    }
    addons: dict[str, np.ndarray] = {}
    for col, (p_dsl, p_fibre) in addon_base.items():
        p = np.clip(np.where(fibre, p_fibre, p_dsl) + 0.35 * (t - 0.45), 0.02, 0.98)
        addons[col] = np.where(has_net, _pick(rng, p), "No internet service")

    # Contract length grows with tenure (two-year customers have mostly been around).
    z_one = -1.6 + 2.0 * t
    z_two = -2.9 + 4.6 * t - 0.5 * fibre
    weights = np.stack([np.ones(n), np.exp(z_one), np.exp(z_two)], axis=1)
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
    contract_idx = (rng.random(n)[:, None] > cum).sum(axis=1)
    contract = np.array(CATEGORICAL["Contract"])[np.minimum(contract_idx, 2)]
    monthly_contract = contract == "Month-to-month"

    paperless = _pick(rng, np.clip(0.45 + 0.25 * fibre, 0, 1))
    automatic = np.clip(0.38 + 0.35 * (~monthly_contract) + 0.15 * t, 0, 0.9)
    u = rng.random(n)
    echeck = np.clip(0.45 - 0.25 * (~monthly_contract) + 0.10 * fibre, 0.05, 0.9)
    payment = np.where(
        u < echeck,
        "Electronic check",
        np.where(
            u < echeck + (1 - echeck) * automatic,
            np.where(rng.random(n) < 0.5, "Bank transfer (automatic)", "Credit card (automatic)"),
            "Mailed check",
        ),
    )

    # Monthly charges: the sum of the services' prices plus a little noise, 0.05 steps.
    yes = {c: (addons[c] == "Yes").astype(float) for c in INTERNET_ADDONS}
    charges = (
        np.where(phone == "Yes", 20.0, 0.0)
        + np.where(multi == "Yes", 5.0, 0.0)
        + np.select([internet == "DSL", fibre], [25.0, 50.0], 0.0)
        + 5.0 * (yes["OnlineSecurity"] + yes["OnlineBackup"] + yes["DeviceProtection"])
        + 5.0 * yes["TechSupport"]
        + 10.0 * (yes["StreamingTV"] + yes["StreamingMovies"])
        + rng.normal(0.0, 1.5, n)
    )
    charges = np.clip(np.round(charges * 20) / 20, 18.25, 118.75)
    # Total: tenure months of charges that drifted a little over the years.
    total = np.round(tenure * charges * rng.normal(1.0, 0.04, n).clip(0.85, 1.15), 2)

    # Churn: log-odds of the known signals, non-linear in tenure, interactions, noise.
    z = (
        -2.4
        + np.select([contract == "One year", contract == "Two year"], [-1.6, -3.0], 0.0)
        + 3.0 * np.exp(-tenure / 3.0)
        - 0.5 * t
        + np.select([fibre, internet == "No"], [-0.3, -0.9], 0.0)
        + 2.2 * (fibre & (addons["TechSupport"] == "No"))
        + 0.35 * (has_net & (addons["OnlineSecurity"] == "No"))
        + 0.45 * (payment == "Electronic check")
        + 0.25 * (paperless == "Yes")
        + 0.50 * senior
        - 0.15 * (dependents == "Yes")
        + 0.008 * (charges - 65.0)
        + 0.8 * (monthly_contract & (tenure <= 12) & fibre)
        + 0.9 * (monthly_contract & (charges > 90.0))
        + rng.normal(0.0, 1.8, n)
    )
    churn = np.where(rng.random(n) < _sigmoid(z), "Yes", "No")
    churn[tenure == 0] = "No"  # as in the public file: customers who just joined

    return pd.DataFrame(
        {
            ID_COLUMN: _customer_ids(rng, n),
            "gender": gender,
            "SeniorCitizen": senior.astype(str),
            "Partner": partner,
            "Dependents": dependents,
            "tenure": tenure.astype(str),
            "PhoneService": phone,
            "MultipleLines": multi,
            "InternetService": internet,
            **addons,
            "Contract": contract,
            "PaperlessBilling": paperless,
            "PaymentMethod": payment,
            "MonthlyCharges": [_money(v) for v in charges],
            "TotalCharges": [
                _money(v) if m > 0 else BLANK_TOTAL_CHARGES
                for v, m in zip(total, tenure, strict=True)
            ],
            TARGET_COLUMN: churn,
        },
        dtype=str,
    )[list(CSV_COLUMNS)]


def _money(value: float) -> str:
    """Spell an amount as the public file does: ``29.85``, ``42.3``, ``20``."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (CSV strings, as from :func:`generate`) to ``path``; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


# --------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------


def read_raw(path: str | Path) -> pd.DataFrame:
    """Read a CSV with every cell as a string, exactly as spelled in the file (no NA guessing)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def _quote(values: pd.Series) -> str:
    counts = values.value_counts(sort=True)
    shown = [f"{v!r} ({c} row{'s' if c > 1 else ''})" for v, c in counts.head(_MAX_QUOTED).items()]
    more = f" and {len(counts) - _MAX_QUOTED} more" if len(counts) > _MAX_QUOTED else ""
    return ", ".join(shown) + more


def schema_problems(raw: pd.DataFrame) -> list[str]:
    """List what keeps ``raw`` (all-string cells, see :func:`read_raw`) from the Telco schema.

    One line for the missing columns, then one per column with unknown category spellings,
    non-numeric, blank or out-of-range numbers. Extra columns are ignored. Empty means valid.
    """
    problems: list[str] = []
    missing = [c for c in CSV_COLUMNS if c not in raw.columns]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if raw.empty:
        problems.append("no data rows")
        return problems

    allowed: dict[str, tuple[str, ...]] = {**CATEGORICAL, TARGET_COLUMN: TARGET_CLASSES}
    for col, values in allowed.items():
        if col not in raw.columns:
            continue
        unknown = raw.loc[~raw[col].isin(values), col]
        if not unknown.empty:
            problems.append(
                f"{col}: unknown values {_quote(unknown)}; expected one of {', '.join(values)}"
            )

    for col, field in NUMERIC.items():
        if col not in raw.columns:
            continue
        text = raw[col].str.strip()
        blank = text == ""
        numbers = pd.to_numeric(text.where(~blank), errors="coerce")
        bad = raw.loc[numbers.isna() & ~blank, col]
        if not bad.empty:
            problems.append(f"{col}: non-numeric values {_quote(bad)}")
        if blank.any() and not field.nullable:
            problems.append(f"{col}: {int(blank.sum())} blank value(s)")
        valid = numbers.dropna()
        out_of_range = valid[(valid < field.minimum) | (valid > field.maximum)]
        if not out_of_range.empty:
            problems.append(
                f"{col}: values outside {field.minimum:g}..{field.maximum:g}: "
                f"{_quote(raw.loc[out_of_range.index, col])}"
            )
        if field.integer:
            fractional = valid[valid != np.floor(valid)]
            if not fractional.empty:
                problems.append(
                    f"{col}: non-integer values {_quote(raw.loc[fractional.index, col])}"
                )
    return problems


def check_schema(raw: pd.DataFrame, source: str = "the data") -> None:
    """Raise :class:`DataSchemaError` listing every problem when ``raw`` is not Telco-shaped."""
    problems = schema_problems(raw)
    if problems:
        raise DataSchemaError(source, problems)


def to_typed(raw: pd.DataFrame) -> pd.DataFrame:
    """Convert a checked all-string frame to model types: ints, floats, blank -> NaN.

    Returns the 21 columns in CSV order (extra columns dropped). ``TotalCharges`` is float64
    with NaN where the file had a blank, as the preprocessor expects.
    """
    typed = raw[list(CSV_COLUMNS)].copy()
    for col, field in NUMERIC.items():
        numbers = pd.to_numeric(typed[col].str.strip().replace("", np.nan))
        typed[col] = numbers.astype("int64") if field.integer else numbers.astype("float64")
    return typed


def load_csv(path: str | Path) -> pd.DataFrame:
    """Read, check and type a Telco-schema CSV; raise :class:`DataSchemaError` if it is not one."""
    raw = read_raw(path)
    check_schema(raw, str(path))
    return to_typed(raw)


def materialize_raw(target: Path, data: DataParams, root: Path) -> Path:
    """Run the ``generate`` stage: write the raw CSV to ``target``.

    With ``data.source`` set, that file (absolute, or relative to ``root``) is checked against
    the schema and copied byte for byte; otherwise ``data.n_rows`` customers are generated
    with ``data.seed``. Raises :class:`DataSchemaError` before anything is written when the
    user's file does not match, and ``FileNotFoundError`` when it does not exist.
    """
    if data.source:
        source = (root / Path(data.source).expanduser()).resolve()
        if not source.is_file():
            raise FileNotFoundError(f"data.source: {source} does not exist or is not a file")
        check_schema(read_raw(source), str(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target
    return write_csv(generate(data.n_rows, data.seed), target)
