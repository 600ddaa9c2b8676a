"""The fork-CGI fallback for a WSGI app (issue 18): `--wsgi-fallback MODULE:APP`
makes the gateway serve a request that carries the FastCGI param
FCGIKIT_FALLBACK by running the app (apps/hello_wsgi.py) once, in a fresh
process, as a CGI program. The real gateway over FastCGI, and behind a real nginx."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import requests

from fcgikit.testing.nginx import Nginx

from .cgi_support import docroot_with_scripts, our_gateway, params_for

pytestmark = pytest.mark.integration

APPS = Path(__file__).resolve().parents[2] / "apps"


def interpreter() -> str:
    """As root the gateway runs its programs as nobody, who may not enter root's home (pyenv)."""
    return "/usr/bin/python3" if os.geteuid() == 0 and sys.executable.startswith("/root/") else sys.executable


def fallback_gateway(top: Path, root: Path, *extra: str):
    return our_gateway(top, root, "--timeout", "3", "--wsgi-fallback", "hello_wsgi:app",
                       "--wsgi-fallback-dir", str(APPS), "--wsgi-fallback-python", interpreter(), *extra,
                       children=2)


@pytest.fixture(scope="module")
def tree():
    top, docroot = docroot_with_scripts()
    yield top, docroot / "cgi-bin"
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(tree):
    top, root = tree
    with fallback_gateway(top, root) as gw:
        yield gw


def app_params(root: Path, path: str, query: str = "", method: str = "GET", **extra) -> dict:
    """What the edge's `location /` sends (SCRIPT_NAME "", PATH_INFO $uri), plus the marker."""
    params = params_for(root, "", query=query, method=method, PATH_INFO=path, REQUEST_URI=path,
                        FCGIKIT_FALLBACK="1", **extra)
    del params["SCRIPT_FILENAME"]
    return params


def test_a_marked_request_is_served_by_the_app_in_a_fresh_process(tree, gateway):
    _, root = tree
    pids = set()
    for _ in range(3):
        status, headers, body = gateway.request(app_params(root, "/")).http()
        assert status == 200, (body, gateway.log())
        assert ("X-Fcgikit-Fallback", "cgi") in headers
        pids.add(re.fullmatch(rb"Hello from fcgikit \(pid (\d+)\)\n", body).group(1))
    assert len(pids) == 3      # one process per request
    log = gateway.wait_for_log("fallback: GET / -> hello_wsgi:app")
    assert log.count("fallback: GET / -> hello_wsgi:app (one process): 200 in ") == 3, log


@pytest.mark.parametrize("params", [
    {"SCRIPT_NAME": "", "PATH_INFO": "/environ"},       # fcgikit's nginx.conf
    {"SCRIPT_NAME": "/environ"},                        # Debian's fastcgi_params (no PATH_INFO)
])
def test_the_app_sees_the_original_path(tree, gateway, params):
    _, root = tree
    request = app_params(root, "/environ", query="a=1")
    request.pop("PATH_INFO")
    request.update(params)
    status, _, body = gateway.request(request).http()
    assert status == 200, body
    assert b"SCRIPT_NAME=''\n" in body and b"PATH_INFO='/environ'\n" in body
    assert b"QUERY_STRING='a=1'\n" in body and b"wsgi.run_once=True\n" in body


def test_a_body_reaches_the_app(tree, gateway):
    _, root = tree
    body = os.urandom(300_000)
    params = app_params(root, "/sha256", method="POST", CONTENT_LENGTH=str(len(body)),
                        CONTENT_TYPE="application/octet-stream")
    status, _, answer = gateway.request(params, stdin=body).http()
    assert (status, answer.split()) == (200, [hashlib.sha256(body).hexdigest().encode(), b"300000"]), gateway.log()


def test_the_fallback_is_under_the_program_timeout(tree, gateway):
    _, root = tree
    status, headers, _ = gateway.request(app_params(root, "/sleep", query="s=30"), timeout=20).http()
    assert (status, dict(headers).get("X-Fcgikit-Fallback")) == (504, "cgi"), gateway.log()


def test_unmarked_requests_are_plain_cgi(tree, gateway):
    _, root = tree
    status, headers, body = gateway.request(params_for(root, "/cgi-bin/env.sh")).http()
    assert status == 200 and b"gateway=CGI/1.1" in body
    assert "X-Fcgikit-Fallback" not in dict(headers)
    # A client's header `Fcgikit-Fallback: 1` arrives as HTTP_FCGIKIT_FALLBACK: not the marker.
    params = app_params(root, "/")
    params["HTTP_FCGIKIT_FALLBACK"] = params.pop("FCGIKIT_FALLBACK")
    status, headers, _ = gateway.request(params).http()
    assert status in (403, 404) and "X-Fcgikit-Fallback" not in dict(headers)


def test_without_the_option_the_param_is_ignored(tree):
    top, root = tree
    with our_gateway(top, root, children=1) as plain:
        status, headers, _ = plain.request(app_params(root, "/")).http()
        assert status in (403, 404) and "X-Fcgikit-Fallback" not in dict(headers)
        status, _, body = plain.request(params_for(root, "/cgi-bin/env.sh", FCGIKIT_FALLBACK="1")).http()
        assert status == 200 and b"gateway=CGI/1.1" in body


def test_an_app_that_cannot_load_is_502_with_the_reason_logged(tree):
    top, root = tree
    gateway = our_gateway(top, root, "--wsgi-fallback", "no_such_module:app", "--wsgi-fallback-dir", str(APPS),
                          "--wsgi-fallback-python", interpreter(), children=1)
    with gateway:
        status, headers, _ = gateway.request(app_params(root, "/")).http()
        assert (status, dict(headers).get("X-Fcgikit-Fallback")) == (502, "cgi")
        assert "cannot import 'no_such_module'" in gateway.wait_for_log("cannot import")


NGINX_SERVER = """
    location / {{
        include fastcgi_params;
        fastcgi_param SCRIPT_NAME "";
        fastcgi_param PATH_INFO $uri;
        fastcgi_pass unix:{dead};                # no worker answers: connect() fails, 502
        error_page 502 503 = @fcgikit_fallback;
    }}
    location @fcgikit_fallback {{
        include fastcgi_params;
        fastcgi_param SCRIPT_NAME "";
        fastcgi_param PATH_INFO $uri;
        fastcgi_param FCGIKIT_FALLBACK 1;     # what marks the request for the gateway
        fastcgi_pass unix:{socket};
    }}
"""


def test_behind_nginx_when_no_worker_answers(tree, gateway):
    top, _ = tree
    server = NGINX_SERVER.format(socket=gateway.socket, dead=top / "no-worker-here.sock")
    with Nginx(server) as ngx:
        with requests.Session() as session:   # keep-alive client
            for _ in range(3):
                response = session.post(ngx.url("/echo"), data=b"hello fallback", timeout=30)
                assert (response.status_code, response.content) == (200, b"hello fallback"), ngx.error_log()
                assert response.headers["x-fcgikit-fallback"] == "cgi"
            response = session.get(ngx.url("/environ?x=1"), timeout=30)
            assert "PATH_INFO='/environ'" in response.text and "REQUEST_METHOD='GET'" in response.text
