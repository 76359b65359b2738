"""The request log line's cost cuts (added for the benchmark): same lines, same rotation.

`JsonFormatter` keeps each record's line so that the stdout and file handlers (and the file
handler's size check) serialise it once; the file handler checks the file's kind only when it
is about to roll over (as Python 3.13 does).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

import churn.api.request_log as request_log


@pytest.fixture
def handlers(tmp_path: Path) -> Iterator[list[logging.Handler]]:
    name = "churn.bench_test"
    installed = request_log.configure_logging("INFO", tmp_path, logger_names=(name,))
    stdout = installed[0]
    assert isinstance(stdout, logging.StreamHandler)
    stdout.setStream(io.StringIO())
    yield installed
    for handler in installed:
        logging.getLogger(name).removeHandler(handler)
        handler.close()


def test_each_record_is_serialised_once_and_both_outputs_match(
    handlers: list[logging.Handler], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_dumps = json.dumps

    def counting_dumps(*args: object, **kwargs: object) -> str:
        calls.append(1)
        return real_dumps(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(request_log.json, "dumps", counting_dumps)
    log = logging.getLogger("churn.bench_test")
    for i in range(3):
        log.info("request", extra={"request_id": f"r{i}", "status": 200})
    assert len(calls) == 3  # stdout, the file's size check and the file: one serialisation
    printed = handlers[0].stream.getvalue().splitlines()  # type: ignore[attr-defined]
    written = (tmp_path / request_log.LOG_FILE_NAME).read_text().splitlines()
    assert printed == written
    entry = json.loads(written[2])
    assert entry["request_id"] == "r2" and entry["status"] == 200
    assert not any(key.startswith("_") for key in entry)


def test_the_log_file_still_rolls_over(handlers: list[logging.Handler], tmp_path: Path) -> None:
    file_handler = handlers[1]
    assert isinstance(file_handler, logging.handlers.RotatingFileHandler)
    file_handler.maxBytes = 400
    log = logging.getLogger("churn.bench_test")
    for i in range(12):
        log.info("request", extra={"request_id": f"{i:040d}"})
    rolled = sorted(p.name for p in tmp_path.iterdir())
    assert request_log.LOG_FILE_NAME + ".1" in rolled
    for path in tmp_path.iterdir():
        assert 0 < path.stat().st_size <= 400
    lines = [
        json.loads(line)["request_id"]
        for p in sorted(tmp_path.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        for line in p.read_text().splitlines()
    ]
    assert lines[-1] == f"{11:040d}"
