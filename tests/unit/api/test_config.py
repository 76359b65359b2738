"""Settings: YAML defaults, env overrides, fail-fast messages, the MLflow UI URL."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from churn.config import ENV_VARS, ApiSettings, SettingsError, load_api_settings

REPO = Path(__file__).resolve().parents[3]
YAML_PATH = REPO / "configs" / "api.yaml"


def test_committed_yaml_equals_the_built_in_defaults(tmp_path: Path) -> None:
    from_yaml = load_api_settings(env={"CHURN_ROOT": str(tmp_path)}, yaml_path=YAML_PATH)
    built_in = load_api_settings(env={"CHURN_ROOT": str(tmp_path)})
    assert from_yaml == built_in
    assert set(yaml.safe_load(YAML_PATH.read_text())) == set(ENV_VARS)


def test_every_setting_has_an_env_var_and_the_documented_defaults() -> None:
    settable = set(ApiSettings.model_fields) - {
        "mlflow_ui_url_derived",
        "mlflow_username",
        "mlflow_password",
        "registry_token",
    }
    assert settable == set(ENV_VARS)
    s = load_api_settings(env={})
    assert (s.model_versions, s.default_model, s.port, s.threads) == (("v1", "v2"), "v2", 5000, 0)
    assert (s.max_batch, s.max_body_bytes, s.threshold) == (1000, 2 * 1024 * 1024, 0.5)
    assert (s.host, s.log_level, s.log_dir, s.stats_interval) == ("0.0.0.0", "INFO", None, 10.0)
    assert s.root == Path.cwd().resolve()
    assert s.mlflow_tracking_uri is None and s.mlflow_ui_url is None and not s.stats_enabled


def test_env_vars_override_yaml(tmp_path: Path) -> None:
    config = tmp_path / "api.yaml"
    config.write_text("port: 6000\nthreads: 2\nmodel_versions: [v1]\ndefault_model: v1\n")
    env = {
        "CHURN_CONFIG": str(config),
        "CHURN_PORT": "7000",
        "CHURN_MODEL_VERSIONS": " v1, v2 ",
        "CHURN_DEFAULT_MODEL": "v2",
        "CHURN_LOG_DIR": str(tmp_path / "logs"),
        "CHURN_LOG_LEVEL": "debug",
        "CHURN_THREADS": "",  # empty counts as unset: the YAML value stays
        "CHURN_STATS_INTERVAL": "0.5",
    }
    s = load_api_settings(env=env)
    assert s.port == 7000 and s.threads == 2
    assert s.model_versions == ("v1", "v2") and s.default_model == "v2"
    assert s.log_dir == tmp_path / "logs" and s.log_level == "DEBUG"
    assert s.stats_interval == 0.5


def test_yaml_is_found_under_churn_root(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "api.yaml").write_text("max_batch: 7\n")
    assert load_api_settings(env={"CHURN_ROOT": str(tmp_path)}).max_batch == 7


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHURN_PORT": "http"}, "CHURN_PORT: expected an integer"),
        ({"CHURN_PORT": "70000"}, "CHURN_PORT: 70000 is out of range"),
        ({"CHURN_THREADS": "-1"}, "CHURN_THREADS"),
        ({"CHURN_THRESHOLD": "1.5"}, "CHURN_THRESHOLD"),
        ({"CHURN_THRESHOLD": "nan"}, "CHURN_THRESHOLD"),
        ({"CHURN_MAX_BATCH": "-1"}, "CHURN_MAX_BATCH"),
        ({"CHURN_MAX_BODY_BYTES": "100"}, "CHURN_MAX_BODY_BYTES"),
        ({"CHURN_STATS_INTERVAL": "0"}, "CHURN_STATS_INTERVAL"),
        ({"CHURN_LOG_LEVEL": "chatty"}, "CHURN_LOG_LEVEL"),
        ({"CHURN_DEFAULT_MODEL": "v3"}, "default_model: 'v3' is not one of"),
        ({"CHURN_MODEL_VERSIONS": "v1,v1"}, "duplicates"),
        ({"CHURN_MODEL_VERSIONS": "v1,../x"}, "not a valid version name"),
        ({"MLFLOW_UI_URL": "ftp://x"}, "MLFLOW_UI_URL"),
        ({"CHURN_CONFIG": "/nonexistent/api.yaml"}, "CHURN_CONFIG"),
    ],
)
def test_invalid_values_fail_fast_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_api_settings(env=env)


def test_unknown_or_secret_yaml_keys_are_rejected(tmp_path: Path) -> None:
    config = tmp_path / "api.yaml"
    config.write_text("prot: 5000\n")
    with pytest.raises(SettingsError, match="unknown setting.*prot"):
        load_api_settings(env={}, yaml_path=config)
    config.write_text("mlflow_password: hunter2\n")
    with pytest.raises(SettingsError, match="mlflow_password"):
        load_api_settings(env={}, yaml_path=config)
    config.write_text("port: [1\n")
    with pytest.raises(SettingsError, match="invalid YAML"):
        load_api_settings(env={}, yaml_path=config)


def test_mlflow_ui_url_is_derived_only_with_a_tracking_uri() -> None:
    tracking = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    assert load_api_settings(env={}).mlflow_ui_url is None
    local = load_api_settings(env=tracking)
    assert local.mlflow_ui_url == "http://localhost:5001" and local.mlflow_ui_url_derived
    assert local.stats_enabled
    moved = load_api_settings(env={**tracking, "MLFLOW_PORT": "5555"})
    assert moved.mlflow_ui_url == "http://localhost:5555"
    codespace = load_api_settings(
        env={
            **tracking,
            "CODESPACE_NAME": "cuddly-space-xyz",
            "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev",
        }
    )
    assert codespace.mlflow_ui_url == "https://cuddly-space-xyz-5001.app.github.dev"
    explicit = load_api_settings(env={"MLFLOW_UI_URL": "https://mlflow.example.org/"})
    assert explicit.mlflow_ui_url == "https://mlflow.example.org"
    assert not explicit.mlflow_ui_url_derived and not explicit.stats_enabled


def test_non_http_tracking_uri_disables_stats_and_secrets_stay_out_of_repr() -> None:
    s = load_api_settings(
        env={
            "MLFLOW_TRACKING_URI": "sqlite:///mlruns/mlflow.db",
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": "s3cret-pw",
        }
    )
    assert not s.stats_enabled
    assert s.mlflow_password == "s3cret-pw"
    assert "s3cret-pw" not in repr(s)


def test_settings_are_frozen() -> None:
    s = load_api_settings(env={})
    with pytest.raises(ValidationError, match="frozen"):
        s.port = 1  # type: ignore[misc]


def test_replica_defaults_to_the_host_name_and_is_checked() -> None:
    assert load_api_settings(env={}, yaml_path=None).replica == socket.gethostname().split(".")[0]
    assert load_api_settings(env={"CHURN_REPLICA": "api-3"}, yaml_path=None).replica == "api-3"
    with pytest.raises(SettingsError, match="CHURN_REPLICA: '../x' is not a replica name"):
        load_api_settings(env={"CHURN_REPLICA": "../x"}, yaml_path=None)


def test_yaml_booleans_are_not_numbers(tmp_path: Path) -> None:
    config = tmp_path / "api.yaml"
    config.write_text("threads: true\n")
    with pytest.raises(SettingsError, match="threads: expected an integer, got True"):
        load_api_settings(env={}, yaml_path=config)
    config.write_text("canary_weight: yes\n")
    with pytest.raises(SettingsError, match="canary_weight: expected a number, got True"):
        load_api_settings(env={}, yaml_path=config)
