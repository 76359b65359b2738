"""The columns of the IBM "Telco Customer Churn" data set: names, order, spellings and ranges.

This module is the single source of truth for the data's shape. The pipeline checks CSV files
against it and the API validates requests against it. It imports nothing of the project.
"""

from __future__ import annotations

from dataclasses import dataclass

ID_COLUMN = "customerID"
TARGET_COLUMN = "Churn"
TARGET_CLASSES: tuple[str, str] = ("No", "Yes")

_YES_NO = ("No", "Yes")
_INTERNET_ADDON = ("No", "Yes", "No internet service")

#: Categorical feature columns and their allowed values, spelled exactly as in the public file.
CATEGORICAL: dict[str, tuple[str, ...]] = {
    "gender": ("Female", "Male"),
    "Partner": _YES_NO,
    "Dependents": _YES_NO,
    "PhoneService": _YES_NO,
    "MultipleLines": ("No", "Yes", "No phone service"),
    "InternetService": ("DSL", "Fiber optic", "No"),
    "OnlineSecurity": _INTERNET_ADDON,
    "OnlineBackup": _INTERNET_ADDON,
    "DeviceProtection": _INTERNET_ADDON,
    "TechSupport": _INTERNET_ADDON,
    "StreamingTV": _INTERNET_ADDON,
    "StreamingMovies": _INTERNET_ADDON,
    "Contract": ("Month-to-month", "One year", "Two year"),
    "PaperlessBilling": _YES_NO,
    "PaymentMethod": (
        "Electronic check",
        "Mailed check",
        "Bank transfer (automatic)",
        "Credit card (automatic)",
    ),
}


@dataclass(frozen=True)
class NumericField:
    """A numeric feature: its accepted range and whether it must be a whole number."""

    minimum: float
    maximum: float
    integer: bool = False
    nullable: bool = False


#: Numeric feature columns. Ranges are what the API accepts (wider than the public file's,
#: which has tenure 0-72 and MonthlyCharges 18.25-118.75) yet finite, to reject nonsense.
NUMERIC: dict[str, NumericField] = {
    "SeniorCitizen": NumericField(0, 1, integer=True),
    "tenure": NumericField(0, 1200, integer=True),
    "MonthlyCharges": NumericField(0, 100_000),
    # Blank in the public file for customers with tenure 0; null/blank means "unknown".
    "TotalCharges": NumericField(0, 10_000_000, nullable=True),
}

#: The 21 columns of the public CSV, in its order.
CSV_COLUMNS: tuple[str, ...] = (
    ID_COLUMN,
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
    TARGET_COLUMN,
)

#: The 19 model inputs, in CSV order.
FEATURE_COLUMNS: tuple[str, ...] = tuple(
    c for c in CSV_COLUMNS if c not in (ID_COLUMN, TARGET_COLUMN)
)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c in CATEGORICAL)
#: The internet add-ons: "No internet service" whenever InternetService is "No".
INTERNET_ADDONS: tuple[str, ...] = tuple(
    c for c in CATEGORICAL_FEATURES if CATEGORICAL[c] == _INTERNET_ADDON
)
NUMERIC_FEATURES: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c in NUMERIC)
