"""Local redirects (RFC 3875 6.2.2: a program prints only `Location: /path`)
reach their target behind any front-end (issue 17 point 2): the real gateway
over FastCGI in each --local-redirect mode, and behind a real lighttpd, which
does not follow X-Accel-Redirect."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import requests

from fcgikit.testing import free_port, wait_for_port

from .cgi_support import docroot_with_scripts, our_gateway, params_for

pytestmark = pytest.mark.integration

SCRIPTS = {
    # the target of the redirects: what it was asked, and the body it got
    "body.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\n"
               "printf 'method=%s query=%s length=[%s] type=[%s] from=%s status=%s\\n' \"$REQUEST_METHOD\" "
               "\"$QUERY_STRING\" \"$CONTENT_LENGTH\" \"$CONTENT_TYPE\" \"$REDIRECT_URL\" \"$REDIRECT_STATUS\"\n"
               "printf 'body=['; cat; printf ']\\n'\n",
    "to-body.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/body.sh?via=to-body\\n\\nthis body is dropped\\n'\n",
    "to-static.sh": "#!/bin/sh\nprintf 'Location: /target.txt\\n\\n'\n",
    "to-missing.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/missing.sh?x=1\\n\\n'\n",
    "to-escaped.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/sp%%20ace.sh?q=%%41\\n\\n'\n",
    "sp ace.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nspace ran, query=%s\\n' \"$QUERY_STRING\"\n",
    "to-dotdot.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/%%2e%%2e/%%2e%%2e/bin/sh\\n\\n'\n",
    "loop-a.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/loop-b.sh\\n\\n'\n",
    "loop-b.sh": "#!/bin/sh\nprintf 'Location: /cgi-bin/loop-a.sh\\n\\n'\n",
    # chain.sh?N redirects to chain.sh?N+1 until N is 12
    "chain.sh": "#!/bin/sh\nn=${QUERY_STRING:-0}\nif [ \"$n\" -lt 12 ]; then\n"
                "  printf 'Location: /cgi-bin/chain.sh?%s\\n\\n' $((n + 1))\nelse\n"
                "  printf 'Content-Type: text/plain\\n\\nend of chain at %s\\n' \"$n\"\nfi\n",
}


@pytest.fixture(scope="module")
def tree():
    top, docroot = docroot_with_scripts()
    root = docroot / "cgi-bin"
    for name, text in SCRIPTS.items():
        (root / name).write_text(text)
        (root / name).chmod(0o755)
    (docroot / "target.txt").write_text("the static target\n")
    (docroot / "target.txt").chmod(0o644)
    yield top, root
    shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="module")
def gateways(tree):
    """One gateway per mode, each with its own socket."""
    top, root = tree
    started = {}
    try:
        for mode in ("auto", "follow", "x-accel", "client"):
            extra = ["--timeout", "5"] + (["--local-redirect", mode] if mode != "auto" else [])
            started[mode] = our_gateway(top, root, *extra, children=2).start()
        yield started
    finally:
        for gateway in started.values():
            gateway.stop()


def get(gateway, root, path, software="lighttpd/1.4.69", method="GET", body=b""):
    script, _, query = path.partition("?")
    params = params_for(root, script, query=query, method=method, SERVER_SOFTWARE=software)
    if body:
        params.update(CONTENT_LENGTH=str(len(body)), CONTENT_TYPE="application/x-www-form-urlencoded")
    status, headers, text = gateway.request(params, stdin=body).http()
    return status, dict(headers), text


def test_follow_runs_the_target_program_as_a_get_without_the_body(tree, gateways):
    _, root = tree
    gateway = gateways["follow"]
    status, headers, text = get(gateway, root, "/cgi-bin/to-body.sh", method="POST", body=b"a=1&b=2")
    assert status == 200, (text, gateway.log())
    assert "X-Accel-Redirect" not in headers and "Location" not in headers
    assert text == (b"method=GET query=via=to-body length=[] type=[] from=/cgi-bin/to-body.sh status=200\n"
                    b"body=[]\n"), gateway.log()
    assert "local redirect to /cgi-bin/body.sh?via=to-body: followed" in gateway.log()


def test_follow_decodes_the_location_path(tree, gateways):
    _, root = tree
    status, _, text = get(gateways["follow"], root, "/cgi-bin/to-escaped.sh")
    assert (status, text) == (200, b"space ran, query=q=%41\n"), gateways["follow"].log()


@pytest.mark.parametrize("script, location", [
    ("/cgi-bin/to-static.sh", "/target.txt"),                # not under --root: the web server's
    ("/cgi-bin/to-missing.sh", "/cgi-bin/missing.sh?x=1"),   # no such program
    ("/cgi-bin/to-dotdot.sh", "/cgi-bin/%2e%2e/%2e%2e/bin/sh"),  # refused: never run, the client asks itself
])
def test_follow_hands_a_target_that_is_no_program_to_the_client(tree, gateways, script, location):
    _, root = tree
    status, headers, text = get(gateways["follow"], root, script)
    assert (status, headers.get("Location"), text) == (302, location, b""), gateways["follow"].log()
    status, headers, _ = get(gateways["follow"], root, script, method="POST", body=b"x=1")
    assert (status, headers.get("Location")) == (303, location)   # See Other: fetch it with GET


def test_follow_stops_a_loop_with_502(tree, gateways):
    _, root = tree
    status, _, text = get(gateways["follow"], root, "/cgi-bin/loop-a.sh")
    assert status == 502, text
    assert "local redirect loop: /cgi-bin/loop-a.sh was run already" in gateways["follow"].log()


def test_follow_bounds_the_number_of_hops(tree, gateways):
    _, root = tree
    gateway = gateways["follow"]
    status, _, text = get(gateway, root, "/cgi-bin/chain.sh?2")     # 10 hops: allowed
    assert (status, text) == (200, b"end of chain at 12\n"), gateway.log()
    status, _, text = get(gateway, root, "/cgi-bin/chain.sh?1")     # 11 hops: too many
    assert status == 502, text
    assert "more than 10 local redirects in a row" in gateway.log()


def test_x_accel_mode_hands_the_path_to_nginx(tree, gateways):
    _, root = tree
    for software in ("lighttpd/1.4.69", "nginx/1.22.1"):
        status, headers, text = get(gateways["x-accel"], root, "/cgi-bin/to-body.sh", software=software)
        assert (status, headers.get("X-Accel-Redirect"), text) == (200, "/cgi-bin/body.sh?via=to-body", b"")


def test_client_mode_always_redirects_the_client(tree, gateways):
    _, root = tree
    status, headers, _ = get(gateways["client"], root, "/cgi-bin/to-body.sh", software="nginx/1.22.1")
    assert (status, headers.get("Location")) == (302, "/cgi-bin/body.sh?via=to-body")


def test_auto_is_x_accel_behind_nginx_and_follow_behind_anything_else(tree, gateways):
    _, root = tree
    status, headers, _ = get(gateways["auto"], root, "/cgi-bin/to-body.sh", software="nginx/1.22.1")
    assert (status, headers.get("X-Accel-Redirect")) == (200, "/cgi-bin/body.sh?via=to-body")
    for software in ("lighttpd/1.4.69", "Apache/2.4.62 (Debian)", "Caddy", ""):
        status, headers, text = get(gateways["auto"], root, "/cgi-bin/to-body.sh", software=software)
        assert status == 200 and text.startswith(b"method=GET query=via=to-body"), (software, text)
        assert "X-Accel-Redirect" not in headers


LIGHTTPD_CONF = """
server.modules = ("mod_fastcgi")
server.document-root = "{docroot}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{log}"
mimetype.assign = (".txt" => "text/plain")
fastcgi.server = ("/cgi-bin/" => (("socket" => "{socket}", "check-local" => "disable")))
"""


@pytest.fixture(scope="module")
def lighttpd(tree):
    """A real lighttpd (which ignores X-Accel-Redirect) in front of the gateway in its default mode."""
    binary = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
    if not Path(binary).exists():
        pytest.fail("lighttpd is needed (./setup.sh installs it)")
    top, root = tree
    gateway = our_gateway(top, root, "--timeout", "5", children=2).start()
    conf_dir = Path(tempfile.mkdtemp(prefix="fcgikit-lighttpd-"))
    port = free_port()
    conf = conf_dir / "lighttpd.conf"
    conf.write_text(LIGHTTPD_CONF.format(docroot=root.parent, port=port, log=conf_dir / "error.log",
                                         socket=gateway.socket))
    process = subprocess.Popen([binary, "-D", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, timeout=10, process=process)
        yield f"http://127.0.0.1:{port}", gateway
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        gateway.stop()
        shutil.rmtree(conf_dir, ignore_errors=True)


def test_behind_lighttpd_a_local_redirect_to_a_program_is_served_in_place(lighttpd):
    url, gateway = lighttpd
    with requests.Session() as session:   # one kept connection for the lot
        for _ in range(3):
            response = session.post(url + "/cgi-bin/to-body.sh", data=b"a=1", allow_redirects=False, timeout=30)
            assert response.status_code == 200, (response.text, gateway.log())
            assert response.text.startswith("method=GET query=via=to-body length=[]"), response.text
            assert "x-accel-redirect" not in response.headers


def test_behind_lighttpd_a_local_redirect_to_a_static_file_reaches_it(lighttpd):
    url, gateway = lighttpd
    response = requests.get(url + "/cgi-bin/to-static.sh", allow_redirects=False, timeout=30)
    assert (response.status_code, response.headers.get("location")) == (302, "/target.txt"), gateway.log()
    response = requests.get(url + "/cgi-bin/to-static.sh", timeout=30)   # as a browser follows it
    assert (response.status_code, response.text) == (200, "the static target\n")
    assert [r.status_code for r in response.history] == [302]
