"""``?explain=true``: read the flag and turn the serving core's `Explanation` into JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from churn.api.errors import field_error
from churn.serving.prediction import Explanation, ExplanationUnavailableError, ServingModels

__all__ = ["FLAG_VALUES", "explain", "explanation_items", "wants_explanation"]

#: The accepted spellings (as the OpenAPI document states them).
FLAG_VALUES = ("true", "false", "1", "0")


def wants_explanation(args: Mapping[str, str]) -> bool:
    """Return the ``explain`` query flag: ``true``/``1`` or ``false``/``0``; default false.

    Raises:
        ApiError: 400 naming ``explain`` for any other value.

    """
    value = args.get("explain")
    if value is None:
        return False
    if value in FLAG_VALUES:
        return value in ("true", "1")
    shown = value if len(value) <= 40 else value[:40] + "..."
    raise field_error(
        400,
        "bad_request",
        f"explain must be true or false; got {shown!r}",
        "explain",
        "must be true or false",
    )


def explain(
    models: ServingModels, version: str, records: Sequence[Mapping[str, object]]
) -> Explanation:
    """Return the explanation of validated records, or raise 422 when the model has none."""
    try:
        return models.explain(version, records)
    except ExplanationUnavailableError as exc:
        raise field_error(
            422,
            "explanation_unavailable",
            f"{exc}; ask without explain=true",
            "explain",
            f"not available for model {version}",
        ) from None


def explanation_items(explanation: Explanation) -> list[dict[str, Any]]:
    """One JSON object per record: base value, log-odds and each column's contribution."""
    base = explanation.base_value
    columns = explanation.columns
    return [
        {
            "base_value": base,
            "log_odds": base + sum(row),
            "contributions": dict(zip(columns, row, strict=True)),
        }
        for row in explanation.contributions.tolist()
    ]
