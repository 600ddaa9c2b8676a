"""python3 -m fcgikit.cgi as a real process, driven by a FastCGI client (what nginx
would send, and what nginx would never send): confinement, timeout, max-procs."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from fcgikit.fastcgi import ClientConnection, ProtocolError

from .cgi_support import docroot_with_scripts, our_gateway, params_for, pid_is_gone

pytestmark = pytest.mark.integration

# Files that would create the marker if they ever ran.
TOUCH = "#!/bin/sh\ntouch '{marker}'\nprintf 'Content-Type: text/plain\\n\\nran\\n'\n"
HOSTILE_NAMES = [
    "touch-marker.sh;touch x",
    "$(touch-marker.sh)",
    "`touch-marker.sh`",
    "touch-marker.sh\ntouch x",
    "touch-marker.sh|sh",
]


@pytest.fixture(scope="module")
def tree():
    """DOCROOT/cgi-bin with the test scripts, hostile file names, a symlink out, and a marker dir."""
    top, docroot = docroot_with_scripts()
    root = docroot / "cgi-bin"
    markers = top / "markers"
    markers.mkdir()
    markers.chmod(0o777)
    outside = top / "outside"
    outside.mkdir()
    outside.chmod(0o755)
    evil = outside / "evil.sh"
    evil.write_text(TOUCH.format(marker=markers / "evil"))
    evil.chmod(0o755)
    (root / "escape.sh").symlink_to(evil)
    (root / "escape-dir").symlink_to(outside)
    for index, name in enumerate(HOSTILE_NAMES):
        path = root / name
        path.write_text(TOUCH.format(marker=markers / f"hostile-{index}"))
        path.chmod(0o755)
    plain = root / "not-executable.sh"
    plain.write_text(TOUCH.format(marker=markers / "plain"))
    plain.chmod(0o644)
    private = root / "private"        # root's only: the gateway (as nobody) may not enter it
    private.mkdir(mode=0o700)
    (private / "touch.sh").write_text(TOUCH.format(marker=markers / "private"))
    (private / "touch.sh").chmod(0o755)
    (root / "whoami.sh").write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nuid=%s\\n' \"$(id -u)\"\n")
    (root / "whoami.sh").chmod(0o755)
    yield root, markers
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(tree):
    root, _ = tree
    workdir = root.parent.parent
    with our_gateway(workdir, root, "--timeout", "3", "--max-procs", "2", "--queue-timeout", "1.5",
                     children=4) as gw:
        yield gw


def http(response):
    return response.http()


def assert_nothing_ran(markers: Path, gateway) -> None:
    assert list(markers.iterdir()) == [], f"a refused program ran!\n{gateway.log()}"


def test_positive_control_the_marker_script_does_run(tree, gateway):
    root, markers = tree
    params = params_for(root, "/cgi-bin/touch-marker.sh", MARKER_FILE=str(markers / "control"))
    status, _, body = http(gateway.request(params))
    assert (status, body) == (200, b"touched\n"), gateway.log()
    assert (markers / "control").exists()
    (markers / "control").unlink()


@pytest.mark.parametrize("script_filename, script_name", [
    ("{root}/../../../bin/sh", "/cgi-bin/../../../bin/sh"),     # .. segments
    ("{root}/%2e%2e/%2e%2e/%2e%2e/bin/sh", "/cgi-bin/%2e%2e/%2e%2e/%2e%2e/bin/sh"),   # never decoded
    ("{root}/%2e%2e%2f%2e%2e%2f%2e%2e%2fbin%2fsh", "/cgi-bin/%2e%2e%2f%2e%2e%2f%2e%2e%2fbin%2fsh"),
    ("/bin/sh", "/cgi-bin/sh"),                                   # outside the root altogether
    ("{root}/escape.sh", "/cgi-bin/escape.sh"),                   # symlink out of the root
    ("{root}/escape-dir/evil.sh", "/cgi-bin/escape-dir/evil.sh"),  # through a symlinked directory
    ("{root}/not-executable.sh", "/cgi-bin/not-executable.sh"),
    ("{root}", "/cgi-bin/"),                                      # a directory
    ("", "/cgi-bin/../../../bin/sh"),                             # no SCRIPT_FILENAME: DOCUMENT_ROOT+SCRIPT_NAME
    ("", "/cgi-bin/escape.sh"),
] + [("{root}/" + name, "/cgi-bin/" + name) for name in HOSTILE_NAMES])
def test_traversal_and_injection_are_refused_and_run_nothing(tree, gateway, script_filename, script_name):
    root, markers = tree
    params = params_for(root, script_name, method="POST", MARKER_FILE=str(markers / "ran"))
    params["SCRIPT_FILENAME"] = script_filename.format(root=root)
    if not params["SCRIPT_FILENAME"]:
        del params["SCRIPT_FILENAME"]
    body = f"touch {markers}/shell\n".encode()      # what /bin/sh would do with its stdin
    params["CONTENT_LENGTH"] = str(len(body))
    status, _, text = http(gateway.request(params, stdin=body))
    assert status in (403, 404), (status, text, gateway.log())
    assert str(root).encode() not in text     # the client learns no path
    time.sleep(0.1)
    assert_nothing_ran(markers, gateway)


def test_programs_run_as_nobody_when_the_gateway_is_root(tree, gateway):
    if os.geteuid() != 0:
        pytest.skip("the gateway changes user only when it runs as root")
    root, _ = tree
    status, _, body = http(gateway.request(params_for(root, "/cgi-bin/whoami.sh")))
    assert (status, body) == (200, b"uid=65534\n"), gateway.log()


def test_directory_the_gateway_may_not_enter_is_forbidden(tree, gateway):
    if os.geteuid() != 0:
        pytest.skip("needs the gateway to run as nobody, so only when the tests run as root")
    root, markers = tree
    status, _, _ = http(gateway.request(params_for(root, "/cgi-bin/private/touch.sh")))
    assert status == 403, gateway.log()
    assert_nothing_ran(markers, gateway)


def test_timeout_kills_the_program_and_its_grandchild_while_others_are_served(tree, gateway):
    root, _ = tree
    result = {}

    def run_loop():
        started = time.monotonic()
        result["response"] = gateway.request(params_for(root, "/cgi-bin/loop.sh"), timeout=30)
        result["elapsed"] = time.monotonic() - started

    looping = threading.Thread(target=run_loop)
    looping.start()
    time.sleep(0.3)
    started = time.monotonic()
    status, _, body = http(gateway.request(params_for(root, "/cgi-bin/env.sh", "during=loop")))
    assert status == 200 and b"query=during=loop" in body
    assert time.monotonic() - started < 1.5, "the gateway did not serve others while a program looped"
    assert looping.is_alive(), "loop.sh ended before the timeout"
    looping.join(30)
    response = result["response"]
    status, _, body = http(response)
    assert status == 504, (response.stdout, gateway.log())
    assert 2.9 <= result["elapsed"] < 9, result["elapsed"]
    grandchild = int(response.stderr.split(b"grandchild=")[1].split()[0])
    deadline = time.monotonic() + 5
    while not pid_is_gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_is_gone(grandchild), f"grandchild {grandchild} survived the timeout"


def timed_slow_request(gateway, root: Path, results: dict, key: str, seconds: str) -> None:
    """slow.sh running `seconds`; results[key] = (status, how long the answer took)."""
    started = time.monotonic()
    response = gateway.request(params_for(root, "/cgi-bin/slow.sh", seconds), timeout=30)
    results[key] = (response.http()[0], time.monotonic() - started)


def take_both_slots(gateway, root: Path, results: dict, seconds: str) -> list[threading.Thread]:
    """Two programs running `seconds` hold the gateway's two --max-procs slots."""
    holders = [threading.Thread(target=timed_slow_request, args=(gateway, root, results, f"holder{i}", seconds))
               for i in range(2)]
    for thread in holders:
        thread.start()
        time.sleep(0.15)   # one connection at a time, so each lands in an idle gateway process
    return holders


def test_max_procs_queues_then_refuses_with_503(tree, gateway):
    root, _ = tree
    results = {}
    # Two slots: two long programs take them; a third request waits, then gives up.
    holders = take_both_slots(gateway, root, results, "2.5")
    time.sleep(0.2)
    timed_slow_request(gateway, root, results, "refused", "0")
    for thread in holders:
        thread.join(30)
    assert results["holder0"][0] == results["holder1"][0] == 200, (results, gateway.log())
    status, elapsed = results["refused"]
    assert status == 503, (results, gateway.log())
    assert 1.3 <= elapsed < 4, f"503 should come after the 1.5 s queue timeout, came after {elapsed:.2f}s"


def test_max_procs_queued_request_runs_once_a_slot_frees(tree, gateway):
    root, _ = tree
    results = {}
    holders = take_both_slots(gateway, root, results, "1")
    time.sleep(0.1)
    timed_slow_request(gateway, root, results, "queued", "0")
    for thread in holders:
        thread.join(30)
    status, elapsed = results["queued"]
    assert status == 200, (results, gateway.log())
    assert elapsed >= 0.5, f"the third program should have waited for a slot ({elapsed:.2f}s)"


def test_no_header_block_is_502_with_the_reason_logged(tree, gateway):
    root, _ = tree
    response = gateway.request(params_for(root, "/cgi-bin/no-header.sh"))
    assert response.http()[0] == 502
    assert b"invalid response" in response.stderr
    assert "no-header.sh: invalid response" in gateway.wait_for_log("no-header.sh: invalid response")


def test_stderr_lines_are_tagged_with_the_script(tree, gateway):
    root, _ = tree
    response = gateway.request(params_for(root, "/cgi-bin/stderr.sh"))
    assert response.http()[2] == b"ok\n"
    assert response.stderr == b"[/cgi-bin/stderr.sh] first complaint\n[/cgi-bin/stderr.sh] second complaint\n"
    assert "[/cgi-bin/stderr.sh] second complaint" in gateway.wait_for_log("second complaint")


def test_program_that_exits_before_its_body_is_sent_does_not_wedge_the_gateway(tree, gateway):
    root, _ = tree
    body = b"z" * 50_000   # the client sends it all before reading; fits the socket buffers
    for _ in range(3):
        params = params_for(root, "/cgi-bin/ignore-stdin.sh", method="POST", CONTENT_LENGTH=str(len(body)))
        status, _, text = http(gateway.request(params, stdin=body, timeout=10))
        assert (status, text) == (200, b"I did not read your 50000 bytes\n"), gateway.log()
    assert http(gateway.request(params_for(root, "/cgi-bin/env.sh")))[0] == 200


def test_gateway_environment_does_not_leak(tree):
    root, _ = tree
    workdir = root.parent.parent
    gateway = our_gateway(workdir, root, children=1)
    gateway.argv[0:0] = ["env", "GATEWAY_SECRET=hunter2"]
    with gateway:
        env_dump = root / "dump-env.sh"
        env_dump.write_text("#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\nenv\n")
        env_dump.chmod(0o755)
        status, _, body = http(gateway.request(params_for(root, "/cgi-bin/dump-env.sh")))
        assert status == 200 and b"GATEWAY_INTERFACE=CGI/1.1" in body
        assert b"hunter2" not in body and b"GATEWAY_SECRET" not in body
        assert b"PATH=/usr/local/bin:/usr/bin:/bin\n" in body


def test_a_program_inherits_only_its_three_pipes(tree):
    """Nothing the gateway holds leaks into a program: not its sockets, not a
    descriptor its own parent left open (here a pipe end passed on purpose)."""
    root, _ = tree
    gateway = our_gateway(root.parent.parent, root, children=1)
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_w, True)
    gateway.pass_fds = (leak_w,)
    script = root / "list-fds.py"
    # Debian's python3: programs run as nobody, who may not enter /root (pyenv's home).
    script.write_text("#!/usr/bin/python3\n"
                      "import os\n"
                      "names = os.listdir('/proc/self/fd')  # its own descriptor is closed once it returns\n"
                      "inherited = []\n"
                      "for fd in sorted(int(name) for name in names):\n"
                      "    try:\n"
                      "        inherited.append((fd, os.readlink(f'/proc/self/fd/{fd}')))\n"
                      "    except OSError:\n"
                      "        pass\n"
                      "print('Content-Type: text/plain')\n"
                      "print()\n"
                      "print(inherited)\n")
    script.chmod(0o755)
    try:
        with gateway:
            for _ in range(3):  # and again from the same gateway process
                status, _, body = http(gateway.request(params_for(root, "/cgi-bin/list-fds.py")))
                assert status == 200, gateway.log()
                inherited = eval(body.decode())  # [(fd, target)]: our own repr, not untrusted input
                assert [fd for fd, _ in inherited] == [0, 1, 2], inherited
                assert all(target.startswith("pipe:") for _, target in inherited), inherited
    finally:
        os.close(leak_r)
        os.close(leak_w)


def test_program_is_killed_when_the_web_server_goes_away(tree):
    """No --timeout here: only the closed connection can end the endless stream."""
    root, _ = tree
    with our_gateway(root.parent.parent, root, children=1) as gateway:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(gateway.socket)
            client = ClientConnection()
            sock.sendall(client.request(1, params_for(root, "/cgi-bin/stream.sh"), b""))
            seen = b""
            while b"tick" not in seen:
                for event in client.receive(sock.recv(65536)):
                    seen += getattr(event, "stdout", b"") or b""
        pid = int(seen.split(b"pid=")[1].split()[0])
        assert not pid_is_gone(pid)
        deadline = time.monotonic() + 5
        while not pid_is_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid_is_gone(pid), f"stream.sh ({pid}) outlived its web server\n{gateway.log()}"
        message = "stream.sh: lost the web server, killed the program"
        assert message in gateway.wait_for_log(message)


def test_big_output_before_reading_the_body_does_not_deadlock(tree, gateway):
    # The client sends the whole body before it reads anything (as nginx may);
    # the program prints 256 KiB before it reads a byte. fcgiwrap deadlocks here.
    root, _ = tree
    body = b"b" * 1_000_000
    params = params_for(root, "/cgi-bin/big-before-read.sh", method="POST", CONTENT_LENGTH=str(len(body)))
    status, _, text = http(gateway.request(params, stdin=body, timeout=20))
    assert status == 200, gateway.log()
    assert text.endswith(b"body=1000000\n") and len(text) == 4096 * 64 + len(b"body=1000000\n")


# setsid() takes a process out of the program's group, out of reach of killpg.
ESCAPES = {
    "setsid-child": (
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    report('escaped')\n"
        "    time.sleep(1000)\n"
    ),
    "double-fork": (   # the middle process exits: the escaped one is orphaned at once
        "middle = os.fork()\n"
        "if middle == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        report('escaped')\n"
        "        time.sleep(1000)\n"
        "    os._exit(0)\n"
        "os.waitpid(middle, 0)\n"
    ),
}
ESCAPING_PROGRAM = (
    "#!/usr/bin/python3\n"
    "import os, sys, time\n"
    "def report(name):\n"
    "    sys.stderr.write(f'{name}={os.getpid()}\\n')\n"
    "    sys.stderr.flush()\n"
    "report('program')\n"
    "{escape}"
    "time.sleep(1000)\n"
)


def write_escaping_program(root: Path, how: str) -> str:
    name = f"escape-{how}.py"
    path = root / name
    path.write_text(ESCAPING_PROGRAM.replace("{escape}", ESCAPES[how]))
    path.chmod(0o755)
    return f"/cgi-bin/{name}"


def reported_pid(text: str, name: str) -> int:
    return int(text.split(f"{name}=")[1].split()[0])


def wait_until_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pid_is_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid_is_gone(pid)


def kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("how", sorted(ESCAPES))
def test_timeout_kills_a_process_that_left_the_program_group(tree, gateway, how):
    root, _ = tree
    response = gateway.request(params_for(root, write_escaping_program(root, how)), timeout=30)
    status, _, _ = http(response)
    assert status == 504, (response.stdout, gateway.log())
    escaped = reported_pid(response.stderr.decode(), "escaped")
    try:
        assert wait_until_gone(escaped), f"{how}: process {escaped} outlived the timeout\n{gateway.log()}"
    finally:
        kill_if_alive(escaped)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


@pytest.mark.parametrize("how", sorted(ESCAPES))
def test_a_killed_gateway_process_takes_its_program_along(tree, how):
    root, _ = tree
    script_name = write_escaping_program(root, how)
    with our_gateway(root.parent.parent, root, children=1) as gateway:
        outcome: list[object] = []

        def wait_for_the_answer() -> None:
            try:
                outcome.append(gateway.request(params_for(root, script_name), timeout=30))
            except (ProtocolError, OSError) as error:
                outcome.append(error)

        waiting = threading.Thread(target=wait_for_the_answer)
        waiting.start()
        log = gateway.wait_for_log("escaped=", timeout=10)
        program, escaped = reported_pid(log, "program"), reported_pid(log, "escaped")
        try:
            gateway_process = parent_of(program)
            assert gateway_process != gateway.process.pid  # a gateway child, not the manager
            os.kill(gateway_process, 9)
            assert wait_until_gone(program), f"the program {program} outlived its gateway\n{gateway.log()}"
            assert wait_until_gone(escaped), f"{how}: {escaped} outlived the gateway\n{gateway.log()}"
        finally:
            kill_if_alive(program)
            kill_if_alive(escaped)
        waiting.join(30)
        # the web server sees the connection end without an answer (no END_REQUEST), not a hang
        assert len(outcome) == 1 and isinstance(outcome[0], ProtocolError | OSError), outcome
        status, _, body = http(gateway.request(params_for(root, "/cgi-bin/env.sh", "after=kill")))
        assert status == 200 and b"query=after=kill" in body  # the pool replaced it


def test_a_background_job_of_a_program_that_ended_by_itself_is_let_be(tree, gateway):
    """As under fcgiwrap: only a program that is killed takes what it started along."""
    root, _ = tree
    path = root / "background-job.py"
    path.write_text(
        "#!/usr/bin/python3\n"
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    os.close(1)\n"
        "    sys.stderr.write(f'job={os.getpid()}\\n')\n"
        "    os.close(2)\n"
        "    time.sleep(30)\n"
        "    os._exit(0)\n"
        "sys.stdout.write('Content-Type: text/plain\\n\\nstarted\\n')\n")
    path.chmod(0o755)
    response = gateway.request(params_for(root, "/cgi-bin/background-job.py"))
    status, _, body = http(response)
    assert status == 200 and body == b"started\n", (response.stdout, gateway.log())
    job = reported_pid(response.stderr.decode(), "job")
    try:
        time.sleep(0.5)
        assert not pid_is_gone(job), "a background job was killed though its program ended normally"
    finally:
        kill_if_alive(job)
