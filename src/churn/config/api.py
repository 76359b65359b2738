"""Typed settings of the API: YAML defaults in ``configs/api.yaml`` overridden by env vars.

`load_api_settings()` builds one frozen `ApiSettings` (a pydantic-settings model); a bad value
fails fast with `SettingsError` naming the variable or key that set it. Importing this module
has no side effects, and it imports nothing of the project but its neighbours.

Where the YAML file is looked for: ``$CHURN_CONFIG`` (must exist when set), else
``<root>/configs/api.yaml`` where root is ``$CHURN_ROOT`` or the current directory; when
neither exists, the defaults below apply (they equal the committed ``configs/api.yaml``).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from churn.config._loading import GivenSettings, SettingsError, explain, read_yaml

__all__ = ["ENV_VARS", "ApiSettings", "SettingsError", "derive_mlflow_ui_url", "load_api_settings"]

#: Settings field -> environment variable that overrides it.
ENV_VARS: dict[str, str] = {
    "root": "CHURN_ROOT",
    "model_versions": "CHURN_MODEL_VERSIONS",
    "default_model": "CHURN_DEFAULT_MODEL",
    "threshold": "CHURN_THRESHOLD",
    "host": "CHURN_HOST",
    "port": "CHURN_PORT",
    "threads": "CHURN_THREADS",
    "channel_timeout": "CHURN_CHANNEL_TIMEOUT",
    "log_level": "CHURN_LOG_LEVEL",
    "log_dir": "CHURN_LOG_DIR",
    "max_batch": "CHURN_MAX_BATCH",
    "max_body_bytes": "CHURN_MAX_BODY_BYTES",
    "stats_interval": "CHURN_STATS_INTERVAL",
    "drift_window_records": "CHURN_DRIFT_WINDOW_RECORDS",
    "drift_window_seconds": "CHURN_DRIFT_WINDOW_SECONDS",
    "replica": "CHURN_REPLICA",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "mlflow_ui_url": "MLFLOW_UI_URL",
    "mlflow_port": "MLFLOW_PORT",
    "model_source": "CHURN_MODEL_SOURCE",
    "registry_model": "CHURN_REGISTRY_MODEL",
    "registry_poll": "CHURN_REGISTRY_POLL",
    "canary_weight": "CHURN_CANARY_WEIGHT",
    "shadow": "CHURN_SHADOW",
}

#: Secrets: read from the environment only, never from YAML, and kept out of ``repr``.
SECRET_ENV_VARS: dict[str, str] = {
    "mlflow_username": "MLFLOW_TRACKING_USERNAME",
    "mlflow_password": "MLFLOW_TRACKING_PASSWORD",
    "registry_token": "CHURN_REGISTRY_TOKEN",
}

#: The smallest body limit accepted: a full batch of 1,000 typical records is about 650 KB.
MIN_BODY_BYTES = 1024
_REPLICA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _is_http_url(value: str | None) -> bool:
    parts = urlsplit(value or "")
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _text(value: Any) -> Any:
    """Strip text; leave other values to the field's type check."""
    return value.strip() if isinstance(value, str) else value


def _optional(value: Any) -> Any:
    """Empty or blank text counts as unset."""
    value = _text(value)
    return None if value in ("", None) else value


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise PydanticCustomError("setting", message)


def _version_name(version: str) -> str:
    _check(
        version.replace("_", "").replace("-", "").isalnum(),
        f"{version!r} is not a valid version name (letters, digits, - and _)",
    )
    return version


def _replica(value: Any) -> str:
    text = _optional(value)
    if text is None:  # a container's host name is its id: unique per replica
        host = socket.gethostname().split(".")[0]
        return host if _REPLICA.fullmatch(host) else "api"
    _check(
        _REPLICA.fullmatch(str(text)) is not None,
        f"{text!r} is not a replica name (1-63 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit)",
    )
    return str(text)


def _http_url(value: str | None) -> str | None:
    if value is not None:
        _check(_is_http_url(value), f"{value!r} is not an http(s) URL")
    return value.rstrip("/") if value else None


def _split(value: Any) -> Any:
    """Comma-separated text or a list; blank items are dropped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return items
    return [item for item in map(_text, items) if item != ""]


def _not_bool(kind: str) -> BeforeValidator:
    """Refuse true/false where a number is expected (pydantic would read them as 1/0)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(f"{kind}_type", "not a number")
        return value

    return BeforeValidator(check)


Int = Annotated[int, _not_bool("int")]
Float = Annotated[float, _not_bool("float"), Field(allow_inf_nan=False)]
Text = Annotated[str, BeforeValidator(_text), Field(min_length=1)]
OptionalText = Annotated[str | None, BeforeValidator(_optional)]
Port = Annotated[Int, Field(ge=1, le=65535)]
Seconds = Annotated[Float, Field(gt=0.0)]
Version = Annotated[str, BeforeValidator(_text), AfterValidator(_version_name)]


class ApiSettings(GivenSettings):
    """Every setting of the prediction API, validated. Build it with `load_api_settings`."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    root: Annotated[
        Path, BeforeValidator(_text), AfterValidator(lambda p: p.expanduser().resolve())
    ] = Path(".")
    model_versions: Annotated[tuple[Version, ...], BeforeValidator(_split)] = ("v1", "v2")
    default_model: Text = "v2"
    threshold: Annotated[Float, Field(gt=0.0, le=1.0)] = 0.5
    host: Text = "0.0.0.0"  # noqa: S104 - the container publishes the port
    port: Port = 5000
    #: Waitress worker threads; 0 serves requests on its I/O thread (`churn.api.serve`).
    threads: Annotated[Int, Field(ge=0, le=256)] = 0
    channel_timeout: Annotated[Int, Field(ge=1, le=3600)] = 30
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        BeforeValidator(lambda v: str(v).strip().upper()),
    ] = "INFO"
    log_dir: Annotated[Path | None, BeforeValidator(_optional)] = None
    max_batch: Annotated[Int, Field(ge=1, le=100_000)] = 1000
    max_body_bytes: Annotated[Int, Field(ge=MIN_BODY_BYTES, le=1024**3)] = 2 * 1024 * 1024
    stats_interval: Annotated[Seconds, Field(le=86_400.0)] = 10.0
    #: Drift windows close at this many records, or after this many seconds (churn.drift).
    drift_window_records: Annotated[Int, Field(ge=1, le=10_000_000)] = 1000
    drift_window_seconds: Annotated[Seconds, Field(le=30 * 86_400.0)] = 300.0
    #: This process's name among replicas (default: the host name): labels its metrics and
    #: MLflow run, and names its log file ``api-<replica>.log``.
    replica: Annotated[str, BeforeValidator(_replica)] = ""
    #: Any scheme is accepted (MLflow also knows sqlite:, file:); only http(s) enables stats.
    mlflow_tracking_uri: OptionalText = None
    #: Public URL of the MLflow UI for the page's link; derived when not given (see below).
    mlflow_ui_url: Annotated[OptionalText, AfterValidator(_http_url)] = None
    mlflow_port: Port = 5001
    #: Basic-auth credentials for the MLflow server (environment only; hidden from repr).
    mlflow_username: str | None = Field(None, repr=False)
    mlflow_password: str | None = Field(None, repr=False)
    #: True when `mlflow_ui_url` was derived rather than set (the page may then adapt it).
    mlflow_ui_url_derived: bool = False
    #: Where the served models come from: "baked" (the image's files) or "registry" (MLflow
    #: aliases, followed while serving; see churn.registry).
    model_source: Annotated[
        Literal["baked", "registry"], BeforeValidator(lambda v: str(v).strip().lower())
    ] = "baked"
    registry_model: Text = "churn-model"
    #: Seconds between two looks at the registry aliases.
    registry_poll: Annotated[Float, Field(ge=0.1, le=300.0)] = 5.0
    #: Share of default traffic (by customerID hash) sent to the challenger, 0 to 1.
    canary_weight: Annotated[Float, Field(ge=0.0, le=1.0)] = 0.0
    #: Score the challenger too, off the request path, and count disagreements.
    shadow: bool = False
    #: Token of POST /registry/refresh (environment only; the endpoint is off without it).
    registry_token: str | None = Field(None, repr=False)

    @property
    def stats_enabled(self) -> bool:
        """Whether serving statistics are sent to MLflow (an http(s) tracking URI is set)."""
        return _is_http_url(self.mlflow_tracking_uri)

    @model_validator(mode="after")
    def _consistent(self) -> ApiSettings:
        """Check the rules between fields (single fields are checked by their types)."""
        versions = list(self.model_versions)
        _check(bool(versions), "model_versions: at least one model version is required")
        _check(len(set(versions)) == len(versions), f"model_versions: duplicates in {versions}")
        _check(
            self.model_source != "registry" or self.stats_enabled,
            "CHURN_MODEL_SOURCE: 'registry' needs MLFLOW_TRACKING_URI set to the MLflow "
            f"server's http(s) URL (it is {self.mlflow_tracking_uri!r})",
        )
        _check(
            self.default_model in versions,
            f"default_model: {self.default_model!r} is not one of the served versions "
            f"{versions} (set CHURN_DEFAULT_MODEL or CHURN_MODEL_VERSIONS)",
        )
        return self


class EnvironmentSource(PydanticBaseSettingsSource):
    """Each setting from its variable (`ENV_VARS`, `SECRET_ENV_VARS`); empty counts as unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        """Read ``env`` (``os.environ`` or a test's mapping) for ``settings_cls``."""
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Return the variable's value (None when unset or empty), its name, and no JSON."""
        var = ENV_VARS.get(field_name) or SECRET_ENV_VARS.get(field_name, "")
        value = self.env.get(var, "")
        return (value if value.strip() else None), var, False

    def __call__(self) -> dict[str, Any]:
        """Return the settings the environment sets."""
        found = {}
        for name, field in self.settings_cls.model_fields.items():
            value = self.get_field_value(field, name)[0]
            if value is not None:
                found[name] = value
        return found


def _find_yaml(env: Mapping[str, str]) -> Path | None:
    explicit = env.get("CHURN_CONFIG", "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SettingsError(f"CHURN_CONFIG: {path} does not exist")
        return path
    root = Path(env.get("CHURN_ROOT", "").strip() or ".").expanduser()
    candidate = root / "configs" / "api.yaml"
    return candidate if candidate.is_file() else None


def _unknown(keys: Mapping[str, Any], where: str) -> None:
    unknown = sorted(str(k) for k in keys if k not in ENV_VARS)
    if unknown:
        raise SettingsError(
            f"{where}unknown setting(s) {', '.join(unknown)}; known: {', '.join(ENV_VARS)}"
        )


def derive_mlflow_ui_url(env: Mapping[str, str], mlflow_port: int) -> str:
    """Return the MLflow UI's public URL when none is configured.

    In GitHub Codespaces it is the forwarded address ``https://<codespace>-<port>.<domain>``;
    elsewhere ``http://localhost:<port>``.
    """
    codespace = env.get("CODESPACE_NAME", "").strip()
    domain = env.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN", "").strip()
    if codespace and domain:
        return f"https://{codespace}-{mlflow_port}.{domain}"
    return f"http://localhost:{mlflow_port}"


def load_api_settings(
    env: Mapping[str, str] | None = None,
    yaml_path: Path | None = None,
    **overrides: Any,
) -> ApiSettings:
    """Build the API settings: built-in defaults, then the YAML file, then env vars, then overrides.

    Args:
        env: the environment to read (default: ``os.environ``). Empty values count as unset.
        yaml_path: a YAML file to use instead of the one found as described in the module doc.
        overrides: field values that win over everything (for tests); parsed like YAML values.

    Raises:
        SettingsError: a value is invalid or the YAML file is unreadable or has unknown keys.

    """
    env = os.environ if env is None else env
    path = yaml_path if yaml_path is not None else _find_yaml(env)
    from_yaml = read_yaml(ApiSettings, Path(path)) if path is not None else {}
    _unknown(from_yaml, f"{path}: ")
    _unknown(overrides, "")
    from_env = EnvironmentSource(ApiSettings, env)()
    names = {key: f"{path}: {key}" for key in from_yaml}
    names.update({key: ENV_VARS.get(key) or SECRET_ENV_VARS[key] for key in from_env})
    names.update({key: key for key in overrides})
    try:
        settings = ApiSettings(**{**from_yaml, **from_env, **overrides})
    except ValidationError as exc:
        raise explain(exc, ApiSettings, lambda loc: names.get(str(loc[0]), str(loc[0]))) from None
    if settings.mlflow_ui_url is None and settings.mlflow_tracking_uri:
        derived = derive_mlflow_ui_url(env, settings.mlflow_port)
        settings = settings.model_copy(
            update={"mlflow_ui_url": derived, "mlflow_ui_url_derived": True}
        )
    return settings
