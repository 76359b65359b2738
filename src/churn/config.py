"""Typed settings of the API: YAML defaults in ``configs/api.yaml`` overridden by env vars.

`load_api_settings()` builds one frozen `ApiSettings`; it fails fast with `SettingsError` and a
message naming the bad key or variable. Importing this module has no side effects, and it
imports nothing of the project.

Where the YAML file is looked for: ``$CHURN_CONFIG`` (must exist when set), else
``<root>/configs/api.yaml`` where root is ``$CHURN_ROOT`` or the current directory; when
neither exists, the defaults below apply (they equal the committed ``configs/api.yaml``).
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = ["ENV_VARS", "ApiSettings", "SettingsError", "load_api_settings"]

LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

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


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it and what is expected."""


@dataclass(frozen=True)
class ApiSettings:
    """Every setting of the prediction API, validated. Build it with `load_api_settings`."""

    root: Path = Path(".")
    model_versions: tuple[str, ...] = ("v1", "v2")
    default_model: str = "v2"
    threshold: float = 0.5
    host: str = "0.0.0.0"  # noqa: S104 - the container publishes the port
    port: int = 5000
    #: Waitress worker threads; 0 serves requests on its I/O thread (`churn.api.serve`).
    threads: int = 0
    channel_timeout: int = 30
    log_level: str = "INFO"
    log_dir: Path | None = None
    max_batch: int = 1000
    max_body_bytes: int = 2 * 1024 * 1024
    stats_interval: float = 10.0
    #: Drift windows close at this many records, or after this many seconds (churn.drift).
    drift_window_records: int = 1000
    drift_window_seconds: float = 300.0
    #: This process's name among replicas (default: the host name): labels its metrics and
    #: MLflow run, and names its log file ``api-<replica>.log``.
    replica: str = "api"
    mlflow_tracking_uri: str | None = None
    #: Public URL of the MLflow UI for the page's link; derived when not given (see below).
    mlflow_ui_url: str | None = None
    mlflow_port: int = 5001
    #: Basic-auth credentials for the MLflow server (environment only; hidden from repr).
    mlflow_username: str | None = field(default=None, repr=False)
    mlflow_password: str | None = field(default=None, repr=False)
    #: True when `mlflow_ui_url` was derived rather than set (the page may then adapt it).
    mlflow_ui_url_derived: bool = False
    #: Where the served models come from: "baked" (the image's files) or "registry" (MLflow
    #: aliases, followed while serving; see churn.registry).
    model_source: str = "baked"
    registry_model: str = "churn-model"
    #: Seconds between two looks at the registry aliases.
    registry_poll: float = 5.0
    #: Share of default traffic (by customerID hash) sent to the challenger, 0 to 1.
    canary_weight: float = 0.0
    #: Score the challenger too, off the request path, and count disagreements.
    shadow: bool = False
    #: Token of POST /registry/refresh (environment only; the endpoint is off without it).
    registry_token: str | None = field(default=None, repr=False)

    @property
    def stats_enabled(self) -> bool:
        """Whether serving statistics are sent to MLflow (an http(s) tracking URI is set)."""
        return _is_http_url(self.mlflow_tracking_uri)

    def __post_init__(self) -> None:
        """Check cross-field rules (single fields are checked when parsed)."""
        if not self.model_versions:
            raise SettingsError("model_versions: at least one model version is required")
        if len(set(self.model_versions)) != len(self.model_versions):
            raise SettingsError(f"model_versions: duplicates in {list(self.model_versions)}")
        if self.model_source == "registry" and not _is_http_url(self.mlflow_tracking_uri):
            raise SettingsError(
                "CHURN_MODEL_SOURCE: 'registry' needs MLFLOW_TRACKING_URI set to the MLflow "
                f"server's http(s) URL (it is {self.mlflow_tracking_uri!r})"
            )
        if self.default_model not in self.model_versions:
            raise SettingsError(
                f"default_model: {self.default_model!r} is not one of the served versions "
                f"{list(self.model_versions)} (set CHURN_DEFAULT_MODEL or CHURN_MODEL_VERSIONS)"
            )


# --------------------------------------------------------------------------------------------
# Parsers: each takes the raw value (YAML scalar or env string) and the name used in messages.
# --------------------------------------------------------------------------------------------


def _is_http_url(value: str | None) -> bool:
    if not value:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _int(minimum: int, maximum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, name: str) -> int:
        if isinstance(value, bool):
            raise SettingsError(f"{name}: expected an integer, got {value!r}")
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise SettingsError(f"{name}: {number} is out of range {minimum}-{maximum}")
        return number

    return parse


def _float(
    minimum: float, maximum: float, *, open_low: bool = False
) -> Callable[[Any, str], float]:
    def parse(value: Any, name: str) -> float:
        if isinstance(value, bool):
            raise SettingsError(f"{name}: expected a number, got {value!r}")
        try:
            number = float(str(value).strip())
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {value!r}") from None
        low_ok = number > minimum if open_low else number >= minimum
        if not (math.isfinite(number) and low_ok and number <= maximum):
            low = f"more than {minimum}" if open_low else f"at least {minimum}"
            raise SettingsError(f"{name}: {value!r} must be {low} and at most {maximum}")
        return number

    return parse


def _text(value: Any, name: str) -> str:
    text = str(value).strip()
    if not text:
        raise SettingsError(f"{name}: must not be empty")
    return text


def _optional_text(value: Any, name: str) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def _path(value: Any, name: str) -> Path:
    return Path(_text(value, name)).expanduser().resolve()


def _optional_path(value: Any, name: str) -> Path | None:
    text = _optional_text(value, name)
    return Path(text).expanduser() if text else None


def _versions(value: Any, name: str) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    versions = tuple(str(v).strip() for v in items if str(v).strip())
    for version in versions:
        if not version.replace("_", "").replace("-", "").isalnum():
            raise SettingsError(
                f"{name}: {version!r} is not a valid version name (letters, digits, - and _)"
            )
    return versions


def _choice(*choices: str) -> Callable[[Any, str], str]:
    def parse(value: Any, name: str) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise SettingsError(f"{name}: {value!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: expected true or false, got {value!r}")


def _log_level(value: Any, name: str) -> str:
    level = str(value).strip().upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"{name}: {value!r} is not one of {', '.join(LOG_LEVELS)}")
    return level


_REPLICA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def _replica(value: Any, name: str) -> str | None:
    text = _optional_text(value, name)
    if text is not None and not _REPLICA.fullmatch(text):
        raise SettingsError(
            f"{name}: {text!r} is not a replica name (1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit)"
        )
    return text


def _http_url(value: Any, name: str) -> str | None:
    text = _optional_text(value, name)
    if text is not None and not _is_http_url(text):
        raise SettingsError(f"{name}: {text!r} is not an http(s) URL")
    return text.rstrip("/") if text else None


PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "root": _path,
    "model_versions": _versions,
    "default_model": _text,
    "threshold": _float(0.0, 1.0, open_low=True),
    "host": _text,
    "port": _int(1, 65535),
    "threads": _int(0, 256),
    "channel_timeout": _int(1, 3600),
    "log_level": _log_level,
    "log_dir": _optional_path,
    "max_batch": _int(1, 100_000),
    "max_body_bytes": _int(MIN_BODY_BYTES, 1024 * 1024 * 1024),
    "stats_interval": _float(0.0, 86_400.0, open_low=True),
    "drift_window_records": _int(1, 10_000_000),
    "drift_window_seconds": _float(0.0, 30 * 86_400.0, open_low=True),
    "replica": _replica,
    # Any scheme is accepted (MLflow also knows sqlite:, file:); only http(s) enables stats.
    "mlflow_tracking_uri": _optional_text,
    "mlflow_ui_url": _http_url,
    "mlflow_port": _int(1, 65535),
    "model_source": _choice("baked", "registry"),
    "registry_model": _text,
    "registry_poll": _float(0.1, 300.0),
    "canary_weight": _float(0.0, 1.0),
    "shadow": _bool,
}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise SettingsError(f"{path}: invalid YAML ({reason})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of setting names to values")
    unknown = sorted(str(k) for k in data if k not in PARSERS)
    if unknown:
        raise SettingsError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(PARSERS)}"
        )
    return data


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
    raw: dict[str, tuple[Any, str]] = {}
    if path is not None:
        for key, value in _read_yaml(Path(path)).items():
            raw[key] = (value, f"{path}: {key}")
    for key, var in ENV_VARS.items():
        value = env.get(var)
        if value is not None and value.strip():
            raw[key] = (value, var)
    for key, value in overrides.items():
        if key not in PARSERS:
            raise SettingsError(f"unknown setting {key!r}; known: {', '.join(PARSERS)}")
        raw[key] = (value, key)

    values: dict[str, Any] = {}
    for key, (value, name) in raw.items():
        values[key] = PARSERS[key](value, name)

    values.setdefault("root", Path(".").resolve())
    if values.get("replica") is None:  # a container's host name is its id: unique per replica
        values["replica"] = _replica(socket.gethostname().split(".")[0], "hostname") or "api"
    for key, var in SECRET_ENV_VARS.items():
        secret = env.get(var)
        if secret:
            values[key] = secret
    defaults = {f.name: f.default for f in fields(ApiSettings)}
    mlflow_port = values.get("mlflow_port", defaults["mlflow_port"])
    tracking_uri = values.get("mlflow_tracking_uri")
    if values.get("mlflow_ui_url") is None and tracking_uri:
        values["mlflow_ui_url"] = derive_mlflow_ui_url(env, mlflow_port)
        values["mlflow_ui_url_derived"] = True
    return ApiSettings(**values)
