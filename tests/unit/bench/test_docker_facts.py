from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks import docker_facts

CLASSIC_LOG = """\
Step 1/5 : ARG BASE_IMAGE=python:3.12-slim
Step 2/5 : FROM ${BASE_IMAGE} AS deps
 ---> 784dd8b5793a
Step 3/5 : COPY docker/requirements/api.lock /tmp/api.lock
 ---> Using cache
 ---> 1b2c3d4e5f60
Step 4/5 : RUN python3 -m venv /opt/venv
 ---> Using cache
 ---> 2b2c3d4e5f60
Step 5/5 : COPY src/ src/
 ---> 3b2c3d4e5f60
Successfully built 3b2c3d4e5f60
"""

BUILDKIT_LOG = """\
#1 [internal] load build definition from Dockerfile.mlapp
#1 DONE 0.0s
#5 [deps 1/3] FROM docker.io/library/python:3.12-slim
#6 [deps 2/3] COPY docker/requirements/api.lock /tmp/api.lock
#6 CACHED
#7 [deps 3/3] RUN python3 -m venv /opt/venv
#7 CACHED
#8 [runtime 5/6] COPY src/ src/
#8 DONE 0.1s
"""


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("112.9MiB / 23.54GiB", 112.9),
        ("1.5GiB / 23.54GiB", 1536.0),
        ("512KiB / 1GiB", 0.5),
        ("104.9MB / 2GB", 104.9e6 / 2**20),
        ("0B / 0B", 0.0),
    ],
)
def test_docker_stats_memory_becomes_mib(text: str, mib: float) -> None:
    assert docker_facts.parse_mem_usage(text) == pytest.approx(mib)


@pytest.mark.parametrize("text", ["", "--", "n/a / 1GiB", "12 parsecs"])
def test_an_unreadable_memory_figure_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        docker_facts.parse_mem_usage(text)


def test_cached_steps_are_counted_in_both_builders_logs() -> None:
    assert docker_facts.count_cached_steps(CLASSIC_LOG) == (2, 5)
    assert docker_facts.count_cached_steps(BUILDKIT_LOG) == (2, 4)
    assert docker_facts.count_cached_steps("") == (0, 0)


def test_the_images_a_classic_build_made_are_listed_in_order() -> None:
    # FROM (the base) and the two cached steps named images others made: only step 5's is ours.
    assert docker_facts.built_image_ids(CLASSIC_LOG) == ["3b2c3d4e5f60"]
    ran = "Step 1/2 : FROM base\n ---> 784dd8b5793a\nStep 2/2 : RUN true\n"
    ran += " ---> Running in 0123456789ab\nRemoving intermediate container 0123456789ab\n"
    ran += " ---> 4b2c3d4e5f60\nSuccessfully built 4b2c3d4e5f60\n"
    assert docker_facts.built_image_ids(ran) == ["4b2c3d4e5f60"]
    assert docker_facts.built_image_ids(" ---> Running in 0123456789ab\n") == []


def test_the_build_context_copy_holds_what_the_images_copy_and_nothing_else(
    tmp_path: Path,
) -> None:
    root, dest = tmp_path / "repo", tmp_path / "ctx"
    files = [
        ".dockerignore",
        "src/churn/__init__.py",
        "src/churn/__pycache__/x.pyc",
        "configs/api.yaml",
        "docker/Dockerfile.mlapp",
        "docker/Dockerfile.mlflow",
        "docker/requirements/api.lock",
        "data/processed/preprocessor.pkl",
        "data/processed/label_encoder.pkl",
        "data/processed/train.csv",
        "data/raw/telco.csv",
        "models/model_v2.pkl",
        "models/model_v2.json",
        "models/notes.txt",
        "mlruns/mlflow.db",
        "tests/unit/test_x.py",
    ]
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    dest.mkdir()
    docker_facts.build_context_copy(root, dest)
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == sorted(
        [
            ".dockerignore",
            "configs/api.yaml",
            "data/processed/label_encoder.pkl",
            "data/processed/preprocessor.pkl",
            "docker/Dockerfile.mlapp",
            "docker/Dockerfile.mlflow",
            "docker/requirements/api.lock",
            "models/model_v2.json",
            "models/model_v2.pkl",
            "src/churn/__init__.py",
        ]
    )


def test_build_args_carry_the_labels_of_nox_build() -> None:
    args = docker_facts.build_args("0.1.0", "abc123")
    assert args["VERSION"] == "0.1.0" and args["REVISION"] == "abc123"
    assert args["CREATED"].endswith("Z") and len(args["CREATED"]) == 20
