"""The spawn manager as the spawn tests run it (test_spawn*.py, test_fuzz.py): `Pool` is
`python3 -m fcgikit.spawn -n` in the foreground with its status file and log. The fixtures
that make them (`pools`, `hello_fcgi`) are in tests/conftest.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"


def wait_for(predicate, timeout: float, what: str, log=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- manager log ---\n{log()}")
        time.sleep(0.02)


class Pool:
    """`python3 -m fcgikit.spawn -n ...` in the foreground, its log in a file."""

    def __init__(self, tmp_path: Path, flags: list[str], program: list[str] | None = None,
                 command: list[str] | None = None):
        self.status_path = tmp_path / "status.json"
        self.log_path = tmp_path / "spawn.log"
        if self.status_path.exists():
            self.status_path.unlink()
        command = command or [sys.executable, "-m", "fcgikit.spawn"]
        argv = command + ["-n", "--status-file", str(self.status_path)] + flags
        if program:
            argv += ["--"] + program
        self.log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        cwd=tmp_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict | None:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None

    def wait_children(self, count: int, timeout: float = 10.0, extra=lambda s: True) -> dict:
        def ready():
            status = self.status()
            return status if (status and status["children"]["total"] == count
                              and status["children"]["retiring"] == 0 and extra(status)) else None
        return wait_for(ready, timeout, f"{count} children in the status file", self.log)

    @property
    def port(self) -> int:
        return int(self.wait_children_any()["listen"].rsplit(":", 1)[1])

    def wait_children_any(self) -> dict:
        return wait_for(self.status, 10.0, "the status file", self.log)

    def pids(self) -> set[int]:
        return {p["pid"] for p in self.status()["processes"] if p["state"] != "retiring"}

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"manager still running after {timeout}s\n{self.log()}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
