"""What both loaders share: the error type, reading a YAML file, and pydantic's errors in words.

A pydantic `ValidationError` becomes one `SettingsError` whose lines read ``<name>: <problem>``,
``<name>`` being what the user set (an environment variable, ``<file>: <key>``, a dotted
params key) and ``<problem>`` the house's wording of the failed check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

#: What a value of each type is called in "expected ..., got ..." messages.
_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "text",
    "dict": "a mapping",
}


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it and what is expected."""


class GivenSettings(BaseSettings):
    """Settings validated from the values their factory gathered, and nothing else.

    The factories layer the sources themselves (`churn.config.api.load_api_settings`), so
    that each error names the variable or file key that set the value.
    """

    model_config = SettingsConfigDict(frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        *_: PydanticBaseSettingsSource,
        **__: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Use only the values given to the constructor."""
        return (init_settings,)


def read_yaml(settings_cls: type[BaseSettings], path: Path) -> dict[str, Any]:
    """Return the mapping in the YAML file ``path``; raise `SettingsError` naming the file."""
    if not path.is_file():
        raise SettingsError(f"{path}: cannot read (no such file)")
    try:
        data = YamlConfigSettingsSource(settings_cls, yaml_file=path)()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except (TypeError, ValueError):  # a list or a scalar at the top level
        raise SettingsError(f"{path}: expected a mapping of setting names to values") from None
    return data


def _field(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    """Return the field an error's location ends on (None for an item of a list or mapping)."""
    current: Any = model
    field = None
    for part in loc:
        fields = (
            current.model_fields
            if isinstance(current, type) and issubclass(current, BaseModel)
            else {}
        )
        if str(part) in fields:
            field = fields[str(part)]
            current = field.annotation
        else:  # a key or an index: step into the container's value type
            args = [arg for arg in get_args(current) if arg is not Ellipsis]
            current, field = (args[-1] if args else None), None
    return field


def _bounds(field: FieldInfo | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in field.metadata if field is not None else ():
        for key in ("gt", "ge", "lt", "le"):
            if getattr(item, key, None) is not None:
                found[key] = getattr(item, key)
    return found


def _range(value: Any, kind: str, bounds: dict[str, Any]) -> str:
    low, high = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
    if kind == "int" and high is not None:
        return f"{value} is out of range {low}-{high}"
    if "gt" in bounds and "lt" in bounds:
        return f"{value!r} must be between {low} and {high}"
    lowest = f"more than {low}" if "gt" in bounds else f"at least {low}"
    return f"{value!r} must be {lowest}" + (f" and at most {high}" if high is not None else "")


def problem(error: ErrorDetails, model: type[BaseModel]) -> str:
    """Return the house's wording of one pydantic error on a field of ``model``."""
    kind, value = error["type"], error["input"]
    family = kind.split("_")[0]
    field = _field(model, tuple(error["loc"]))
    if kind.endswith(("_parsing", "_type")) and family in _EXPECTED:
        extra = field.json_schema_extra if field is not None else None
        expects = extra.get("expects") if isinstance(extra, dict) else None
        return f"expected {expects or _EXPECTED[family]}, got {value!r}"
    if kind in (
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "finite_number",
    ):
        number = "int" if field is not None and field.annotation is int else "float"
        return _range(value, number, _bounds(field))
    if kind == "literal_error" and field is not None:
        return f"{value!r} is not one of {', '.join(map(str, get_args(field.annotation)))}"
    if kind == "string_too_short":
        return "must not be empty"
    return error["msg"].removeprefix("Value error, ")


def explain(
    exc: ValidationError, model: type[BaseModel], name: Callable[[tuple[Any, ...]], str]
) -> SettingsError:
    """Turn ``exc`` into a `SettingsError`, one ``<name>: <problem>`` line per failed check.

    ``name`` says what the user calls the value at an error's location (errors of the whole
    model, with no location, carry their own names in their message).
    """
    lines = []
    for error in exc.errors(include_url=False):
        text = problem(error, model)
        lines.append(f"{name(tuple(error['loc']))}: {text}" if error["loc"] else text)
    return SettingsError("; ".join(lines))
