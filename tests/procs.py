"""Processes as /proc shows them (standard library only: the hostile-client tests' watcher
process imports this too)."""

from __future__ import annotations

import os


def status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` as a dict."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree = [pid]
    for p in tree:
        tree.extend(c for c, parent in parents.items() if parent == p)
    return tree


def rss_mb(pids: list[int]) -> float:
    """The resident memory of these processes, MB (those gone meanwhile count 0)."""
    total = 0
    for pid in pids:
        try:
            total += int(status(pid).get("VmRSS", "0 kB").split()[0])
        except (OSError, ValueError):
            pass  # gone meanwhile
    return total / 1024
