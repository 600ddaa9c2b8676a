"""Mixed concurrent traffic through nginx with kept-alive FastCGI connections
(`fastcgi_keep_conn on` + upstream keepalive): bodies read, ignored, large
answers, all correct, and nothing in nginx's error log."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from fcgikit.testing.nginx import Nginx

from .cgi_support import docroot_with_scripts, our_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site():
    top, docroot = docroot_with_scripts()
    with our_gateway(top, docroot / "cgi-bin", "--timeout", "10", "--max-procs", "3", children=3) as gateway:
        server = f"""location /cgi-bin/ {{
            root {docroot};
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_keep_conn on;
            fastcgi_pass cgi;
        }}"""
        upstream = f"upstream cgi {{ server unix:{gateway.socket}; keepalive 8; }}"
        with Nginx(server, upstream) as ngx:
            yield ngx, gateway
    shutil.rmtree(top, ignore_errors=True)


def one_request(ngx, i: int) -> str | None:
    """None when the answer is right, else what was wrong."""
    session = requests.Session()
    kind = i % 4
    if kind == 0:
        r = session.get(ngx.url(f"/cgi-bin/env.sh?i={i}"), timeout=30)
        ok = f"query=i={i}\n" in r.text
    elif kind == 1:
        r = session.post(ngx.url("/cgi-bin/form.py"), data={"n": str(i), "pad": "p" * 100_000}, timeout=30)
        ok = f"n={i}\n" in r.text
    elif kind == 2:
        r = session.post(ngx.url("/cgi-bin/ignore-stdin.sh"), data=b"x" * 500_000, timeout=30)
        ok = r.text == "I did not read your 500000 bytes\n"
    else:
        r = session.get(ngx.url("/cgi-bin/big.py"), timeout=30)
        ok = len(r.content) == 32 * 65 * 1000 + 4
    return None if ok and r.status_code == 200 else f"#{i}: {r.status_code} {r.text[:80]!r}"


def test_mixed_concurrent_requests_on_kept_alive_connections(site):
    ngx, gateway = site
    with ThreadPoolExecutor(8) as pool:
        wrong = [w for w in pool.map(lambda i: one_request(ngx, i), range(80)) if w]
    assert wrong == [], f"{wrong[:5]}\n{ngx.error_log()}\n{gateway.log()}"
    assert "[error]" not in ngx.error_log(), ngx.error_log()
