"""Starting and stopping the FastCGI server of a scenario as bare processes on 127.0.0.1."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

from .scenarios import APPS_DIR, HOST, Paths, Server

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphans (spawn-fcgi's children once it exits) become our children, so we reap them.

    Otherwise they are reparented to PID 1, which in a container may never reap them.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: spawn-fcgi's children are then reaped by init


def compile_c_hello(paths: Paths) -> None:
    if paths.c_hello.exists():
        return
    cmd = ["gcc", "-O2", "-o", str(paths.c_hello), str(APPS_DIR / "hello.c"), "-lfcgi"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (libfcgi-dev missing? run ./setup.sh):\n{done.stderr}")


class RunningServer:
    """A server started for one scenario: its processes, its log, and how to stop it."""

    def __init__(self, server: Server, port: int, paths: Paths) -> None:
        self.server = server
        self.port = port
        self.paths = paths
        self.log_path = paths.work_dir / f"{server.name}-{port}.log"
        self.process: subprocess.Popen | None = None
        self._orphans: set[int] = set()

    def start(self, timeout: float = 20.0) -> RunningServer:
        if self.server.needs_c_hello:
            compile_c_hello(self.paths)
        self.paths.pidfile(self.port).unlink(missing_ok=True)
        self.server.prepare_files(self.port, self.paths)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(APPS_DIR), os.environ.get("PYTHONPATH")])))
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.server.command(self.port, self.paths), cwd=APPS_DIR, env=env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout: float) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if self.process.poll() is not None and not self.server.writes_pidfile:
                raise RuntimeError(f"{self.server.name} exited with status {self.process.returncode} "
                                   f"before listening:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.server.name} did not listen on {HOST}:{self.port} "
                                   f"within {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def root_pids(self) -> set[int]:
        """The processes whose trees make up the server side (for the memory figures)."""
        pids = {self.process.pid} if self.process else set()
        return pids | self.pidfile_pids()

    def pidfile_pids(self) -> set[int]:
        if not self.server.writes_pidfile:
            return set()
        try:
            return {int(word) for word in self.paths.pidfile(self.port).read_text().split()}
        except (OSError, ValueError):
            return set()

    def alive(self) -> bool:
        """Whether the server is still up after the load (a crash is an error, not a result)."""
        if self.server.writes_pidfile:
            return all(pid_alive(pid) for pid in self.pidfile_pids())
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 3.0) -> None:
        self.terminate()
        self.wait_stopped(time.monotonic() + grace)

    def terminate(self) -> None:
        """SIGTERM to the server's process group and to the orphans it left (spawn-fcgi's)."""
        self._orphans = self.pidfile_pids()
        if self.process:
            signal_group(self.process.pid, signal.SIGTERM)
        for pid in self._orphans:
            signal_pid(pid, signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Waits until `deadline` (time.monotonic()) for a clean exit, then SIGKILLs what is left."""
        if self.process is None:
            return
        while time.monotonic() < deadline and (self.process.poll() is None or any(map(pid_alive, self._orphans))):
            time.sleep(0.05)
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for pid in self._orphans:
            signal_pid(pid, signal.SIGKILL)
            reap(pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie child of ours counts as dead)."""
    reap(pid)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] != b"Z"


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (init reaps it) or already reaped


def signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
