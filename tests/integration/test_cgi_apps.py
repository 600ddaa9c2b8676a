"""The example legacy scripts in apps/cgi-bin (served at /cgi-bin/ in the images)
answer through nginx and fcgikit.cgi."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from fcgikit.testing.nginx import Nginx

from .cgi_support import our_gateway, world_readable_tree

pytestmark = pytest.mark.integration

APPS = Path(__file__).resolve().parent.parent.parent / "apps" / "cgi-bin"


@pytest.fixture(scope="module")
def site():
    top = world_readable_tree()
    root = top / "cgi-bin"
    shutil.copytree(APPS, root)
    root.chmod(0o755)
    with our_gateway(top, root, "--timeout", "10") as gateway:
        # The images' nginx.conf style: DOCUMENT_ROOT + SCRIPT_NAME, no SCRIPT_FILENAME.
        conf = f"""location /cgi-bin/ {{
            include fastcgi_params;
            fastcgi_param DOCUMENT_ROOT {top};
            fastcgi_param SCRIPT_NAME $uri;
            fastcgi_keep_conn on;
            fastcgi_pass unix:{gateway.socket};
        }}"""
        with Nginx(conf) as ngx:
            yield ngx, gateway
    shutil.rmtree(top, ignore_errors=True)


def test_every_example_is_executable_in_git():
    listing = subprocess.run(["git", "ls-files", "-s", "apps/cgi-bin"], cwd=APPS.parent.parent,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    if not listing:
        pytest.skip("not a git checkout")
    assert all(line.startswith("100755") for line in listing), listing


def test_shell_script_is_posix(site):
    subprocess.run(["dash", "-n", str(APPS / "hello.sh")], check=True)
    ngx, gateway = site
    r = requests.get(ngx.url("/cgi-bin/hello.sh?x=1"), timeout=10)
    assert r.status_code == 200 and "query: x=1\n" in r.text, gateway.log()


@pytest.mark.parametrize("script, expected", [
    ("hello.pl?name=Larry", "Hello, Larry, from Perl"),
    ("hello.py?name=Guido", "Hello, Guido, from Python"),
    ("echo.py", "<form method=\"post\">"),
])
def test_examples_answer(site, script, expected):
    ngx, gateway = site
    r = requests.get(ngx.url("/cgi-bin/" + script), timeout=10)
    assert r.status_code == 200 and expected in r.text, (r.text, gateway.log(), ngx.error_log())


def test_echo_form_post(site):
    ngx, gateway = site
    r = requests.post(ngx.url("/cgi-bin/echo.py"), data={"name": "Ada", "message": "<b>hi</b>"}, timeout=10)
    assert r.status_code == 200, gateway.log()
    assert "<th>name</th><td>Ada</td>" in r.text and "&lt;b&gt;hi&lt;/b&gt;" in r.text
