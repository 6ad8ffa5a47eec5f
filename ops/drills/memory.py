"""Memory of a drill's processes over time, and its slope by linear regression.

A process is its recorded pid and every descendant (prod's uvicorn workers, PostgreSQL's
backends). What is summed is RssAnon, private anonymous memory: what a leak grows.
Shared and file-backed pages (PostgreSQL's shared buffers, mapped libraries) are left out: they
grow as caches warm and shrink under pressure, and are no leak.
"""

from __future__ import annotations

from pathlib import Path


def _rss_anon_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def tree(leader: int) -> list[int]:
    """`leader` and every descendant of it, by parent pid (PostgreSQL's backends leave its
    process group, so the group alone would miss them)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
    members, frontier = [leader], [leader]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        members += children
        frontier += children
    return members


def tree_mb(leader: int) -> float:
    """RssAnon of `leader` and its descendants, in MB."""
    return sum(_rss_anon_kb(pid) for pid in tree(leader)) / 1024


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
