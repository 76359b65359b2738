"""The results of `nox -s bench`: ratios, targets, the printed table, the JSON file, the chart.

Everything here is pure (figures in, figures out) except `write_chart` and `write_json`.
The JSON document's shape is ``bench.schema.json`` beside this file; `validate` checks it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from string import Formatter
from typing import Any

__all__ = [
    "SCHEMA_PATH",
    "TARGETS",
    "format_report",
    "latency_sum_count",
    "ratio",
    "ratios",
    "targets",
    "validate",
    "write_chart",
    "write_json",
]

SCHEMA_PATH = Path(__file__).with_name("bench.schema.json")

#: The targets, on the machine the suite runs on: the speed issue's (7), raised by the
#: concurrency and leanness issue's (18), the protocols' (17) and drift monitoring's (16).
TARGETS = {
    "predict_over_health": 0.7,  # single-record /predict >= 0.7x /health's requests/s
    "ours_over_mlflow": 30.0,  # >= 30x the requests/s of `mlflow models serve`, same model
    "ours_over_bentoml": 10.0,  # >= 10x the requests/s of BentoML 1.4, same pipeline
    "predict_p99_ms": 25.0,  # p99 <= 25 ms at 16 connections
    "predict_p99_over_ceiling": 1.5,  # p99 <= 1.5x the trivial app's p99
    "health_over_ceiling": 0.8,  # /health >= 0.8x the trivial app's requests/s, same run
    "health_cpu_concurrent_over_one": 1.3,  # CPU/request at 16 connections <= 1.3x at 1
    "batch_1000_server_ms": 5.0,  # a 1,000-record batch in <= 5 ms of server time
    "api_image_mb": 250.0,  # the API image on the stand-in base
    "mlflow_image_mb": 600.0,
    "mlflow_rest_mib": 400.0,  # the MLflow tracking server's memory at rest
    "api_start_s": 2.0,  # API start to ready in its container
    "protocols_over_predict": 0.8,  # /v2 infer and /invocations >= 0.8x /predict's requests/s
    "explain_p99_over_predict": 2.0,  # ?explain=true p99 <= 2x /predict's
    "drift_cpu_share": 0.05,  # drift counting <= 5% of single-record /predict's server CPU
}

#: Short x-axis labels of the chart.
CHART_LABELS = {
    "ceiling": "trivial /health",
    "health": "GET /health",
    "health_one": "/health, 1 conn",
    "predict_v1": "/predict v1",
    "predict_v2": "/predict v2",
    "batch_100": "batch x100 (v2)",
    "batch_1000": "batch x1000 (v2)",
    "mlflow_v2": "mlflow serve v2",
    "bentoml_v2": "BentoML v2",
}
#: The servers the API is compared with (grey bars in the chart).
COMPARISONS = ("mlflow", "bentoml")

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)", re.M
)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """Return numerator / denominator rounded to 3 places; None when either is missing or 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(numerator / denominator, 3)


def _rps(scenarios: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    result = (scenarios.get(name) or {}).get("result")
    return float(result["requests_per_s"]) if result else None


def ratios(scenarios: Mapping[str, Mapping[str, Any]]) -> dict[str, float | None]:
    """Return the ratios of requests/s and of /health's server CPU per request.

    Requests/s: predict (v1, v2) over health, ours (v2) over MLflow and over BentoML, health
    over the trivial app (the ceiling). CPU: /health at the suite's connections over one at a
    time.
    """
    health = _rps(scenarios, "health")
    predict = _rps(scenarios, "predict_v2")
    return {
        "v2_infer_over_predict": ratio(_rps(scenarios, "v2_infer"), predict),
        "invocations_over_predict": ratio(_rps(scenarios, "invocations_v2"), predict),
        "explain_p99_over_predict": ratio(
            _p99(scenarios, "predict_v2_explain"), _p99(scenarios, "predict_v2")
        ),
        "predict_p99_over_ceiling": ratio(
            _worst([_p99(scenarios, "predict_v1"), _p99(scenarios, "predict_v2")], max),
            _p99(scenarios, "ceiling"),
        ),
        "drift_cpu_share": ratio(
            (scenarios.get("predict_v2") or {}).get("drift_cpu_ms_per_request"),
            _cpu(scenarios, "predict_v2"),
        ),
        "predict_v1_over_health": ratio(_rps(scenarios, "predict_v1"), health),
        "predict_v2_over_health": ratio(_rps(scenarios, "predict_v2"), health),
        "ours_over_mlflow": ratio(_rps(scenarios, "predict_v2"), _rps(scenarios, "mlflow_v2")),
        "ours_over_bentoml": ratio(_rps(scenarios, "predict_v2"), _rps(scenarios, "bentoml_v2")),
        "health_over_ceiling": ratio(health, _rps(scenarios, "ceiling")),
        "health_cpu_concurrent_over_one": ratio(
            _cpu(scenarios, "health"), _cpu(scenarios, "health_one")
        ),
    }


def _p99(scenarios: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    result = (scenarios.get(name) or {}).get("result")
    return float(result["p99_ms"]) if result else None


def _cpu(scenarios: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    value = (scenarios.get(name) or {}).get("server_cpu_ms_per_request")
    return float(value) if value is not None else None


#: Each target: name, what it says, and whether higher values are better.
_TARGET_TEXTS: tuple[tuple[str, str, bool], ...] = (
    (
        "predict_over_health",
        "single-record /predict (v1 and v2) >= 0.7x /health's requests/s",
        True,
    ),
    ("ours_over_mlflow", "/predict v2 >= 30x the requests/s of `mlflow models serve`", True),
    ("ours_over_bentoml", "/predict v2 >= 10x the requests/s of BentoML 1.4 (same workers)", True),
    (
        "predict_p99_ms",
        "p99 of single-record /predict (v1 and v2) <= 25 ms at 16 connections",
        False,
    ),
    ("predict_p99_over_ceiling", "p99 of /predict (v1 and v2) <= 1.5x the trivial app's", False),
    (
        "health_over_ceiling",
        "/health >= 0.8x the requests/s of a trivial Flask app (same run)",
        True,
    ),
    (
        "health_cpu_concurrent_over_one",
        "/health's CPU/request at 16 connections <= 1.3x at 1",
        False,
    ),
    ("batch_1000_server_ms", "1,000-record batch <= 5 ms of server time (one at a time)", False),
    ("api_image_mb", "API image <= 250 MB", False),
    ("mlflow_image_mb", "MLflow image <= 600 MB", False),
    ("mlflow_rest_mib", "MLflow tracking server <= 400 MiB at rest", False),
    ("api_start_s", "API start to ready <= 2 s in its container", False),
    ("protocols_over_predict", "/v2 infer and /invocations >= 0.8x /predict v2's requests/s", True),
    ("explain_p99_over_predict", "?explain=true p99 <= 2x /predict v2's p99", False),
    ("drift_cpu_share", "drift counting <= 5% of /predict v2's server CPU per request", False),
)


def targets(
    scenarios: Mapping[str, Mapping[str, Any]],
    computed: Mapping[str, float | None],
    batch_server_ms: float | None,
    results: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Judge each target: value, limit, and met (None when it was not measured).

    ``results`` (the whole bench.json so far) gives the Docker figures: image sizes, the MLflow
    server's memory at rest and the API's start.
    """
    results = results or {}
    images = results.get("images") or {}
    memory = results.get("memory_mib") or {}

    def image_mb(name: str) -> float | None:
        return (images.get(name) or {}).get("size_mb")

    values: dict[str, float | None] = {
        "predict_over_health": _worst(
            [computed.get("predict_v1_over_health"), computed.get("predict_v2_over_health")], min
        ),
        "predict_p99_ms": _worst(
            [_p99(scenarios, "predict_v1"), _p99(scenarios, "predict_v2")], max
        ),
        "batch_1000_server_ms": batch_server_ms,
        "api_image_mb": image_mb("churn-prediction-api"),
        "mlflow_image_mb": image_mb("churn-mlflow"),
        "mlflow_rest_mib": memory.get("mlflow_server_at_rest"),
        "api_start_s": (results.get("api_start") or {}).get("start_to_ready_s"),
        "protocols_over_predict": _worst(
            [computed.get("v2_infer_over_predict"), computed.get("invocations_over_predict")], min
        ),
    }
    judged = []
    for name, text, higher in _TARGET_TEXTS:
        value = values[name] if name in values else computed.get(name)
        limit = TARGETS[name]
        met = None if value is None else (value >= limit if higher else value <= limit)
        judged.append({"name": name, "text": text, "value": value, "limit": limit, "met": met})
    return judged


def _worst(values: list[float | None], pick: Any) -> float | None:
    """Return the worst of the measured values; None if any is missing (a target needs all)."""
    if not values or any(v is None for v in values):
        return None
    return float(pick(values))


def counter_value(metrics_text: str, name: str) -> float | None:
    """Return the sum of the samples ``name`` in Prometheus text, any labels (None: absent)."""
    total, found = 0.0, False
    for line in metrics_text.splitlines():
        if line.startswith((name + " ", name + "{")):
            try:
                total += float(line.rsplit(None, 1)[1])
                found = True
            except (IndexError, ValueError):
                return None
    return total if found else None


def latency_sum_count(metrics_text: str, endpoint: str) -> tuple[float, float] | None:
    """Return (sum, count) of ``churn_api_request_latency_seconds`` for one endpoint label.

    Reads the Prometheus text format of ``GET /metrics``; None when the series is absent.
    """
    found: dict[str, float] = {}
    for match in _SAMPLE.finditer(metrics_text):
        name = match.group("name")
        if name not in (
            "churn_api_request_latency_seconds_sum",
            "churn_api_request_latency_seconds_count",
        ):
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group("labels")))
        if labels.get("endpoint") == endpoint:
            found[name.rsplit("_", 1)[1]] = float(match.group("value"))
    if {"sum", "count"} <= found.keys():
        return found["sum"], found["count"]
    return None


# ----------------------------------------------------------------------------- output


def _fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:{spec}}{unit}"


def _figures(template: str, figures: Mapping[str, Any], unit: str, **text: object) -> str:
    """Fill ``template``: each ``{key}`` with ``figures[key]`` to one decimal and ``unit``.

    A missing figure reads ``n/a``; the fields named in ``text`` take those values as they are.
    """
    keys = {key for _, key, _, _ in Formatter().parse(template) if key and key not in text}
    return template.format(**{key: _fmt(figures.get(key), ".1f", unit) for key in keys}, **text)


def format_report(results: Mapping[str, Any]) -> str:
    """Return the printed report: the scenario table, ratios, targets and the Docker figures."""
    load = results["load"]
    lines = [
        f"wrk {load['threads']} threads, {load['connections']} connections, "
        f"{load['duration_s']:g} s per scenario; {results['host']['cpus']} CPUs, load average "
        f"{_fmt(results['host']['load_avg_start'][0], '.2f')} at start, "
        f"{_fmt(results['host']['load_avg_end'][0], '.2f')} at end (1 min)",
        "",
        f"{'scenario':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'CPU ms/req':>10} {'load1':>6}",
    ]
    for item in results["scenarios"]:
        result = item.get("result")
        if result:
            lines.append(
                f"{item['label']:34} {result['requests_per_s']:8.1f} {result['p50_ms']:8.2f} "
                f"{result['p99_ms']:8.2f} {item.get('errors_all_runs', result['errors']):7d} "
                f"{_fmt(item.get('server_cpu_ms_per_request'), '.3f'):>10} "
                f"{_fmt(item['load_avg_1m'], '.2f'):>6}"
            )
        else:
            lines.append(f"{item['label']:34} not measured: {item.get('error') or 'skipped'}")
    r = results["ratios"]
    lines.append(
        "(CPU ms/req: user+system CPU time of the server's processes per answered request, "
        "from /proc; less sensitive to the machine's load than wall-clock figures)"
    )
    repeated = [item for item in results["scenarios"] if len(item.get("runs") or []) > 1]
    if repeated:
        lines.append(
            "(repeated scenarios show their median run by p99; p99 of each run: "
            + "; ".join(
                f"{item['label']} " + " / ".join(f"{run['p99_ms']:.1f}" for run in item["runs"])
                for item in repeated
            )
            + " ms)"
        )
    lines += [
        "",
        "ratios of requests/s: predict v1 / health "
        f"{_fmt(r['predict_v1_over_health'], '.2f')}, predict v2 / health "
        f"{_fmt(r['predict_v2_over_health'], '.2f')}, ours (v2) / mlflow models serve "
        f"{_fmt(r['ours_over_mlflow'], '.1f')}, ours (v2) / BentoML "
        f"{_fmt(r.get('ours_over_bentoml'), '.1f')}",
    ]
    batch = results.get("batch_1000_server_ms") or {}
    if batch:
        lines.append(
            _figures(
                "1,000-record batch, one request at a time ({requests} requests): "
                "server {server_mean_ms} mean [{server_source}], client {client_median_ms} "
                "median, server CPU {server_cpu_ms} per batch; under the wrk load "
                "server {under_load_server_mean_ms} mean",
                batch,
                " ms",
                requests=batch.get("requests"),
                server_source=batch.get("server_source", "n/a"),
            )
        )
        parts = batch.get("parts") or {}
        if parts.get("steps_ms"):
            steps = ", ".join(f"{k} {v:.2f}" for k, v in parts["steps_ms"].items())
            lines.append(
                f"  its steps, CPU ms ({parts.get('source')}): {steps}; sum {parts['total_ms']:.2f}"
            )
            general = parts.get("general_path_ms") or {}
            if general:
                text = ", ".join(f"{k} {v:.2f}" for k, v in general.items())
                lines.append(f"  the general path (bodies the decoder leaves), CPU ms: {text}")
    check = results.get("same_model_check") or {}
    others = [
        f"{name} {check[key]:.6f} (|diff| {check[diff]:.1e})"
        for key, diff, name in (
            ("mlflow", "abs_diff", "mlflow models serve"),
            ("bentoml", "bentoml_abs_diff", "BentoML"),
        )
        if check.get(key) is not None
    ]
    if others:
        lines.append(f"same model: API v2 {check['api_v2']:.6f}, " + ", ".join(others))
    mem = results.get("memory_mib") or {}
    if mem:
        lines.append(
            _figures(
                "memory: API container {api_container} "
                "{api_at_rest} at rest, {api_under_load} under load; "
                "mlflow models serve {mlflow_serve_at_rest} at rest, "
                "{mlflow_serve_under_load} under load; "
                "BentoML {bentoml_serve_at_rest} at rest, {bentoml_serve_under_load} under load",
                mem,
                " MiB",
                api_container=mem.get("api_container") or "n/a",
            )
        )
    for image in (results.get("images") or {}).values():
        if image:
            lines.append(
                f"image {image['image']}: {image['size_mb']:.1f} MB, "
                f"{_fmt(image.get('over_base_mb'), '.1f', ' MB')} over {image.get('base') or '?'}"
            )
    builds = results.get("builds") or {}
    for kind in ("warm", "cold"):
        for build in builds.get(kind) or []:
            state = "ok" if build["ok"] else f"FAILED: {build.get('error', '')[:120]}"
            source = f" ({build['source']})" if build.get("source") else ""
            lines.append(
                f"{kind} build {build['image']}: {build['seconds']:.1f} s, "
                f"{build['cached_steps']}/{build['steps']} steps cached, {state}{source}"
            )
    if builds.get("note"):
        lines.append(f"builds: {builds['note']}")
    up = results.get("up") or {}
    if up:
        if up.get("ok"):
            lines.append(
                _figures(
                    "up to ready ({source}): API /ready 200 after {api_ready_s}, "
                    "both services healthy after {healthy_s}",
                    up,
                    " s",
                    source=up.get("source", ""),
                )
                + (
                    f"; `nox -s up` for this run: healthy in {up['nox_up_healthy_s']:.1f} s"
                    if up.get("nox_up_healthy_s") is not None
                    else ""
                )
            )
        else:
            lines.append(f"up to ready: not measured ({up.get('error', 'skipped')})")
    lines += ["", "targets:"]
    for target in results["targets"]:
        verdict = {True: "MET", False: "MISSED", None: "not measured"}[target["met"]]
        lines.append(
            f"  {verdict:12} {target['text']}: {_fmt(target['value'], '.2f')} "
            f"(limit {target['limit']:g})"
        )
    for note in results.get("notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def validate(results: Mapping[str, Any]) -> None:
    """Check the results document against ``bench.schema.json``.

    Raises:
        jsonschema.ValidationError: the document does not have the documented shape.

    """
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(dict(results), schema)


def write_json(results: Mapping[str, Any], path: Path) -> None:
    """Write the results document (validated first) as indented JSON."""
    validate(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def write_chart(results: Mapping[str, Any], path: Path) -> None:
    """Draw requests/s and p50/p99 latency per scenario (log scales) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [s for s in results["scenarios"] if s.get("result")]
    labels = [CHART_LABELS.get(s["name"], s["name"]) for s in measured]
    rps = [s["result"]["requests_per_s"] for s in measured]
    p50 = [s["result"]["p50_ms"] for s in measured]
    p99 = [s["result"]["p99_ms"] for s in measured]
    colors = ["#b0b0b0" if s["server"] in COMPARISONS else "#2b6cb0" for s in measured]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    x = list(range(len(measured)))
    bars = top.bar(x, rps, color=colors)
    top.bar_label(bars, fmt="%.0f", fontsize=8)
    top.set_yscale("log")
    top.set_ylabel("requests/s (log)")
    width = 0.38
    bottom.bar([i - width / 2 for i in x], p50, width, label="p50", color="#63b3ed")
    bottom.bar([i + width / 2 for i in x], p99, width, label="p99", color="#2c5282")
    bottom.axhline(TARGETS["predict_p99_ms"], color="#c53030", ls="--", lw=1, label="p99 target")
    bottom.set_yscale("log")
    bottom.set_ylabel("latency, ms (log)")
    bottom.legend(fontsize=8)
    bottom.set_xticks(x, labels, fontsize=8)
    load = results["load"]
    host = results["host"]
    fig.suptitle(
        f"churn API vs mlflow models serve and BentoML: wrk -t{load['threads']} "
        f"-c{load['connections']} -d{load['duration_s']:g}s, {host['cpus']} CPUs, load avg "
        f"{host['load_avg_start'][0]:.2f}->{host['load_avg_end'][0]:.2f}\n{results['created']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
