"""The rendered Kubernetes overlays agree with the images and keep the project's rules.

Run by `nox -s k8s` after it rendered and schema-validated each overlay; rendered again here
with the kubectl it found (``KUBECTL``). Image names are the ones `nox -s build` tags, ports and
users are read from the Dockerfiles, and no secret value is in the committed tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))  # the operations helpers (src/churn_ops)

from churn_ops import k8s  # noqa: E402

KUBECTL = os.environ.get("KUBECTL", "kubectl")
#: Image -> its Dockerfile.
DOCKERFILES = {
    "churn-prediction-api": "Dockerfile.mlapp",
    "churn-mlflow": "Dockerfile.mlflow",
    "churn-postgres": "Dockerfile.postgres",
}
WORKLOADS = ("Deployment", "StatefulSet")


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^version = "([^"]+)"', text, re.M)
    assert found
    return found.group(1)


@pytest.fixture(scope="module")
def rendered(monkeypatch_module: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    k8s.ensure_secret_env(ROOT, log=lambda _: None)
    for name in ("IMAGE_PREFIX", "IMAGE_TAG"):  # the committed defaults of `published`
        monkeypatch_module.delenv(name, raising=False)
    return {
        overlay: [d for d in yaml.safe_load_all(k8s.render(ROOT, overlay, KUBECTL)) if d]
        for overlay in k8s.OVERLAYS
    }


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def dockerfile(image: str) -> str | None:
    path = ROOT / "docker" / DOCKERFILES[image]
    return path.read_text(encoding="utf-8") if path.is_file() else None


def containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) pairs of the rendered overlay."""
    return [
        (doc, container)
        for doc in docs
        if doc["kind"] in WORKLOADS
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]


def image_name(ref: str) -> tuple[str, str]:
    repo, _, tag = ref.rpartition(":")
    return repo.rsplit("/", 1)[-1], tag


def of_kind(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_images_are_the_built_ones_by_version(rendered: dict, overlay: str) -> None:
    images = {image_name(c["image"]) for _, c in containers(rendered[overlay])}
    assert images == {(name, project_version()) for name in DOCKERFILES}
    for _, container in containers(rendered[overlay]):
        assert not container["image"].endswith(":latest")
        if overlay == "published":
            assert container["image"].startswith("docker.io/churn-prediction/")
        else:
            assert "/" not in container["image"]
            assert container["imagePullPolicy"] == "IfNotPresent"


def test_published_images_follow_image_prefix_and_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGE_PREFIX", "registry.example:5000/team/")
    monkeypatch.setenv("IMAGE_TAG", "1.2.3")
    docs = [d for d in yaml.safe_load_all(k8s.render(ROOT, "published", KUBECTL)) if d]
    refs = {c["image"] for _, c in containers(docs)}
    assert refs == {f"registry.example:5000/team/{name}:1.2.3" for name in DOCKERFILES}
    monkeypatch.setenv("IMAGE_TAG", "latest")
    with pytest.raises(k8s.K8sError, match="latest"):
        k8s.render(ROOT, "published", KUBECTL)


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_ports_users_and_probes_match_the_images(rendered: dict, overlay: str) -> None:
    missing = []
    for workload, container in containers(rendered[overlay]):
        name, _ = image_name(container["image"])
        text = dockerfile(name)
        if text is None:
            missing.append(DOCKERFILES[name])
            continue
        exposed = {int(p) for p in re.findall(r"^EXPOSE (\d+)", text, re.M)}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert set(ports.values()) == exposed, name
        uid = re.findall(r"^USER (\d+)", text, re.M)[-1]
        pod_security = workload["spec"]["template"]["spec"]["securityContext"]
        assert str(pod_security["runAsUser"]) == uid and pod_security["runAsNonRoot"] is True
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            action = container[probe]
            if "httpGet" in action:
                assert ports[action["httpGet"]["port"]] in exposed
        if name == "churn-prediction-api":
            assert container["livenessProbe"]["httpGet"]["path"] == "/health"
            assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
            assert "/ready" in text  # the image's own healthcheck asks the same
        if name == "churn-mlflow":
            assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    if missing:
        pytest.skip(f"not in this tree, so not compared: {', '.join(missing)}")


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_every_container_is_hardened_and_bounded(rendered: dict, overlay: str) -> None:
    for workload, container in containers(rendered[overlay]):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert workload["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        resources = container["resources"]
        assert resources["requests"]["memory"] and resources["limits"]["memory"]


@pytest.mark.parametrize("overlay", k8s.OVERLAYS)
def test_services_reach_the_containers_named_ports(rendered: dict, overlay: str) -> None:
    docs = rendered[overlay]
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        targets = [
            c
            for w, c in containers(docs)
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        names = {p["name"] for p in targets[0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= names


def test_replicas_autoscaler_and_disruption_budget_per_overlay(rendered: dict) -> None:
    dev, scaled = rendered["dev"], rendered["scaled"]
    assert of_kind(dev, "Deployment", "api")["spec"]["replicas"] == 1  # type: ignore[index]
    assert of_kind(dev, "HorizontalPodAutoscaler", "api") is None
    assert of_kind(dev, "PodDisruptionBudget", "api") is None
    assert of_kind(scaled, "Deployment", "api")["spec"]["replicas"] == 3  # type: ignore[index]
    hpa = of_kind(scaled, "HorizontalPodAutoscaler", "api")
    assert hpa and hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["maxReplicas"] >= 3
    assert hpa["spec"]["scaleTargetRef"]["name"] == "api"
    pdb = of_kind(scaled, "PodDisruptionBudget", "api")
    assert pdb and pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "api"}},
    }


def test_the_password_comes_from_the_generated_secret_only(rendered: dict) -> None:
    for overlay, docs in rendered.items():
        secret = next(d for d in docs if d["kind"] == "Secret")
        assert set(secret["data"]) == {"POSTGRES_PASSWORD"}, overlay
        for _, container in containers(docs):
            for env in container.get("env", []):
                if "PASSWORD" in env["name"]:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == secret["metadata"]["name"] and "value" not in env


def test_no_secret_value_is_committed() -> None:
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "deploy"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked, "deploy/ is not in git"
    assert str(k8s.SECRET_ENV) not in tracked
    ignored = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", str(k8s.SECRET_ENV)], check=False
    )
    assert ignored.returncode == 0, f"{k8s.SECRET_ENV} must be git-ignored"
    for path in tracked:
        text = (ROOT / path).read_text(encoding="utf-8")
        assert not re.search(r"(?im)^\s*kind:\s*Secret\s*$", text), path
        assert not re.search(
            r"(?i)password[=:][ \t]*['\"]?\w{6,}", text.replace("PASSWORD_FILE", "")
        ), path
