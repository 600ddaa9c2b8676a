"""Supervision decisions that need no I/O: respawn backoff, crash-loop verdicts,
max-requests jitter, and how to describe a child's end."""

import os
import random
import signal
from collections import deque

EXIT_BOOT_ERROR = 3  # a worker could not start (gunicorn's WORKER_BOOT_ERROR)
EXIT_APP_LOAD_ERROR = 4  # the app could not be loaded: respawning cannot help
EXIT_EXEC_FAILED = 127  # exec of the program failed in the child (as a shell says)

BOOT_PERIOD = 1.0  # a child that ends sooner than this after its fork "died at boot"
MAX_BOOT_FAILURES = 5  # consecutive boot deaths before the manager gives up
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
MAX_SPAWNS_PER_SECOND = 50
JITTER_FRACTION = 10  # max-requests N becomes N .. N + N // 10
# A worker that heartbeats (ours do, every second while idle) and then falls
# silent outside a request is hung too; never judged on less silence than this.
IDLE_SILENCE_MIN = 10.0


def respawn_delay(boot_failures: int) -> float:
    """Seconds to wait before the next spawn after `boot_failures` boot deaths in a row."""
    if boot_failures <= 0:
        return 0.0
    return min(BACKOFF_FIRST * 2 ** (boot_failures - 1), BACKOFF_MAX)


def jittered_max_requests(max_requests: int, rng: random.Random | None = None) -> int:
    """max_requests plus up to a tenth more, so children do not all recycle at once."""
    if max_requests <= 0:
        return 0
    randint = rng.randint if rng is not None else random.randint
    return max_requests + randint(0, max_requests // JITTER_FRACTION)


def hung_reason(
    busy: bool,
    request_started: float,
    last_seen: float,
    heartbeats: int,
    now: float,
    timeout: float,
    child_started: float = 0.0,
) -> str | None:
    """Why a worker counts as hung under --timeout, or None.

    Busy: one request has run longer than the timeout. Idle: a worker that has
    sent heartbeats has given no sign of life for max(timeout, IDLE_SILENCE_MIN).
    A worker that never heartbeats is judged on its requests only.

    Times are time.monotonic(); `child_started` is when the manager forked the
    child. Nothing the child wrote can make it older than that: a time of 0 (not
    written yet) or from before its start (a slot's earlier owner) means it has
    just started, and a child is never judged on more than its own age.
    """
    if timeout <= 0:
        return None
    if busy:
        if request_started <= 0 or request_started < child_started:
            return None  # no request of its own recorded yet
        running = now - request_started
        return f"busy in one request for {running:.1f}s" if running > timeout else None
    silent = now - max(last_seen, child_started)
    if heartbeats and last_seen > 0 and silent > max(timeout, IDLE_SILENCE_MIN):
        return f"no heartbeat for {silent:.1f}s while idle"
    return None


def describe_exit(wait_status: int) -> str:
    """'exited with status 1' or 'killed by SIGKILL' from a waitpid status."""
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(wait_status)}"


def exit_code(wait_status: int) -> int | None:
    """The exit status, or None when the child was killed by a signal."""
    return None if os.WIFSIGNALED(wait_status) else os.WEXITSTATUS(wait_status)


class BootFailures:
    """Counts children that die at boot, in a row, and says when to give up.

    A boot death is a child that ends within BOOT_PERIOD of its fork without
    having taken a request. Each one in a row delays the next spawn (the
    backoff, capped at BACKOFF_MAX). The count starts again once a child forked
    after the last boot death has lived through BOOT_PERIOD, or has served; an
    old healthy child does not reset it, so one slot crash-looping beside
    healthy ones still backs off.

    Giving up the pool is only for a program that cannot work at all: the pool
    must never have shown that it can. It has once a child took a request (the
    scoreboard tells, for Python workers) or lived through BOOT_PERIOD (the only
    sign an exec'd program gives: it reports nothing). From then on, children
    that die, however soon and however often, are respawned with the backoff:
    a client that can make a child die (a request that crashes it, a stream
    that kills it) can slow the pool down but never stop it.
    """

    def __init__(self, limit: int = MAX_BOOT_FAILURES, boot_period: float = BOOT_PERIOD):
        self.limit = limit
        self.boot_period = boot_period
        self.count = 0
        self.last_failure_at = float("-inf")
        self.last_reason = ""
        self.proven = False  # a child of this pool has served, or lived past its boot

    def child_exited(
        self, started_at: float, ended_at: float, description: str, code: int | None, served: int | None = None
    ) -> str | None:
        """Record an unexpected exit; returns why the manager must stop, or None.

        `served` is how many requests the child took (the scoreboard counts a
        request when it starts), or None for an exec'd program, which reports
        nothing. A child that took any booted fine, however short its life
        (--max-requests 1 under load). An exec'd program that exits 0 left on
        its own, as php-cgi does every PHP_FCGI_MAX_REQUESTS requests (under
        load, well within a second).
        """
        if code == EXIT_APP_LOAD_ERROR:
            return f"the app could not load: a child {description}"
        if served:
            self.proven = True
        if served or (served is None and code == 0):
            self.count = 0
            return None
        if ended_at - started_at >= self.boot_period:
            self.proven = True
            return None
        self.count += 1
        self.last_failure_at = ended_at
        self.last_reason = description
        if self.count >= self.limit and not self.proven:
            return (
                f"children die at boot: {self.count} in a row ended within "
                f"{self.boot_period:g}s of starting, the last {description}"
            )
        return None

    def child_alive(self, started_at: float, now: float) -> None:
        """A running child; it proves the program boots if it came after the last failure."""
        if now - started_at >= self.boot_period:
            self.proven = True
            if started_at > self.last_failure_at:
                self.count = 0

    def next_spawn_at(self) -> float:
        return self.last_failure_at + respawn_delay(self.count)


class SpawnRate:
    """At most `limit` forks in any second: a program that exits 0 at once (not a
    boot death, see BootFailures) is then restarted at that pace, not in a hot loop."""

    def __init__(self, limit: int = MAX_SPAWNS_PER_SECOND):
        self.limit = limit
        self.recent: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self.recent and now - self.recent[0] >= 1.0:
            self.recent.popleft()
        return len(self.recent) < self.limit

    def record(self, now: float) -> None:
        self.recent.append(now)
