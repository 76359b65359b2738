"""CPU time and memory of server processes, read from Linux's /proc.

On a machine shared with other work, wall-clock latency swells with the load average; the
CPU time a server spends per request does much less. The suite reports both: wrk's figures,
and each server's CPU per request (user + system time of its processes, all threads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cpu_seconds", "group_pids", "parse_stat"]

PROC = Path("/proc")


def parse_stat(text: str) -> tuple[int, int, int]:
    """Return (process group, utime, stime) in clock ticks from one ``/proc/<pid>/stat`` line.

    The command name (2nd field) may hold spaces and parentheses: fields are counted after
    the last ``)``.

    Raises:
        ValueError: the line is not in that format.

    """
    try:
        fields = text[text.rindex(")") + 2 :].split()
        # after the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12)
        return int(fields[2]), int(fields[11]), int(fields[12])
    except (ValueError, IndexError):
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}") from None


def cpu_seconds(pids: Iterable[int], proc: Path = PROC) -> float | None:
    """Return the CPU seconds (user + system, every thread) the processes have used so far.

    Processes that are gone are skipped; None when none of them could be read.
    """
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    total, found = 0, False
    for pid in pids:
        try:
            _, utime, stime = parse_stat((proc / str(pid) / "stat").read_text())
        except (OSError, ValueError):
            continue
        total += utime + stime
        found = True
    return total / ticks_per_s if found else None


def group_pids(pgid: int, proc: Path = PROC) -> list[int]:
    """Return the ids of the running processes in process group ``pgid``."""
    pids = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            group, _, _ = parse_stat(stat.read_text())
        except (OSError, ValueError):
            continue
        if group == pgid:
            pids.append(int(stat.parent.name))
    return pids
