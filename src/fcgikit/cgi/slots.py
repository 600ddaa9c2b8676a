"""--max-procs: at most N programs at once across the whole pool, as lock-file slots.

N files in a directory the manager makes before it forks; a program may run
while its gateway process holds an exclusive flock on one of them. flock was
chosen over a shared semaphore because the kernel drops the lock when its
holder dies: a gateway killed mid-request (SIGKILL by the manager, OOM) can
never leak a slot, and nothing has to be cleaned up or counted by hand.
A request that finds every slot taken waits (polling with backoff; waiting is
the rare, overloaded case) up to the queue timeout, then gets 503.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager


def make_slot_dir(count: int, parent: str | None = None) -> str:
    """Creates the directory of `count` slot files (in the manager, before forking)."""
    directory = tempfile.mkdtemp(prefix="fcgikit-cgi-slots-", dir=parent)
    os.chmod(directory, 0o755)  # children may run as another user (-u); flock needs read access only
    for index in range(count):
        with open(os.path.join(directory, f"slot-{index}"), "w"):
            pass
    return directory


class Slots:
    """The slot files as seen from one gateway process. Open them after fork:
    flock belongs to the open file, and a file opened before fork would be shared."""

    def __init__(self, directory: str, count: int) -> None:
        self.paths = [os.path.join(directory, f"slot-{index}") for index in range(count)]
        self.fds: list[int] | None = None
        self.pid = 0

    def open(self) -> list[int]:
        if self.fds is None or self.pid != os.getpid():
            self.fds = [os.open(path, os.O_RDONLY | os.O_CLOEXEC) for path in self.paths]
            self.pid = os.getpid()
        return self.fds

    def try_take(self) -> int | None:
        for fd in self.open():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                continue
        return None

    def take(self, queue_timeout: float) -> int | None:
        """A held slot's fd, or None when none came free within queue_timeout."""
        deadline = time.monotonic() + queue_timeout
        pause = 0.002
        while True:
            fd = self.try_take()
            if fd is not None:
                return fd
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    @staticmethod
    def give_back(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def slot(self, queue_timeout: float):
        """`with slots.slot(t) as got:` got is False when the request must be refused (503)."""
        fd = self.take(queue_timeout)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                self.give_back(fd)


class Unlimited:
    """No --max-procs: every request runs at once."""

    @contextmanager
    def slot(self, queue_timeout: float):
        yield True
