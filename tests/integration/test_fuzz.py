"""Hostile FastCGI streams against fcgikit.spawn (the example accept-loop app and
a libfcgi C program) and fcgikit.cgi, with valid requests on a kept-alive
connection in between: every valid request answered, the manager still up, its
memory and descriptors flat. The same fuzzing for fcgikit.serve is in
test_serve_faults.py. Each run is bounded in time (docs/spawn.md gives the
figures of a 100,000-stream run)."""

import shutil
import sys
import time

import pytest

from .cgi_support import docroot_with_scripts, our_gateway, params_for
from .fuzz_support import fuzz, get_params, process_figures
from .test_spawn_faults import HELLO_ACCEPT, LISTEN

pytestmark = pytest.mark.integration

SECONDS = 12.0
RSS_GROWTH_MAX_KB = 2048  # the manager's resident set may move a little, never with the stream count


def assert_survived(result, manager_pid: int, before: tuple[int, int], log: str) -> None:
    after = process_figures(manager_pid)
    detail = f"{result.summary()}\nkinds: {result.kinds}\n--- log tail ---\n{log[-3000:]}"
    print(result.summary(), "manager RSS/fds", before, after)
    assert result.probes >= 10 and not result.failed, detail
    assert after[1] == before[1], f"manager descriptors {before[1]} -> {after[1]}\n{detail}"
    assert after[0] - before[0] < RSS_GROWTH_MAX_KB, f"manager RSS {before[0]} -> {after[0]} kB\n{detail}"


def fuzz_pool(pool, check, seconds: float = SECONDS, probe_every: int = 10):
    pool.wait_children(4)
    port = pool.port
    time.sleep(1.2)  # serving, as a pool is when traffic comes
    before = process_figures(pool.process.pid)
    result = fuzz(("127.0.0.1", port), get_params("/probe"), check, seconds=seconds, probe_every=probe_every,
                  alive=lambda: pool.process.poll() is None)
    assert pool.process.poll() is None, f"the manager died\n{pool.log()[-3000:]}"
    return result, before


def test_spawn_with_the_example_accept_app_survives_hostile_streams(pools):
    pool = pools(LISTEN + ["-F", "4"], [sys.executable, HELLO_ACCEPT])
    result, before = fuzz_pool(pool, lambda out: b"Hello from an accept loop" in out)
    log = pool.log()
    assert_survived(result, pool.process.pid, before, log)
    assert result.streams > 1000, result.summary()
    # The app itself takes it: not one child died (a client cannot end an accept loop).
    assert pool.status()["restarts"] == 0 and "Traceback" not in log, log[-3000:]


def test_spawn_with_a_libfcgi_program_survives_hostile_streams(pools, hello_fcgi):
    """libfcgi itself aborts on some streams (a name-value length of gigabytes ends
    in a failed malloc assertion, SIGABRT): the manager respawns its children with
    backoff and never gives the pool up, and kept-alive requests go on."""
    pool = pools(LISTEN + ["-F", "4"], [hello_fcgi])
    result, before = fuzz_pool(pool, lambda out: b"hello pid=" in out, probe_every=5)
    log = pool.log()
    assert_survived(result, pool.process.pid, before, log)
    assert "giving up" not in log, log[-3000:]


def test_cgi_gateway_survives_hostile_streams():
    top, docroot = docroot_with_scripts()
    root = docroot / "cgi-bin"
    try:
        with our_gateway(top, root, "--timeout", "5", children=4) as gateway:
            time.sleep(1.2)
            before = process_figures(gateway.process.pid)
            params = params_for(root, "/cgi-bin/env.sh", query="probe=1")
            result = fuzz(gateway.socket, params, lambda out: b"method=GET" in out, seconds=SECONDS,
                          alive=lambda: gateway.process.poll() is None)
            assert gateway.process.poll() is None, f"the gateway died\n{gateway.log()[-3000:]}"
            log = gateway.log()
            assert_survived(result, gateway.process.pid, before, log)
            assert "giving up" not in log, log[-3000:]
    finally:
        shutil.rmtree(top, ignore_errors=True)
