from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from benchmarks import procstat

# A /proc/<pid>/stat line whose command name holds a space and a parenthesis.
LINE = "4242 (uvicorn (w) 1) S 1 4240 4240 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 5 0 1 0 0"


def test_a_stat_line_is_read_after_the_command_name() -> None:
    assert procstat.parse_stat(LINE) == (4240, 250, 50)
    with pytest.raises(ValueError):
        procstat.parse_stat("4242 no parentheses here")


def test_cpu_seconds_sum_every_process_and_skip_the_gone(tmp_path: Path) -> None:
    for pid, line in ((10, LINE), (11, LINE.replace(" 250 50 ", " 100 0 "))):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(line)
    ticks = os.sysconf("SC_CLK_TCK")
    assert procstat.cpu_seconds([10, 11, 99], tmp_path) == pytest.approx(400 / ticks)
    assert procstat.cpu_seconds([99], tmp_path) is None
    assert sorted(procstat.group_pids(4240, tmp_path)) == [10, 11]


def test_this_process_cpu_time_grows_with_work() -> None:
    before = procstat.cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    after = procstat.cpu_seconds([os.getpid()])
    assert before is not None and after is not None and after > before
    assert os.getpid() in procstat.group_pids(os.getpgid(0))
