"""A CGI program runs under the gateway's uid: it must still not read the
environment, memory or descriptors of the gateway processes or their manager
(issue 12 point 6). They are non-dumpable (PR_SET_DUMPABLE 0), which makes
their /proc entries root's.

Root reads every /proc entry whatever the flag, so when the tests run as root
the gateway runs under a throwaway uid (setpriv), and the probing program with
it, as in the images (uid 10001 for both)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fcgikit.fastcgi.client import fcgi_request
from fcgikit.testing import free_port, wait_for_port

from .cgi_support import Process, params_for, stop_group, wait_for_unix_socket

pytestmark = pytest.mark.integration

THROWAWAY_UID = 10001
SECRET = "SECRET_TOKEN=s3cr3t-of-the-gateway-4711"

# Run by the gateway as a CGI program: tries every way in, prints what it got as JSON.
PROBE = r'''#!/usr/bin/python3
import json, os, sys

def attempt(what, read):
    try:
        data = read()
        return {"what": what, "got": data.decode("latin-1") if isinstance(data, bytes) else str(data)}
    except OSError as exc:
        return {"what": what, "error": exc.strerror}

def read_file(path, size=-1):
    with open(path, "rb") as f:
        return f.read(size)

def read_mem(pid):
    with open(f"/proc/{pid}/maps") as maps:
        start = int(maps.readline().split("-")[0], 16)
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(start)
        return mem.read(64)

def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])

gateway = os.getppid()
manager = parent_of(gateway)
found = []
for name in os.listdir("/proc"):
    if name.isdigit() and int(name) != os.getpid():
        result = attempt(f"/proc/{name}/environ", lambda: read_file(f"/proc/{name}/environ"))
        if "got" in result:
            found.append(result)
probes = {"uid": os.getuid(), "gateway": gateway, "manager": manager,
          "gateway_uid": open(f"/proc/{gateway}/status").read().split("Uid:")[1].split()[0],
          "all_environ_read": found, "by_pid": []}
for pid in (gateway, manager):
    probes["by_pid"].append(attempt(f"/proc/{pid}/environ", lambda: read_file(f"/proc/{pid}/environ")))
    probes["by_pid"].append(attempt(f"/proc/{pid}/mem", lambda: read_mem(pid)))
    probes["by_pid"].append(attempt(f"/proc/{pid}/fd", lambda: os.listdir(f"/proc/{pid}/fd")))
    probes["by_pid"].append(attempt(f"/proc/{pid}/cmdline", lambda: read_file(f"/proc/{pid}/cmdline")))
own = attempt("/proc/self/environ", lambda: read_file("/proc/self/environ"))
probes["own_environ_readable"] = "got" in own and "GATEWAY_INTERFACE=CGI/1.1" in own["got"]
sys.stdout.write("Content-Type: application/json\r\n\r\n" + json.dumps(probes))
'''


def as_throwaway_user(argv: list[str]) -> list[str]:
    """argv run under THROWAWAY_UID when we are root (else as we are: already not root)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to run the gateway as a non-root user")
    return [setpriv, f"--reuid={THROWAWAY_UID}", f"--regid={THROWAWAY_UID}", "--clear-groups", *argv]


def python_for() -> str:
    """An interpreter the throwaway uid may run (pyenv's lives under root's home)."""
    if os.geteuid() != 0 or subprocess.run(as_throwaway_user([sys.executable, "-c", "0"]),
                                           capture_output=True).returncode == 0:
        return sys.executable
    return "/usr/bin/python3"


def source_dir() -> str:
    import fcgikit
    return str(Path(fcgikit.__file__).resolve().parent.parent)


@pytest.fixture()
def tree():
    top = Path(tempfile.mkdtemp(prefix="fcgikit-isolation-"))
    top.chmod(0o1777)      # the throwaway user creates its socket here
    root = top / "www" / "cgi-bin"
    root.mkdir(parents=True)
    for path in (top / "www", root):
        path.chmod(0o755)
    probe = root / "probe.py"
    probe.write_text(PROBE)
    probe.chmod(0o755)
    yield top, root
    shutil.rmtree(top, ignore_errors=True)


def secret_env() -> dict:
    name, value = SECRET.split("=", 1)
    return {**os.environ, name: value, "PYTHONPATH": source_dir()}


def test_a_cgi_program_cannot_read_the_gateway_or_its_manager(tree):
    top, root = tree
    gateway = Process(as_throwaway_user([python_for(), "-m", "fcgikit.cgi", "-n", "-s", "{socket}", "-F", "2",
                                         "--root", str(root), "--timeout", "10"]), top, "isolated-cgi")
    env = secret_env()
    with open(gateway.log_path, "wb") as log:
        gateway.process = subprocess.Popen(gateway.argv, stdout=log, stderr=log, start_new_session=True, env=env)
    try:
        wait_for_unix_socket(gateway.socket, gateway.process, gateway.log_path)
        response = fcgi_request(gateway.socket, params_for(root, "/cgi-bin/probe.py"), timeout=20)
        status, _, body = response.http()
        assert status == 200, (body, gateway.log())
        probes = json.loads(body)
        # The setting this test is about: the program runs under the gateway's own uid.
        assert str(probes["uid"]) == probes["gateway_uid"]
        assert probes["manager"] == gateway.process.pid, probes
        assert probes["own_environ_readable"], probes   # the program itself is unaffected
        assert SECRET.encode() not in body, probes
        assert probes["all_environ_read"] == [] or all(
            "SECRET_TOKEN" not in item["got"] for item in probes["all_environ_read"]), probes
        for attempt in probes["by_pid"]:
            if attempt["what"].endswith("/cmdline"):
                assert "got" in attempt, attempt   # cmdline stays public (ps works)
            else:
                assert "error" in attempt and "got" not in attempt, probes
    finally:
        gateway.stop()


@pytest.mark.parametrize("front_end", ["serve", "spawn"])
def test_serve_and_spawn_managers_are_not_readable_by_their_uid(tree, front_end):
    """The managers of fcgikit.serve and fcgikit.spawn (and serve's workers): a
    process under the same uid reads none of their environments."""
    top, _ = tree
    port = free_port()
    apps = str(Path(__file__).resolve().parents[2] / "apps")
    python = python_for()
    if front_end == "serve":
        argv = [python, "-m", "fcgikit.serve", "-n", "-a", "127.0.0.1", "-p", str(port), "-F", "2",
                "--chdir", apps, "hello_wsgi:app"]
    else:
        # Debian's python3 as the exec'd program: the throwaway uid may not look into root's home.
        argv = [python, "-m", "fcgikit.spawn", "-n", "-a", "127.0.0.1", "-p", str(port), "-F", "1", "--",
                "/usr/bin/python3", os.path.join(apps, "hello_accept.py")]
    log_path = top / f"{front_end}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(as_throwaway_user(argv), stdout=log, stderr=log, start_new_session=True,
                                   env=secret_env())
    try:
        wait_for_port("127.0.0.1", port, timeout=15, process=process)
        time.sleep(0.3)   # the children are forked
        reader = ("import os, sys\n"
                  "for pid in map(int, sys.argv[1:]):\n"
                  "    try:\n"
                  "        print(pid, open(f'/proc/{pid}/environ', 'rb').read().count(b'SECRET_TOKEN'))\n"
                  "    except OSError as exc:\n"
                  "        print(pid, exc.strerror)\n")
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert children, log_path.read_text()
        result = subprocess.run(as_throwaway_user([python, "-c", reader, str(process.pid), *children]),
                                capture_output=True, text=True, timeout=20)
        lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
        assert lines[str(process.pid)] == "Permission denied", (result, log_path.read_text())
        if front_end == "serve":   # the Python workers too (spawn's exec'd program is the app's own)
            assert all(lines[child] == "Permission denied" for child in children), lines
    finally:
        stop_group(process)
