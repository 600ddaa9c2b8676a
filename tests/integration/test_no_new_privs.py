"""Every process manager (fcgikit.serve, fcgikit.spawn, fcgikit.cgi) sets no-new-privileges
on itself at start (PR_SET_NO_NEW_PRIVS) when asked (`--no-new-privileges`, or
FCGIKIT_NO_NEW_PRIVILEGES=1, which the worker image sets), so it holds on every engine,
including Swarm services, which cannot ask Docker for it: the manager and everything it forks
or executes report `NoNewPrivs: 1` in /proc/PID/status. Not asked, a manager leaves it as it
found it (a setuid helper such as sendmail keeps working, as under spawn-fcgi)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fcgikit.testing import free_port, wait_for_port

from .cgi_support import stop_group

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(2) is Linux's")]

APPS = Path(__file__).resolve().parents[2] / "apps"


def no_new_privs(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NoNewPrivs:"):
            return line.split()[1]
    return "?"


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def manager_argv(front_end: str, port: int) -> list[str]:
    common = ["-n", "-a", "127.0.0.1", "-p", str(port)]
    if front_end == "serve":
        return [sys.executable, "-m", "fcgikit.serve", *common, "-F", "2", "--chdir", str(APPS), "hello_wsgi:app"]
    if front_end == "spawn":
        return [sys.executable, "-m", "fcgikit.spawn", *common, "-F", "1", "--",
                sys.executable, str(APPS / "hello_accept.py")]
    return [sys.executable, "-m", "fcgikit.cgi", *common, "-F", "1", "--root", str(APPS / "cgi-bin")]


def already_set() -> bool:
    return no_new_privs(os.getpid()) == "1"  # the test runner itself may run with it (a container)


@pytest.mark.parametrize("front_end, asked", [("serve", "flag"), ("spawn", "environment"), ("cgi", "flag"),
                                              ("cgi", "environment"), ("spawn", "not asked")])
def test_managers_and_their_children_cannot_gain_privileges(front_end, asked, tmp_path):
    if asked == "not asked" and already_set():
        pytest.skip("this test runner already has no-new-privileges: its children inherit it")
    port = free_port()
    log_path = tmp_path / "manager.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("FCGIKIT_NO_NEW_PRIVILEGES", None)
    argv = manager_argv(front_end, port)
    if asked == "flag":
        argv.insert(argv.index("-n"), "--no-new-privileges")
    elif asked == "environment":
        env["FCGIKIT_NO_NEW_PRIVILEGES"] = "1"
    expected = "0" if asked == "not asked" else "1"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=20, process=process)
        deadline = time.monotonic() + 10
        while not children(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        forked = children(process.pid)
        assert forked, log_path.read_text()
        assert no_new_privs(process.pid) == expected, log_path.read_text()
        assert [no_new_privs(child) for child in forked] == [expected] * len(forked)
    finally:
        stop_group(process)
