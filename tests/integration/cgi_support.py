"""Running the CGI gateway (ours and fcgiwrap) for the integration tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fcgikit.fastcgi.client import fcgi_request
from fcgikit.testing import free_port

SCRIPTS = Path(__file__).resolve().parent.parent / "cgi-bin"


def world_readable_tree() -> Path:
    """A temp dir every user can enter: programs run as nobody when the tests run as root."""
    path = Path(tempfile.mkdtemp(prefix="fcgikit-cgi-test-"))
    path.chmod(0o755)
    return path


def docroot_with_scripts() -> tuple[Path, Path]:
    """(TOP, TOP/www) in a new world-readable tree, the test scripts in TOP/www/cgi-bin."""
    top = world_readable_tree()
    docroot = top / "www"
    docroot.mkdir()
    docroot.chmod(0o755)
    copy_scripts(docroot)
    return top, docroot


def copy_scripts(docroot: Path) -> Path:
    """tests/cgi-bin copied to DOCROOT/cgi-bin (so the checkout's location does not matter)."""
    target = docroot / "cgi-bin"
    shutil.copytree(SCRIPTS, target)
    target.chmod(0o755)
    return target


def wait_for_unix_socket(path: str, process: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}:\n{read(log)}")
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {path} within {timeout}s:\n{read(log)}")


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class Process:
    """A gateway process on a Unix socket in `workdir`, its stderr in a log file."""

    started = 0

    def __init__(self, argv: list[str], workdir: Path, name: str) -> None:
        Process.started += 1
        name = f"{name}-{Process.started}"   # several gateways may share a workdir
        self.socket = str(workdir / f"{name}.sock")
        self.log_path = workdir / f"{name}.log"
        self.argv = [arg.replace("{socket}", self.socket) for arg in argv]
        self.process: subprocess.Popen | None = None
        self.pass_fds: tuple[int, ...] = ()  # descriptors the gateway inherits, as from a careless parent

    def start(self) -> Process:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=log, start_new_session=True,
                                            pass_fds=self.pass_fds)
        wait_for_unix_socket(self.socket, self.process, self.log_path)
        os.chmod(self.socket, 0o666)
        return self

    def log(self) -> str:
        return read(self.log_path)

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """The log once it holds `text` (logging may lag what it reports), else as it is."""
        deadline = time.monotonic() + timeout
        while text not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.log()

    def request(self, params: dict, stdin: bytes = b"", timeout: float = 20.0):
        return fcgi_request(self.socket, params, stdin=stdin, timeout=timeout)

    def stop(self) -> None:
        """The whole process group (fcgiwrap's preforked children outlive their parent otherwise)."""
        if self.process is not None:
            stop_group(self.process)

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_group(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process started with start_new_session (a manager, a gateway, a front end) and
    its whole group: SIGTERM to the group, up to `timeout` seconds for the leader to exit,
    then SIGKILL to whatever is left of the group (children that outlived it, or it)."""
    signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    signal_group(process.pid, signal.SIGKILL)
    process.wait()


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)   # started with start_new_session: the group is ours alone
    except ProcessLookupError:
        pass


def two_free_ports() -> tuple[int, int]:
    """Two distinct free ports (free_port() twice in a row may give the same one)."""
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def our_gateway(workdir: Path, root: Path, *extra: str, children: int = 3) -> Process:
    argv = [sys.executable, "-m", "fcgikit.cgi", "-n", "-s", "{socket}", "-M", "0666",
            "-F", str(children), "--root", str(root), *extra]
    return Process(argv, workdir, "fcgikit-cgi")


def fcgiwrap(workdir: Path, children: int = 2) -> Process:
    binary = shutil.which("fcgiwrap") or "/usr/sbin/fcgiwrap"
    # -f: the program's stderr goes over FastCGI, as ours does.
    return Process([binary, "-f", "-c", str(children), "-s", "unix:{socket}"], workdir, "fcgiwrap")


def params_for(root: Path, script_name: str, query: str = "", method: str = "GET", **extra: str) -> dict:
    """The params nginx's usual config sends for /cgi-bin/NAME under document root `root.parent`."""
    docroot = str(root.parent)
    return {
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "test", "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": method, "QUERY_STRING": query, "REQUEST_URI": script_name,
        "DOCUMENT_ROOT": docroot, "SCRIPT_NAME": script_name,
        "SCRIPT_FILENAME": docroot + script_name, "CONTENT_TYPE": "", "CONTENT_LENGTH": "",
        **extra,
    }


def pid_is_gone(pid: int) -> bool:
    """No such process, or only its zombie (dead, waiting for whoever adopted it to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it vanished between open() and read()
        return True
    return state in ("Z", "X")
