"""Processes that outlive the process that started them: found and killed.

A process that calls setsid() (or double-forks into a new session) leaves its
parent's process group, so killing that group misses it, and when its parent
dies it is adopted by init, out of our reach. On Linux a process marked "child
subreaper" adopts the orphans of its descendants instead of init: they become
its own children, listed in /proc, to be killed and reaped.

The CGI gateway uses this twice: each gateway process adopts what its programs
leave behind, and the manager adopts what a dead gateway process leaves behind
(its running program among it: the manager may SIGKILL a gateway).
"""

from __future__ import annotations

import os
import signal

from .prctl import prctl

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
# Killing what a process left behind goes round by round: each killed process
# hands its own children to us. A fork bomb is not outrun forever.
MAX_KILL_ROUNDS = 100


def become_subreaper() -> bool:
    """Orphaned descendants of this process are adopted by it, not by init (Linux >= 3.4)."""
    return prctl(PR_SET_CHILD_SUBREAPER, 1) == 0


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> bool:
    """Called in a freshly forked child: `signum` comes to it when its parent dies
    (PR_SET_PDEATHSIG), so children never outlive a manager killed with SIGKILL,
    still accepting on the socket they inherited. Kept across exec (not of a
    set-user-ID program), but cleared when the process changes its uid or gid:
    call it after dropping privileges. Returns False when the parent is already
    gone (it died before the setting took: the race the getppid() check closes),
    and the child must not start. Where there is no prctl (not Linux) the check
    alone is made."""
    prctl(PR_SET_PDEATHSIG, signum)
    return os.getppid() == parent_pid


def children_of(pid: int) -> set[int]:
    """The children of `pid` (every thread's), from /proc; empty when it cannot be read."""
    children: set[int] = set()
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return children
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as listing:
                children.update(int(child) for child in listing.read().split())
        except (OSError, ValueError):
            pass
    return children


def descendants_of(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children_of(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_with_group(pid: int) -> None:
    """SIGKILL to `pid` and to its process group (what it forked without leaving the
    group), unless that group is ours."""
    try:
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_children_except(keep) -> int:
    """Kills and reaps every child of this process not in `keep`, round after round
    (a killed child's own children are adopted by a subreaper); returns how many."""
    me = os.getpid()
    killed = 0
    for _ in range(MAX_KILL_ROUNDS):
        victims = children_of(me).difference(keep)
        if not victims:
            break
        for pid in victims:
            kill_with_group(pid)
        for pid in victims:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        killed += len(victims)
    return killed
