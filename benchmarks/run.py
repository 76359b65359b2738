"""Run the benchmark suite against a running API: ``python -m benchmarks [options]``.

`nox -s bench` makes sure the stack is up, then runs this. In order:

1. wrk loads, one after another, on 127.0.0.1: the ceiling, a trivial Flask ``GET /health``
   on stock Waitress (`benchmarks.ceiling`, in a container of the API's image when the API
   runs in one); the API's ``GET /health``, then ``GET /health`` one request at a time (the
   CPU per request the concurrent figure is judged against); ``POST /predict`` (one
   record) for v1 and v2; ``POST /predict/batch`` (v2) with 100 and 1,000 records; the
   container's memory is sampled with ``docker stats`` during the v2 and 1,000-batch loads;
2. the server time of a 1,000-record batch, one request at a time, from the API's own
   latency metric (``/metrics``), beside the time the client saw;
3. the comparisons, each started, loaded with the same wrk load and the same record, then
   stopped: `mlflow models serve` on the MLflow-logged v2 model (``POST /invocations``; built
   from the DVC pickles when the registry lacks it), then a BentoML 1.4 Service around the
   same v2 pickles (``POST /predict``, from a venv of its own: `benchmarks.bento_serve`), both
   with ``--comparison-workers`` worker processes (default 1, `mlflow models serve`'s own);
4. Docker figures (skippable): image sizes, warm (and with ``--cold-build`` cold) build times
   of both images, time from `up` to ready of a separate Compose project;
5. the table, ``bench.json`` and ``bench.png`` in the output folder.

``--only mlflow,bentoml`` runs only those parts (of ceiling, api, mlflow, bentoml, docker);
the others are listed as not selected.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks import (
    batch_parts,
    bento_serve,
    ceiling,
    docker_facts,
    local_server,
    mlflow_serve,
    payloads,
    pickles,
    procstat,
    report,
)
from benchmarks.wrk import WrkError, WrkResult, median_run, run_wrk

__all__ = ["Scenario", "main"]

SEQUENTIAL_BATCHES = 30


#: Scenarios run `--repeat` times (their p99 and the ratios decide targets); others once.
REPEATED = frozenset({"ceiling", "health", "predict_v1", "predict_v2"})
#: The API's counter of CPU time spent on drift counting (`churn.drift.DriftMonitor`).
DRIFT_CPU_METRIC = "churn_api_drift_observe_cpu_seconds_total"
#: Scenarios during which the API container's memory is sampled (`docker stats`).
MEMORY_SAMPLED = ("batch_100", "batch_1000")
#: The parts of a run `--only` can pick; scenarios belong to the part named by their server.
PARTS = ("ceiling", "api", "mlflow", "bentoml", "docker")


@dataclass(frozen=True)
class Scenario:
    """One load: what is sent where."""

    name: str
    label: str
    server: str  # one of PARTS but "docker"
    method: str
    path: str
    body: bytes | None
    records: int
    #: wrk connections when not the suite's (1: one request at a time)
    connections: int | None = None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nox -s bench --", description=__doc__.splitlines()[0])
    port = os.environ.get("API_PORT", "5000")
    parser.add_argument("--api-url", default=f"http://127.0.0.1:{port}")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root")
    parser.add_argument("--out", type=Path, default=None, help="default: <root>/results/bench")
    # the load's integer knobs: (option, default, help)
    for flag, default, text in (
        ("--duration", 10, "whole seconds per scenario"),
        ("--threads", 2, None),
        ("--connections", 16, None),
        (
            "--repeat",
            3,
            "runs of /health and single-record /predict; the median run (by p99) is reported",
        ),
        (
            "--comparison-workers",
            1,
            "worker processes of `mlflow models serve` and of the BentoML Service (both)",
        ),
    ):
        parser.add_argument(flag, type=int, default=default, help=text)
    parser.add_argument("--skip-mlflow", action="store_true", help="no `mlflow models serve`")
    parser.add_argument("--skip-bentoml", action="store_true", help="no BentoML comparison")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {','.join(PARTS)} (default: all)",
    )
    parser.add_argument("--skip-docker", action="store_true", help="no image/build/up figures")
    parser.add_argument("--skip-builds", action="store_true", help="no build timings")
    parser.add_argument("--cold-build", action="store_true", help="also time --no-cache builds")
    parser.add_argument("--skip-up-time", action="store_true", help="no separate `up` timing")
    parser.add_argument("--stack-note", default="", help="how the stack was found or started")
    parser.add_argument("--started-stack", action="store_true", help="nox started the stack")
    parser.add_argument("--up-seconds", type=float, default=None, help="what `nox -s up` said")
    parser.add_argument(
        "--server-pid", type=int, default=None, help="API process outside Docker (for its CPU)"
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.threads < 1 or args.connections < args.threads:
        parser.error("--duration must be >= 1, --threads >= 1, --connections >= --threads")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.comparison_workers < 1:
        parser.error("--comparison-workers must be >= 1")
    args.parts = _parts(args, parser)
    args.root = args.root.resolve()
    args.out = (args.out or args.root / "results" / "bench").resolve()
    args.api_url = args.api_url.rstrip("/")
    return args


def _parts(args: argparse.Namespace, parser: argparse.ArgumentParser) -> set[str]:
    """Return the parts to run: those of ``--only`` less the ``--skip-*`` ones."""
    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    unknown = parts - set(PARTS)
    if unknown or not parts:
        parser.error(f"--only takes parts of {','.join(PARTS)}, not {args.only!r}")
    skipped = {"mlflow": args.skip_mlflow, "bentoml": args.skip_bentoml, "docker": args.skip_docker}
    return {part for part in parts if not skipped.get(part)}


def _log(message: str) -> None:
    print(f"bench: {message}", flush=True)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _request(url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes, float]:
    """One HTTP request: (status, body, client seconds); status 0 when nothing answered."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310 - 127.0.0.1
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:  # noqa: S310
            data = answer.read()
            return answer.status, data, time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.perf_counter() - started
    except OSError:
        return 0, b"", time.perf_counter() - started


class _Sampler:
    """Call ``sample`` every ``every`` seconds in a thread; keep the largest value."""

    def __init__(self, sample: Callable[[], float | None], every: float, delay: float) -> None:
        self.values: list[float] = []
        self._sample, self._every, self._delay = sample, every, delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        if self._stop.wait(self._delay):
            return
        while not self._stop.is_set():
            value = self._sample()
            if value is not None:
                self.values.append(value)
            self._stop.wait(self._every)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def peak(self) -> float | None:
        return max(self.values) if self.values else None


def _scenarios(records: list[dict[str, object]]) -> list[Scenario]:
    one = payloads.predict_body(records[0])
    return [
        Scenario(
            "ceiling", "GET /health, trivial app (ceiling)", "ceiling", "GET", "/health", None, 0
        ),
        Scenario("health", "GET /health", "api", "GET", "/health", None, 0),
        Scenario("health_one", "GET /health, 1 connection", "api", "GET", "/health", None, 0, 1),
        Scenario("predict_v1", "POST /predict v1", "api", "POST", "/predict?model=v1", one, 1),
        Scenario("predict_v2", "POST /predict v2", "api", "POST", "/predict?model=v2", one, 1),
        Scenario(
            "batch_100",
            "POST /predict/batch v2 x100",
            "api",
            "POST",
            "/predict/batch?model=v2",
            payloads.batch_body(records[:100]),
            100,
        ),
        Scenario(
            "batch_1000",
            "POST /predict/batch v2 x1000",
            "api",
            "POST",
            "/predict/batch?model=v2",
            payloads.batch_body(records[:1000]),
            1000,
        ),
        # The protocols and explanations, one record each (compared with predict_v2).
        Scenario(
            "predict_v2_explain",
            "POST /predict?explain=true v2",
            "api",
            "POST",
            "/predict?model=v2&explain=true",
            one,
            1,
        ),
        Scenario(
            "v2_infer",
            "POST /v2/models/churn/versions/v2/infer",
            "api",
            "POST",
            "/v2/models/churn/versions/v2/infer",
            payloads.v2_infer_body(records[:1]),
            1,
        ),
        Scenario(
            "invocations_v2",
            "POST /invocations?model=v2",
            "api",
            "POST",
            "/invocations?model=v2",
            payloads.mlflow_body(records[:1]),
            1,
        ),
        Scenario(
            "mlflow_v2",
            "mlflow models serve v2 /invocations",
            "mlflow",
            "POST",
            "/invocations",
            payloads.mlflow_body(records[:1]),
            1,
        ),
        # The same body as MLflow's: the Service takes a DataFrame in records orientation.
        Scenario(
            "bentoml_v2",
            "BentoML 1.4 v2 /predict",
            "bentoml",
            "POST",
            bento_serve.PREDICT_PATH,
            payloads.mlflow_body(records[:1]),
            1,
        ),
    ]


@dataclass
class ServerProbe:
    """How to read a server's CPU time and, for our API, its own request count."""

    pids: Callable[[], list[int]]
    metrics_url: str | None = None  # the API's base URL: /metrics counts requests exactly

    def cpu(self) -> float | None:
        """Return the CPU seconds the server's processes have used so far (None: unreadable)."""
        pids = self.pids()
        return procstat.cpu_seconds(pids) if pids else None

    def count(self, endpoint: str) -> int | None:
        """Return the requests the API has answered on ``endpoint`` (route pattern) so far."""
        return self.readings(endpoint)[0]

    def readings(self, endpoint: str) -> tuple[int | None, float | None]:
        """Return the answered requests on ``endpoint`` and the drift-counting CPU seconds.

        Both from one scrape of ``/metrics`` (None where unknown).
        """
        if self.metrics_url is None:
            return None, None
        text = _metrics(self.metrics_url)
        found = report.latency_sum_count(text, endpoint)
        return (round(found[1]) if found else None), report.counter_value(text, DRIFT_CPU_METRIC)

    def settle(self, endpoint: str, limit_s: float = 20.0) -> None:
        """Wait until requests queued by a load are answered (the count stops moving)."""
        started, last = time.monotonic(), self.count(endpoint)
        while time.monotonic() - started < limit_s:
            time.sleep(0.5)
            now = self.count(endpoint)
            if now == last:
                return
            last = now


def _route(path: str) -> str:
    return path.split("?", 1)[0]


def _load(
    scenario: Scenario,
    base_url: str,
    work: Path,
    args: argparse.Namespace,
    probe: ServerProbe | None = None,
) -> dict[str, Any]:
    """Check one request answers 200, then run the wrk load; return the scenario's entry.

    With a probe, the entry also holds the server's CPU time per request: the CPU its
    processes used from before the check request until the load's queued requests were
    answered, over the requests the API counted (or, for another server, wrk's count + 1).
    """
    url = base_url + scenario.path
    route = _route(scenario.path)
    entry: dict[str, Any] = {
        "name": scenario.name,
        "label": scenario.label,
        "server": scenario.server,
        "method": scenario.method,
        "url": url,
        "records": scenario.records,
        "body_bytes": len(scenario.body or b""),
        "load_avg_1m": None,
        "result": None,
        "error": None,
        "server_cpu_ms_per_request": None,
    }
    cpu_before = probe.cpu() if probe else None
    count_before, drift_before = probe.readings(route) if probe else (None, None)
    status, answer, _ = _request(url, scenario.body)
    if status != 200:
        entry["error"] = f"a single request answered {status or 'nothing'}: {answer[:200]!r}"
        _log(f"{scenario.label}: {entry['error']}")
        return entry
    body_file = None
    if scenario.body is not None:
        body_file = work / f"{scenario.name}.json"
        body_file.write_bytes(scenario.body)
    entry["load_avg_1m"] = _loadavg()[0]
    repeat = args.repeat if scenario.name in REPEATED else 1
    runs: list[WrkResult] = []
    for number in range(1, repeat + 1):
        of = f" (run {number} of {repeat})" if repeat > 1 else ""
        _log(f"{scenario.label}: wrk for {args.duration:g} s{of} ...")
        try:
            run, _ = run_wrk(
                url,
                method=scenario.method,
                body_file=body_file,
                duration_s=args.duration,
                threads=min(args.threads, scenario.connections or args.threads),
                connections=scenario.connections or args.connections,
            )
        except WrkError as exc:
            entry["error"] = str(exc)
            _log(f"{scenario.label}: {exc}")
            return entry
        runs.append(run)
    result = median_run(runs)
    entry["result"] = result.as_dict()
    entry["errors_all_runs"] = sum(run.errors for run in runs)
    if repeat > 1:
        entry["runs"] = [
            {"requests_per_s": round(r.requests_per_s, 1), "p50_ms": r.p50_ms, "p99_ms": r.p99_ms}
            for r in runs
        ]
    if probe is not None:
        if count_before is not None:
            probe.settle(route)
        else:
            time.sleep(1.0)
        cpu_after = probe.cpu()
        count_after, drift_after = probe.readings(route)
        answered = (
            count_after - count_before
            if count_after is not None and count_before is not None
            else sum(r.requests for r in runs) + 1
        )
        if cpu_before is not None and cpu_after is not None and answered > 0:
            entry["server_cpu_ms_per_request"] = round((cpu_after - cpu_before) / answered * 1e3, 3)
        if drift_before is not None and drift_after is not None and answered > 0:
            entry["drift_cpu_ms_per_request"] = round(
                (drift_after - drift_before) / answered * 1e3, 4
            )
    cpu_text = (
        f", server CPU {entry['server_cpu_ms_per_request']:.2f} ms/request"
        if entry["server_cpu_ms_per_request"] is not None
        else ""
    )
    median = f" (median of {repeat} runs by p99)" if repeat > 1 else ""
    _log(
        f"{scenario.label}{median}: {result.requests_per_s:.1f} req/s, p50 {result.p50_ms:.2f} "
        f"ms, p99 {result.p99_ms:.2f} ms, errors {entry['errors_all_runs']}{cpu_text}"
    )
    return entry


def _metrics(api_url: str) -> str:
    status, body, _ = _request(api_url + "/metrics")
    return body.decode("utf-8", "replace") if status == 200 else ""


def _server_delta(before: str, after: str, endpoint: str) -> tuple[float, int] | None:
    """(server seconds, requests) of ``endpoint`` between two /metrics scrapes."""
    a = report.latency_sum_count(before, endpoint)
    b = report.latency_sum_count(after, endpoint)
    if a is None or b is None:
        return None
    return b[0] - a[0], round(b[1] - a[1])


def _sequential_batches(
    api_url: str, body: bytes, count: int, probe: ServerProbe | None
) -> dict[str, Any]:
    """Send ``count`` 1,000-record batches one at a time on one keep-alive connection."""
    parts = urlsplit(api_url)
    if probe is not None:
        probe.settle("/predict/batch")
    before = _metrics(api_url)
    cpu_before = probe.cpu() if probe else None
    client_s: list[float] = []
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request(
                "POST", "/predict/batch?model=v2", body, {"Content-Type": "application/json"}
            )
            answer = conn.getresponse()
            answer.read()
            client_s.append(time.perf_counter() - started)
            if answer.status != 200:
                return {"error": f"a batch answered {answer.status}"}
    finally:
        conn.close()
    cpu_after = probe.cpu() if probe else None
    after = _metrics(api_url)
    entry: dict[str, Any] = {
        "requests": count,
        "client_median_ms": round(statistics.median(client_s) * 1000, 2),
        "client_min_ms": round(min(client_s) * 1000, 2),
        "server_mean_ms": None,
        "server_source": "client-side only (no latency metric)",
        "server_cpu_ms": None,
    }
    delta = _server_delta(before, after, "/predict/batch")
    if delta is not None and delta[1] > 0:
        entry["server_mean_ms"] = round(delta[0] / delta[1] * 1000, 2)
        entry["server_source"] = "API metric churn_api_request_latency_seconds, sum/count delta"
        if delta[1] != count:
            entry["server_source"] += f" (saw {delta[1]} requests, {count} were ours)"
    if cpu_before is not None and cpu_after is not None:
        entry["server_cpu_ms"] = round((cpu_after - cpu_before) / count * 1000, 2)
    return entry


def _mlflow_scenario(
    scenario: Scenario, work: Path, args: argparse.Namespace, records: list[dict[str, object]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serve the v2 model with MLflow, load it, stop it: (entry, serve facts)."""
    facts: dict[str, Any] = {"workers": args.comparison_workers}
    try:
        model = mlflow_serve.comparison_model(args.root, "v2", work, records)
    except local_server.ServerError as exc:
        facts["error"] = str(exc)
        return _skipped(scenario, str(exc)), facts
    facts.update(
        model_uri=model.uri,
        model_source=model.source,
        run_id=model.run_id,
        tracking_uri=model.tracking_uri,
    )
    if model.tracking_uri is None:
        _log(f"mlflow: the comparison model was {model.source}")
    _log(f"starting `mlflow models serve` for {model.uri} ...")
    server = mlflow_serve.serving(
        model, args.out / "mlflow-serve.log", workers=args.comparison_workers
    )
    return _serve_and_load(scenario, server, work, args, facts)


def _bentoml_scenario(
    scenario: Scenario, work: Path, args: argparse.Namespace, records: list[dict[str, object]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serve the v2 pickles with BentoML, load it, stop it: (entry, serve facts)."""
    facts: dict[str, Any] = {"workers": args.comparison_workers}
    try:
        files = pickles.find(args.root, "v2")
        _log(f"BentoML: the venv {bento_serve.ENV_DIR} (installed from its lock if it changed) ...")
        env = bento_serve.ensure_env(args.root, args.out / "bentoml-install.log")
    except local_server.ServerError as exc:
        facts["error"] = str(exc)
        return _skipped(scenario, str(exc)), facts
    facts.update(
        env_dir=str(env.env_dir),
        env_reused=env.reused,
        service=f"{bento_serve.SERVICE_DIR.name}/{bento_serve.SERVICE}",
        model_files=[str(files.preprocessor), str(files.model)],
    )
    _log(f"starting `bentoml serve` ({'reused' if env.reused else 'new'} venv) ...")
    server = bento_serve.serving(
        env,
        files,
        args.out / "bentoml-serve.log",
        work / "bentoml-home",
        workers=args.comparison_workers,
    )
    return _serve_and_load(scenario, server, work, args, facts)


def _serve_and_load(
    scenario: Scenario,
    serving: contextlib.AbstractContextManager[local_server.RunningServer],
    work: Path,
    args: argparse.Namespace,
    facts: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start a comparison server, check it scores the record as the API does, load it, stop it.

    Its memory is its processes' (`procstat.server_pids`), at rest and (sampled every second)
    under the load.
    """
    try:
        with serving as server:
            facts.update(
                ready_s=round(server.ready_s, 1),
                command=" ".join(server.command[1:]),
                rss_at_rest_mib=procstat.rss_mib(server.pids()),
            )
            _log(f"{scenario.server}: answered after {server.ready_s:.1f} s at {server.url}")
            facts["same_model"] = _same_model(
                args.api_url, server.url + scenario.path, scenario.body or b""
            )
            with _Sampler(lambda: procstat.rss_mib(server.pids()), 1.0, args.duration / 3) as rss:
                entry = _load(scenario, server.url, work, args, ServerProbe(server.pids))
            facts["rss_under_load_mib"] = rss.peak
    except local_server.ServerError as exc:
        facts["error"] = str(exc)
        return _skipped(scenario, str(exc).splitlines()[0]), facts
    return entry, facts


def _ceiling(
    scenario: Scenario, work: Path, args: argparse.Namespace, container: dict[str, Any] | None
) -> dict[str, Any]:
    """Run the ceiling scenario against the trivial app, started and stopped here."""
    image = container["image"] if container else None
    try:
        with ceiling.serving(local_server.free_port(), image) as app:
            _log(f"ceiling: trivial app up ({app.where})")
            entry = _load(scenario, app.url, work, args, ServerProbe(lambda: [app.pid]))
            entry["where"] = app.where
            return entry
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _log(f"ceiling: {exc}")
        return _skipped(scenario, f"not measured: {exc}")


def _same_model(api_url: str, url: str, body: bytes) -> dict[str, float] | None:
    """Score the benchmark record on the API and on a comparison server (MLflow's body).

    The comparison answers MLflow's ``{"predictions": [[P(No), P(Yes)]]}`` or BentoML's
    ``[P(Yes)]``; None when either does not answer 200 or its answer cannot be read.
    """
    record = json.loads(body)["dataframe_records"][0]
    status_a, body_a, _ = _request(api_url + "/predict?model=v2", json.dumps(record).encode())
    status_c, body_c, _ = _request(url, body)
    if status_a != 200 or status_c != 200:
        return None
    try:
        ours = float(json.loads(body_a)["churn_probability"])
        answer = json.loads(body_c)
        first = (answer["predictions"] if isinstance(answer, dict) else answer)[0]
        theirs = float(first[1] if isinstance(first, list) else first)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return {"api_v2": ours, "theirs": theirs, "abs_diff": abs(ours - theirs)}


def _model_check(comparisons: dict[str, dict[str, Any] | None]) -> dict[str, Any] | None:
    """Return the probabilities of the record on the API and each comparison server."""
    check: dict[str, Any] = {}
    for part, diff_key in (("mlflow", "abs_diff"), ("bentoml", "bentoml_abs_diff")):
        same = (comparisons.get(part) or {}).get("same_model")
        if same:
            check.update(
                {"api_v2": same["api_v2"], part: same["theirs"], diff_key: same["abs_diff"]}
            )
    return check or None


def _skipped(scenario: Scenario, reason: str) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "label": scenario.label,
        "server": scenario.server,
        "method": scenario.method,
        "url": "",
        "records": scenario.records,
        "body_bytes": len(scenario.body or b""),
        "load_avg_1m": None,
        "result": None,
        "error": reason,
    }


def _project_version(root: Path) -> str:
    try:
        with (root / "pyproject.toml").open("rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0.0.0"


def _git_revision(root: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def _builds(args: argparse.Namespace) -> dict[str, Any]:
    """Time warm builds (and cold ones with --cold-build) from a temporary context copy."""
    stamp = time.strftime("%Y%m%d%H%M%S")
    version = _project_version(args.root)
    revision = _git_revision(args.root)
    images = (docker_facts.API_IMAGE, docker_facts.MLFLOW_IMAGE)
    base = None
    for image in images:
        facts = docker_facts.image_facts(image)
        base = base or (facts or {}).get("base")
    if base is None:
        return {"note": "the stack's images or their base are missing: builds not timed"}
    result: dict[str, Any] = {"base": base, "warm": [], "cold": None}
    with tempfile.TemporaryDirectory(prefix="churn-bench-build-") as tmp:
        context = Path(tmp)
        docker_facts.build_context_copy(args.root, context)
        marker = context / "src" / "churn" / "__init__.py"
        marker.write_text(marker.read_text() + f"# bench: a code change {stamp}\n")
        for image in images:
            tag = f"churn-bench-{image.removeprefix('churn-')}:warm-{stamp}"
            _log(f"warm build of {image} (a changed file in src/, fresh labels) ...")
            build_args = {"BASE_IMAGE": base, **docker_facts.build_args(version, revision)}
            timing = docker_facts.time_build(context, image, tag, build_args)
            docker_facts.remove_build(tag, timing.pop("_image_ids"))
            result["warm"].append(timing)
        if args.cold_build:
            result["cold"] = []
            for image in images:
                tag = f"churn-bench-{image.removeprefix('churn-')}:cold-{stamp}"
                _log(f"cold build of {image} (--no-cache: installs every dependency) ...")
                build_args = {"BASE_IMAGE": base, **docker_facts.build_args(version, revision)}
                timing = docker_facts.time_build(context, image, tag, build_args, no_cache=True)
                docker_facts.remove_build(tag, timing.pop("_image_ids"))
                result["cold"].append(timing)
    if result["cold"] is None:
        previous = _previous_cold(args.out / "bench.json")
        if previous:
            result["cold"] = previous
    result["note"] = (
        "warm = `docker build` as `nox -s build` runs it (new CREATED label) after a change to "
        "one file in src/, from a copy of the build context, base image present; cold = "
        "`--no-cache` (every dependency installed again), measured only with `--cold-build`"
    )
    return result


def _previous_cold(path: Path) -> list[dict[str, Any]] | None:
    """Cold build timings of an earlier run, labelled with their date (they are costly)."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cold = (earlier.get("builds") or {}).get("cold")
    if not cold:
        return None
    when = earlier.get("created", "an earlier run")
    return [
        {**item, "source": item.get("source") or f"measured by the run of {when}"} for item in cold
    ]


def _docker(args: argparse.Namespace, results: dict[str, Any]) -> None:
    results["images"] = {
        image: docker_facts.image_facts(image)
        for image in (docker_facts.API_IMAGE, docker_facts.MLFLOW_IMAGE)
    }
    _log("timing the API image's start to ready, alone (no MLflow)")
    results["api_start"] = docker_facts.time_api_start(
        f"{docker_facts.API_IMAGE}:latest", local_server.free_port()
    )
    if not args.skip_builds:
        results["builds"] = _builds(args)
    up: dict[str, Any] = {}
    if not args.skip_up_time:
        _log(f"timing `up` to ready with a separate Compose project ({docker_facts.BENCH_PROJECT})")
        up = docker_facts.time_up_to_ready(
            args.root, local_server.free_port(), local_server.free_port()
        )
        up["source"] = f"separate project -p {docker_facts.BENCH_PROJECT}, copy of mlruns/"
    elif args.up_seconds is not None:
        up = {"ok": True, "healthy_s": args.up_seconds, "source": "as printed by `nox -s up`"}
    if args.started_stack and args.up_seconds is not None:
        up["nox_up_healthy_s"] = args.up_seconds
    results["up"] = up or None


def _api_loads(
    scenarios: list[Scenario],
    work: Path,
    args: argparse.Namespace,
    probe: ServerProbe,
    container: dict[str, Any] | None,
    memory: dict[str, Any],
    batch: dict[str, Any],
) -> list[dict[str, Any]]:
    """Load the API with each of its scenarios, then send 1,000-record batches one at a time.

    Fills ``memory`` (the container's peaks) and ``batch`` (the batch's server time).
    """

    def sample() -> float | None:
        return docker_facts.container_memory_mib(container["id"]) if container else None

    entries = []
    for scenario in scenarios:
        # `docker stats` takes CPU of its own: memory is sampled only during the batch
        # loads, never during the runs whose p99 and requests/s decide targets.
        sampled = scenario.name in MEMORY_SAMPLED and container is not None
        before = _metrics(args.api_url) if scenario.name == "batch_1000" else ""
        with _Sampler(sample if sampled else lambda: None, 2.0, args.duration / 3) as mem:
            entries.append(_load(scenario, args.api_url, work, args, probe))
        if sampled:
            memory[f"api_under_load_{scenario.name}"] = mem.peak
        if scenario.name == "batch_1000":
            delta = _server_delta(before, _metrics(args.api_url), "/predict/batch")
            if delta and delta[1]:
                batch["under_load_server_mean_ms"] = round(delta[0] / delta[1] * 1000, 2)
    peaks = [memory.get(f"api_under_load_{n}") for n in MEMORY_SAMPLED]
    memory["api_under_load"] = max((p for p in peaks if p is not None), default=None)
    _log(f"{SEQUENTIAL_BATCHES} batches of 1,000 records, one at a time ...")
    body = next(s.body for s in scenarios if s.name == "batch_1000") or b""
    batch.update(_sequential_batches(args.api_url, body, SEQUENTIAL_BATCHES, probe))
    return entries


def _not_selected(part: str, args: argparse.Namespace) -> str:
    """Why a part did not run: its ``--skip-*`` option, or ``--only``."""
    if part in ("mlflow", "bentoml", "docker") and getattr(args, f"skip_{part}", False):
        return f"skipped (--skip-{part})"
    return f"not selected (--only {args.only})"


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the report; write bench.json and bench.png. Exit 1 if no API."""
    args = _parse_args(argv)
    status, _, _ = _request(args.api_url + "/ready")
    if status != 200:
        print(f"bench: the API at {args.api_url} is not ready (/ready: {status or 'no answer'})")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    results: dict[str, Any] = {
        "schema_version": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count() or 1, "load_avg_start": _loadavg(), "load_avg_end": []},
        "load": {
            "tool": (version.stdout + version.stderr).split("Copyright")[0].strip() or "wrk",
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "comparison_workers": args.comparison_workers,
        },
        "parts": sorted(args.parts, key=PARTS.index),
        "api_url": args.api_url,
        "stack": {"started_by_bench": args.started_stack, "note": args.stack_note},
        "notes": [],
    }
    records, source = payloads.load_records(args.root, 1000)
    results["records_source"] = source
    container = docker_facts.container_publishing(urlsplit(args.api_url).port or 80)
    server_pid = args.server_pid or (container or {}).get("pid")
    probe = ServerProbe(lambda: [server_pid] if server_pid else [], args.api_url)
    memory: dict[str, Any] = {"api_container": container["name"] if container else None}
    if container:
        memory["api_at_rest"] = docker_facts.container_memory_mib(container["id"])
    tracking = docker_facts.container_publishing(int(os.environ.get("MLFLOW_PORT") or 5001))
    if tracking:  # the stack's MLflow tracking server, idle while the API loads run
        memory["mlflow_server_at_rest"] = docker_facts.container_memory_mib(tracking["id"])

    entries: list[dict[str, Any]] = []
    batch: dict[str, Any] = {}
    comparisons: dict[str, dict[str, Any] | None] = {"mlflow": None, "bentoml": None}
    with tempfile.TemporaryDirectory(prefix="churn-bench-") as tmp:
        work = Path(tmp)
        all_scenarios = _scenarios(records)

        def part(name: str) -> list[Scenario]:
            return [scenario for scenario in all_scenarios if scenario.server == name]

        for scenario in part("ceiling"):
            entries.append(
                _ceiling(scenario, work, args, container)
                if "ceiling" in args.parts
                else _skipped(scenario, _not_selected("ceiling", args))
            )
        if "api" in args.parts:
            entries += _api_loads(part("api"), work, args, probe, container, memory, batch)
        else:
            entries += [_skipped(s, _not_selected("api", args)) for s in part("api")]
        results["batch_1000_server_ms"] = batch
        if "api" in args.parts:
            _log("timing each step of a 1,000-record batch in this process ...")
            batch["parts"] = batch_parts.measure(args.root, payloads.batch_body(records[:1000]))
        for name, run_part in (("mlflow", _mlflow_scenario), ("bentoml", _bentoml_scenario)):
            for scenario in part(name):
                if name in args.parts:
                    entry, comparisons[name] = run_part(scenario, work, args, records)
                else:
                    entry = _skipped(scenario, _not_selected(name, args))
                entries.append(entry)
            memory[f"{name}_serve_at_rest"] = (comparisons[name] or {}).get("rss_at_rest_mib")
            memory[f"{name}_serve_under_load"] = (comparisons[name] or {}).get("rss_under_load_mib")
        results["mlflow_serve"] = comparisons["mlflow"]
        results["bentoml_serve"] = comparisons["bentoml"]
        results["same_model_check"] = _model_check(comparisons)
    results["scenarios"] = entries
    results["memory_mib"] = memory
    results["host"]["load_avg_end"] = _loadavg()
    if "docker" in args.parts:
        _docker(args, results)
    measured = {e["name"]: e for e in entries}
    results["ratios"] = report.ratios(measured)
    results["targets"] = report.targets(
        measured, results["ratios"], batch.get("server_mean_ms"), results
    )
    results["notes"] += _notes(results, container)
    report.write_json(results, args.out / "bench.json")
    try:
        report.write_chart(results, args.out / "bench.png")
    except ImportError as exc:
        results["notes"].append(f"no chart: {exc}")
    print()
    print(report.format_report(results))
    print(f"\nbench: wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}")
    return 0


def _notes(results: dict[str, Any], container: dict[str, str] | None) -> list[str]:
    notes = [
        "latencies and requests/s are wrk's, client side, through Docker's port publishing "
        "(docker-proxy on 127.0.0.1); wrk shares the CPUs with the servers",
        f"the comparisons ran on the host with {results['load']['comparison_workers']} worker "
        "process(es) each, one compute thread per worker (OMP_NUM_THREADS=1): mlflow models "
        "serve from the nox venv (--env-manager local, uvicorn --workers), BentoML 1.4 from its "
        "own venv (requirements/bentoml.lock; the Service's workers=, usage tracking off), both "
        "on the same v2 pipeline and the same request body; "
        "the API ran in its container (Waitress, "
        f"CHURN_THREADS={os.environ.get('CHURN_THREADS', '0')}: 0 = requests on the I/O thread)",
        f"the ceiling is a trivial Flask /health on stock Waitress ({ceiling.THREADS} threads), "
        "in a container of the API's image when the API runs in one",
    ]
    if container is None:
        notes.append("no container publishes the API port: memory not measured")
    start, end = results["host"]["load_avg_start"][0], results["host"]["load_avg_end"][0]
    cpus = results["host"]["cpus"]
    if max(start, end) > cpus:
        notes.append(
            f"the machine was busy (1-min load average {start:.2f} -> {end:.2f} on {cpus} CPUs):"
            " figures are lower and noisier than on an idle machine"
        )
    return notes


if __name__ == "__main__":
    sys.exit(main())
