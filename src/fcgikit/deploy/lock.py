"""The deploy lock: one `up`/`scale`/`down` at a time per project, held on the primary host.

`mkdir` is atomic: of two deployers, exactly one creates the directory. The winner
records who it is and since when inside it, so the loser can name the holder. A lock
left by a deployer that died is released by hand (`fcgikit lock release`), never by
guessing that it is stale.

The command lines are built here (pure) and run on the primary host over SSH.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import FcgikitError

LOCKS_DIR = ".fcgikit/locks"  # under the SSH user's home on the primary host
DETAILS = "holder"


class LockHeld(FcgikitError):
    def __init__(self, project: str, host: str, holder: LockHolder | None):
        self.project, self.host, self.holder = project, host, holder
        who = holder.describe() if holder else "a deployer that has not yet written its name"
        super().__init__(
            f"deploy lock for {project} on {host} is held by {who}; "
            "wait for it, or if that deploy is dead: fcgikit lock release --hosts FILE"
        )


@dataclass(frozen=True)
class LockHolder:
    who: str      # user@machine
    pid: int
    command: str  # what it is doing, e.g. "up"
    since: str    # ISO 8601, UTC

    def describe(self) -> str:
        return f"{self.who} (pid {self.pid}, `fcgikit {self.command}`) since {self.since}"

    def to_text(self) -> str:
        return "\n".join(f"{key}={value}" for key, value in vars(self).items()) + "\n"

    @classmethod
    def from_text(cls, text: str) -> LockHolder | None:
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        try:
            return cls(fields["who"], int(fields["pid"]), fields["command"], fields["since"])
        except (KeyError, ValueError):
            return None

    @classmethod
    def me(cls, command: str, now: float | None = None) -> LockHolder:
        since = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        return cls(who, os.getpid(), command, since.isoformat(timespec="seconds"))


def lock_dir(project: str) -> str:
    return f"{LOCKS_DIR}/{project}"


def acquire_command(project: str, holder: LockHolder) -> str:
    path = lock_dir(project)
    # mkdir without -p for the lock itself: it must fail when the lock exists.
    return (
        f"mkdir -p {LOCKS_DIR} && mkdir {shlex.quote(path)} && "
        f"printf %s {shlex.quote(holder.to_text())} > {shlex.quote(path + '/' + DETAILS)}"
    )


def read_command(project: str) -> str:
    path = f"{lock_dir(project)}/{DETAILS}"
    return f"cat {shlex.quote(path)} 2>/dev/null || true"


def exists_command(project: str) -> str:
    return f"test -d {shlex.quote(lock_dir(project))}"


def release_command(project: str) -> str:
    return f"rm -rf {shlex.quote(lock_dir(project))}"


class DeployLock:
    """Held for the length of a `with` block on the primary host's session."""

    def __init__(self, session, project: str, command: str):
        self.session = session
        self.project = project
        self.command = command
        self.held = False

    def acquire(self) -> None:
        result = self.session.connection.run(
            acquire_command(self.project, LockHolder.me(self.command)), hide=True, warn=True, in_stream=False
        )
        if result.ok:
            self.held = True
            return
        if not self.exists():
            raise FcgikitError(f"{self.session.target}: cannot take the deploy lock: {result.stderr.strip()}")
        raise LockHeld(self.project, self.session.name, self.holder())

    def holder(self) -> LockHolder | None:
        # The holder writes its name right after mkdir; give a racing reader a moment.
        for _ in range(5):
            text = self.session.connection.run(read_command(self.project), hide=True, warn=True, in_stream=False).stdout
            holder = LockHolder.from_text(text)
            if holder is not None:
                return holder
            time.sleep(0.2)
        return None

    def release(self) -> None:
        self.session.connection.run(release_command(self.project), hide=True, in_stream=False)
        self.held = False

    def exists(self) -> bool:
        return self.session.connection.run(exists_command(self.project), hide=True, warn=True, in_stream=False).ok

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        if self.held:
            self.release()
