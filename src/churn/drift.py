"""Drift without keeping customer data: reference histograms, windowed counts and PSI.

At training time `build_reference` turns the training inputs and the model's held-out
probabilities into a small JSON document (``models/reference_<v>.json``): for every
input column the training share of each bin (deciles for numeric columns, plus a bin for a
missing value; one bin per allowed spelling for categorical ones), and the same for the
predicted probability. The API loads it into a `DriftMonitor`, which counts every served
record into the same bins; nothing of a record is kept but those counts.

Counts accumulate in a window, closed when it holds ``window_records`` records, or when
``window_seconds`` have passed and it holds at least ``min_records`` (a quiet service's window
stretches until its figures mean something). The population stability index of a column
compares the last closed window with the reference::

    PSI = sum over bins of (served share - reference share) * ln(served share / reference share)

with shares floored at `SHARE_FLOOR` so an empty bin costs a finite amount. Usual reading:
below 0.1 no shift, 0.1-0.2 a moderate shift, above 0.2 a shift worth acting on.

Imports nothing of the project but `churn.schema` and the config room's paths; numpy builds a
reference and bins a batch.
"""

from __future__ import annotations

import json
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from churn.config.paths import ModelFiles
from churn.records import column as values_of
from churn.records import numbers as numbers_of
from churn.records import schema_codes, schema_table
from churn.schema import CATEGORICAL, FEATURE_COLUMNS

__all__ = [
    "PSI_ALERT",
    "SCORE_COLUMN",
    "DriftMonitor",
    "Reference",
    "build_reference",
    "psi",
    "reference_path",
    "write_reference",
]

#: Format of the reference document; bumped when its meaning changes.
REFERENCE_FORMAT = 1
#: Name of the predicted probability among the monitored columns.
SCORE_COLUMN = "churn_probability"
#: Quantile bins of a numeric column (fewer when values repeat).
NUMERIC_BINS = 10
#: Smallest share a bin counts with in the PSI (an empty bin would cost an infinite amount).
SHARE_FLOOR = 1e-4
#: The PSI above which a column is said to have drifted (docs/monitoring.md).
PSI_ALERT = 0.2
#: Decimal places of the edges and shares in the reference document (stable bytes).
_DIGITS = 6
#: Upper bounds of the served-probability histogram exported for dashboards.
SCORE_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: From this many records on, `DriftMonitor.observe` bins a request at once, column by column.
VECTOR_MIN_RECORDS = 16
#: Records of smaller requests wait (in memory, per version) until this many have come, then
#: are binned together like a batch: a fraction of the CPU of binning each on its own.
PENDING_RECORDS = 64


def reference_path(models_dir: Path, version: str) -> Path:
    """Return where the reference of ``version`` lives, beside its metadata record."""
    return ModelFiles(models_dir).reference(version)


# --------------------------------------------------------------------------------------------
# Building the reference (training time)
# --------------------------------------------------------------------------------------------


def _numeric_entry(values: Sequence[float | None]) -> dict[str, Any]:
    array = np.array([np.nan if v is None else v for v in values], dtype=float)
    present = array[~np.isnan(array)]
    if present.size == 0:
        raise ValueError("a numeric column has no value to build bins from")
    quantiles = np.quantile(present, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
    edges = sorted({round(float(q), _DIGITS) for q in quantiles})
    counts = [0] * (len(edges) + 2)  # the bins between the edges, then "missing"
    for value in array.tolist():
        counts[len(edges) + 1 if math.isnan(value) else bisect_left(edges, value)] += 1
    return {"kind": "numeric", "edges": edges, "shares": _shares(counts)}


def _categorical_entry(column: str, values: Sequence[object]) -> dict[str, Any]:
    categories = list(CATEGORICAL[column])
    index = {c: i for i, c in enumerate(categories)}
    counts = [0] * len(categories)
    for value in values:
        if value not in index:
            raise ValueError(f"{column}: {value!r} is not one of {categories}")
        counts[index[value]] += 1  # type: ignore[index]
    return {"kind": "categorical", "categories": categories, "shares": _shares(counts)}


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [round(c / total, _DIGITS) for c in counts]


def build_reference(
    version: str, columns: Mapping[str, Sequence[Any]], scores: Sequence[float]
) -> dict[str, Any]:
    """Return the reference document of a model version.

    Args:
        version: the model version it belongs to.
        columns: every feature column of the training data (`FEATURE_COLUMNS`), as values;
            a numeric column's missing values are None or NaN.
        scores: the model's churn probabilities on held-out data.

    """
    missing = [c for c in FEATURE_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"the reference needs every feature column; missing: {missing}")
    entries: dict[str, Any] = {}
    for column in FEATURE_COLUMNS:
        values = columns[column]
        entries[column] = (
            _categorical_entry(column, values) if column in CATEGORICAL else _numeric_entry(values)
        )
    return {
        "format": REFERENCE_FORMAT,
        "version": version,
        "rows": len(columns[FEATURE_COLUMNS[0]]),
        "score_rows": len(scores),
        "columns": entries,
        "score": _numeric_entry(scores),
    }


def write_reference(path: Path, reference: Mapping[str, Any]) -> Path:
    """Write a reference document as stable JSON (same content, same bytes); return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# The reference as the API uses it
# --------------------------------------------------------------------------------------------


def psi(reference: Sequence[float], served: Sequence[int]) -> float:
    """Return the population stability index of served counts against reference shares."""
    total = sum(served)
    if total == 0:
        return 0.0
    value = 0.0
    for expected, count in zip(reference, served, strict=True):
        e = max(expected, SHARE_FLOOR)
        a = max(count / total, SHARE_FLOOR)
        value += (a - e) * math.log(a / e)
    return value


@dataclass(frozen=True)
class _Column:
    name: str
    offset: int  # where its bins start in a window's flat list of counts
    shares: tuple[float, ...]
    labels: tuple[str, ...]  # one per bin, for reports
    edges: tuple[float, ...] = ()  # numeric: bin i holds edges[i-1] < x <= edges[i]
    categories: Mapping[str, int] = field(default_factory=dict)  # categorical: value -> bin


def _column(name: str, entry: Mapping[str, Any], offset: int) -> _Column:
    shares = tuple(float(s) for s in entry["shares"])
    if entry["kind"] == "categorical":
        categories = tuple(str(c) for c in entry["categories"])
        if len(categories) != len(shares):
            raise ValueError(f"{name}: {len(categories)} categories but {len(shares)} shares")
        index = {c: i for i, c in enumerate(categories)}
        return _Column(name, offset, shares, categories, categories=index)
    edges = tuple(float(e) for e in entry["edges"])
    if len(shares) != len(edges) + 2 or list(edges) != sorted(set(edges)):
        raise ValueError(f"{name}: edges and shares do not match")
    bounds = ["-inf", *(f"{e:g}" for e in edges), "inf"]
    labels = tuple(f"({bounds[i]}, {bounds[i + 1]}]" for i in range(len(edges) + 1))
    return _Column(name, offset, shares, (*labels, "missing"), edges=edges)


class Reference:
    """A model version's reference distributions, ready to bin served records."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        """Check ``document`` (as `build_reference` writes it) and compile its bins.

        Raises:
            ValueError: the document is not a reference of this format or misses a column.

        """
        if document.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"not a reference document of format {REFERENCE_FORMAT}")
        entries = document.get("columns", {})
        missing = [c for c in FEATURE_COLUMNS if c not in entries]
        if missing:
            raise ValueError(f"the reference misses the columns {missing}")
        self.version = str(document.get("version", ""))
        columns: list[_Column] = []
        offset = 0
        for name in FEATURE_COLUMNS:
            columns.append(_column(name, entries[name], offset))
            offset += len(columns[-1].shares)
        self.columns = tuple(columns)
        self.score = _column(SCORE_COLUMN, document["score"], offset)
        self.size = offset + len(self.score.shares)
        # (column, edges) of the numeric ones and (column, categories) of the others,
        # split once so that `bin_counts` runs no test per field.
        self._numeric_arrays = [
            (c.name, np.asarray(c.edges), c.offset) for c in columns if not c.categories
        ]
        self._score_edges = np.asarray(self.score.edges)
        self._categorical = [(c.name, c.categories, c.offset) for c in columns if c.categories]
        #: Per categorical column: schema index -> flat bin (None: look the values up).
        self._from_schema: list[np.ndarray | None] = []
        for name, categories, offset in self._categorical:
            table = schema_table(name, categories.__getitem__)
            self._from_schema.append(None if table is None else table + offset)

    @classmethod
    def load(cls, path: Path) -> Reference:
        """Read and check a reference document."""
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def bin_counts(self, records: Sequence[Mapping[str, object]], scores: Sequence[float]) -> Any:
        """Return how many of ``records`` (with their ``scores``) fall in each flat bin.

        Column by column with numpy; a `churn.records.Records` batch's categories are
        translated from their schema indices with one array lookup per column.
        """
        n = len(records)
        parts = []
        for (name, categories, offset), table in zip(
            self._categorical, self._from_schema, strict=True
        ):
            given = schema_codes(records, name) if table is not None else None
            if given is not None:
                parts.append(table[given])  # type: ignore[index]
            else:
                values = map(categories.__getitem__, values_of(records, name))
                parts.append(np.fromiter(values, np.intp, count=n) + offset)
        for name, edges, offset in self._numeric_arrays:
            values = numbers_of(records, name)  # None -> NaN
            found = np.searchsorted(edges, values, side="left")
            parts.append(np.where(np.isnan(values), len(edges) + 1, found) + offset)
        found = np.searchsorted(self._score_edges, np.asarray(scores, dtype=np.float64))
        parts.append(found + self.score.offset)
        return np.bincount(np.concatenate(parts), minlength=self.size)

    def all_columns(self) -> tuple[_Column, ...]:
        """Return the input columns, then the score."""
        return (*self.columns, self.score)


# --------------------------------------------------------------------------------------------
# Counting served records
# --------------------------------------------------------------------------------------------


@dataclass
class _Window:
    counts: list[int]
    started: float  # wall-clock seconds
    records: int = 0
    ended: float | None = None


class DriftMonitor:
    """Thread-safe counts of served records per model version, in windows, and their PSI."""

    def __init__(
        self,
        references: Mapping[str, Reference],
        *,
        window_records: int = 1000,
        window_seconds: float = 300.0,
        min_records: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Count into the bins of ``references`` (model version -> reference)."""
        if window_records < 1 or window_seconds <= 0:
            raise ValueError("a window needs at least one record and a positive duration")
        self.references = dict(references)
        self.window_records = window_records
        self.window_seconds = window_seconds
        self.min_records = min(min_records, window_records)
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self._current = {v: _Window([0] * r.size, now) for v, r in self.references.items()}
        self._closed: dict[str, _Window] = {}
        self._windows_closed = dict.fromkeys(self.references, 0)
        self._score_counts = {v: [0] * len(SCORE_BUCKETS) for v in self.references}
        #: CPU seconds spent in `observe` (the thread's own CPU time): what monitoring costs.
        self._observe_cpu_s = 0.0
        #: Records of small requests waiting to be binned together (in memory only, never
        #: more than `PENDING_RECORDS` per version; every reading bins them first).
        self._pending: dict[str, tuple[list[Mapping[str, object]], list[float]]] = {
            v: ([], []) for v in self.references
        }
        self._pending_limit = min(PENDING_RECORDS, window_records)

    @property
    def versions(self) -> tuple[str, ...]:
        """The monitored model versions."""
        return tuple(self.references)

    def observe(
        self, version: str, records: Sequence[Mapping[str, object]], scores: Iterable[float]
    ) -> None:
        """Count validated ``records`` and their ``scores`` served by ``version``."""
        reference = self.references.get(version)
        if reference is None:
            return
        scores = list(scores)
        if len(scores) != len(records):
            raise ValueError(f"{len(records)} records but {len(scores)} scores")
        if len(records) < VECTOR_MIN_RECORDS:  # wait for others, then bin them all at once
            with self._lock:
                waiting, waiting_scores = self._pending[version]
                waiting.extend(records)
                waiting_scores.extend(scores)
                if len(waiting) < self._pending_limit:
                    return
                self._pending[version] = ([], [])
            records, scores = waiting, waiting_scores
        self._count(version, records, scores)

    def _flush(self, version: str) -> None:
        """Bin and count the records of ``version`` still waiting (before any reading)."""
        with self._lock:
            records, scores = self._pending[version]
            self._pending[version] = ([], [])
        if records:
            self._count(version, records, scores)

    def _count(
        self, version: str, records: Sequence[Mapping[str, object]], scores: list[float]
    ) -> None:
        """Bin ``records`` and add them (`_add_batch`), timing it for the cost counter.

        Only the binning is timed, not a small request's append to the waiting records: a
        thread CPU clock read is a system call that would cost more than the append.
        """
        started = time.thread_time()
        binned = self.references[version].bin_counts(records, scores)
        self._add_batch(version, binned, scores, started)

    def _add_batch(self, version: str, binned: Any, scores: list[float], started: float) -> None:
        """Add a batch's bin counts (`Reference.bin_counts`) and score histogram.

        ``started`` is the thread's CPU time when the binning began, for the cost counter.
        """
        added = [(i, int(c)) for i, c in enumerate(binned.tolist()) if c]
        buckets = np.minimum(np.searchsorted(SCORE_BUCKETS, scores), len(SCORE_BUCKETS) - 1)
        scored = [(i, c) for i, c in enumerate(np.bincount(buckets).tolist()) if c]
        with self._lock:
            window = self._current[version]
            counts = window.counts
            for index, count in added:
                counts[index] += count
            window.records += len(scores)
            histogram = self._score_counts[version]
            for bucket, count in scored:
                histogram[bucket] += count
            self._maybe_close(version, window)
            self._observe_cpu_s += time.thread_time() - started

    def _maybe_close(self, version: str, window: _Window) -> None:
        """Close ``version``'s window when it is full or old enough (lock held)."""
        now = self._clock()
        full = window.records >= self.window_records
        due = now - window.started >= self.window_seconds and window.records >= self.min_records
        if full or due:
            window.ended = now
            self._closed[version] = window
            self._windows_closed[version] += 1
            self._current[version] = _Window([0] * len(window.counts), now)

    def _copies(self, version: str) -> tuple[_Window, _Window | None, int, list[int]]:
        self._flush(version)
        with self._lock:
            current = self._current[version]
            self._maybe_close(version, current)
            current = self._current[version]
            closed = self._closed.get(version)
            return (
                _Window(list(current.counts), current.started, current.records),
                closed,  # never mutated once closed
                self._windows_closed[version],
                list(self._score_counts[version]),
            )

    def psi_of(self, version: str, window: _Window) -> dict[str, float]:
        """PSI of every column (and of the score) of a window of ``version``."""
        reference = self.references[version]
        return {
            col.name: psi(col.shares, window.counts[col.offset : col.offset + len(col.shares)])
            for col in reference.all_columns()
        }

    def snapshot(self, version: str) -> dict[str, Any]:
        """Return the counts, shares and PSI of ``version``'s last closed and open windows.

        Raises:
            KeyError: ``version`` is not monitored.

        """
        reference = self.references[version]
        current, closed, windows, _ = self._copies(version)

        def describe(window: _Window) -> dict[str, Any]:
            values = self.psi_of(version, window) if window.records else {}
            return {
                "records": window.records,
                "started": window.started,
                "ended": window.ended,
                "columns": {
                    col.name: {
                        "counts": window.counts[col.offset : col.offset + len(col.shares)],
                        "psi": round(values[col.name], _DIGITS) if values else None,
                    }
                    for col in reference.all_columns()
                },
            }

        return {
            "model": version,
            "psi_alert": PSI_ALERT,
            "window_records": self.window_records,
            "window_seconds": self.window_seconds,
            "windows_closed": windows,
            "reference": {
                col.name: {"bins": list(col.labels), "shares": list(col.shares)}
                for col in reference.all_columns()
            },
            "last_window": describe(closed) if closed is not None else None,
            "current_window": describe(current),
        }

    def collect(self) -> Iterator[Any]:
        """Prometheus collector: PSI of the last closed windows, window sizes, served scores."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        model = ("model",)
        psi_family, records, current_records, ended, windows, scores, cost = (
            kind(name, text, labels=labels)
            for kind, name, labels, text in (
                (
                    GaugeMetricFamily,
                    "churn_api_drift_psi",
                    ("model", "column"),
                    "Population stability index of each input column and of the score "
                    "(column churn_probability), last closed window against the training data.",
                ),
                (
                    GaugeMetricFamily,
                    "churn_api_drift_window_records",
                    model,
                    "Records counted in the last closed drift window.",
                ),
                (
                    GaugeMetricFamily,
                    "churn_api_drift_current_window_records",
                    model,
                    "Records counted so far in the open drift window.",
                ),
                (
                    GaugeMetricFamily,
                    "churn_api_drift_window_end_timestamp_seconds",
                    model,
                    "When the last drift window closed (Unix time).",
                ),
                (
                    CounterMetricFamily,
                    "churn_api_drift_windows",
                    model,
                    "Drift windows closed since the API started.",
                ),
                (
                    HistogramMetricFamily,
                    "churn_api_churn_probability",
                    model,
                    "Churn probabilities served, by model version.",
                ),
                (
                    CounterMetricFamily,
                    "churn_api_drift_observe_cpu_seconds",
                    (),
                    "CPU time spent counting served records into drift bins "
                    "(monitoring's own cost).",
                ),
            )
        )
        for version in self.versions:
            current, closed, closed_count, histogram = self._copies(version)
            current_records.add_metric([version], current.records)
            windows.add_metric([version], closed_count)
            cumulative, buckets = 0, []
            for bound, count in zip(SCORE_BUCKETS, histogram, strict=True):
                cumulative += count
                buckets.append((f"{bound:g}" if bound < 1 else "+Inf", cumulative))
            scores.add_metric([version], buckets, sum_value=None)
            if closed is None:
                continue
            records.add_metric([version], closed.records)
            ended.add_metric([version], closed.ended or closed.started)
            for column, value in self.psi_of(version, closed).items():
                psi_family.add_metric([version, column], value)
        with self._lock:  # after `_copies` binned what waited: its cost counts in this scrape
            cost.add_metric([], self._observe_cpu_s)
        yield from (psi_family, records, current_records, ended, windows, scores, cost)

    def describe(self) -> list[Any]:
        """No description at registration (the families are built at scrape time)."""
        return []
