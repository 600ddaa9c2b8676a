"""fcgikit.spawn + php-cgi survives what php-fpm survives (issue 16).

Both run exactly as the benchmark runs them (bench.scenarios: php-fpm with its own config,
`pm = static`, 2 children; `fcgikit.spawn -F 2 -- php-cgi`, PHP_FCGI_CHILDREN unset) behind
the benchmark's nginx, on 127.0.0.1. Each PHP script below breaks one request in a way PHP
users meet: a script that calls exit() half-way through its output, a child process that
dies mid-request (killed, as by a crash or the OOM killer), a fatal error, and
`max_execution_time` running out. Both servers must answer that request the same way, and
then go on answering: a kept-alive client gets only 200s afterwards, and the pool is back
to its 2 children.
"""

import http.client
import time

import pytest

from bench.nginxconf import render_http_conf, render_server_conf
from bench.procfs import parent_map, process_tree
from bench.scenarios import HOST, PHP_FPM, PROCESSES, SPAWN_PHP, Paths
from bench.servers import RunningServer, pid_alive
from fcgikit.testing import free_port
from fcgikit.testing.nginx import Nginx

pytestmark = [pytest.mark.integration]

SCRIPTS = {
    "hello.php": '<?php header("Content-Type: text/plain"); echo "hello pid=" . getmypid() . "\\n";',
    # exit() ends the script, not the process: the output so far is the answer.
    "exit.php": '<?php header("Content-Type: text/plain"); echo "partial\\n"; exit(3); echo "never\\n";',
    # The process dies in the middle of the request (a crash, the OOM killer).
    "crash.php": '<?php echo "partial\\n"; flush(); posix_kill(getmypid(), 9); sleep(5); echo "never\\n";',
    "fatal.php": '<?php echo "before\\n"; no_such_function(); echo "never\\n";',
    # max_execution_time counts the script's CPU time (ITIMER_PROF): a busy loop reaches it.
    "timeout.php": '<?php ini_set("max_execution_time", "1"); while (true) { $x = md5("x"); } echo "never\\n";',
}

# What nginx answers for the broken request, the same for both servers.
EXPECTED = {
    "exit.php": (200, b"partial\n"),
    "crash.php": (502, None),  # the upstream closed the connection before a complete answer
    # display_errors = Off (Debian's php.ini): the output so far (buffered), as a 500
    "fatal.php": (500, b"before\n"),
    "timeout.php": (500, b""),
}


@pytest.fixture(params=[PHP_FPM, SPAWN_PHP], ids=["php-fpm", "fcgikit.spawn+php-cgi"])
def php_stack(request, tmp_path):
    server_def = request.param
    missing = server_def.missing()
    if missing:
        pytest.fail(f"{missing} (./setup.sh installs php-fpm and php-cgi)")
    www = tmp_path / "www"
    (www / "php").mkdir(parents=True)
    for name, text in SCRIPTS.items():
        (www / "php" / name).write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    port = free_port()
    server = RunningServer(server_def, port, Paths(work_dir=work)).start()
    ngx = None
    try:
        ngx = Nginx(render_server_conf(str(www), False), render_http_conf(f"{HOST}:{port}", False),
                    log_level="warn").start()
        yield server, ngx
    finally:
        if ngx:
            ngx.stop()
        server.stop()


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def children(server: RunningServer) -> set[int]:
    """The server's live processes but its manager/master (a zombie is not a child)."""
    return {pid for pid in process_tree({server.process.pid}, parent_map())
            if pid != server.process.pid and pid_alive(pid)}


def wait_pool_full(server: RunningServer, timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while len(pids := children(server)) != PROCESSES and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script", list(EXPECTED))
def test_a_broken_php_request_is_answered_and_the_pool_goes_on(php_stack, script):
    server, ngx = php_stack
    before = wait_pool_full(server)
    assert len(before) == PROCESSES, server.log_tail()
    conn = http.client.HTTPConnection("127.0.0.1", ngx.port, timeout=30)  # one kept-alive client
    try:
        assert get(conn, "/php/hello.php")[0] == 200, ngx.error_log()
        status, body = get(conn, f"/php/{script}")
        want_status, want_body = EXPECTED[script]
        diagnostics = f"\n--- nginx:\n{ngx.error_log()[-2000:]}\n--- server:\n{server.log_tail()}"
        assert status == want_status, f"{script}: {status} {body[:300]!r}{diagnostics}"
        if want_body is not None:
            assert body == want_body, f"{script}: {body[:300]!r}{diagnostics}"
        if status == 502:  # nginx logged why; the client's connection is still fine
            assert "upstream" in ngx.error_log(), diagnostics
        # Afterwards: every request answered, and the pool back to its size.
        answers = [get(conn, "/php/hello.php") for _ in range(20)]
        assert [s for s, _ in answers] == [200] * 20, f"{answers[:3]}{diagnostics}"
        assert all(b.startswith(b"hello pid=") for _, b in answers)
        after = wait_pool_full(server)
        assert len(after) == PROCESSES, diagnostics
        # Only the crash costs a process (replaced); PHP itself ends the other requests.
        assert len(before - after) == (1 if script == "crash.php" else 0), (before, after, diagnostics)
        assert server.alive(), diagnostics
    finally:
        conn.close()
