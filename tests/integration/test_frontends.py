"""fcgikit behind the FastCGI clients people run besides nginx: Apache 2.4
(mod_proxy_fcgi), lighttpd 1.4 (mod_fastcgi, bin-path included) and Caddy 2.6
(the fastcgi transport, php_fastcgi), all from Debian's archive, each a child
process on 127.0.0.1 with the configuration docs/frontends.md shows.

Three backends: `fcgikit.serve` with a WSGI app that runs inside
`wsgiref.validate` (so an environ PEP 3333 forbids is a 500), `fcgikit.cgi`
with the CGI test scripts, and `fcgikit.spawn -- php-cgi`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import requests

from .cgi_support import docroot_with_scripts
from .frontends_support import Apache, Caddy, Lighttpd, php_cgi, read
from .serve_support import REPO, load, pool, summary

pytestmark = pytest.mark.integration

APP = "tests.integration.frontends_app:app"
FRONTENDS = ("apache", "lighttpd", "caddy")

PHP_SCRIPT = """<?php
header("Content-Type: text/plain");
echo "php pid=" . getmypid() . "\\n";
echo "script_name=" . $_SERVER["SCRIPT_NAME"] . "\\n";
echo "path_info=" . ($_SERVER["PATH_INFO"] ?? "") . "\\n";
echo "query=" . $_SERVER["QUERY_STRING"] . "\\n";
echo "method=" . $_SERVER["REQUEST_METHOD"] . "\\n";
foreach ($_POST as $k => $v) { echo "post $k=$v\\n"; }
"""


# -- the configurations (the same as docs/frontends.md) ------------------------

def app_site(kind: str, port: int, **options):
    """The WSGI app under fcgikit.serve at the site's root, responses streamed."""
    if kind == "apache":
        return Apache(f"""\
ProxyFCGIBackendType GENERIC
ProxyPass "/" "fcgi://127.0.0.1:{port}/" enablereuse=on flushpackets=on
""", **options)
    if kind == "lighttpd":
        return Lighttpd(f"""\
server.stream-response-body = 2
fastcgi.server = ( "/" => ((
    "host" => "127.0.0.1", "port" => {port},
    "check-local" => "disable", "fix-root-scriptname" => "enable",
)))
""")
    return Caddy(f"""\
    reverse_proxy 127.0.0.1:{port} {{
        transport fastcgi
        flush_interval -1
    }}""")


def files_site(kind: str, cgi_port: int, php_port: int, docroot: Path):
    """fcgikit.cgi for DOCROOT/cgi-bin/* (the program's path split from PATH_INFO;
    Apache keeps its connections to it) and php-cgi under fcgikit.spawn for *.php."""
    if kind == "apache":
        return Apache(f"""\
ProxyFCGIBackendType GENERIC
DocumentRoot "{docroot}"

<Proxy "fcgi://127.0.0.1:{cgi_port}">
    ProxySet enablereuse=on
</Proxy>
<Directory "{docroot}/cgi-bin">
    SetHandler "proxy:fcgi://127.0.0.1:{cgi_port}"
</Directory>

<FilesMatch "\\.php$">
    SetHandler "proxy:fcgi://127.0.0.1:{php_port}"
</FilesMatch>
""")
    if kind == "lighttpd":
        return Lighttpd(f"""\
fastcgi.server = (
    "/cgi-bin/" => (( "host" => "127.0.0.1", "port" => {cgi_port}, "check-local" => "disable" )),
    ".php"      => (( "host" => "127.0.0.1", "port" => {php_port} )),
)
""", docroot=docroot)
    return Caddy(f"""\
    root * {docroot}
    reverse_proxy /cgi-bin/* 127.0.0.1:{cgi_port} {{
        transport fastcgi {{
            split .sh .pl .py .cgi
        }}
    }}
    php_fastcgi 127.0.0.1:{php_port}""")


# -- backends and sites, started once per module ---------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("frontends")


@pytest.fixture(scope="module")
def served(workdir):
    with pool("serve", ["-F", "3", APP], workdir, "serve") as served:
        yield served


@pytest.fixture(scope="module")
def docroot():
    """A world-readable docroot (CGI programs run as nobody under root) with the
    CGI test scripts in cgi-bin/ and hello.php."""
    top, docroot = docroot_with_scripts()
    script = docroot / "hello.php"
    script.write_text(PHP_SCRIPT)
    script.chmod(0o644)
    yield docroot
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(workdir, docroot):
    with pool("cgi", ["-F", "3", "--root", str(docroot / "cgi-bin"), "--timeout", "20"], workdir, "cgi") as gw:
        yield gw


@pytest.fixture(scope="module")
def php(workdir):
    with pool("spawn", ["-F", "2", "--", php_cgi()], workdir, "php") as php:
        yield php


@pytest.fixture(scope="module", params=FRONTENDS)
def app_web(request, served):
    with app_site(request.param, served.port) as web:
        yield web


@pytest.fixture(scope="module", params=FRONTENDS)
def files_web(request, gateway, php, docroot):
    with files_site(request.param, gateway.port, php.port, docroot) as web:
        yield web


@pytest.fixture
def cgi_web(files_web):
    return files_web


@pytest.fixture
def php_web(files_web):
    return files_web


def context(web, *backends) -> str:
    return web.logs() + "".join(f"\n--- {b.log_path.name} ---\n{b.log()[-4000:]}" for b in backends)


def lines(text: str) -> set[str]:
    return set(text.splitlines())


# -- fcgikit.serve: a WSGI app ----------------------------------------------------

def test_get_with_query_string_and_headers(app_web, served):
    response = requests.get(app_web.url("/env?colour=blue&q=a%20b"), headers={"X-Trace-Id": "abc-123"}, timeout=15)
    assert response.status_code == 200, context(app_web, served)
    got = lines(response.text)
    assert {"REQUEST_METHOD=GET", "QUERY_STRING=colour=blue&q=a%20b", "SCRIPT_NAME=", "PATH_INFO=/env",
            "HTTP_X_TRACE_ID=abc-123"} <= got, response.text


def test_post_with_a_body_gets_a_pep_3333_environ(app_web, served):
    """The CGI names only: lighttpd and Caddy also send HTTP_CONTENT_LENGTH /
    HTTP_CONTENT_TYPE, which wsgiref.validate (wrapping the app) rejects."""
    response = requests.post(app_web.url("/env"), data={"a": "1", "b": "two"}, timeout=15)
    assert response.status_code == 200, context(app_web, served)
    got = lines(response.text)
    assert {"REQUEST_METHOD=POST", "CONTENT_LENGTH=9", "CONTENT_TYPE=application/x-www-form-urlencoded"} <= got
    assert not any(line.startswith(("HTTP_CONTENT_LENGTH=", "HTTP_CONTENT_TYPE=")) for line in got), response.text


def test_a_20_mb_upload_arrives_whole(app_web, served):
    body = os.urandom(20 * 1024 * 1024)
    response = requests.post(app_web.url("/sha256"), data=body, timeout=120)
    assert response.status_code == 200, context(app_web, served)
    assert response.text.split() == [hashlib.sha256(body).hexdigest(), str(len(body))]


def test_a_chunked_upload_of_unknown_length_arrives_whole(app_web, served):
    """No Content-Length from the client: Caddy then sends CONTENT_LENGTH=-1; the
    app must still read the whole body (FastCGI's input ends with its empty record)."""
    chunk = os.urandom(256 * 1024)
    expected = hashlib.sha256(chunk * 12).hexdigest()
    response = requests.post(app_web.url("/sha256"), data=(chunk for _ in range(12)), timeout=60)
    assert response.status_code == 200, context(app_web, served)
    assert response.text.split() == [expected, str(12 * len(chunk))], context(app_web, served)


def arrivals(url: str) -> list[float]:
    """Seconds after the request at which each line of a streamed answer arrived."""
    started = time.monotonic()
    seen = []
    with requests.get(url, stream=True, timeout=30) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            if line:
                seen.append(time.monotonic() - started)
    return seen


def test_a_streamed_response_arrives_as_it_is_written(app_web, served):
    """5 lines 0.5 s apart: the first must reach the client long before the last
    is written (flushpackets=on, stream-response-body = 2, flush_interval -1)."""
    seen = arrivals(app_web.url("/stream?n=5&gap=0.5"))
    assert len(seen) == 5, context(app_web, served)
    assert seen[0] < 1.2 and seen[-1] - seen[0] > 1.5, f"lines arrived at {seen}" + context(app_web, served)


@pytest.mark.parametrize("kind", FRONTENDS)
def test_by_default_each_frontend_buffers_the_response(kind, served, tmp_path):
    """What docs/frontends.md says: without the streaming setting, each of the
    three holds the whole answer until it has ended."""
    minimal = {
        "apache": f'ProxyPass "/" "fcgi://127.0.0.1:{served.port}/"',
        "lighttpd": f'fastcgi.server = ( "/" => (( "host" => "127.0.0.1", "port" => {served.port}, '
                    '"check-local" => "disable" )) )',
        "caddy": f"    reverse_proxy 127.0.0.1:{served.port} {{\n        transport fastcgi\n    }}",
    }[kind]
    site = {"apache": Apache, "lighttpd": Lighttpd, "caddy": Caddy}[kind](minimal)
    with site as web:
        seen = arrivals(web.url("/stream?n=3&gap=0.5"))
    assert len(seen) == 3 and seen[-1] - seen[0] < 0.3 and seen[0] > 0.9, seen


def slow_post(port: int, path: str, pieces: int = 3, size: int = 100_000, gap: float = 0.5) -> tuple[float, str]:
    """POSTs `pieces` x `size` bytes (with a Content-Length) `gap` seconds apart;
    returns when the upload began (time.time()) and the answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        began = time.time()
        connection.putrequest("POST", path)
        connection.putheader("Content-Length", str(pieces * size))
        connection.endheaders()
        for i in range(pieces):
            if i:
                time.sleep(gap)
            connection.send(b"u" * size)
        response = connection.getresponse()
        return began, f"{response.status} {response.read().decode(errors='replace')}"
    finally:
        connection.close()


@pytest.mark.parametrize("kind, buffers", [("apache", False), ("lighttpd", True), ("caddy", False)])
def test_which_frontend_holds_the_request_body_back(kind, buffers, served):
    """What docs/frontends.md says: lighttpd (server.stream-request-body = 0, its
    default) calls the app only once the whole body is in; Apache and Caddy
    call it at once and stream the body."""
    minimal = {
        "apache": f'ProxyPass "/" "fcgi://127.0.0.1:{served.port}/"',
        "lighttpd": f'fastcgi.server = ( "/" => (( "host" => "127.0.0.1", "port" => {served.port}, '
                    '"check-local" => "disable" )) )',
        "caddy": f"    reverse_proxy 127.0.0.1:{served.port} {{\n        transport fastcgi\n    }}",
    }[kind]
    with {"apache": Apache, "lighttpd": Lighttpd, "caddy": Caddy}[kind](minimal) as web:
        began, answer = slow_post(web.port, "/timing")
        assert answer.startswith("200 "), answer + context(web, served)
    fields = dict(item.split("=") for item in answer.split()[1:])
    called, read_all = float(fields["called"]) - began, float(fields["read"]) - began
    assert fields["size"] == "300000" and read_all > 0.9, answer
    assert (called > 0.9) if buffers else (called < 0.5), f"app called {called:.2f}s after the upload began"


def test_keep_alive_clients_get_every_answer(app_web, served):
    """20 keep-alive clients x 25 GETs, every answer checked against its request."""
    outcomes = load(app_web.url(""), total=500, parallel=20)
    assert all(o.ok for o in outcomes), summary(outcomes) + context(app_web, served)


# -- Apache with enablereuse=on under load -----------------------------------------

def test_apache_enablereuse_keep_alive_load_has_no_failed_request(workdir):
    """Apache's kept FastCGI connections (enablereuse=on) under keep-alive clients:
    10,000 GETs and 1,000 POSTs over 20 connections, not one failed, and Apache
    really reused its connections to fcgikit.serve (counted from Apache's own log).
    (A worker that closed a kept connection when the request's empty FCGI_STDIN
    record came late failed about one request in 10,000 here (a 503, AH01067 in
    Apache's log) and made Apache open 60-90 connections instead of 20.)"""
    with pool("serve", ["-F", "4", APP], workdir, "serve-reuse") as served, \
            app_site("apache", served.port, log_level="warn proxy:debug") as web:
        gets = load(web.url(""), total=10000, parallel=20)
        posts = load(web.url(""), total=1000, parallel=20, path_for=lambda i: "/sha256", body_for=post_body,
                     check=digest_ok)
        opened = web.backend_connections()
        print(f"apache enablereuse=on: {opened} FastCGI connections for 11,000 requests")
        report = (f"GETs: {summary(gets)}\nPOSTs: {summary(posts)}\n"
                  f"{opened} FastCGI connections opened" + context(web, served))
        assert all(o.ok for o in gets) and all(o.ok for o in posts), report
        assert web.proxy_errors() == [], report
    # Apache opens a connection only when its process's pool has no idle one: at
    # most one per request in flight (20 clients) in each of its 2 processes. More
    # means kept connections were closed under it (without reuse: 11,000).
    assert 0 < opened <= 2 * 20, report


def post_body(i: int) -> bytes:
    return f"post {i} ".encode() * (1 + i % 300)


def digest_ok(i: int, status: int, answer: bytes) -> bool:
    body = post_body(i)
    return status == 200 and answer.split() == [hashlib.sha256(body).hexdigest().encode(), str(len(body)).encode()]


# -- fcgikit.cgi: CGI programs ------------------------------------------------------

def test_cgi_get_with_path_info_and_query(cgi_web, gateway):
    response = requests.get(cgi_web.url("/cgi-bin/env.sh/extra/path?x=1&y=two"), headers={"X-Test": "t1"},
                            timeout=15)
    assert response.status_code == 200, context(cgi_web, gateway)
    assert response.headers["X-Script"] == "env.sh"
    assert {"method=GET", "query=x=1&y=two", "script_name=/cgi-bin/env.sh", "path_info=/extra/path",
            "gateway=CGI/1.1", "http_x_test=t1"} <= lines(response.text), response.text


def test_cgi_perl_and_post_form(cgi_web, gateway):
    hello = requests.get(cgi_web.url("/cgi-bin/hello.pl?name=Ada%20L"), timeout=15)
    assert hello.status_code == 200 and hello.text.startswith("hello, Ada L\n"), context(cgi_web, gateway)
    form = requests.post(cgi_web.url("/cgi-bin/form.py"), data={"a": "1", "b": "two words"}, timeout=15)
    assert form.status_code == 200, context(cgi_web, gateway)
    assert {"content_type=application/x-www-form-urlencoded", "length=15", "a=1", "b=two words"} <= \
        lines(form.text), form.text


def test_cgi_multipart_upload_of_3_mb(cgi_web, gateway):
    data = os.urandom(3 * 1024 * 1024)
    response = requests.post(cgi_web.url("/cgi-bin/upload.py"), files={"file": ("blob.bin", data)},
                             data={"note": "hi"}, timeout=60)
    assert response.status_code == 200, context(cgi_web, gateway)
    assert f"file blob.bin {len(data)} {hashlib.sha256(data).hexdigest()}" in response.text, response.text


def test_cgi_status_and_client_redirect(cgi_web, gateway):
    missing = requests.get(cgi_web.url("/cgi-bin/notfound.pl"), timeout=15)
    assert missing.status_code == 404, context(cgi_web, gateway)
    moved = requests.get(cgi_web.url("/cgi-bin/redirect.sh"), allow_redirects=False, timeout=15)
    assert moved.status_code == 302 and moved.headers["Location"] == "http://example.com/moved?from=cgi"


def test_cgi_local_redirect_reaches_its_target(cgi_web, gateway):
    """`Location: /cgi-bin/env.sh?via=local-redirect` alone (RFC 3875 6.2.2): the
    client gets the target's answer, behind every front-end, not only nginx."""
    response = requests.get(cgi_web.url("/cgi-bin/local-redirect.sh"), allow_redirects=False, timeout=15)
    assert response.status_code == 200, f"{response.status_code} {dict(response.headers)}" + context(cgi_web, gateway)
    assert {"method=GET", "query=via=local-redirect", "script_name=/cgi-bin/env.sh"} <= lines(response.text), \
        f"{dict(response.headers)} {response.text!r}" + context(cgi_web, gateway)


def test_cgi_keep_alive_clients_get_every_answer(cgi_web, gateway):
    """10 keep-alive clients in front of 3 gateway processes: with Apache's
    enablereuse=on each process holds several kept connections and serves them
    all (a libfcgi program would sit on one and the others would time out)."""
    def check(i: int, status: int, body: bytes) -> bool:
        return status == 200 and f"query=i={i}\n".encode() in body

    outcomes = load(cgi_web.url(""), total=200, parallel=10, path_for=lambda i: f"/cgi-bin/env.sh?i={i}",
                    check=check)
    assert all(o.ok for o in outcomes), summary(outcomes) + context(cgi_web, gateway)
    assert max(o.seconds for o in outcomes) < 5, summary(outcomes) + context(cgi_web, gateway)


# -- php-cgi under fcgikit.spawn ------------------------------------------------------

def test_php_cgi_get_with_path_info_and_post(php_web, php):
    got = requests.get(php_web.url("/hello.php/more/path?y=2"), timeout=15)
    assert got.status_code == 200, context(php_web, php)
    assert {"script_name=/hello.php", "path_info=/more/path", "query=y=2", "method=GET"} <= lines(got.text), got.text
    posted = requests.post(php_web.url("/hello.php"), data={"name": "Ada", "n": "7"}, timeout=15)
    assert posted.status_code == 200 and {"post name=Ada", "post n=7"} <= lines(posted.text), \
        posted.text + context(php_web, php)
    outcomes = load(php_web.url(""), total=100, parallel=5, path_for=lambda i: f"/hello.php?i={i}",
                    check=lambda i, status, body: status == 200 and f"query=i={i}\n".encode() in body)
    assert all(o.ok for o in outcomes), summary(outcomes) + context(php_web, php)


# -- lighttpd's bin-path: lighttpd binds and hands the socket over on fd 0 --------------

def test_lighttpd_bin_path_spawns_php_cgi_and_python_programs_on_fd0(docroot):
    """lighttpd binds a Unix socket per backend and starts `max-procs` programs
    with it on fd 0 (FCGI_LISTENSOCK_FILENO): php-cgi, a WSGI app on fcgikit's
    worker (`python3 -m fcgikit.serve MODULE:APP`, which serves fd 0 itself when it
    is a listening socket), and an accept loop (apps/hello_accept.py)."""
    sockets = Path(docroot).parent  # world-readable, short enough for a Unix socket path
    python_env = f'"bin-environment" => ( "PYTHONPATH" => "{REPO / "src"}:{REPO}" ),'
    conf = f"""\
server.stream-response-body = 2
fastcgi.server = (
    ".php" => ((
        "socket" => "{sockets}/php.sock",
        "bin-path" => "{php_cgi()}",
        "max-procs" => 2,
        "bin-environment" => ( "PHP_FCGI_CHILDREN" => "0", "PHP_FCGI_MAX_REQUESTS" => "500" ),
    )),
    "/accept" => ((
        "socket" => "{sockets}/accept.sock",
        "bin-path" => "{sys.executable} {REPO}/apps/hello_accept.py",
        "max-procs" => 1, "check-local" => "disable",
        {python_env}
    )),
    "/" => ((
        "socket" => "{sockets}/wsgi.sock",
        "bin-path" => "{sys.executable} -m fcgikit.serve tests.integration.frontends_app:app",
        "max-procs" => 2, "check-local" => "disable", "fix-root-scriptname" => "enable",
        {python_env}
    )),
)
"""
    with Lighttpd(conf, docroot=docroot) as web:
        php_pids = set()
        for i in range(6):
            reply = requests.get(web.url(f"/hello.php?i={i}"), timeout=15)
            assert reply.status_code == 200 and f"query=i={i}" in reply.text, reply.text + web.logs()
            php_pids.add(reply.text.split("pid=")[1].split()[0])
        env = requests.get(web.url("/env?via=fd0"), timeout=15)
        assert env.status_code == 200 and {"QUERY_STRING=via=fd0", "PATH_INFO=/env"} <= lines(env.text), \
            env.text + web.logs()
        body = os.urandom(2 * 1024 * 1024)
        digest = requests.post(web.url("/sha256"), data=body, timeout=60)
        assert digest.text.split() == [hashlib.sha256(body).hexdigest(), str(len(body))], digest.text + web.logs()
        seen = arrivals(web.url("/stream?n=4&gap=0.5"))
        assert seen[0] < 1.2 and seen[-1] - seen[0] > 1.0, seen
        accept = requests.get(web.url("/accept?q=1"), timeout=15)
        assert accept.status_code == 200 and "Hello from an accept loop" in accept.text, accept.text + web.logs()
        outcomes = load(web.url(""), total=200, parallel=10)
        assert all(o.ok for o in outcomes), summary(outcomes) + web.logs()
        children = read_children(web.process.pid)
        # The programs' stderr is lighttpd's error log: lighttpd closing a connection
        # once the response's end came (before END_REQUEST) is no failure to warn of.
        worker_lines = [line for line in web.error_log().splitlines() if "fcgikit.worker[" in line]
    assert not worker_lines, "\n".join(worker_lines)
    assert sum("php-cgi" in c for c in children) == 2, children
    assert sum("fcgikit.serve" in c for c in children) == 2, children
    assert sum("hello_accept.py" in c for c in children) == 1, children


def read_children(pid: int) -> list[str]:
    """The command lines of `pid`'s child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = read(entry / "stat")
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(read(entry / "cmdline").replace("\0", " "))
    return found
