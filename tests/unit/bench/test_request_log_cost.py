"""The request log line's cost cuts (added for the benchmark): same lines, same rotation.

`JsonFormatter` keeps each record's line so that the stdout and file handlers (and the file
handler's size check) serialise it once; the file handler counts the file's size itself and
checks the file's kind only when it is about to roll over (as Python 3.13 does). INFO lines
are written in batches, at most `FLUSH_INTERVAL` late; a warning is written at once, after
the lines logged before it.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
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
    request_log.flush_logs()
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
    request_log.flush_logs()
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


def _file_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / request_log.LOG_FILE_NAME).read_text().splitlines()


def test_info_lines_are_written_in_batches_within_the_interval(
    handlers: list[logging.Handler], tmp_path: Path
) -> None:
    log = logging.getLogger("churn.bench_test")
    log.info("configured")
    time.sleep(request_log.FLUSH_INTERVAL * 3)  # the flusher thread writes what waits
    before = len(_file_lines(tmp_path))
    for i in range(50):
        log.info("request", extra={"request_id": f"b{i}"})
    assert len(_file_lines(tmp_path)) == before  # waiting in memory, no write per line
    deadline = time.monotonic() + 10 * request_log.FLUSH_INTERVAL + 5
    while len(_file_lines(tmp_path)) < before + 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = _file_lines(tmp_path)[before:]
    assert [json.loads(line)["request_id"] for line in lines] == [f"b{i}" for i in range(50)]
    printed = handlers[0].stream.getvalue().splitlines()  # type: ignore[attr-defined]
    assert printed[-50:] == lines


def test_a_warning_is_written_at_once_after_the_lines_before_it(
    handlers: list[logging.Handler], tmp_path: Path
) -> None:
    log = logging.getLogger("churn.bench_test")
    log.info("first")
    log.warning("careful")
    messages = [json.loads(line)["message"] for line in _file_lines(tmp_path)]
    assert messages[-2:] == ["first", "careful"]
    printed = handlers[0].stream.getvalue().splitlines()  # type: ignore[attr-defined]
    assert [json.loads(line)["message"] for line in printed[-2:]] == ["first", "careful"]


def test_waiting_lines_are_bounded(handlers: list[logging.Handler], tmp_path: Path) -> None:
    log = logging.getLogger("churn.bench_test")
    padding = "x" * 1000
    count = request_log.MAX_PENDING_CHARS // 1000 + 5
    for i in range(count):
        log.info("request", extra={"request_id": f"c{i}", "padding": padding})
    written = _file_lines(tmp_path)  # without waiting for the thread
    waiting = count - len(written)
    assert written and waiting * len(written[-1]) < request_log.MAX_PENDING_CHARS


def test_lines_waiting_at_exit_are_written(tmp_path: Path) -> None:
    script = (
        "import logging, sys; from pathlib import Path; "
        "import churn.api.request_log as r; "
        f"r.configure_logging('INFO', Path({str(tmp_path)!r}), logger_names=('churn.exit',)); "
        "[logging.getLogger('churn.exit').info('line', extra={'n': i}) for i in range(20)]"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    printed = [json.loads(line)["n"] for line in done.stdout.splitlines()]
    assert printed == list(range(20))
    assert [json.loads(line)["n"] for line in _file_lines(tmp_path)] == list(range(20))


def test_waitress_queue_warnings_are_folded_into_one_line_per_interval(
    handlers: list[logging.Handler], tmp_path: Path
) -> None:
    queue_log = logging.getLogger("churn.bench_test.queue")
    sampler = request_log.QueueDepthSampler(interval=0.5)
    queue_log.addFilter(sampler)
    try:
        # What Waitress logs when a request waits for a worker thread (waitress/task.py).
        for depth in (1, 3, 2, 1):
            queue_log.warning("Task queue depth is %d", depth)
        time.sleep(0.6)
        queue_log.warning("Task queue depth is %d", 1)
    finally:
        queue_log.removeFilter(sampler)
    entries = [json.loads(line) for line in _file_lines(tmp_path)]
    warnings = [e for e in entries if e["level"] == "WARNING"]
    assert len(warnings) == 2
    assert warnings[0]["queue_depth"] == 1 and warnings[0]["warnings_folded"] == 0
    # the second line tells the deepest queue and how many warnings it stands for
    assert warnings[1]["queue_depth"] == 3 and warnings[1]["warnings_folded"] == 3
    assert warnings[1]["message"].endswith("task queue depth 3")


def test_new_request_ids_are_unique_32_hex_digits_and_differ_after_fork() -> None:
    ids = {request_log.request_id_from(None) for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a new prefix, so no id repeats the parent's
        os.write(write, request_log.request_id_from(None).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    parent = request_log.request_id_from(None)
    assert len(child) == 32 and child[:16] != parent[:16]
    assert request_log.request_id_from("caller-id-1") == "caller-id-1"
