"""fcgikit.spawn against the real thing: a libfcgi C program compiled here, real
nginx in front, real signals. Every pool binds port 0 on 127.0.0.1 and reports
its real port in its status file."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from fcgikit.fastcgi.protocol import ProtocolError
from fcgikit.testing.nginx import Nginx
from tests.integration.spawn_support import wait_for

pytestmark = pytest.mark.integration


# -- helpers -------------------------------------------------------------------

def nginx_for(port: int) -> Nginx:
    return Nginx(f"location / {{ include fastcgi_params; fastcgi_pass 127.0.0.1:{port}; }}")


def get(ngx: Nginx, path: str, timeout: float = 15.0) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def parse_hello(body: str) -> dict[str, str]:
    # "hello pid=123 requests=4 uri=/x"
    assert body.startswith("hello "), body
    return dict(part.split("=", 1) for part in body.split()[1:])


class Load:
    """A bounded client: `threads` threads GET `path` until stopped or `limit` s."""

    def __init__(self, ngx: Nginx, path: str, threads: int = 4, limit: float = 20.0):
        self.ngx, self.path, self.limit = ngx, path, limit
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok: list[dict] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                status, body = get(self.ngx, self.path)
                outcome = parse_hello(body) if status == 200 else f"HTTP {status}: {body[:200]}"
            except Exception as error:  # every failure is counted, none ends the run
                outcome = f"{type(error).__name__}: {error}"
            with self.lock:
                (self.ok if isinstance(outcome, dict) else self.failures).append(outcome)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)

    def count(self) -> int:
        with self.lock:
            return len(self.ok) + len(self.failures)


# -- nginx in front of a libfcgi program ----------------------------------------

def test_nginx_in_front_of_two_libfcgi_children(pools, hello_fcgi):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2"], [hello_fcgi])
    status = pool.wait_children(2)
    with nginx_for(pool.port) as ngx:
        # 8 requests that each take 200 ms, 8 at a time: both children must serve.
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(get(ngx, f"/hello/{i}?sleep=200")))
                   for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(results) == 8, ngx.error_log()
        served = [parse_hello(body) for code, body in results if code == 200]
        assert len(served) == 8, f"{results}\n{ngx.error_log()}\n{pool.log()}"
        by_pid = Counter(reply["pid"] for reply in served)
        assert set(by_pid) == {str(pid) for pid in pool.pids()} and len(by_pid) == 2
        # Each child counts its own requests: its replies say 1, 2, ... in turn.
        for pid, count in by_pid.items():
            numbers = sorted(int(r["requests"]) for r in served if r["pid"] == pid)
            assert numbers == list(range(1, count + 1))
        assert {r["uri"] for r in served} == {f"/hello/{i}?sleep=200" for i in range(8)}
    assert status["pool"] == "hello_fcgi" and status["state"] == "running"


def test_kill_9_of_a_child_under_load(pools, hello_fcgi):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2"], [hello_fcgi])
    pool.wait_children(2)
    with nginx_for(pool.port) as ngx, Load(ngx, "/load?sleep=5", threads=4) as load:
        wait_for(lambda: load.count() >= 20, 10, "the load to run")
        victim = sorted(pool.pids())[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        status = pool.wait_children(2, timeout=5, extra=lambda s: victim not in
                                    {p["pid"] for p in s["processes"]})
        refilled_in = time.monotonic() - killed_at
        assert refilled_in < 1.0, f"pool refilled after {refilled_in:.2f}s\n{pool.log()}"
        assert status["restarts"] == 1
        before = load.count()
        wait_for(lambda: load.count() >= before + 40, 10, "requests after the kill")
    assert pool.process.poll() is None, pool.log()
    # Only the one request the killed child was serving may fail.
    assert len(load.failures) <= 1, load.failures
    with nginx_for(pool.port) as ngx:
        replies = [get(ngx, f"/after/{i}") for i in range(10)]
    assert all(code == 200 for code, _ in replies), replies
    assert {parse_hello(body)["pid"] for _, body in replies} <= {str(p) for p in pool.pids()}


def reload_under(pool, load, requests: int) -> dict:
    """SIGHUP once `load` has run `requests` requests; the status once the new
    generation is complete and has served as many again."""
    wait_for(lambda: load.count() >= requests, 15, "the load to run")
    pool.send(signal.SIGHUP)
    status = pool.wait_children(2, timeout=10, extra=lambda s: s["generation"] == 2)
    before = load.count()
    wait_for(lambda: load.count() >= before + requests, 15, "requests after the reload")
    return status


def test_sighup_under_load_replaces_every_child_and_fails_nothing(pools, hello_fcgi):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2", "--graceful-timeout", "10"], [hello_fcgi])
    old_pids = pool.wait_children(2) and pool.pids()
    with nginx_for(pool.port) as ngx, Load(ngx, "/reload?sleep=20", threads=6) as load:
        status = reload_under(pool, load, 30)
    assert load.failures == [], f"{load.failures[:5]}\n{ngx.error_log()}\n{pool.log()}"
    new_pids = {p["pid"] for p in status["processes"]}
    assert not new_pids & old_pids, (old_pids, new_pids)
    assert {p["generation"] for p in status["processes"]} == {2}
    served_by = {reply["pid"] for reply in load.ok}
    assert served_by & {str(p) for p in old_pids} and served_by & {str(p) for p in new_pids}


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(pools, hello_fcgi):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2", "--graceful-timeout", "10"], [hello_fcgi])
    pool.wait_children(2)
    port = pool.port
    with nginx_for(port) as ngx:
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(get(ngx, f"/slow/{i}?sleep=1500")))
                   for i in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # both requests are now inside the two children
        sent_at = time.monotonic()
        pool.send(signal.SIGTERM)
        assert pool.wait(15) == 0, pool.log()
        took = time.monotonic() - sent_at
        for thread in threads:
            thread.join(15)
    assert sorted(code for code, _ in results) == [200, 200], f"{results}\n{pool.log()}"
    assert took >= 0.7, f"exited after {took:.2f}s, before its requests could finish"
    assert "draining" in pool.log() and pool.status()["state"] == "stopped"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_child_still_busy_after_the_grace_period_is_killed(pools, hello_fcgi, tmp_path):
    # SIGUSR1 ignored (inherited through exec, libfcgi then leaves it alone): the
    # child cannot stop gracefully and must get SIGKILL when --graceful-timeout ends.
    stubborn = tmp_path / "stubborn.sh"
    stubborn.write_text(f"#!/bin/sh\ntrap '' USR1\nexec {hello_fcgi}\n")
    stubborn.chmod(0o755)
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "1", "--graceful-timeout", "1"], [str(stubborn)])
    pool.wait_children(1)
    with nginx_for(pool.port) as ngx:
        result = []
        thread = threading.Thread(target=lambda: result.append(get(ngx, "/long?sleep=8000")))
        thread.start()
        time.sleep(0.5)
        sent_at = time.monotonic()
        pool.send(signal.SIGTERM)
        assert pool.wait(10) == 0, pool.log()
        took = time.monotonic() - sent_at
        thread.join(15)
    assert 0.8 <= took < 5, f"stopped after {took:.1f}s\n{pool.log()}"
    assert "still running after its grace period: SIGKILL" in pool.log()
    assert result and result[0][0] == 502  # the request was cut, as the grace period says


WSGI_APP = """
import os
served = 0

def app(environ, start_response):
    global served
    served += 1
    body = f"hello pid={os.getpid()} requests={served} uri={environ['REQUEST_URI']}\\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def test_sighup_of_python_workers_behind_nginx_keepalive_fails_nothing(pools, tmp_path):
    # Our own worker (fcgikit.serve) under the manager, nginx keeping connections
    # to it: a reload must not fail one request either.
    (tmp_path / "hello_app.py").write_text(WSGI_APP)
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2", "--chdir", str(tmp_path), "hello_app:app"],
                 command=[sys.executable, "-m", "fcgikit.serve"])
    old_pids = pool.wait_children(2) and pool.pids()
    upstream = f"upstream workers {{ server 127.0.0.1:{pool.port}; keepalive 8; }}"
    location = "location / { include fastcgi_params; fastcgi_pass workers; fastcgi_keep_conn on; }"
    with Nginx(location, upstream) as ngx, Load(ngx, "/py", threads=6) as load:
        status = reload_under(pool, load, 200)
    assert load.failures == [], f"{load.failures[:5]}\n{ngx.error_log()[-3000:]}\n{pool.log()[-3000:]}"
    new_pids = {p["pid"] for p in status["processes"]}
    assert not new_pids & old_pids
    # A worker serves every idle kept-alive connection it holds: one new child may
    # carry all of nginx's cached connections, so only "the new ones serve" is certain.
    assert {r["pid"] for r in load.ok} & {str(p) for p in new_pids}


PHP_SCRIPT = """<?php
header("Content-Type: text/plain");
if (isset($_GET["sleep"])) { usleep((int)$_GET["sleep"] * 1000); }
echo "hello pid=" . getmypid() . " requests=0 uri=" . $_SERVER["REQUEST_URI"] . "\\n";
"""


def test_php_cgi_runs_unmodified_recycles_and_drains(pools, tmp_path):
    php_cgi = shutil.which("php-cgi")
    if php_cgi is None:
        pytest.fail("php-cgi is needed (./setup.sh installs it)")
    (tmp_path / "hello.php").write_text(PHP_SCRIPT)
    # --max-requests reaches php-cgi as PHP_FCGI_MAX_REQUESTS: it leaves after 2.
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "1", "--max-requests", "2"], [php_cgi])
    pool.wait_children(1)
    location = (f"root {tmp_path}; location / {{ include fastcgi_params; fastcgi_pass 127.0.0.1:{pool.port};"
                " fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;"
                " fastcgi_param REDIRECT_STATUS 200; }")
    with Nginx(location) as ngx:
        replies = [get(ngx, f"/hello.php?n={i}") for i in range(6)]
        assert [code for code, _ in replies] == [200] * 6, f"{replies}\n{ngx.error_log()}\n{pool.log()}"
        pids = [parse_hello(body)["pid"] for _, body in replies]
        assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5], pids
        assert pool.status()["restarts"] == 0 and "recycled after its requests" in pool.log()
        result = []
        thread = threading.Thread(target=lambda: result.append(get(ngx, "/hello.php?sleep=1000")))
        thread.start()
        time.sleep(0.4)
        pool.send(signal.SIGTERM)  # SIGUSR1 to php-cgi: it finishes the request, then leaves
        assert pool.wait(10) == 0, pool.log()
        thread.join(10)
        errors = ngx.error_log()
    assert result and result[0][0] == 200 and "uri=/hello.php?sleep=1000" in result[0][1], \
        f"{result}\n{errors[-2000:]}\n{pool.log()}"


def test_php_cgi_is_not_recycled_every_500_requests_by_default(pools, tmp_path):
    # php-cgi leaves after PHP_FCGI_MAX_REQUESTS requests, 500 when unset; with
    # --max-requests 0 (the default, "never") the manager sets it to 0.
    php_cgi = shutil.which("php-cgi")
    if php_cgi is None:
        pytest.fail("php-cgi is needed (./setup.sh installs it)")
    (tmp_path / "hello.php").write_text(PHP_SCRIPT)
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "1"], [php_cgi])
    pool.wait_children(1)
    location = (f"root {tmp_path}; location / {{ include fastcgi_params; fastcgi_pass 127.0.0.1:{pool.port};"
                " fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;"
                " fastcgi_param REDIRECT_STATUS 200; }")
    with Nginx(location) as ngx:
        connection = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=15)
        pids = Counter()
        try:
            for i in range(520):
                connection.request("GET", f"/hello.php?n={i}")
                response = connection.getresponse()
                body = response.read().decode()
                assert response.status == 200, f"{body}\n{ngx.error_log()}\n{pool.log()}"
                pids[parse_hello(body)["pid"]] += 1
        finally:
            connection.close()
    assert len(pids) == 1, f"php-cgi was replaced: requests per pid {dict(pids)}\n{pool.log()}"
    assert pool.status()["restarts"] == 0 and "recycled" not in pool.log() and "exited" not in pool.log(), pool.log()


# -- the pool without nginx ------------------------------------------------------

def test_ttin_and_ttou_change_the_number_of_children(pools, hello_fcgi):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2"], [hello_fcgi])
    pool.wait_children(2)
    pool.send(signal.SIGTTIN)
    status = pool.wait_children(3)
    assert status["children"]["target"] == 3
    pool.send(signal.SIGTTOU)
    pool.wait_children(2)
    pool.send(signal.SIGTTOU)
    status = pool.wait_children(1)
    assert status["children"]["target"] == 1 and len(status["processes"]) == 1
    pool.send(signal.SIGTTOU)  # never below one child
    time.sleep(0.3)
    assert pool.wait_children(1)["children"]["target"] == 1
    pool.send(signal.SIGINT)  # fast stop
    assert pool.wait(5) == 0, pool.log()
    assert "SIGINT: stopping 1 children" in pool.log()


def test_a_program_that_exits_at_once_makes_the_manager_give_up(pools):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2"], [shutil.which("false")])
    code = pool.wait(20)
    assert code == 1
    log = pool.log()
    assert "giving up: children die at boot" in log and "exited with status 1" in log
    assert pool.status()["state"] == "stopped"


def test_the_status_file_has_the_documented_fields(pools, hello_fcgi):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2", "--pool-name", "hello"], [hello_fcgi])
    status = pool.wait_children(2)
    assert {"version", "pool", "process_manager", "manager_pid", "state", "listen", "start_time", "start_since",
            "generation", "children", "accepted_conn", "listen_queue", "max_listen_queue",
            "listen_queue_len", "max_active_processes", "max_children_reached", "restarts", "timeouts", "slow_requests",
            "processes"} == set(status)
    assert status["pool"] == "hello" and status["manager_pid"] == pool.process.pid
    assert status["listen_queue"] == 0 and status["listen_queue_len"] == 1024
    assert set(status["children"]) == {"target", "total", "busy", "idle", "retiring"}
    for row in status["processes"]:
        assert {"pid", "slot", "generation", "state", "start_time", "start_since", "requests",
                "request", "last_seen_ago"} == set(row)
    # Rewritten every second even when nothing changes.
    later = wait_for(lambda: (s := pool.status()) and s["start_since"] >= status["start_since"] + 1 and s,
                     4, "a newer report", pool.log)
    assert later["children"]["total"] == 2
    printed = subprocess.run([sys.executable, "-m", "fcgikit.spawn.status", str(pool.status_path)],
                             capture_output=True, text=True, check=True).stdout
    assert "pool:                 hello" in printed and "total processes:      2" in printed


def test_a_full_pool_shows_in_the_listen_queue_and_max_children_reached(pools, hello_fcgi):
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "1"], [hello_fcgi])
    assert pool.wait_children(1)["max_children_reached"] == 0
    port = pool.port
    # One child, three requests of 0.6 s each: two wait in the accept queue.
    threads = [threading.Thread(target=fastcgi_get, args=(port, f"/queued/{i}?sleep=600"))
               for i in range(3)]
    for thread in threads:
        thread.start()
    status = wait_for(lambda: (s := pool.status()) and s["max_children_reached"] >= 1 and s, 5,
                      "the pool to be reported full", pool.log)
    for thread in threads:
        thread.join(15)
    assert status["max_listen_queue"] >= 1
    drained = pool.wait_children(1, extra=lambda s: s["listen_queue"] == 0)
    assert drained["max_listen_queue"] >= 1 and drained["max_children_reached"] >= 1


def test_bad_flags_exit_2_with_one_line_and_bind_nothing(hello_fcgi):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    for flags in (["-p", str(port), "-F", "0"], ["-p", str(port), "-s", "/tmp/x.sock"],
                  ["-p", str(port), "--nope"], ["-p", str(port), "-u", "no-such-user-xyz"]):
        done = subprocess.run([sys.executable, "-m", "fcgikit.spawn", "-n", "-a", "127.0.0.1", *flags,
                               "--", hello_fcgi], capture_output=True, text=True, timeout=20)
        assert done.returncode == 2, (flags, done.stderr)
        assert done.stderr.startswith("fcgikit.spawn: error:") and done.stderr.count("\n") == 1, done.stderr
        socket.create_server(("127.0.0.1", port)).close()  # still free: nothing was bound
    missing = subprocess.run([sys.executable, "-m", "fcgikit.spawn", "-n", "-p", str(port), "--",
                              "/no/such/program"], capture_output=True, text=True, timeout=20)
    assert missing.returncode == 2 and "program not found" in missing.stderr


def test_unix_socket_with_mode_behind_nginx_and_removed_on_exit(pools, hello_fcgi, tmp_path):
    path = tmp_path / "hello.sock"
    pool = pools(["-s", str(path), "-M", "0600", "-F", "1"], [hello_fcgi])
    status = pool.wait_children(1)
    assert status["listen"] == f"unix:{path}" and status["listen_queue"] == 0
    assert status["listen_queue_len"] == 1024
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with Nginx(f"location / {{ include fastcgi_params; fastcgi_pass unix:{path}; }}") as ngx:
        code, body = get(ngx, "/unix")
        assert code == 200 and parse_hello(body)["uri"] == "/unix", ngx.error_log()
    pool.send(signal.SIGTERM)
    assert pool.wait(10) == 0
    assert not path.exists()


def test_without_n_the_manager_daemonizes_and_writes_its_pid(hello_fcgi, tmp_path):
    pidfile, status_file, log = tmp_path / "spawn.pid", tmp_path / "status.json", tmp_path / "log"
    with open(log, "wb") as out:
        launcher = subprocess.run(
            [sys.executable, "-m", "fcgikit.spawn", "-a", "127.0.0.1", "-p", "0", "-F", "1",
             "-P", str(pidfile), "--status-file", str(status_file), "--", hello_fcgi],
            stdout=subprocess.PIPE, stderr=out, timeout=20)
    assert launcher.returncode == 0, log.read_text()
    pid = int(pidfile.read_text())
    try:
        assert f"manager started, pid {pid}" in launcher.stdout.decode()
        os.kill(pid, 0)  # the manager outlived the command that started it
        assert os.getsid(pid) != os.getsid(0)  # detached into a session of its own
        wait_for(lambda: status_file.exists(), 5, "the status file")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), 10, "the pid file to go", log.read_text)


def fastcgi_get(port: int, uri: str, source: str = "127.0.0.1"):
    from fcgikit.fastcgi.client import exchange, get_params
    from fcgikit.fastcgi.protocol import ClientConnection

    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        return exchange(sock, ClientConnection(), get_params(uri))


def test_allow_admits_only_the_listed_web_servers(pools, hello_fcgi):
    # libfcgi reads FCGI_WEB_SERVER_ADDRS, which --allow sets, and closes other connections.
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "1", "--allow", "127.0.0.2"], [hello_fcgi])
    pool.wait_children(1)
    allowed = fastcgi_get(pool.port, "/allowed", source="127.0.0.2")
    assert allowed.http()[0] == 200 and b"uri=/allowed" in allowed.http()[2]
    with pytest.raises((ProtocolError, OSError)):  # closed without an answer
        fastcgi_get(pool.port, "/refused", source="127.0.0.1")
    assert fastcgi_get(pool.port, "/again", source="127.0.0.2").http()[0] == 200


def test_children_run_as_the_user_given_with_u(pools, hello_fcgi, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can change the children's user")
    public = Path(tempfile.mkdtemp(prefix="fcgikit-spawn-"))  # nobody must reach the program
    try:
        public.chmod(0o755)
        program = public / "hello_fcgi"
        shutil.copy(hello_fcgi, program)
        socket_path = public / "hello.sock"
        pool = pools(["-s", str(socket_path), "-u", "nobody", "-g", "nogroup", "-d", str(public),
                      "-F", "1"], ["./hello_fcgi"])
        status = pool.wait_children(1)
        child = status["processes"][0]["pid"]
        wait_for(lambda: _uid_of(child) == 65534, 5, "the child to run as nobody", pool.log)
        owner = socket_path.stat()
        assert (owner.st_uid, owner.st_gid) == (65534, 65534)  # -U/-G default to -u/-g
        assert fastcgi_get_unix(socket_path, "/as-nobody").http()[0] == 200
        assert _uid_of(pool.process.pid) == 0  # the manager keeps its rights to bind/respawn
    finally:
        shutil.rmtree(public, ignore_errors=True)


def fastcgi_get_unix(path: Path, uri: str):
    from fcgikit.fastcgi.client import fcgi_request, get_params
    return fcgi_request(str(path), get_params(uri))


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# -- Python workers (callable children): scoreboard, timeout, recycling ----------

WORKER_SCRIPT = '''
import argparse, os, signal, socket, sys, time
from fcgikit.spawn import add_pool_arguments, run_manager

def worker(ctx):
    """Not FastCGI: one line in ("PATH"), one line out. Enough for the manager."""
    leaving = []
    signal.signal(signal.SIGTERM, lambda *_: leaving.append(1))
    ctx.listen_sock.settimeout(0.1)
    served = 0
    while not leaving and (not ctx.max_requests or served < ctx.max_requests):
        try:
            conn, _ = ctx.listen_sock.accept()
        except socket.timeout:
            ctx.slot.heartbeat()
            continue
        with conn:
            path = conn.makefile().readline().strip()
            ctx.slot.request_started("GET", path)
            if path.startswith("/hang"):
                time.sleep(3600)
            if path.startswith("/slow"):
                time.sleep(5 if path.startswith("/slow5") else 1.5)
            served += 1
            conn.sendall(f"pid={os.getpid()} served={served} max={ctx.max_requests}\\n".encode())
            ctx.slot.request_finished()
    return 0

parser = argparse.ArgumentParser()
add_pool_arguments(parser)
sys.exit(run_manager(parser.parse_args(), worker))
'''


def ask(port: int, path: str, timeout: float = 10.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(path.encode() + b"\n")
        return conn.makefile().readline().strip()


@pytest.fixture
def python_pool(pools, tmp_path):
    script = tmp_path / "worker_pool.py"
    script.write_text(WORKER_SCRIPT)

    def start(flags):
        return pools(["-a", "127.0.0.1", "-p", "0"] + flags, command=[sys.executable, str(script)])
    return start


def test_timeout_kills_a_python_worker_stuck_in_one_request(python_pool):
    pool = python_pool(["-F", "2", "--timeout", "2", "--slow-request-time", "0.5"])
    pool.wait_children(2)
    port = pool.port
    hung = socket.create_connection(("127.0.0.1", port))
    hung.sendall(b"/hang/forever\n")
    busy = pool.wait_children(2, extra=lambda s: s["children"]["busy"] == 1)
    row = next(p for p in busy["processes"] if p["state"] == "busy")
    assert row["request"]["uri"] == "/hang/forever" and row["request"]["method"] == "GET"
    status = pool.wait_children(2, timeout=6, extra=lambda s: s["timeouts"] == 1
                                and row["pid"] not in {p["pid"] for p in s["processes"]})
    assert status["children"]["busy"] == 0 and status["slow_requests"] == 1
    assert status["max_active_processes"] == 1 and status["max_children_reached"] == 0
    assert hung.recv(100) == b""  # the stuck request's connection was closed by the kill
    hung.close()
    assert f"child {row['pid']} stuck" in pool.log()
    assert all(ask(port, f"/ok/{i}").startswith("pid=") for i in range(4))


def test_max_requests_recycles_python_workers_with_jitter(python_pool):
    pool = python_pool(["-F", "1", "--max-requests", "20"])
    first = pool.wait_children(1)["processes"][0]["pid"]
    replies = [ask(pool.port, f"/r/{i}") for i in range(25)]
    limit = int(replies[0].split("max=")[1])
    assert 20 <= limit <= 22
    pids = [reply.split()[0] for reply in replies]
    assert pids[:limit] == [f"pid={first}"] * limit and pids[limit] != f"pid={first}"
    status = pool.wait_children(1, extra=lambda s: s["accepted_conn"] == 25)
    assert status["restarts"] == 0 and "recycled after its requests" in pool.log()


def test_children_recycled_after_one_request_each_are_not_a_crash_loop(python_pool):
    # Each child lives far less than the boot period, but served: not a boot death.
    pool = python_pool(["-F", "1", "--max-requests", "1"])
    pool.wait_children(1)
    replies = [ask(pool.port, f"/one/{i}") for i in range(8)]
    assert len({reply.split()[0] for reply in replies}) == 8  # a new child for every request
    assert pool.process.poll() is None and "giving up" not in pool.log()


def test_sigterm_drains_a_busy_python_worker(python_pool):
    pool = python_pool(["-F", "1", "--graceful-timeout", "10"])
    pool.wait_children(1)
    port = pool.port
    result = []
    thread = threading.Thread(target=lambda: result.append(ask(port, "/slow/drain")))
    thread.start()
    pool.wait_children(1, extra=lambda s: s["children"]["busy"] == 1)
    pool.send(signal.SIGTERM)
    assert pool.wait(10) == 0, pool.log()
    thread.join(10)
    assert result and result[0].startswith("pid="), pool.log()


def test_sigquit_stops_at_once_without_waiting_for_requests(python_pool):
    pool = python_pool(["-F", "1", "--graceful-timeout", "10"])
    pool.wait_children(1)
    port = pool.port
    thread = threading.Thread(target=lambda: _ignore_errors(ask, port, "/slow5/abandoned"))
    thread.start()
    pool.wait_children(1, extra=lambda s: s["children"]["busy"] == 1)
    sent_at = time.monotonic()
    pool.send(signal.SIGQUIT)
    assert pool.wait(10) == 0, pool.log()
    assert time.monotonic() - sent_at < 3, pool.log()  # the 5 s request was not awaited
    thread.join(10)
    assert "SIGQUIT: stopping 1 children" in pool.log()


def _ignore_errors(function, *args):
    try:
        function(*args)
    except OSError:
        pass


def test_as_pid_1_the_manager_reaps_orphans(pools, hello_fcgi, tmp_path):
    if not shutil.which("unshare") or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to give the manager a PID namespace")
    # The program leaves an orphan behind (a subshell's background sleep) before
    # exec'ing the real FastCGI program; in the new PID namespace the manager is
    # PID 1 and inherits it. Orphans it failed to reap would stay zombies.
    wrapper = tmp_path / "leave_orphans.sh"
    wrapper.write_text(f"#!/bin/sh\n(sleep 0.2 &)\nexec {hello_fcgi}\n")
    wrapper.chmod(0o755)
    pool = pools(["-a", "127.0.0.1", "-p", "0", "-F", "2"], [str(wrapper)],
                 command=["unshare", "--pid", "--fork", sys.executable, "-m", "fcgikit.spawn"])
    status = pool.wait_children(2)
    assert status["manager_pid"] == 1
    manager = wait_for(lambda: _children_of(pool.process.pid), 5, "the manager in its namespace")[0]
    os.kill(manager, signal.SIGHUP)  # two more children, two more orphans
    pool.wait_children(2, extra=lambda s: s["generation"] == 2)
    time.sleep(1.0)  # the orphans' sleeps are over
    zombies = [pid for pid in _children_of(manager) if _state(pid) == "Z"]
    assert zombies == [], f"unreaped: {zombies}\n{pool.log()}"
    os.kill(manager, signal.SIGTERM)
    assert pool.wait(10) == 0, pool.log()


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_the_status_printer_piped_into_a_reader_that_stops_early_exits_quietly(tmp_path):
    """`python3 -m fcgikit.spawn.status FILE | head`: no BrokenPipeError traceback."""
    path = tmp_path / "status.json"
    path.write_text(json.dumps({"version": 1, "pool": "p", "state": "running", "processes": []}))
    printer = subprocess.Popen([sys.executable, "-m", "fcgikit.spawn.status", "--json", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    printer.stdout.close()  # the reader is gone before the first write
    assert printer.wait(10) == 0
    assert b"BrokenPipe" not in printer.stderr.read()
