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


def test_the_memory_of_processes_is_summed() -> None:
    alone = procstat.rss_mib([os.getpid()])
    assert alone is not None and alone > 1
    both = procstat.rss_mib([os.getpid(), os.getppid()])
    assert both is not None and both > alone
    assert procstat.rss_mib([2**22 + 7]) is None  # beyond pid_max: no such process


def test_a_server_is_its_group_and_its_descendants_in_other_sessions(tmp_path: Path) -> None:
    # 100 leads its group; 101 is its child in the group; 102, a worker in a session of its
    # own (BentoML's); 103, that worker's child; 104, an orphan left in the group; 105, other.
    table = {100: (1, 100), 101: (100, 100), 102: (101, 102), 103: (102, 102), 104: (1, 100)}
    table[105] = (1, 105)
    for pid, (parent, group) in table.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(
            LINE.replace("4242 ", f"{pid} ", 1).replace(" S 1 4240 ", f" S {parent} {group} ")
        )
    assert procstat.tree_pids(100, tmp_path) == [100, 101, 102, 103]
    assert procstat.tree_pids(999, tmp_path) == []
    assert procstat.server_pids(100, tmp_path) == [100, 101, 102, 103, 104]
