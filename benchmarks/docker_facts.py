"""Docker figures of the stack: image sizes, build times, time from `up` to ready, memory.

Nothing here touches the main Compose project: builds go to ``churn-bench-*`` tags (removed
afterwards) from a temporary copy of the build context, and the `up` timing starts a separate
project (``-p churn-bench``) on free 127.0.0.1 ports, its own network and temporary data
folders, and takes only that project down.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from churn.config import ArtifactPaths
from churn_ops.images import (
    API_IMAGE,
    BASE_CANDIDATES,
    DOCKERFILES,
    MLFLOW_IMAGE,
    build_args,
    buildkit_env,
)
from churn_ops.shell import OpsError, run_quiet
from churn_ops.stack import Stack, copy_store, unanswered

__all__ = [
    "API_IMAGE",
    "MLFLOW_IMAGE",
    "BENCH_PROJECT",
    "build_context_copy",
    "build_args",
    "container_memory_mib",
    "container_publishing",
    "count_cached_steps",
    "image_facts",
    "parse_mem_usage",
    "time_api_start",
    "time_build",
    "time_up_to_ready",
]

BENCH_PROJECT = "churn-bench"
#: What the images copy from the build context (the re-included paths of .dockerignore).
CONTEXT_PATHS = (
    ".dockerignore",
    "src",
    "configs",
    "docker/requirements",
    "docker/Dockerfile.mlapp",
    "docker/Dockerfile.mlflow",
    "docker/mlflow",
    ArtifactPaths(Path()).preprocessor.as_posix(),
    ArtifactPaths(Path()).label_encoder.as_posix(),
)

_MEM = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?i?B)\s*$", re.I)
_MIB = {
    "b": 1 / 2**20,
    "kib": 1 / 1024,
    "mib": 1.0,
    "gib": 1024.0,
    "tib": 1024.0**2,
    "kb": 1e3 / 2**20,
    "mb": 1e6 / 2**20,
    "gb": 1e9 / 2**20,
    "tb": 1e12 / 2**20,
}


def parse_mem_usage(text: str) -> float:
    """Return the used part of `docker stats`' MemUsage (``"112.9MiB / 23.54GiB"``) in MiB.

    Raises:
        ValueError: the text does not start with a size docker prints.

    """
    used = text.split("/")[0]
    match = _MEM.match(used)
    if not match:
        raise ValueError(f"not a docker memory figure: {text!r}")
    return float(match.group(1)) * _MIB[match.group(2).lower()]


def container_publishing(port: int) -> dict[str, Any] | None:
    """Return id, name, image and main process id of the container publishing host ``port``."""
    out = run_quiet(
        "docker", "ps", "--filter", f"publish={port}", "--format", "{{.ID}}\t{{.Names}}\t{{.Image}}"
    )
    lines = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
    if out.returncode != 0 or len(lines) != 1 or len(lines[0]) != 3:
        return None
    cid, name, image = lines[0]
    pid = run_quiet("docker", "inspect", "--format", "{{.State.Pid}}", cid).stdout.strip()
    return {"id": cid, "name": name, "image": image, "pid": int(pid) if pid.isdigit() else 0}


def container_memory_mib(container: str) -> float | None:
    """Return a container's memory use now (`docker stats --no-stream`), in MiB."""
    out = run_quiet("docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container)
    try:
        return round(parse_mem_usage(out.stdout.strip()), 1) if out.returncode == 0 else None
    except ValueError:
        return None


def _inspect(ref: str) -> dict[str, Any] | None:
    out = run_quiet("docker", "image", "inspect", ref)
    if out.returncode != 0:
        return None
    found = json.loads(out.stdout or "[]")
    return found[0] if found else None


def image_facts(image: str, bases: tuple[str, ...] = BASE_CANDIDATES) -> dict[str, Any] | None:
    """Return an image's size, its base and the size over that base; None if it is absent.

    The base is the first candidate whose layers the image starts with. Sizes are in MB
    (10^6 bytes), as `docker images` prints them.
    """
    found = _inspect(image)
    if found is None:
        return None
    layers = found.get("RootFS", {}).get("Layers", [])
    env_base = os.environ.get("BASE_IMAGE")
    base, base_size = None, None
    for candidate in ((env_base,) if env_base else ()) + bases:
        info = _inspect(candidate)
        base_layers = (info or {}).get("RootFS", {}).get("Layers", [])
        if info and base_layers and layers[: len(base_layers)] == base_layers:
            base, base_size = candidate, int(info["Size"])
            break
    size = int(found["Size"])
    return {
        "image": image,
        "id": str(found["Id"])[:19],
        "size_mb": round(size / 1e6, 1),
        "base": base,
        "base_size_mb": round(base_size / 1e6, 1) if base_size is not None else None,
        "over_base_mb": round((size - base_size) / 1e6, 1) if base_size is not None else None,
    }


def count_cached_steps(build_log: str) -> tuple[int, int]:
    """Return (cached steps, all steps) of a docker build log (classic builder or BuildKit)."""
    classic_steps = len(re.findall(r"^Step \d+/\d+ :", build_log, re.M))
    if classic_steps:
        return len(re.findall(r"^ ---> Using cache$", build_log, re.M)), classic_steps
    steps = set(re.findall(r"^#(\d+) \[(?!internal\])", build_log, re.M))
    cached = set(re.findall(r"^#(\d+) CACHED$", build_log, re.M))
    return len(cached & steps), len(steps)


def built_image_ids(build_log: str) -> list[str]:
    """Return the ids of the images a classic-builder log says its build created, in order.

    A multi-stage build leaves each earlier stage's last image behind, untagged; these ids
    let the caller remove what its own build made (`remove_build`). Steps that reused the
    cache and ``FROM`` steps name images made by others: they are left out.
    """
    created = []
    for block in re.split(r"^Step \d+/\d+ : ", build_log, flags=re.M)[1:]:
        if block.startswith("FROM ") or "\n ---> Using cache\n" in f"\n{block}":
            continue
        ids = re.findall(r"^ ---> ([0-9a-f]{12})$", block, re.M)
        if ids:
            created.append(ids[-1])
    return created


def build_context_copy(root: Path, dest: Path) -> None:
    """Copy what the images need from the build context at ``root`` into ``dest``."""
    for rel in CONTEXT_PATHS:
        src = root / rel
        if src.is_dir():
            shutil.copytree(
                src, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "churn_ops")
            )
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    models, copied = ArtifactPaths(root).models, ArtifactPaths(dest).models
    copied.mkdir(exist_ok=True)
    for path in models.glob("*"):
        if path.suffix in (".pkl", ".json"):
            shutil.copy2(path, copied / path.name)


def time_build(
    context: Path,
    image: str,
    tag: str,
    build_args: dict[str, str],
    *,
    no_cache: bool = False,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Build one image from ``context`` as ``tag``; return seconds, cached steps, outcome.

    The caller removes the tag afterwards (`remove_image`).
    """
    cmd = ["docker", "build", "-f", str(context / DOCKERFILES[image]), "-t", tag]
    cmd += [f"--build-arg={k}={v}" for k, v in build_args.items()]
    if no_cache:
        cmd.append("--no-cache")
    cmd.append(str(context))
    started = time.monotonic()
    out = run_quiet(*cmd, timeout=timeout_s, env=buildkit_env())
    seconds = time.monotonic() - started
    log = out.stdout + out.stderr
    cached, steps = count_cached_steps(log)
    result: dict[str, Any] = {
        "image": image,
        "seconds": round(seconds, 1),
        "cached_steps": cached,
        "steps": steps,
        "ok": out.returncode == 0,
        "_image_ids": built_image_ids(log),
    }
    if out.returncode != 0:
        result["error"] = " ".join(log.split())[-400:]
    return result


def remove_build(tag: str, image_ids: list[str]) -> None:
    """Remove a tag this module built, then the untagged stage images its build left.

    Without --force: Docker refuses to remove an image that is tagged or that another image
    (any cached layer another build uses) depends on, so only leftovers of this build go.
    """
    run_quiet("docker", "image", "rm", tag)
    for image_id in reversed(image_ids):
        run_quiet("docker", "image", "rm", image_id)


def time_up_to_ready(
    root: Path, api_port: int, mlflow_port: int, timeout_s: float = 300
) -> dict[str, Any]:
    """Start the stack as a separate Compose project and time it until ready; take it down.

    Returns seconds from `up -d` until the API answers ``/ready`` with 200 (polled every
    0.25 s) and until Docker reports both services healthy (what `nox -s up` waits for).
    The MLflow store is a consistent copy of ``<root>/mlruns`` (an existing project's state).
    """
    result: dict[str, Any] = {"project": BENCH_PROJECT, "ok": False}
    with tempfile.TemporaryDirectory(
        prefix="churn-bench-stack-", ignore_cleanup_errors=True
    ) as tmp:
        try:
            stack = Stack.isolated(BENCH_PROJECT, Path(tmp), api_port, mlflow_port, root=root)
        except OpsError as exc:  # no Compose CLI
            return {**result, "error": str(exc)}
        if (root / "mlruns").is_dir():
            copy_store(root / "mlruns", stack.mlruns_dir)
        stack.prepare_dirs()
        try:
            return _time_up(stack, result, timeout_s)
        finally:
            stack.down("--timeout", "10")


def _time_up(stack: Stack, result: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    started = time.monotonic()
    up = stack.run("up", "-d", "--no-build", timeout=timeout_s)
    result["up_command_s"] = round(time.monotonic() - started, 1)
    if up.returncode != 0:
        result["error"] = " ".join((up.stderr + up.stdout).split())[-400:]
        return result
    last_health = 0.0
    while time.monotonic() - started < timeout_s:
        now = time.monotonic()
        if "api_ready_s" not in result and not unanswered({"api": stack.api_url}, "/ready", 1):
            result["api_ready_s"] = round(now - started, 1)
        if now - last_health >= 1.0:
            last_health = now
            states = stack.states()
            if all(s == "healthy" for s in states.values()):
                result["healthy_s"] = round(now - started, 1)
                result.setdefault("api_ready_s", result["healthy_s"])
                result["ok"] = True
                return result
            if any(s in ("exited", "dead", "missing") for s in states.values()):
                result["error"] = f"a service is not running: {states}"
                return result
        time.sleep(0.25)
    result["error"] = f"not healthy within {timeout_s:.0f} s"
    return result


def time_api_start(image: str, port: int, timeout_s: float = 60) -> dict[str, Any]:
    """Start the API image alone (no MLflow) on 127.0.0.1:``port``; time it until ready.

    Returns seconds from `docker run` until ``/ready`` answers 200 (polled every 20 ms), and
    from the moment Docker started the container (its ``State.StartedAt``) until then: the
    API's own start (interpreter, imports, model files checked and loaded). The container is
    removed afterwards.
    """
    result: dict[str, Any] = {"image": image, "ok": False}
    started = time.monotonic()
    run = run_quiet(
        "docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:5000", image, timeout=60
    )
    if run.returncode != 0:
        return {**result, "error": " ".join((run.stderr + run.stdout).split())[-300:]}
    cid = run.stdout.strip()
    try:
        while time.monotonic() - started < timeout_s:
            if not unanswered({"api": f"http://127.0.0.1:{port}"}, "/ready", 1):
                ready_at = dt.datetime.now(dt.UTC)
                result["run_to_ready_s"] = round(time.monotonic() - started, 2)
                began = run_quiet("docker", "inspect", "--format", "{{.State.StartedAt}}", cid)
                with contextlib.suppress(ValueError):
                    start = dt.datetime.fromisoformat(began.stdout.strip()[:26] + "+00:00")
                    result["start_to_ready_s"] = round((ready_at - start).total_seconds(), 2)
                result["ok"] = True
                return result
            time.sleep(0.02)
        result["error"] = f"not ready within {timeout_s:.0f} s"
        return result
    finally:
        run_quiet("docker", "rm", "-f", "-v", cid)
