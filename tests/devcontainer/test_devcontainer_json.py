"""Checks on .devcontainer/devcontainer.json: the devcontainer schema, then what Codespaces
users rely on (image, Docker-in-Docker, ports, post-create script, extensions, resources).

No Docker engine and no network needed. The schema is the repository's own copy in
``tests/devcontainer/schema/`` (its origin and licence beside it), or ``DEVCONTAINER_SCHEMA``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonc_reader import load, strip_comments

ROOT = Path(__file__).resolve().parents[2]
DEVCONTAINER = ROOT / ".devcontainer" / "devcontainer.json"
SCHEMA = Path(
    os.environ.get(
        "DEVCONTAINER_SCHEMA",
        ROOT / "tests" / "devcontainer" / "schema" / "devContainer.base.schema.json",
    )
)
#: Memory measured with the stack running (MiB; docs/codespaces.md, "Resources"): MLflow 437,
#: API 121, Docker engine 150, an image build step 375, headless Chromium 776.
MEASURED_PEAK_MIB = 437 + 121 + 150 + 375 + 776
#: VS Code's server in a codespace (not measurable here).
EDITOR_ALLOWANCE_MIB = 1024


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return load(DEVCONTAINER)


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.fail(f"devcontainer schema not found at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _compose_default(variable: str) -> int:
    """The default host port that docker-compose.yml gives ``${variable:-N}``."""
    text = (ROOT / "docker" / "docker-compose.yml").read_text(encoding="utf-8")
    found = set(re.findall(rf"\${{{variable}:-(\d+)}}", text))
    assert len(found) == 1, f"{variable} has defaults {found} in docker-compose.yml"
    return int(found.pop())


def _mib(size: str) -> float:
    number, unit = re.fullmatch(r"(\d+)([tgmk]b)?", size).groups()  # type: ignore[union-attr]
    scale = {"tb": 1024**2, "gb": 1024, "mb": 1, "kb": 1 / 1024, None: 1 / 1024**2}[unit]
    return int(number) * scale


# --------------------------------------------------------------------------- schema


def test_devcontainer_json_validates_against_the_schema(
    config: dict[str, Any], validator: Any
) -> None:
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("path", "bad_value"),
    [
        (("forwardPorts",), ["five thousand"]),
        (("portsAttributes", "5000", "onAutoForward"), "openTheBrowser"),
        (("hostRequirements", "memory"), "4 GB"),
        (("postCreateComand",), "typo in the key"),
    ],
)
def test_schema_rejects_a_broken_copy(
    config: dict[str, Any], validator: Any, path: tuple[str, ...], bad_value: Any
) -> None:
    """The validation has teeth: the same file with one wrong value or key fails."""
    broken = copy.deepcopy(config)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad_value
    # Some error, however deep in the schema's oneOf branches, must point at what was broken.
    pending, culprits = list(validator.iter_errors(broken)), []
    while pending:
        error = pending.pop()
        pending.extend(error.context or [])
        at_path = tuple(error.absolute_path)[: len(path)] == path
        if at_path or f"{path[-1]!r} was unexpected" in error.message:
            culprits.append(error)
    assert culprits, f"no schema error points at {path}"


def test_comment_stripping_keeps_urls_and_line_numbers() -> None:
    text = '{\n  // a comment\n  "u": "https://x//y", /* two\nlines */ "n": 1\n}\n'
    stripped = strip_comments(text)
    assert json.loads(stripped) == {"u": "https://x//y", "n": 1}
    assert stripped.count("\n") == text.count("\n")
    with pytest.raises(ValueError, match="unterminated"):
        strip_comments('{"a": 1 /* never closed }')


# --------------------------------------------------------------------------- environment


def test_image_is_python_312_on_bookworm_with_a_pinned_major(config: dict[str, Any]) -> None:
    image = config["image"]
    repo, _, tag = image.rpartition(":")
    assert repo == "mcr.microsoft.com/devcontainers/python"
    # "<image major>-3.12-bookworm": the image's major pinned, Python 3.12, Debian 12 (the
    # docker-in-docker feature's Moby packages do not exist for trixie).
    assert re.fullmatch(r"\d+-3\.12-bookworm", tag), tag


def test_docker_in_docker_feature_is_pinned_to_its_major_version(config: dict[str, Any]) -> None:
    features = config["features"]
    dind = [ref for ref in features if "/docker-in-docker" in ref]
    assert dind == ["ghcr.io/devcontainers/features/docker-in-docker:2"]
    options = features[dind[0]]
    assert options.get("moby", True) is True
    assert options.get("dockerDashComposeVersion", "latest") in ("v2", "latest")


def test_forwarded_ports_are_the_stacks_ports_with_labels(config: dict[str, Any]) -> None:
    api, mlflow = _compose_default("API_PORT"), _compose_default("MLFLOW_PORT")
    assert config["forwardPorts"] == [api, mlflow]
    ports = config["portsAttributes"]
    assert ports[str(api)]["label"] == "Churn API"
    assert ports[str(api)]["onAutoForward"] == "openBrowser"
    assert ports[str(mlflow)]["label"] == "MLflow UI"
    assert ports[str(mlflow)].get("onAutoForward", "notify") not in ("ignore", "silent")


def test_vscode_extensions_for_python_and_docker(config: dict[str, Any]) -> None:
    extensions = config["customizations"]["vscode"]["extensions"]
    assert "ms-python.python" in extensions
    assert any(e.startswith("ms-azuretools.vscode-") for e in extensions)
    assert len(set(extensions)) == len(extensions)


def test_host_requirements_cover_the_measured_stack(config: dict[str, Any]) -> None:
    needs = config["hostRequirements"]
    assert needs["cpus"] >= 2
    assert _mib(needs["memory"]) >= MEASURED_PEAK_MIB + EDITOR_ALLOWANCE_MIB
    assert _mib(needs["storage"]) >= 8 * 1024  # images, nox environments, Chromium: ~5 GB


# --------------------------------------------------------------------------- post-create


def _post_create_script(config: dict[str, Any]) -> Path:
    command = config["postCreateCommand"]
    assert isinstance(command, str)
    match = re.fullmatch(r"bash (\.devcontainer/[\w.-]+\.sh)", command)
    assert match, f"postCreateCommand should run a script in .devcontainer/: {command!r}"
    return ROOT / match.group(1)


def test_post_create_command_runs_a_script_that_exists_and_parses(config: dict[str, Any]) -> None:
    script = _post_create_script(config)
    assert script.is_file()
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_post_create_script_only_names_files_that_exist(config: dict[str, Any]) -> None:
    """No stale scaffolding: every repo file the script reads is in the repo."""
    text = _post_create_script(config).read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:requirements|docker|configs|\.devcontainer)/[\w./-]+)", text))
    assert "requirements/tools.txt" in named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"post-create.sh names missing files: {missing}"


def test_tools_the_script_installs_are_pinned() -> None:
    lines = (ROOT / "requirements" / "tools.txt").read_text(encoding="utf-8").splitlines()
    reqs = [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]
    assert {r.split("==")[0] for r in reqs} >= {"nox", "uv"}
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", r) for r in reqs), reqs
