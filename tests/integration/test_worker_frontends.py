"""The worker behind FastCGI clients other than nginx (Apache mod_proxy_fcgi,
lighttpd, Caddy), on the wire with real sockets: what they send that nginx does
not, and how they send it."""

import hashlib

import pytest

from fcgikit.fastcgi import ClientConnection
from fcgikit.fastcgi.client import exchange as fcgi_exchange

from .serve_support import serve_app
from .test_serve_core import connect, params_for, worker

pytestmark = pytest.mark.integration

MB = 1024 * 1024


def answer(sock, params, body=b"", keep_conn=True) -> tuple[int, bytes]:
    response = fcgi_exchange(sock, ClientConnection(), params, body, keep_conn=keep_conn)
    status, _, text = response.http()
    return status, text


def test_a_chunked_upload_from_caddy_is_read_whole(tmp_path):
    """Caddy sends CONTENT_LENGTH=-1 for a chunked upload: the app gets no bogus
    length, wsgi.input_terminated, and read() gives the whole body."""
    body = bytes(range(256)) * (4 * 1024)  # 1 MiB
    digest = hashlib.sha256(body).hexdigest()
    params = dict(params_for("/body", method="POST"), CONTENT_LENGTH="-1", CONTENT_TYPE="application/octet-stream",
                  HTTP_TRANSFER_ENCODING="chunked")
    with worker(tmp_path) as proc, connect(proc) as sock:
        status, text = answer(sock, params, body)
        assert status == 200
        assert text.decode() == f"{digest} {MB} length=none terminated=True forbidden=[]\n"
        # wsgiref.validate refuses a negative CONTENT_LENGTH: the same request through it
        status, text = answer(sock, dict(params, SCRIPT_NAME="/validated"), body)
        assert (status, text.decode()) == (200, f"{digest} {MB} length=none\n"), proc.log()


@pytest.mark.parametrize("extra", [
    {"HTTP_CONTENT_LENGTH": "11"},  # lighttpd
    {"HTTP_CONTENT_LENGTH": "11", "HTTP_CONTENT_TYPE": "text/plain"},  # Caddy
], ids=["lighttpd", "caddy"])
def test_what_lighttpd_and_caddy_send_passes_wsgiref_validate(tmp_path, extra):
    params = dict(params_for("/validated", method="POST", length=11), CONTENT_TYPE="text/plain", **extra)
    with worker(tmp_path) as proc, connect(proc) as sock:
        status, text = answer(sock, params, b"hello world")
        assert (status, text.decode()) == (200, f"{hashlib.sha256(b'hello world').hexdigest()} 11 length=11\n"), \
            proc.log()
        status, text = answer(sock, dict(params, SCRIPT_NAME="/body"), b"hello world")
        assert text.endswith(b" length=11 terminated=True forbidden=[]\n")


def test_httpoxy_a_proxy_header_never_reaches_the_app(tmp_path):
    """`Proxy: http://evil:1/` arrives as HTTP_PROXY, which many HTTP clients take
    for their outbound proxy: fcgikit.serve on its own (no nginx to strip it)."""
    with serve_app(tmp_path, children=1) as served, connect(served) as sock:
        status, text = answer(sock, dict(params_for("/body"), HTTP_PROXY="http://evil:1/"))
        assert status == 200 and text.endswith(b" length=none terminated=True forbidden=[]\n"), text
