"""Processes below a process, read from /proc (Linux): what a stopped server left behind."""

from __future__ import annotations

from pathlib import Path


def _after_comm(stat: str) -> list[str]:
    # /proc/PID/stat is "pid (comm) state ppid ...": comm may hold spaces and ")".
    return stat.rsplit(")", 1)[1].split()


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc's parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(_after_comm(stat)[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:  # ends: each round adds new pids of a finite table, or none
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return _after_comm(stat)[0] != "Z"
