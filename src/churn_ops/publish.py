"""Publishing: tag and push both images to a registry, refusing what would mislead.

`nox -s publish` calls :func:`publish`; `nox -s publish-test` proves it against real registries
on 127.0.0.1 (tests/publish). A release tag is never overwritten, a dirty or stale checkout is
refused unless forced, the token reaches `docker login` through stdin only, and each pushed
image is pulled back by digest.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from churn_ops.images import (
    API_IMAGE,
    DEFAULT_BASE_IMAGE,
    DOCKERFILES,
    MODELS_LABEL,
    build_args,
    image_exists,
    model_artifact_labels,
    oci_labels,
    project_version,
)
from churn_ops.shell import Session, run_quiet
from churn_ops.stack import REPO_ROOT, require_docker

PUBLISH_PLATFORMS = ("linux/amd64", "linux/arm64")
PUBLISH_LABELS = ("version", "revision", "created", "source", "licenses")
PUBLISH_SECRET = "DOCKERHUB_TOKEN"


def _options(session: Session, args: list[str]) -> tuple[bool, bool]:
    """Return (dry_run, force) from `-- --dry-run --force`; anything else is an error."""
    unknown = set(args) - {"--dry-run", "--force"}
    if unknown:
        session.error(f"Unknown publish option(s) {sorted(unknown)}: use --dry-run, --force")
    return "--dry-run" in args, "--force" in args


def _target(session: Session) -> tuple[str, str]:
    """Return (registry, namespace) from REGISTRY and IMAGE_NAMESPACE or DOCKERHUB_USERNAME."""
    registry = os.environ.get("REGISTRY", "").strip() or "docker.io"
    registry = registry.removeprefix("https://").removeprefix("http://").strip("/")
    namespace = os.environ.get("IMAGE_NAMESPACE") or os.environ.get("DOCKERHUB_USERNAME") or ""
    namespace = namespace.strip().strip("/")
    if not namespace:
        session.error(
            "No namespace to publish under: set IMAGE_NAMESPACE (or DOCKERHUB_USERNAME); "
            "`IMAGE_NAMESPACE=alice nox -s publish` pushes docker.io/alice/churn-prediction-api"
        )
    component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    if not re.fullmatch(rf"{component}(?:/{component})*", namespace):
        session.error(f"Namespace {namespace!r} is not an image path (lowercase, digits, . _ - /)")
    return registry, namespace


def _step(session: Session, dry_run: bool, env: dict[str, str], *cmd: str) -> None:
    """Run one docker command, or only print it in a dry run."""
    if dry_run:
        session.log(f"[dry-run] would run: {shlex.join(cmd)}")
    else:
        session.run(*cmd, external=True, env=env)


def _git_state(root: Path) -> tuple[str, str, list[str]]:
    """Return (HEAD sha, short sha, `git status --porcelain` lines); ('', '', []) outside git."""
    head = run_quiet("git", "-C", str(root), "rev-parse", "HEAD")
    short = run_quiet("git", "-C", str(root), "rev-parse", "--short", "HEAD")
    status = run_quiet("git", "-C", str(root), "status", "--porcelain", "--untracked-files=normal")
    if head.returncode or short.returncode or status.returncode:
        return "", "", []
    return head.stdout.strip(), short.stdout.strip(), status.stdout.splitlines()


def _local_refusals(version: str, head: str, short_sha: str) -> list[str]:
    """Check the local images: fully labelled, of this version, built from HEAD."""
    refusals = []
    for image in DOCKERFILES:
        source = f"{image}:latest"
        labels = oci_labels(source) or {}
        unset = [k for k in PUBLISH_LABELS if labels.get(k, "unknown") in ("", "unknown")]
        if unset:
            refusals.append(f"{source} lacks the OCI labels {unset}: build it with `nox -s build`.")
        if labels.get("version") != version:
            refusals.append(
                f"{source} is version {labels.get('version')!r} but pyproject.toml says "
                f"{version!r}: rebuild with `nox -s build`."
            )
        revision = labels.get("revision", "")
        if head and not (len(revision) >= 7 and head.startswith(revision)):
            refusals.append(
                f"{source} was built from revision {revision!r}, HEAD is {short_sha}: rebuild "
                "with `nox -s build`, so that the sha tag names the commit inside the image."
            )
    return refusals


def _insecure(registry: str) -> bool:
    """Tell whether the engine speaks plain HTTP to this registry (e.g. 127.0.0.0/8)."""
    info = run_quiet("docker", "info", "--format", "{{json .RegistryConfig}}")
    try:
        config = json.loads(info.stdout)
    except json.JSONDecodeError:
        return False
    index = (config.get("IndexConfigs") or {}).get(registry)
    if index is not None:
        return not index.get("Secure", True)
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    try:
        found = socket.getaddrinfo(host.strip("[]"), None)
        addresses = {ipaddress.ip_address(str(entry[4][0]).split("%")[0]) for entry in found}
    except (OSError, ValueError):
        return False
    cidrs = [ipaddress.ip_network(c) for c in config.get("InsecureRegistryCIDRs") or []]
    return any(a.version == net.version and a in net for a in addresses for net in cidrs)


def _tag_state(ref: str, insecure: bool, env: dict[str, str]) -> tuple[str, str]:
    """Return ('present' | 'absent' | 'unreadable' | 'unknown', the registry's answer)."""
    # Without --insecure, `docker manifest inspect` answers "no such manifest" for a tag that
    # does exist on a plain-HTTP registry: the flag is required there, not optional.
    cmd = ["docker", "manifest", "inspect", *(["--insecure"] if insecure else []), ref]
    out = run_quiet(*cmd, env=env, timeout=60)
    if out.returncode == 0:
        return "present", ""
    answer = " ".join(out.stderr.split()) or f"exit status {out.returncode}"
    low = answer.lower()
    if any(s in low for s in ("no such manifest", "manifest unknown", "name unknown", "not found")):
        return "absent", answer
    if any(
        s in low for s in ("denied", "unauthorized", "no basic auth", "authentication required")
    ):
        return "unreadable", answer
    return "unknown", answer


def _docker_config() -> Path:
    """Make a private DOCKER_CONFIG for one publish, so that the login never lands in ~/.docker.

    It keeps the user's settings (proxies, CLI plugins, buildx builders, contexts) but none of
    their credentials; the caller deletes it when the publish ends.
    """
    home = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    private = Path(tempfile.mkdtemp(prefix="churn-publish-docker-"))  # mode 0700
    try:
        config = json.loads((home / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    for key in ("auths", "credsStore", "credHelpers"):
        config.pop(key, None)
    (private / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for name in ("cli-plugins", "buildx", "contexts"):
        if (home / name).exists():
            (private / name).symlink_to(home / name)
    return private


def _login(session: Session, registry: str, username: str, token: str, env: dict[str, str]) -> None:
    """`docker login --password-stdin`: the token goes through stdin only, never printed."""
    session.log(f"docker login {registry} --username {username} --password-stdin  (token: stdin)")
    cmd = ("docker", "login", registry, "--username", username, "--password-stdin")
    try:
        out = subprocess.run(
            cmd, input=token, capture_output=True, text=True, timeout=120,
            env={**os.environ, **env}, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        session.error(f"docker login {registry} timed out after 120 s")
    if out.returncode != 0:
        answer = (out.stderr + out.stdout).replace(token, "***").strip()
        session.error(f"docker login {registry} as {username} failed: {answer}")
    session.log(f"Logged in to {registry} as {username}, for this publish only.")


def _multiarch(dry_run: bool) -> tuple[bool, str]:
    """Return (True, '') when buildx can build amd64 and arm64 here, else (False, why not)."""
    server = run_quiet("docker", "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")
    native = server.stdout.strip() or "the native architecture"
    if run_quiet("docker", "buildx", "version").returncode != 0:
        return False, f"docker buildx is not installed: publishing {native} only, not multi-arch."
    inspect = ["docker", "buildx", "inspect", *([] if dry_run else ["--bootstrap"])]
    out = run_quiet(*inspect, env={}, timeout=300)
    platforms = {
        p.strip().rstrip("*")
        for line in out.stdout.splitlines()
        if line.strip().startswith("Platforms:")
        for p in line.split(":", 1)[1].split(",")
    }
    if not set(PUBLISH_PLATFORMS) <= platforms:
        return False, (
            f"the buildx builder offers {sorted(platforms)}, not {', '.join(PUBLISH_PLATFORMS)}: "
            f"publishing {native} only (`docker buildx create --use --driver docker-container` "
            "and QEMU binfmt support add arm64)."
        )
    return True, ""


def _push(
    session: Session,
    dry_run: bool,
    env: dict[str, str],
    multiarch: bool,
    image: str,
    repo: str,
    tags: tuple[str, str, str],
    root: Path,
) -> None:
    """Push one image under its (version, sha, latest) tags: retag it, or build both platforms."""
    refs = [f"{repo}:{tag}" for tag in tags]
    if not multiarch:
        for ref in refs:
            _step(session, dry_run, env, "docker", "tag", f"{image}:latest", ref)
        for ref in refs:
            _step(session, dry_run, env, "docker", "push", ref)
        return
    # A multi-arch image cannot be made from the local single-arch one: buildx rebuilds it
    # from this (clean) checkout, with the same labels as `nox -s build`.
    args = {
        "BASE_IMAGE": os.environ.get("BASE_IMAGE", DEFAULT_BASE_IMAGE),
        **build_args(tags[0], tags[1], root),
    }
    if image == API_IMAGE:
        args["MODELS"] = model_artifact_labels(root)[MODELS_LABEL]
    _step(
        session, dry_run, env,
        "docker", "buildx", "build", "--platform", ",".join(PUBLISH_PLATFORMS),
        "-f", str(root / DOCKERFILES[image]),
        *[f"--build-arg={k}={v}" for k, v in args.items()],
        *[arg for ref in refs for arg in ("-t", ref)], "--push", str(root),
    )  # fmt: skip


def _pull_back(session: Session, env: dict[str, str], multiarch: bool, image: str, ref: str) -> str:
    """Pull the pushed image back by digest, check it is the one pushed; return the digest."""
    repo = ref.rsplit(":", 1)[0]
    if multiarch:
        fmt = "{{json .Manifest}}"
        out = run_quiet("docker", "buildx", "imagetools", "inspect", ref, "--format", fmt, env=env)
        digest = json.loads(out.stdout or "{}").get("digest", "")
    else:
        fmt = "{{json .RepoDigests}}"
        out = run_quiet("docker", "image", "inspect", "--format", fmt, f"{image}:latest", env=env)
        found = [d for d in json.loads(out.stdout or "[]") if d.startswith(f"{repo}@")]
        digest = found[0].split("@", 1)[1] if found else ""
    if not digest:
        session.error(f"The registry gave no digest for {ref} after the push")
    session.run("docker", "pull", f"{repo}@{digest}", external=True, env=env)
    if not multiarch:
        ids = [
            run_quiet("docker", "image", "inspect", "--format", "{{.Id}}", r, env=env).stdout
            for r in (f"{repo}@{digest}", f"{image}:latest")
        ]
        if ids[0].strip() != ids[1].strip():
            session.error(f"{repo}@{digest} is not the image pushed ({ids[1].strip()})")
    return digest


def publish(session: Session, args: list[str], root: Path = REPO_ROOT) -> None:
    """Tag and push both images to a registry (REGISTRY, IMAGE_NAMESPACE); --dry-run, --force."""
    dry_run, force = _options(session, args)
    # Out of the environment at once: no child process (docker, git) ever inherits the token.
    token = os.environ.pop(PUBLISH_SECRET, "")
    registry, namespace = _target(session)
    require_docker()
    version = project_version(root)
    head, short_sha, dirty = _git_state(root)
    multiarch, why_native = _multiarch(dry_run)
    if why_native:
        session.log(why_native)
    tags = (version, short_sha or "unknown", "latest")
    repos = {image: f"{registry}/{namespace}/{image}" for image in DOCKERFILES}

    refusals: list[str] = []
    if not head:
        refusals.append(f"{root} is not a git checkout: the images' revision cannot be named.")
    if dirty:
        shown = ", ".join(line[3:] for line in dirty[:8]) + (", ..." if len(dirty) > 8 else "")
        refusals.append(
            f"the git working tree is dirty, {len(dirty)} uncommitted change(s): {shown}. "
            "Commit them (then `nox -s build`) and publish again."
        )
    if not multiarch:
        for image in DOCKERFILES:
            if not image_exists(f"{image}:latest"):
                session.error(
                    f"The local image {image}:latest is missing: run `nox -s build` first"
                )
        refusals += _local_refusals(version, head, short_sha)

    env: dict[str, str] = {}  # DOCKER_CONFIG once logged in
    private_config: Path | None = None
    digests: dict[str, str] = {}
    try:
        if not token:
            session.log(f"{PUBLISH_SECRET} is not set: no login (existing docker logins apply).")
        elif dry_run:
            session.log(f"[dry-run] would log in to {registry} with {PUBLISH_SECRET} on stdin")
        else:
            username = (
                os.environ.get("REGISTRY_USERNAME")
                or os.environ.get("DOCKERHUB_USERNAME")
                or namespace.split("/")[0]
            )
            private_config = _docker_config()
            env["DOCKER_CONFIG"] = str(private_config)
            _login(session, registry, username, token, env)

        insecure = _insecure(registry)
        for repo in repos.values():
            state, answer = _tag_state(f"{repo}:{version}", insecure, env)
            if state == "present":
                refusals.append(
                    f"{repo}:{version} already exists in the registry: a release is never "
                    "overwritten; bump [project] version in pyproject.toml."
                )
            elif state == "unreadable":
                session.log(f"{repo} cannot be read ({answer}): taking {version} as new.")
            elif state == "unknown":
                refusals.append(f"cannot tell whether {repo}:{version} exists: {answer}")
        if refusals:
            listed = "\n  - ".join(refusals)
            if not force:
                session.error(
                    f"Refusing to publish:\n  - {listed}\n"
                    "(`nox -s publish -- --force` publishes anyway)"
                )
            session.warn(f"Publishing anyway (--force):\n  - {listed}")

        for image, repo in repos.items():
            started = time.monotonic()
            _push(session, dry_run, env, multiarch, image, repo, tags, root)
            if dry_run:
                continue
            pushed = time.monotonic() - started
            digests[image] = _pull_back(session, env, multiarch, image, f"{repo}:{version}")
            pulled = time.monotonic() - started - pushed
            session.log(f"{image}: pushed in {pushed:.1f} s, pulled back in {pulled:.1f} s")
    finally:
        if private_config is not None:
            run_quiet("docker", "logout", registry, env=env)
            shutil.rmtree(private_config, ignore_errors=True)

    if dry_run:
        session.log("[dry-run] then pull each image back by digest. Nothing was pushed.")
        return
    arch = ", ".join(PUBLISH_PLATFORMS) if multiarch else "native architecture only"
    session.log(f"Published to {registry}/{namespace} ({arch}), tags {', '.join(tags)}:")
    for image, repo in repos.items():
        session.log(f"  digest {repo}@{digests[image]}")
    session.log(
        f"Run it elsewhere (docs/publish.md): IMAGE_PREFIX={registry}/{namespace}/ "
        f"IMAGE_TAG={version}, then `docker compose -f docker/docker-compose.yml pull` and `up -d`."
    )
