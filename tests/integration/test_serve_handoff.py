"""Connection handoff behind nginx: a retiring child passes its idle kept-alive
connections to the manager, which gives them to a live child, instead of closing
them (a close races with nginx writing the next request on the cached connection;
nginx does not retry a POST, so the race is a failed request).

POSTs only: nginx retries a GET on another connection, hiding the race.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import pytest

from fcgikit.testing.nginx import Nginx

from .serve_support import TEST_APP, Outcome, fastcgi_location, keepalive_upstream, load, serve_app, summary

pytestmark = pytest.mark.integration


def body_for(i: int) -> bytes:
    return f"request {i} ".encode() * (1 + i % 50)


def digest_ok(i: int, status: int, answer: bytes) -> bool:
    body = body_for(i)
    return status == 200 and answer.startswith(f"{hashlib.sha256(body).hexdigest()} {len(body)} ".encode())


def post_load(base_url: str, total: int, parallel: int, stop: threading.Event | None = None) -> list[Outcome]:
    """`total` POSTs to /sha256 over `parallel` kept-alive HTTP connections, each
    response checked against the digest of its own body; `stop` ends it early."""
    return load(base_url, total, parallel, lambda i: "/sha256", digest_ok, body_for=body_for, stop=stop)


def upstream_errors(error_log: str) -> list[str]:
    return [line for line in error_log.splitlines() if "[error]" in line]


def failures(outcomes: list[Outcome], ngx: Nginx, served) -> tuple[list[Outcome], list[str], str]:
    """The failed requests, nginx's upstream errors, and a report of both with the server's log."""
    failed = [o for o in outcomes if not o.ok]
    errors = upstream_errors(ngx.error_log())
    report = f"{summary(outcomes)}\nnginx errors: {len(errors)}\n" + "\n".join(errors[:20]) + served.log()[-4000:]
    return failed, errors, report


def keepalive_nginx(port: int) -> Nginx:
    upstream = keepalive_upstream("workers", port, keepalive=16)
    return Nginx(fastcgi_location(port, upstream="workers"), upstream)


@pytest.mark.parametrize(
    "children, max_requests, posts, parallel, recycled",
    [
        (2, 50, 2000, 20, 10),
        # -F 1: when the only child leaves there is no live child; the manager
        # holds the connections until the replacement is up.
        (1, 30, 400, 10, 5),
    ],
    ids=["two-children", "single-child"],
)
def test_recycled_children_hand_over_their_kept_alive_connections(tmp_path, children, max_requests, posts,
                                                                   parallel, recycled):
    with serve_app(tmp_path, TEST_APP, children, "--max-requests", str(max_requests)) as served:
        with keepalive_nginx(served.port) as ngx:
            outcomes = post_load(ngx.url(""), total=posts, parallel=parallel)
            failed, errors, report = failures(outcomes, ngx, served)
            assert not failed and not errors, report
            assert served.log().count("recycled after its requests") >= recycled, report


def test_sighup_under_continuous_post_load_fails_no_request(tmp_path):
    with serve_app(tmp_path, TEST_APP, 2) as served:
        with keepalive_nginx(served.port) as ngx:
            stop = threading.Event()
            result: list[Outcome] = []
            loader = threading.Thread(target=lambda: result.extend(post_load(ngx.url(""), 100000, 20, stop)))
            loader.start()
            try:
                for _ in range(3):
                    time.sleep(1.0)
                    os.kill(served.process.pid, signal.SIGHUP)
                time.sleep(1.5)
            finally:
                stop.set()
                loader.join(60)
            failed, errors, report = failures(result, ngx, served)
            assert len(result) >= 200, report
            assert not failed and not errors, report
            assert served.log().count("SIGHUP: starting generation") == 3, report
