"""Differential test: the same CGI scripts through fcgikit.cgi and through fcgiwrap
(Debian's C gateway), each behind its own server block of one real nginx, in the
same run. Same URL on both, so the scripts see the same SCRIPT_NAME.

Where fcgiwrap is wrong or weaker the test says so and checks our behaviour:
local redirect (fcgiwrap lets nginx send a 302), NPH (nginx drops fcgiwrap's raw
status line, the status is lost), a program that prints more than a pipe holds before it
reads its body (fcgiwrap writes the whole body first: deadlock), a program that
ignores a large body (fcgiwrap fails writing it), and timeouts (fcgiwrap has none).
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import socket
import time

import pytest
import requests

from fcgikit.testing.nginx import Nginx

from .cgi_support import docroot_with_scripts, fcgiwrap, our_gateway, two_free_ports

pytestmark = pytest.mark.integration

# Headers whose value must agree; the rest (Date, Server, Connection...) is nginx's.
COMPARED_HEADERS = ("content-type", "location", "x-script", "content-length")

CGI_LOCATION = """
    location /cgi-bin/ {{
        root {docroot};
        include fastcgi_params;   # the helper's copy, in nginx's prefix
        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
        fastcgi_param APP_SETTING from-nginx;
        fastcgi_read_timeout 20s;
        fastcgi_pass unix:{socket};
    }}
"""


class Stack:
    def __init__(self, ngx: Nginx, wrap_port: int, ours, theirs) -> None:
        self.ngx, self.wrap_port, self.ours, self.theirs = ngx, wrap_port, ours, theirs

    def our_url(self, path: str) -> str:
        return self.ngx.url(path)

    def their_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.wrap_port}{path}"

    def logs(self) -> str:
        return (f"--- nginx error log\n{self.ngx.error_log()}\n--- fcgikit.cgi\n{self.ours.log()}\n"
                f"--- fcgiwrap\n{self.theirs.log()}")


@pytest.fixture(scope="module")
def stack():
    top, docroot = docroot_with_scripts()
    ours = our_gateway(top, docroot / "cgi-bin", "--timeout", "3").start()
    theirs = fcgiwrap(top).start()
    # Distinct ports: were they the same, nginx would send both URLs to one gateway.
    our_port, wrap_port = two_free_ports()
    # The helper's own server block fronts ours; fcgiwrap's server goes in http_conf.
    server = CGI_LOCATION.format(docroot=docroot, socket=ours.socket)
    wrap_server = f"server {{ listen 127.0.0.1:{wrap_port}; server_name localhost; " + \
        CGI_LOCATION.format(docroot=docroot, socket=theirs.socket) + "}"
    ngx = Nginx(server, wrap_server, port=our_port)
    try:
        ngx.start()
        yield Stack(ngx, wrap_port, ours, theirs)
    finally:
        ngx.stop()
        ours.stop()
        theirs.stop()
        shutil.rmtree(top, ignore_errors=True)


def both(stack: Stack, method: str, path: str, **kwargs):
    ours = requests.request(method, stack.our_url(path), allow_redirects=False, timeout=30, **kwargs)
    theirs = requests.request(method, stack.their_url(path), allow_redirects=False, timeout=30, **kwargs)
    return ours, theirs


def assert_same(stack: Stack, ours, theirs) -> None:
    context = f"ours: {ours.status_code} {dict(ours.headers)}\ntheirs: {theirs.status_code} {dict(theirs.headers)}\n{stack.logs()}"
    assert ours.status_code == theirs.status_code, context
    for name in COMPARED_HEADERS:
        assert ours.headers.get(name) == theirs.headers.get(name), f"header {name}\n{context}"
    assert ours.content == theirs.content, context


@pytest.mark.parametrize("path", [
    "/cgi-bin/env.sh?a=1&b=two+words&c=%C3%A9",
    "/cgi-bin/hello.pl?name=J%C3%BCrgen",
    "/cgi-bin/hello.pl",
    "/cgi-bin/notfound.pl",
    "/cgi-bin/redirect.sh",
    "/cgi-bin/big.py",
])
def test_get_gives_the_same_answer(stack, path):
    ours, theirs = both(stack, "GET", path, headers={"X-Test": "diff"})
    assert_same(stack, ours, theirs)
    assert ours.status_code in (200, 302, 404)


def test_status_header_and_client_redirect(stack):
    ours, _ = both(stack, "GET", "/cgi-bin/notfound.pl")
    assert (ours.status_code, ours.text) == (404, "no such thing here\n")
    ours, _ = both(stack, "GET", "/cgi-bin/redirect.sh")
    assert (ours.status_code, ours.headers["location"]) == (302, "http://example.com/moved?from=cgi")


def test_non_ascii_header_bytes_reach_the_script_unchanged(stack):
    ours, theirs = both(stack, "GET", "/cgi-bin/env.sh", headers={"X-Test": "caf\xe9"})
    assert_same(stack, ours, theirs)
    assert b"http_x_test=caf\xe9\n" in ours.content    # the wire byte, not re-encoded


def test_env_reaches_the_script(stack):
    ours, _ = both(stack, "GET", "/cgi-bin/env.sh?a=1", headers={"X-Test": "diff"})
    assert "query=a=1\n" in ours.text and "gateway=CGI/1.1\n" in ours.text
    assert "http_x_test=diff\n" in ours.text and "app_setting=from-nginx\n" in ours.text


def test_large_body_is_identical(stack):
    ours, theirs = both(stack, "GET", "/cgi-bin/big.py")
    assert_same(stack, ours, theirs)
    assert len(ours.content) == 32 * 65 * 1000 + 4
    assert hashlib.sha256(ours.content).hexdigest() == hashlib.sha256(theirs.content).hexdigest()


def test_post_form(stack):
    data = {"name": "Ada Lovelace", "lang": "fr", "note": "a&b=c ü"}
    ours, theirs = both(stack, "POST", "/cgi-bin/form.py", data=data)
    assert_same(stack, ours, theirs)
    assert "name=Ada Lovelace\n" in ours.text and "note=a&b=c ü\n" in ours.text


def test_multipart_upload(stack):
    payload = bytes(range(256)) * 2000   # 512 KB of every byte value
    files = {"file": ("data.bin", payload, "application/octet-stream")}
    ours, theirs = both(stack, "POST", "/cgi-bin/upload.py", files=files, data={"title": "t"})
    assert_same(stack, ours, theirs)
    assert f"file data.bin {len(payload)} {hashlib.sha256(payload).hexdigest()}" in ours.text


def test_script_that_ignores_a_small_body(stack):
    ours, theirs = both(stack, "POST", "/cgi-bin/ignore-stdin.sh", data=b"x" * 1000)
    assert_same(stack, ours, theirs)
    assert ours.text == "I did not read your 1000 bytes\n"


def test_script_that_ignores_a_large_body(stack):
    # fcgiwrap is weaker: it writes the whole body into the program's stdin before
    # reading anything; the program exits without reading, the write fails (EPIPE)
    # and fcgiwrap answers 502 instead of the program's response. We answer it.
    body = b"x" * 2_000_000
    ours, theirs = both(stack, "POST", "/cgi-bin/ignore-stdin.sh", data=body)
    assert ours.status_code == 200 and ours.text == "I did not read your 2000000 bytes\n", stack.logs()
    assert theirs.status_code != 200 or theirs.text != ours.text, "fcgiwrap got better: compare directly"


def test_local_redirect_is_served_internally(stack):
    # fcgiwrap is weaker: it hands `Location: /path` on unchanged and nginx turns it
    # into a 302 to the client. RFC 3875 6.2.2 wants the server to serve the new
    # path itself: we hand nginx an X-Accel-Redirect and it does.
    ours, theirs = both(stack, "GET", "/cgi-bin/local-redirect.sh")
    assert ours.status_code == 200, stack.logs()
    assert "query=via=local-redirect\n" in ours.text and "method=GET\n" in ours.text
    assert "location" not in ours.headers and "x-accel-redirect" not in ours.headers
    assert theirs.status_code == 302 and theirs.headers["location"].endswith("/cgi-bin/env.sh?via=local-redirect")


def test_local_redirect_after_post_becomes_get(stack):
    ours = requests.post(stack.our_url("/cgi-bin/local-redirect.sh"), data=b"a=1", allow_redirects=False, timeout=30)
    assert ours.status_code == 200 and "method=GET\n" in ours.text


def test_nph_status_line_is_translated(stack):
    # fcgiwrap is wrong here: it passes the program's "HTTP/1.1 202 Accepted" line on
    # as if it were a header; nginx drops it as an invalid header line and the
    # program's status is lost (the client gets 200). We translate it to Status: 202.
    ours, theirs = both(stack, "GET", "/cgi-bin/nph-hello.sh")
    assert ours.status_code == 202, stack.logs()
    assert ours.headers["x-nph"] == "yes" and ours.text == "nph body\n"
    assert theirs.status_code != 202 and theirs.text == ours.text


def test_big_output_before_reading_the_body_does_not_deadlock(stack):
    # Not sent to fcgiwrap: it writes the whole body to the program first, the
    # program is blocked writing its 256 KiB of output, and neither ever moves
    # again (that fcgiwrap process stays wedged for good).
    body = b"y" * 300_000
    ours = requests.post(stack.our_url("/cgi-bin/big-before-read.sh"), data=body, timeout=30)
    assert ours.status_code == 200, stack.logs()
    assert ours.text.endswith("body=300000\n")
    assert len(ours.content) == 4096 * 64 + len("body=300000\n")


def test_more_output_than_we_hold_before_reading_a_large_body(stack):
    # 2.5 MiB of output before the program reads its 2 MB body: more than the gateway
    # holds back while nginx is still sending the body, so it spools the body first.
    body = b"w" * 2_000_000
    ours = requests.post(stack.our_url("/cgi-bin/big-before-read.sh?40000"), data=body, timeout=30)
    assert ours.status_code == 200, stack.logs()
    assert len(ours.content) == 40000 * 64 + len("body=2000000\n") and ours.text.endswith("body=2000000\n")


def test_large_body_to_a_refused_program_is_answered_at_once(stack):
    started = time.monotonic()
    ours = requests.post(stack.our_url("/cgi-bin/missing.sh"), data=b"q" * 2_000_000, timeout=30)
    assert ours.status_code == 404 and time.monotonic() - started < 5, stack.logs()


def test_stderr_reaches_nginx_error_log_tagged(stack):
    ours, theirs = both(stack, "GET", "/cgi-bin/stderr.sh")
    assert_same(stack, ours, theirs)
    log = stack.ngx.error_log()
    assert "[/cgi-bin/stderr.sh] first complaint" in log            # ours: tagged with the script
    assert "first complaint" in log.replace("[/cgi-bin/stderr.sh] first complaint", "")   # fcgiwrap's


def test_timeout_gives_504(stack):
    # fcgiwrap has no timeout at all: loop.sh would run forever there (nginx gives up
    # after fastcgi_read_timeout and the program and its grandchild live on).
    ours = requests.get(stack.our_url("/cgi-bin/loop.sh"), timeout=30)
    assert ours.status_code == 504, stack.logs()


def test_traversal_through_nginx_is_refused(stack):
    # Raw request lines: a client library would normalise these before sending.
    for target in ("/cgi-bin/../../bin/sh", "/cgi-bin/%2e%2e%2f%2e%2e%2fbin%2fsh",
                   "/cgi-bin/env.sh%3Btouch%20x", "/cgi-bin/%24(id)", "/cgi-bin/env.sh%0Aid"):
        status = raw_get(stack.ngx.port, target)
        assert status in (400, 403, 404), (target, status, stack.logs())


def raw_get(port: int, target: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status
