"""JSON-lines logging, request ids, and the one log line written per request.

`configure_logging` (called by `create_app`, never at import) sends the ``churn`` loggers to
stdout and, when a log directory is set, to a rotating ``api.log`` in it. Each request gets
an id (the caller's ``X-Request-ID`` when it looks sane, else a new one), returned in the
same header. The request line holds the id, method, path, status, latency, model version and
batch size; customer field values are never logged at INFO.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

__all__ = ["JsonFormatter", "configure_logging", "request_id_from"]

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


class _RotatingFileHandler(RotatingFileHandler):
    """`RotatingFileHandler` with the size check of Python 3.13 (gh-116263).

    Up to 3.12 the check stats the file twice for every record (bpo-45401: never roll over
    anything but a regular file); 3.13 does so only when the file is about to roll over, and
    never rolls over an empty file. Per request line, that saves two system calls.
    """

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - logging's name
        """Tell whether ``record`` would take the (regular) log file over ``maxBytes``."""
        if self.stream is None:  # delay was set
            self.stream = self._open()
        if self.maxBytes > 0:
            position = self.stream.tell()
            if not position:
                return False
            line = f"{self.format(record)}\n"
            if position + len(line) >= self.maxBytes:
                return not (
                    os.path.exists(self.baseFilename) and not os.path.isfile(self.baseFilename)
                )
        return False


def configure_logging(
    level: str, log_dir: Path | None, logger_names: tuple[str, ...] = ("churn",)
) -> list[logging.Handler]:
    """Send the named loggers to stdout (and ``<log_dir>/api.log``) as JSON lines.

    Replaces the handlers an earlier call installed, so building several apps in one process
    does not duplicate lines. Returns the handlers (``serve`` attaches them to Waitress's
    logger too).

    Raises:
        OSError: the log directory cannot be created or the file cannot be opened.

    """
    formatter = JsonFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(
            _RotatingFileHandler(
                log_dir / LOG_FILE_NAME, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(formatter)
        setattr(handler, _HANDLER_MARK, True)
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
    """Return the caller's request id when it is sane (1-128 safe characters), else a new one."""
    if header_value and _SANE_REQUEST_ID.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex
