"""``GET /``: a form for one customer that shows the prediction (all assets served locally)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from flask import Blueprint, current_app, render_template

from churn.api.contract import EXAMPLE_CUSTOMER
from churn.api.state import get_state
from churn.schema import CATEGORICAL, FEATURE_COLUMNS, INTERNET_ADDONS, NUMERIC

__all__ = ["bp", "form_sections"]

bp = Blueprint("ui", __name__)

#: How the form groups the fields (layout only; any field not listed goes to "Other").
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Customer", ("gender", "SeniorCitizen", "Partner", "Dependents")),
    (
        "Account",
        (
            "tenure",
            "Contract",
            "PaperlessBilling",
            "PaymentMethod",
            "MonthlyCharges",
            "TotalCharges",
        ),
    ),
    ("Phone", ("PhoneService", "MultipleLines")),
    ("Internet", ("InternetService", *INTERNET_ADDONS)),
)
#: Short explanations shown under some fields.
HINTS: dict[str, str] = {
    "tenure": "Months with the company.",
    "MonthlyCharges": "Current monthly charge.",
    "TotalCharges": "Charged so far; leave blank if unknown (new customers).",
}


@dataclass(frozen=True)
class FormField:
    """One input of the form."""

    name: str
    kind: str  # "select" or "number"
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    default: str = ""
    minimum: str = ""
    maximum: str = ""
    step: str = ""
    integer: bool = False
    required: bool = True
    hint: str = ""


def _field(name: str) -> FormField:
    default = EXAMPLE_CUSTOMER.get(name)
    hint = HINTS.get(name, "")
    if name in CATEGORICAL:
        choices = tuple((v, v) for v in CATEGORICAL[name])
        return FormField(name, "select", choices, str(default), hint=hint)
    spec = NUMERIC[name]
    if spec.integer and spec.maximum - spec.minimum == 1:  # a 0/1 flag: a select reads better
        low, high = int(spec.minimum), int(spec.maximum)
        choices = ((str(low), f"No ({low})"), (str(high), f"Yes ({high})"))
        return FormField(name, "select", choices, str(default), integer=True, hint=hint)
    return FormField(
        name,
        "number",
        default="" if default is None else str(default),
        minimum=f"{spec.minimum:g}",
        maximum=f"{spec.maximum:g}",
        step="1" if spec.integer else "0.01",
        integer=spec.integer,
        required=not spec.nullable,
        hint=hint,
    )


@functools.cache
def form_sections() -> list[tuple[str, list[FormField]]]:
    """Return the form's sections, covering every feature column exactly once (cached)."""
    placed: set[str] = set()
    sections: list[tuple[str, list[FormField]]] = []
    for title, names in SECTIONS:
        fields = [_field(n) for n in names if n in FEATURE_COLUMNS]
        placed.update(f.name for f in fields)
        sections.append((title, fields))
    rest = [_field(n) for n in FEATURE_COLUMNS if n not in placed]
    if rest:
        sections.append(("Other", rest))
    return sections


@bp.get("/")
def index() -> str:
    """Render the prediction form."""
    state = get_state(current_app)
    settings = state.settings
    serving = state.router.current
    served = serving.models
    return render_template(
        "index.html",
        sections=form_sections(),
        versions=served.versions if served is not None else settings.model_versions,
        default_model=settings.default_model,
        aliases=dict(serving.aliases),
        model_source=serving.source,
        models_ready=served is not None,
        load_error=state.load_error,
        mlflow_ui_url=settings.mlflow_ui_url,
        mlflow_ui_url_derived=settings.mlflow_ui_url_derived,
        mlflow_port=settings.mlflow_port,
        threshold=settings.threshold,
    )
