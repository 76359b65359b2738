"""JSON-lines logging, request ids, and the one log line written per request.

`configure_logging` (called by `create_app`, never at import) sends the ``churn`` loggers to
stdout and, when a log directory is set, to a rotating ``api-<replica>.log`` in it (one file
per replica: replicas sharing a log folder never rotate one another's file). Each request gets
an id (the caller's ``X-Request-ID`` when it looks sane, else a new one), returned in the
same header. The request line holds the id, method, path, status, latency, model version and
batch size; customer field values are never logged at INFO. Lines of level INFO and below are
written in batches, at most `FLUSH_INTERVAL` after they were logged; warnings and errors at once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import re
import sys
import threading
import time
import uuid
import weakref
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "JsonFormatter",
    "QueueDepthSampler",
    "configure_logging",
    "flush_logs",
    "log_file_name",
    "request_id_from",
]

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
#: Attributes every LogRecord has; anything else passed via ``extra=`` is emitted as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_MARK = "_churn_api_handler"
#: Where `JsonFormatter` keeps a record's line (underscored: never emitted as a field).
_FORMATTED = "_churn_json_line"
LOG_FILE_NAME = "api.log"

#: Longest time an INFO line waits in memory before it is written (see `_Batching`).
FLUSH_INTERVAL = 0.2
#: Characters of waiting lines that trigger a write before the interval is up.
MAX_PENDING_CHARS = 64 * 1024


def log_file_name(replica: str | None = None) -> str:
    """Return the log file's name: ``api-<replica>.log``, or ``api.log`` without a replica."""
    return f"api-{replica}.log" if replica else LOG_FILE_NAME


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` as a JSON line (once: the line is kept on the record).

        Every handler of the ``churn`` loggers shares this formatter, and the rotating file
        handler formats each record twice (to see whether it still fits, then to write it):
        one request line would otherwise be serialised three times.
        """
        cached = record.__dict__.get(_FORMATTED)
        if cached is not None:
            return str(cached)
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = json.dumps(entry, default=str, ensure_ascii=False)
        setattr(record, _FORMATTED, line)
        return line


class _Batching:
    """Lines wait in memory and reach the stream in one write per `FLUSH_INTERVAL`.

    A request line written and flushed at once costs two system calls per output and, in a
    container, a wake-up of the engine's log reader for each line. Here lines of level INFO and
    below are written joined, by the flusher thread (or as soon as `MAX_PENDING_CHARS` are
    waiting); a WARNING or worse is written at once with everything before it, so that order
    is kept. `logging.shutdown` (at exit) flushes what is left.
    """

    def _init_batching(self) -> None:
        self._pending: list[str] = []
        self._pending_chars = 0

    def _queue(self, line: str, record: logging.LogRecord) -> None:
        """Add a formatted line; write everything at once when it matters or grows large."""
        self._pending.append(line)
        self._pending_chars += len(line)
        if record.levelno >= logging.WARNING or self._pending_chars >= MAX_PENDING_CHARS:
            self._write_pending()

    def _write_pending(self) -> None:
        stream = self.stream  # type: ignore[attr-defined]
        if stream is None:
            return
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_chars = 0
            stream.write(text)
        if hasattr(stream, "flush"):
            stream.flush()

    def flush(self) -> None:
        """Write the waiting lines and flush the stream."""
        with self.lock:  # type: ignore[attr-defined]
            self._write_pending()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's line (after `_make_room` for it)."""
        try:
            line = self.format(record) + self.terminator  # type: ignore[attr-defined]
            self._make_room(line)
            self._queue(line, record)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)  # type: ignore[attr-defined]

    def _make_room(self, line: str) -> None:
        """Prepare the stream for ``line`` (a file rolls over here); nothing by default."""


class _StdoutHandler(_Batching, logging.StreamHandler):  # type: ignore[type-arg]
    """Standard output, written in batches (see `_Batching`)."""

    def __init__(self, stream: TextIO) -> None:
        self._init_batching()
        super().__init__(stream)


class _RotatingFileHandler(_Batching, RotatingFileHandler):
    """The rotating log file, written in batches (see `_Batching`).

    The file's size is counted here rather than asked of the stream (``tell`` on a text file
    flushes it, which would undo the batching); the kind of the file is checked only when it
    is about to roll over, as Python 3.13 does (gh-116263), not twice per record.
    """

    def __init__(self, filename: Path, max_bytes: int, backup_count: int) -> None:
        self._init_batching()
        self._size = 0
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8")

    def _open(self) -> Any:
        stream = super()._open()
        self._size = os.fstat(stream.fileno()).st_size
        return stream

    def _make_room(self, line: str) -> None:
        """Roll the file over first when ``line`` would take it over ``maxBytes``."""
        size = len(line) if line.isascii() else len(line.encode("utf-8"))
        if self.stream is None:  # delay was set, or closed by a failed rollover
            self.stream = self._open()
        if self.maxBytes > 0 and self._size and self._size + size >= self.maxBytes:
            self._write_pending()
            if not os.path.exists(self.baseFilename) or os.path.isfile(self.baseFilename):
                self.doRollover()  # reopens the file: `_open` counts it afresh
        self._size += size


class _Flusher:
    """One daemon thread that flushes every batching handler each `FLUSH_INTERVAL`."""

    def __init__(self) -> None:
        self.handlers: weakref.WeakSet[logging.Handler] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, handler: logging.Handler) -> None:
        """Flush ``handler`` periodically from now on (starts the thread on first use)."""
        with self._lock:
            self.handlers.add(handler)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="churn-log-flusher", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Flush every handler now."""
        for handler in list(self.handlers):
            # A handler closed meanwhile, or a full disk, must not stop the thread.
            with contextlib.suppress(Exception):
                handler.flush()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL)
            self.flush()


_FLUSHER = _Flusher()


def flush_logs() -> None:
    """Write every log line still waiting in memory (for tests, and whoever must read it now)."""
    _FLUSHER.flush()


class QueueDepthSampler(logging.Filter):
    """Let through at most one of Waitress's "Task queue depth is N" warnings per interval.

    Waitress warns each time a request has to wait for a free worker thread, which under a
    steady load is nearly every request: one WARNING line per request, written at once. This
    filter passes the first warning of each `interval` seconds, reworded with the deepest queue
    and the number of warnings folded into it since the last line, and drops the rest.
    """

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._lock = threading.Lock()
        self._last = -math.inf
        self._folded = 0
        self._deepest = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Pass the record (reworded) once per interval; count and drop the others."""
        depth = record.args[0] if isinstance(record.args, tuple) and record.args else None
        with self._lock:
            if isinstance(depth, int):
                self._deepest = max(self._deepest, depth)
            now = time.monotonic()
            if now - self._last < self.interval:
                self._folded += 1
                return False
            folded, deepest = self._folded, self._deepest
            self._last, self._folded, self._deepest = now, 0, 0
        if isinstance(depth, int):  # then `deepest` includes it
            record.msg = "requests are waiting for a worker thread: task queue depth %d"
            record.args = (deepest,)
            record.queue_depth = deepest
            record.warnings_folded = folded
        return True


def configure_logging(
    level: str,
    log_dir: Path | None,
    logger_names: tuple[str, ...] = ("churn",),
    replica: str | None = None,
) -> list[logging.Handler]:
    """Send the named loggers to stdout (and ``<log_dir>/api-<replica>.log``) as JSON lines.

    Replaces the handlers an earlier call installed, so building several apps in one process
    does not duplicate lines. Returns the handlers (``serve`` attaches them to Waitress's
    logger too).

    Raises:
        OSError: the log directory cannot be created or the file cannot be opened.

    """
    formatter = JsonFormatter()
    handlers: list[logging.Handler] = [_StdoutHandler(sys.stdout)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(_RotatingFileHandler(log_dir / log_file_name(replica), 10 * 1024 * 1024, 5))
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
        _FLUSHER.add(handler)
    for name in logger_names:
        attach_handlers(logging.getLogger(name), handlers, level)
    return handlers


def attach_handlers(logger: logging.Logger, handlers: list[logging.Handler], level: str) -> None:
    """Replace the handlers a previous `configure_logging` put on ``logger`` with ``handlers``."""
    for old in list(logger.handlers):
        if getattr(old, _HANDLER_MARK, False):
            logger.removeHandler(old)
            if not any(old is h for h in handlers):
                old.close()
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def request_id_from(header_value: str | None) -> str:
    """Return the caller's request id when it is sane (1-128 safe characters), else a new one.

    A new id is 32 hex digits, as ``uuid4().hex``: a random prefix drawn once per process and
    a counter. Unique without a system call per request (``uuid4`` reads ``os.urandom`` each
    time, and gives the interpreter lock away to do so, a measurable wait under load).
    """
    if header_value and _SANE_REQUEST_ID.fullmatch(header_value):
        return header_value
    return _IDS.new()


class _RequestIds:
    """New request ids: 16 random hex digits per process, then a 16-digit counter."""

    def __init__(self) -> None:
        self._prefix: str | None = None
        self._counter = itertools.count(1)

    def new(self) -> str:
        """Return the next id (the prefix is drawn on first use, and again in a forked child)."""
        prefix = self._prefix
        if prefix is None:
            prefix = self._prefix = uuid.uuid4().hex[:16]
            os.register_at_fork(after_in_child=self._reset)
        return f"{prefix}{next(self._counter):016x}"

    def _reset(self) -> None:
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)


_IDS = _RequestIds()
