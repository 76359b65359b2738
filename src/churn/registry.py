"""Serving core: follow the MLflow registry aliases and swap the served models atomically.

With ``CHURN_MODEL_SOURCE=registry`` the API serves the versions that the aliases
``champion`` and ``challenger`` of one registered model point to (`churn.registry_names`).
A `RegistryWatcher` thread looks at the aliases every few seconds through MLflow's REST API
(plain HTTP: no MLflow package), and when one moved:

1. reads the moved version's registry record (its tags: each file's run path and sha256);
2. downloads each file through the server's artifact proxy (``/get-artifact``);
3. checks each file's sha256 against the record *before* anything is loaded;
4. loads and compiles the verified bytes (`load_from_bytes`, the one place that turns bytes
   into models);
5. publishes a new immutable `ServingSet` in one assignment: a request works on the set it
   read when it started, so none sees a half-loaded model.

MLflow unreachable, an alias pointing nowhere, a file whose bytes do not match its record:
the last good set keeps serving, `RegistryWatcher.status` says why (``/ready``, ``/models``)
and the reason is logged once, not at every poll. Knows nothing of HTTP serving (Flask).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from churn.model_record import SERVING_ARTIFACT, ModelRecord, RecordError, RunRecord
from churn.registry_names import ALIASES, ARTIFACTS_TAG, CHAMPION, RECORD_KIND, VERSION_TAG
from churn.serving.prediction import ArtifactError, ServingModels

__all__ = [
    "RegistryClient",
    "RegistryEntry",
    "RegistryError",
    "RegistryUnavailable",
    "RegistryWatcher",
    "ServingSet",
    "VerificationError",
    "fetch_verified",
    "load_from_bytes",
]

log = logging.getLogger("churn.registry")

#: Seconds one registry or artifact request may take.
REQUEST_TIMEOUT = 5.0
#: The largest artifact downloaded (bytes): a model file is a few MB at most.
MAX_ARTIFACT_BYTES = 256 * 1024 * 1024


class RegistryError(Exception):
    """The registry answered, but not with what serving needs (one-line reason)."""


class RegistryUnavailable(RegistryError):
    """The MLflow server could not be reached or failed (connection, timeout, 5xx)."""


class VerificationError(RegistryError):
    """A registered version's record or files failed verification; it is not served."""


@dataclass(frozen=True)
class RegistryEntry:
    """One registry version an alias points to, with its registry record.

    Attributes:
        registry_version: the registry's number ("3").
        version: the project's version name training gave it ("v2").
        run_id: the training run holding its files.
        artifacts: ``{kind: {"path": run artifact path, "sha256": hex}}`` for the
            record and the data-only model file (`churn.registry_names`).

    """

    registry_version: str
    version: str
    run_id: str
    artifacts: Mapping[str, Mapping[str, str]]


def _entry(model: str, version: Mapping[str, Any]) -> RegistryEntry:
    """Build an entry from a REST ``model_version`` object, checking its registry record."""
    number = str(version.get("version", "?"))
    where = f"{model} version {number}"
    tags = {t.get("key"): t.get("value") for t in version.get("tags", []) if isinstance(t, dict)}
    name = tags.get(VERSION_TAG)
    try:
        artifacts = json.loads(tags.get(ARTIFACTS_TAG) or "null")
    except ValueError:
        artifacts = None
    if not isinstance(name, str) or not name or not isinstance(artifacts, dict):
        raise VerificationError(
            f"{where}: no registry record (tags {VERSION_TAG} and {ARTIFACTS_TAG}); "
            "register versions with `nox -s train`"
        )
    if {RECORD_KIND, SERVING_ARTIFACT} - set(artifacts) or not all(
        isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str)
        for e in artifacts.values()
    ):
        raise VerificationError(f"{where}: incomplete registry record in tag {ARTIFACTS_TAG}")
    run_id = version.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise VerificationError(f"{where}: no training run")
    return RegistryEntry(number, name, run_id, artifacts)


def _not_found(error: urllib.error.HTTPError) -> bool:
    """Whether a 400 answer means "no such alias" (how MLflow 3 says it)."""
    try:
        body = json.loads(error.read(65536) or b"{}")
    except (ValueError, OSError):
        return False
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    return "not found" in message.lower()


class RegistryClient:
    """MLflow's REST API for one registered model, over plain HTTP (urllib)."""

    def __init__(
        self,
        tracking_uri: str,
        model: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.base_url = tracking_uri.rstrip("/")
        self.model = model
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if username and password:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def _get(self, path: str, query: Mapping[str, str]) -> bytes | None:
        """GET ``path``; None on 404.

        Raises:
            RegistryUnavailable: no answer, a timeout or a 5xx.
            RegistryError: another 4xx.

        """
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, headers=self._headers)  # noqa: S310 - http(s) URL
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                data: bytes = response.read(MAX_ARTIFACT_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or (exc.code == 400 and _not_found(exc)):
                return None
            if exc.code >= 500:
                raise RegistryUnavailable(f"{self.base_url}: HTTP {exc.code} on {path}") from None
            raise RegistryError(f"{self.base_url}: HTTP {exc.code} on {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailable(f"{self.base_url} unreachable ({reason})") from None
        if len(data) > MAX_ARTIFACT_BYTES:
            raise RegistryError(f"{path}: larger than {MAX_ARTIFACT_BYTES} bytes")
        return data

    def alias(self, alias: str) -> RegistryEntry | None:
        """Return the version ``alias`` points to, or None when it points nowhere.

        Raises:
            RegistryUnavailable: MLflow cannot be reached.
            VerificationError: the version has no usable registry record.

        """
        data = self._get(
            "/api/2.0/mlflow/registered-models/alias", {"name": self.model, "alias": alias}
        )
        if data is None:
            return None
        try:
            version = json.loads(data)["model_version"]
        except (ValueError, KeyError, TypeError):
            raise RegistryError(f"{self.model}@{alias}: unexpected answer from MLflow") from None
        return _entry(self.model, version)

    def download(self, run_id: str, path: str) -> bytes:
        """Return the bytes of a run artifact, through the server's artifact proxy.

        Raises:
            RegistryUnavailable: MLflow cannot be reached.
            RegistryError: the artifact does not exist.

        """
        data = self._get("/get-artifact", {"run_uuid": run_id, "path": path})
        if data is None:
            raise RegistryError(f"run {run_id}: no artifact {path}")
        return data


def fetch_verified(client: RegistryClient, entry: RegistryEntry) -> dict[str, bytes]:
    """Download every file of ``entry`` and check each sha256 against its registry record.

    Raises:
        RegistryUnavailable: MLflow cannot be reached.
        VerificationError: a file is missing or its bytes do not match the record.

    """
    files: dict[str, bytes] = {}
    for kind, record in entry.artifacts.items():
        try:
            data = client.download(entry.run_id, record["path"])
        except RegistryUnavailable:
            raise
        except RegistryError as exc:
            where = f"{client.model} version {entry.registry_version}"
            raise VerificationError(f"{where}: {exc}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != record["sha256"].strip().lower():
            raise VerificationError(
                f"{client.model} version {entry.registry_version}: {record['path']} sha256 "
                f"mismatch (registry record says {record['sha256']}, downloaded {actual})"
            )
        files[kind] = data
    return files


def load_from_bytes(
    versions: Mapping[str, tuple[RegistryEntry, Mapping[str, bytes]]],
) -> ServingModels:
    """Load verified registry files as the served ``{name: (entry, files)}``.

    This is the one function that turns downloaded bytes into models. Each version's files
    are its record (``files["record"]``, `churn.model_record`) and its data-only model file
    (``files["compiled"]``). The record is renamed to ``name``; the registry's sha256 of the
    model file must equal the record's, and `ServingModels.from_sources` checks the bytes
    against it again before `churn.serving.compiled` parses them. Nothing touches the disk
    and no pickle is read.

    Raises:
        VerificationError: a record is unreadable or disagrees with the registry, or a model
            file fails to load (the reason names the registry version).

    """
    sources: dict[str, tuple[ModelRecord, RunRecord | None, bytes, str]] = {}
    for name, (entry, files) in versions.items():
        where = f"registry version {entry.registry_version}"
        if RECORD_KIND not in files or SERVING_ARTIFACT not in files:
            raise VerificationError(
                f"{where}: needs its {RECORD_KIND} and {SERVING_ARTIFACT} files"
            )
        try:
            record = ModelRecord.from_dict(json.loads(files[RECORD_KIND]), f"{where} record")
        except ValueError as exc:  # RecordError, JSONDecodeError, UnicodeDecodeError
            reason = str(exc) if isinstance(exc, RecordError) else f"{where}: unreadable record"
            raise VerificationError(reason) from None
        expected = entry.artifacts[SERVING_ARTIFACT]["sha256"].strip().lower()
        if record.artifact(SERVING_ARTIFACT).sha256 != expected:
            raise VerificationError(
                f"{where}: the record's {SERVING_ARTIFACT} sha256 differs from the registry's"
            )
        source = f"{where} {entry.artifacts[SERVING_ARTIFACT]['path']}"
        sources[name] = (
            dataclasses.replace(record, version=name),
            None,
            files[SERVING_ARTIFACT],
            source,
        )
    try:
        return ServingModels.from_sources(sources)
    except ArtifactError as exc:
        raise VerificationError(str(exc)) from None


@dataclass(frozen=True)
class ServingSet:
    """The models served at one moment, and how they are named; never changed once built.

    Attributes:
        models: the verified models, or None when none could be loaded.
        aliases: alias -> served version name (``{"champion": "v2", "challenger": "v1"}``).
        source: "baked" (the image's files) or "registry".
        registry: served version name -> ``{"registered_model", "registry_version", "run_id"}``.

    """

    models: ServingModels | None
    aliases: Mapping[str, str]
    source: str
    registry: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def alias_of(self, version: str) -> str | None:
        """Return the first alias pointing at ``version`` (champion before challenger), if any."""
        for alias, target in self.aliases.items():
            if target == version:
                return alias
        return None


def _names(entries: Mapping[str, RegistryEntry]) -> dict[str, str]:
    """Return the served name of each registry version: its name, made unique when shared."""
    by_name: dict[str, set[str]] = {}
    for entry in entries.values():
        by_name.setdefault(entry.version, set()).add(entry.registry_version)
    return {
        entry.registry_version: entry.version
        if len(by_name[entry.version]) == 1
        else f"{entry.version}-r{entry.registry_version}"
        for entry in entries.values()
    }


class RegistryWatcher:
    """Polls the aliases and publishes a new `ServingSet` through ``publish`` when they move.

    ``publish`` is called from the watcher's thread with each new set; it must only store it.
    """

    def __init__(
        self,
        client: RegistryClient,
        publish: Callable[[ServingSet], None],
        *,
        interval: float = 5.0,
    ) -> None:
        self.client = client
        self.interval = interval
        self._publish = publish
        #: alias -> (entry, verified files) currently served from the registry
        self._served: dict[str, tuple[RegistryEntry, Mapping[str, bytes]]] = {}
        #: registry version -> (its record, the reason it was refused): not retried, not
        #: logged again, until its record changes
        self._refused: dict[str, tuple[RegistryEntry, str]] = {}
        self._status: dict[str, Any] = {"status": "starting", "model": client.model}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_problem: str | None = None

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return the registry check of ``/ready`` and ``/models``: ok, degraded or starting."""
        return dict(self._status)

    def _set_status(self, state: str, reason: str | None = None) -> None:
        status: dict[str, Any] = {
            "status": state,
            "model": self.client.model,
            "aliases": {
                alias: {"version": entry.version, "registry_version": entry.registry_version}
                for alias, (entry, _) in self._served.items()
            },
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if reason:
            status["reason"] = reason
            if reason != self._last_problem:  # once per distinct problem, not every poll
                log.warning("registry: %s", reason, extra={"event": "registry_degraded"})
        elif self._last_problem is not None:
            log.info("registry: reachable again and up to date")
        self._last_problem = reason
        self._status = status

    # -- one look ---------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Look at the aliases once; load and publish a new set when they moved.

        Returns True when a new set was published. Never raises for MLflow or model
        problems: they become the status (and one log line).
        """
        with self._lock:
            return self._poll()

    def _poll(self) -> bool:
        keep = "; the last good models keep serving" if self._served else ""
        targets: dict[str, RegistryEntry] = {}
        problems: list[str] = []
        for alias in ALIASES:
            try:
                entry = self.client.alias(alias)
            except RegistryUnavailable as exc:
                self._set_status("degraded", f"MLflow registry: {exc}{keep}")
                return False
            except RegistryError as exc:
                problems.append(f"{alias}: {exc}")
                entry = self._served[alias][0] if alias in self._served else None
            if entry is not None:
                targets[alias] = entry
        if CHAMPION not in targets:
            problems.insert(
                0, f"no {CHAMPION} alias on {self.client.model} (or no such registered model)"
            )

        chosen: dict[str, tuple[RegistryEntry, Mapping[str, bytes]]] = {}
        for alias, entry in targets.items():
            current = self._served.get(alias)
            if current is not None and current[0] == entry:
                chosen[alias] = current
                continue
            loaded = self._loaded_files(entry)
            if loaded is None:
                refused = self._refused.get(entry.registry_version)
                if refused is not None and refused[0] == entry:
                    problems.append(f"{alias}: {refused[1]}")
                    if current is not None:
                        chosen[alias] = current
                    continue
                try:
                    loaded = fetch_verified(self.client, entry)
                except RegistryUnavailable as exc:
                    self._set_status("degraded", f"MLflow registry: {exc}{keep}")
                    return False
                except VerificationError as exc:
                    self._refuse(entry, str(exc))
                    problems.append(f"{alias}: refused: {exc}")
                    if current is not None:
                        chosen[alias] = current
                    continue
            chosen[alias] = (entry, loaded)

        changed = chosen != self._served and CHAMPION in chosen
        if changed and not self._swap(chosen):
            problems.append("the new models failed to load (see the log)")
        reason = "; ".join(problems) + keep if problems else None
        self._set_status("degraded" if reason else "ok", reason)
        return changed and self._served is chosen

    def _loaded_files(self, entry: RegistryEntry) -> Mapping[str, bytes] | None:
        for served, files in self._served.values():
            if served == entry:
                return files
        return None

    def _refuse(self, entry: RegistryEntry, reason: str) -> None:
        self._refused[entry.registry_version] = (entry, reason)
        log.error(
            "registry: refused %s version %s: %s",
            self.client.model,
            entry.registry_version,
            reason,
            extra={"event": "registry_refused"},
        )

    def _swap(self, chosen: dict[str, tuple[RegistryEntry, Mapping[str, bytes]]]) -> bool:
        """Load ``chosen`` and publish it; False (and the version refused) when loading fails."""
        entries = {entry.registry_version: entry for entry, _ in chosen.values()}
        names = _names(entries)
        files = {entry.registry_version: f for entry, f in chosen.values()}
        started = time.perf_counter()
        try:
            models = load_from_bytes(
                {names[number]: (entries[number], files[number]) for number in entries}
            )
        except VerificationError as exc:
            for alias, (entry, _) in chosen.items():
                if self._served.get(alias, (None,))[0] != entry:
                    self._refuse(entry, str(exc))
            return False
        aliases = {alias: names[entry.registry_version] for alias, (entry, _) in chosen.items()}
        registry = {
            names[number]: {
                "registered_model": self.client.model,
                "registry_version": number,
                "run_id": entry.run_id,
            }
            for number, entry in entries.items()
        }
        self._served = chosen
        self._publish(ServingSet(models, aliases, "registry", registry))
        log.info(
            "registry: now serving %s",
            ", ".join(
                f"{a}={aliases[a]} (registry version {e.registry_version})"
                for a, (e, _) in chosen.items()
            ),
            extra={
                "event": "registry_swap",
                "load_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return True

    # -- thread -----------------------------------------------------------------------------

    def start(self) -> None:
        """Poll in a daemon thread every `interval` seconds (or at once after `wake`)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="registry-watcher", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Look at the aliases now rather than at the next interval."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread (at most one request's timeout later)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.client.timeout * 3)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.poll_once()
            except Exception:  # keep watching whatever happens; the last set keeps serving
                log.exception("registry: unexpected error while polling")
