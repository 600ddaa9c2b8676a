"""Peak memory and CPU time of a server's process tree, sampled from /proc while the load
runs; and the host's connection-tracking table, which the load fills.

A server is a set of root pids (the process we started, plus any it reported, such as
spawn-fcgi's children, which it orphans) and every descendant of them, including short
lived ones like the CGI programs a gateway forks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parent_map() -> dict[int, int]:
    """pid -> ppid for every process now alive."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # it exited while we looked
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rindex(b")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    return parents


def process_tree(roots: set[int], parents: dict[int, int]) -> set[int]:
    """The roots that are alive and all their descendants."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [pid for pid in roots if pid in parents]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class MemoryPeak:
    """The largest sums seen so far; `manager_pid` is left out of the per-child maximum."""

    manager_pid: int | None = None
    total_bytes: int = 0
    max_child_bytes: int = 0
    max_processes: int = 0

    def add_sample(self, rss_by_pid: dict[int, int]) -> None:
        self.total_bytes = max(self.total_bytes, sum(rss_by_pid.values()))
        children = [rss for pid, rss in rss_by_pid.items() if pid != self.manager_pid]
        self.max_child_bytes = max([self.max_child_bytes, *children])
        self.max_processes = max(self.max_processes, len(rss_by_pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of the children it has reaped (the CGI programs
    a gateway forked), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(b")") + 2:].split()
    # After the command name: state ppid ... utime(12th) stime cutime cstime.
    return sum(int(x) for x in fields[11:15]) / CLOCK_TICKS


def tree_cpu_seconds(roots: set[int], parents: dict[int, int] | None = None) -> float:
    return sum(cpu_seconds(pid) for pid in process_tree(roots, parent_map() if parents is None else parents))


@dataclass(frozen=True)
class Conntrack:
    """The host's connection-tracking table (netfilter), which Docker's bridges and NAT keep
    on: every TCP connection has an entry until two minutes after it closes (TIME_WAIT), and
    when the table is full the kernel drops new connections' first packets, so a connect
    times out. The scenarios without keep-alive open thousands of connections a second."""

    count: int
    limit: int  # net.netfilter.nf_conntrack_max
    drops: int  # packets dropped because the table was full, since boot (all CPUs)


CONNTRACK_DIR = "/proc/sys/net/netfilter"
CONNTRACK_STAT = "/proc/net/stat/nf_conntrack"  # a header line, then one line of hex counters per CPU


def conntrack() -> Conntrack | None:
    """The table now, or None where netfilter's connection tracking is not loaded."""
    try:
        with open(f"{CONNTRACK_DIR}/nf_conntrack_count", "rb") as f:
            count = int(f.read())
        with open(f"{CONNTRACK_DIR}/nf_conntrack_max", "rb") as f:
            limit = int(f.read())
    except (OSError, ValueError):
        return None
    drops = 0
    try:
        with open(CONNTRACK_STAT) as f:
            header, *cpus = f.read().split("\n")
        column = header.split().index("drop")
        drops = sum(int(row.split()[column], 16) for row in cpus if row.strip())
    except (OSError, ValueError, IndexError):
        pass
    return Conntrack(count, limit, drops)
