"""The nginx.conf fcgikit renders, in a real nginx on 127.0.0.1, in front of the real
managers (fcgikit.serve with the example app, fcgikit.cgi with the example scripts)."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from fcgikit.deploy import commands
from fcgikit.deploy.nginxconf import render_server_conf
from fcgikit.deploy.spec import CgiService, NginxService, Services, WorkersService
from fcgikit.probe import probe
from fcgikit.testing import free_port
from fcgikit.testing.nginx import Nginx

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def manager(tmp_path: Path, name: str, *args: str):
    """A manager on a free port; yields its address once it answers a FastCGI request."""
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'apps'}")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", *args[:1], "-n", "-a", "127.0.0.1", "-p", str(port),
                                    *args[1:]], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not probe(address, timeout=1)[0]:
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def cgi_root():
    """Outside pytest's private temp dirs: as root the gateway runs scripts as nobody."""
    root = Path(tempfile.mkdtemp(prefix="fcgikit-cgi-"))
    root.chmod(0o755)
    shutil.copytree(ROOT / "apps" / "cgi-bin", root / "cgi-bin")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def static_upstream(name: str, addresses: list[str]) -> str:
    servers = "".join(f"server {address} max_fails=0;" for address in addresses)
    return f"upstream {name} {{ {servers} keepalive 4; }}"


@pytest.fixture
def stack(tmp_path, cgi_root):
    """nginx with the rendered locations; the workers' upstream lists a dead server first.

    This machine's nginx has no Lua module: the upstreams are static here (the Lua
    balancer and the fork-CGI fallback are tested in the image, test_stack_edge.py)."""
    services = Services(nginx=NginxService(client_max_body_size="2m"),
                        workers=WorkersService(app="hello_wsgi:app", fallback="none"), cgi=CgiService())
    with manager(tmp_path, "workers", "fcgikit.serve", "-F", "2", "hello_wsgi:app") as workers, \
            manager(tmp_path, "cgi", "fcgikit.cgi", "-F", "1", "--root", str(cgi_root / "cgi-bin")) as cgi:
        dead = f"127.0.0.1:{free_port()}"  # nothing listens: nginx must move on to the next server
        http = "\n".join([static_upstream("fcgikit_workers", [dead, workers]), static_upstream("fcgikit_cgi", [cgi])])
        server = render_server_conf(services, cgi_root=str(cgi_root))
        with Nginx(server, http) as nginx:
            yield nginx


def test_app_and_cgi_answer_through_the_rendered_config(stack):
    for _ in range(4):  # every request, including those nginx first sends to the dead server
        answer = requests.get(stack.url("/"), timeout=10)
        assert answer.status_code == 200 and answer.text.startswith("Hello from fcgikit"), stack.error_log()
    environ = requests.get(stack.url("/environ?a=1"), timeout=10).text
    assert "PATH_INFO='/environ'" in environ and "SCRIPT_NAME=''" in environ and "QUERY_STRING='a=1'" in environ
    body = os.urandom(1_500_000)
    assert requests.post(stack.url("/echo"), data=body, timeout=10).content == body
    assert requests.post(stack.url("/echo"), data=b"x" * 3_000_000, timeout=10).status_code == 413
    cgi = requests.get(stack.url("/cgi-bin/hello.sh/extra/path?q=1"), timeout=10)
    assert cgi.status_code == 200, (cgi.text, stack.error_log())
    assert requests.get(stack.url("/cgi-bin/hello.pl"), timeout=10).status_code == 200
    assert requests.get(stack.url("/cgi-bin/missing"), timeout=10).status_code == 404


def test_a_proxy_header_does_not_reach_the_app_as_http_proxy(stack):
    # httpoxy: the app would see the client's `Proxy:` header as HTTP_PROXY, its HTTP
    # library's outgoing proxy.
    environ = requests.get(stack.url("/environ"), headers={"Proxy": "http://evil.invalid:1/"}, timeout=10).text
    assert "evil.invalid" not in environ, environ


def pool_flags_as_deployed(argv: list[str], status_file: Path) -> list[str]:
    """The flags `fcgikit up` gives a manager (from its command line), less the address,
    port and status file, which the test chooses."""
    flags = argv[3:]
    for option in ("-n",):
        flags.remove(option)
    for option, value in (("-a", None), ("-p", None), ("--status-file", str(status_file))):
        at = flags.index(option)
        if value is None:
            del flags[at:at + 2]
        else:
            flags[at + 1] = value
    return flags


def timeouts(status_files) -> int:
    """Processes the managers killed as stuck, from their status files."""
    return sum(json.loads(path.read_text())["timeouts"] for path in status_files if path.exists())


def test_a_request_past_its_timeout_gets_504_once_and_is_never_replayed(tmp_path, cgi_root):
    """The request timeout as deployed (nginx's timeouts and the managers' flags rendered
    from one spec), two worker managers behind one upstream: a request whose app sleeps
    past the timeout gets 504 at the timeout, and exactly one process is killed for it
    (a replay would reach the other manager, or the first one's next child)."""
    shutil.copy(ROOT / "tests" / "cgi-bin" / "slow.sh", cgi_root / "cgi-bin" / "slow.sh")
    timeout = 2
    services = Services(nginx=NginxService(connect_timeout=1),
                        workers=WorkersService(app="hello_wsgi:app", processes=1, timeout=timeout, fallback="none"),
                        cgi=CgiService(processes=1, timeout=timeout))
    status_files = [tmp_path / "status-1.json", tmp_path / "status-2.json"]
    worker_argv = commands.worker_command(services.workers)
    cgi_argv = commands.cgi_command(services.cgi)
    cgi_flags = pool_flags_as_deployed(cgi_argv, tmp_path / "status-cgi.json")
    cgi_flags[cgi_flags.index("--root") + 1] = str(cgi_root / "cgi-bin")
    with manager(tmp_path, "w1", worker_argv[2], *pool_flags_as_deployed(worker_argv, status_files[0])) as w1, \
            manager(tmp_path, "w2", worker_argv[2], *pool_flags_as_deployed(worker_argv, status_files[1])) as w2, \
            manager(tmp_path, "cgi", cgi_argv[2], *cgi_flags) as cgi:
        http = "\n".join([static_upstream("fcgikit_workers", [w1, w2]), static_upstream("fcgikit_cgi", [cgi])])
        server = render_server_conf(services, cgi_root=str(cgi_root))
        with Nginx(server, http) as nginx:
            for path in ("/sleep?s=20", "/cgi-bin/slow.sh?20"):
                began = time.monotonic()
                answer = requests.get(nginx.url(path), timeout=30)
                took = time.monotonic() - began
                assert answer.status_code == 504, (path, answer.status_code, took, nginx.error_log())
                assert timeout - 0.2 <= took <= timeout + 1.5, (path, took)
            # The stuck worker process is killed after nginx gave up (KILL_MARGIN), once.
            deadline = time.monotonic() + timeout + commands.KILL_MARGIN + 5
            while timeouts(status_files) < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(timeout + commands.KILL_MARGIN + 1)  # time enough for a replay to be killed too
            logs = "\n".join(path.read_text() for path in tmp_path.glob("w*.log"))
            assert timeouts(status_files) == 1, logs
            assert logs.count("stuck") == 1, logs
            assert requests.get(nginx.url("/"), timeout=10).status_code == 200
