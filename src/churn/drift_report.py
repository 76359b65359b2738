"""The drift report: one window of served traffic against the training data, as HTML, in MLflow.

    python -m churn.drift_report --url http://127.0.0.1:5000 --model v2 --out reports/drift

reads ``GET /monitoring/drift`` of a running API (bin counts only: no customer record ever
leaves it), draws for each input column and for the churn probability the training shares
beside the window's (matplotlib, SVG inlined in the page), writes ``<out>/drift_<model>.html``
and logs it to MLflow: experiment ``churn-monitoring``, one run per report, with the PSI of
each column as metrics. The window is the last closed one, or the open one when none has
closed yet (``--window current`` forces that). Works offline; the tracking URI is the
training's (``MLFLOW_TRACKING_URI``, else the local store ``mlruns/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import html
import io
import json
import urllib.request
from pathlib import Path
from typing import Any

from churn.drift import PSI_ALERT

__all__ = ["fetch", "log_to_mlflow", "main", "render"]

EXPERIMENT = "churn-monitoring"


def fetch(url: str, model: str | None, timeout: float = 10.0) -> dict[str, Any]:
    """Return the API's ``/monitoring/drift`` answer for ``model`` (its default when None)."""
    target = url.rstrip("/") + "/monitoring/drift" + (f"?model={model}" if model else "")
    with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 - user's URL
        return json.loads(response.read())  # type: ignore[no-any-return]


def _window(snapshot: dict[str, Any], which: str) -> tuple[str, dict[str, Any]]:
    last = snapshot.get("last_window")
    if which == "last" or (which == "auto" and last is not None):
        if last is None:
            raise ValueError("no drift window has closed yet: send traffic, or --window current")
        return "last closed window", last
    return "open window", snapshot["current_window"]


def _figure(snapshot: dict[str, Any], window: dict[str, Any]) -> str:
    """Return an SVG of reference against served shares, one panel per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(snapshot["reference"])
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.2, rows * 2.8), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        reference = snapshot["reference"][name]
        counts = window["columns"][name]["counts"]
        total = sum(counts) or 1
        positions = range(len(counts))
        ax.bar([p - 0.2 for p in positions], reference["shares"], width=0.4, label="training")
        ax.bar([p + 0.2 for p in positions], [c / total for c in counts], width=0.4, label="served")
        value = window["columns"][name]["psi"]
        shown = "n/a" if value is None else f"{value:.3f}"
        color = "tab:red" if value is not None and value > PSI_ALERT else "black"
        ax.set_title(f"{name}  PSI {shown}", fontsize=9, color=color)
        ax.set_xticks(list(positions))
        ax.set_xticklabels(reference["bins"], rotation=45, ha="right", fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog: the SVG goes inside the page


def render(snapshot: dict[str, Any], which: str = "auto") -> tuple[str, dict[str, float]]:
    """Return the report's HTML and the PSI of each column of the chosen window."""
    label, window = _window(snapshot, which)
    values = {
        name: float(column["psi"])
        for name, column in window["columns"].items()
        if column["psi"] is not None
    }
    rows = "\n".join(
        f'<tr class="{"bad" if v > PSI_ALERT else "ok"}"><td>{html.escape(n)}</td>'
        f"<td>{v:.4f}</td></tr>"
        for n, v in sorted(values.items(), key=lambda item: -item[1])
    )
    drifted = [n for n, v in values.items() if v > PSI_ALERT]
    verdict = (
        f"Drift above {PSI_ALERT} in: {', '.join(drifted)}."
        if drifted
        else f"No column above {PSI_ALERT}."
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Drift report: model {html.escape(snapshot["model"])}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 0.2rem 0.8rem; border: 1px solid #ccc; }}
tr.bad {{ background: #f8d7da; }} tr.ok {{ background: #e8f5e9; }}
svg {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Drift report: model {html.escape(snapshot["model"])}</h1>
<p>{html.escape(label)}: {window["records"]} records; written {stamp}.
PSI compares the window's share of each bin with the training data's
(below 0.1: stable; 0.1-0.2: moderate shift; above {PSI_ALERT}: act, see docs/monitoring.md).</p>
<p><strong>{html.escape(verdict)}</strong></p>
<table><tr><th>column</th><th>PSI</th></tr>
{rows}
</table>
<h2>Training shares against served shares</h2>
{_figure(snapshot, window)}
</body></html>
"""
    return page, values


def log_to_mlflow(
    root: Path, report: Path, snapshot: dict[str, Any], values: dict[str, float], source: str
) -> str:
    """Log the report and the PSI values to MLflow (experiment ``churn-monitoring``)."""
    import mlflow

    from churn import mlflow_store

    target = dataclasses.replace(mlflow_store.resolve_target(root), experiment=EXPERIMENT)
    mlflow_store._check_server(target.tracking_uri)
    mlflow.set_tracking_uri(target.tracking_uri)
    experiment_id = mlflow_store._experiment_id(target)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"drift-{snapshot['model']}"
    ) as run:
        mlflow.log_params(
            {
                "model": snapshot["model"],
                "api": source,
                "window_records": snapshot["window_records"],
            }
        )
        mlflow.log_metrics(
            {f"psi_{name}": value for name, value in values.items()}
            | {"psi_max": max(values.values(), default=0.0)}
        )
        mlflow.set_tag("drifted", str(any(v > PSI_ALERT for v in values.values())).lower())
        mlflow.log_artifact(str(report))
        return str(run.info.run_id)


def main(argv: list[str] | None = None) -> None:
    """Fetch a window from the API, write the report, log it to MLflow."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000", help="the running API")
    parser.add_argument("--model", default=None, help="model version (the API's default)")
    parser.add_argument("--window", choices=["auto", "last", "current"], default="auto")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    parser.add_argument("--no-mlflow", action="store_true", help="write the HTML only")
    args = parser.parse_args(argv)
    snapshot = fetch(args.url, args.model)
    page, values = render(snapshot, args.window)
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / f"drift_{snapshot['model']}.html"
    report.write_text(page, encoding="utf-8")
    print(f"wrote {report}: max PSI {max(values.values(), default=0.0):.3f}")
    if not args.no_mlflow:
        run_id = log_to_mlflow(Path.cwd(), report, snapshot, values, args.url)
        print(f"logged to MLflow experiment {EXPERIMENT!r}, run {run_id}")


if __name__ == "__main__":
    main()
