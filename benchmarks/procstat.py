"""CPU time and memory of server processes, read from Linux's /proc.

On a machine shared with other work, wall-clock latency swells with the load average; the
CPU time a server spends per request does much less. The suite reports both: wrk's figures,
and each server's CPU per request (user + system time of its processes, all threads).

A server the bench starts is its process group plus every process descended from it: BentoML
starts its Service workers in sessions of their own, outside the group (`server_pids`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "cpu_seconds",
    "group_pids",
    "parse_stat",
    "rss_mib",
    "server_pids",
    "tree_pids",
]

PROC = Path("/proc")


def parse_stat(text: str) -> tuple[int, int, int]:
    """Return (process group, utime, stime) in clock ticks from one ``/proc/<pid>/stat`` line.

    The command name (2nd field) may hold spaces and parentheses: fields are counted after
    the last ``)``.

    Raises:
        ValueError: the line is not in that format.

    """
    fields = _fields(text)
    # after the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12)
    return int(fields[2]), int(fields[11]), int(fields[12])


def _fields(text: str) -> list[str]:
    """Return the fields of a ``/proc/<pid>/stat`` line after the command name (state first)."""
    try:
        fields = text[text.rindex(")") + 2 :].split()
        int(fields[12])
    except (ValueError, IndexError):
        raise ValueError(f"not a /proc/<pid>/stat line: {text[:80]!r}") from None
    return fields


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


def tree_pids(root: int, proc: Path = PROC) -> list[int]:
    """Return ``root`` and every running process descended from it (``root`` first)."""
    children: dict[int, list[int]] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            parent = int(_fields(stat.read_text())[1])
        except (OSError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found = [root] if (proc / str(root)).exists() else []
    for pid in found:  # grows while it is walked: breadth first
        found.extend(children.get(pid, []))
    return found


def server_pids(leader: int, proc: Path = PROC) -> list[int]:
    """Return the processes of a server started as ``leader`` of a new session.

    Its process group (orphans of a stopped parent stay in it) and its descendants (workers
    started in sessions of their own), each once.
    """
    return list(dict.fromkeys([*tree_pids(leader, proc), *group_pids(leader, proc)]))


def rss_mib(pids: Iterable[int], proc: Path = PROC) -> float | None:
    """Return the resident memory of the processes, in MiB (None: none could be read)."""
    total_kib, found = 0, False
    for pid in pids:
        try:
            status = (proc / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
                found = True
    return round(total_kib / 1024, 1) if found else None
