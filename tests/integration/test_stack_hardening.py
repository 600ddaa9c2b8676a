"""The stack as `fcgikit up` starts it, attacked and inspected: every container confined
(read as `docker inspect` reports it), a request past its timeout answered 504 once and
never replayed, httpoxy neutralised at the edge, and a CGI fork bomb kept inside its
container while the workers go on answering.

One stack for the module (its own image prefix and project, like test_stack.py), with a
short request timeout and a fork bomb among the CGI scripts.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
import requests
import yaml

from fcgikit.deploy import commands
from fcgikit.deploy.model import LABEL_PROJECT, STATUS_FILE
from tests.integration.stack_support import (
    ROOT,
    USER_APP,
    fcgikit,
    logs_on_failure,
    project_logs,
    remove_project,
    write_spec,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TIMEOUT = 2  # workers' request timeout (s)
CGI_TIMEOUT = 4
FORK_BOMB = """#!/usr/bin/env python3
# A fork bomb that does not give up: every process forks again and again, a failed fork
# is retried, until the gateway kills them all at its timeout.
import os, sys, time

sys.stdout.write("Content-Type: text/plain\\r\\n\\r\\n")
sys.stdout.flush()
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""
MiB = 1024 * 1024
# These ask the example app for /environ and /sleep; `fcgikit test --app` runs the rest.
example_app_only = pytest.mark.skipif(bool(USER_APP), reason="needs the example app's /environ and /sleep")


@pytest.fixture(scope="module")
def stack(engine, cli_env, tmp_path_factory):
    """(project, url, spec path): 2 worker containers of 2 processes, 1 CGI gateway."""
    tmp_path = tmp_path_factory.mktemp("hardening")
    scripts = tmp_path / "cgi-bin"
    shutil.copytree(ROOT / "apps" / "cgi-bin", scripts)
    (scripts / "bomb.py").write_text(FORK_BOMB)
    (scripts / "bomb.py").chmod(0o755)
    spec = write_spec(tmp_path, workers=2, cgi=1)
    data = yaml.safe_load(spec.read_text())
    data["services"]["workers"].update(timeout=TIMEOUT)
    data["services"]["cgi"].update(scripts=str(scripts), timeout=CGI_TIMEOUT)
    spec.write_text(yaml.safe_dump(data))
    project = f"h{time.monotonic_ns() % 10**10}"
    try:
        up = fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = next(word for word in up.stdout.split() if word.startswith("http://"))
        yield project, url, spec
    finally:
        remove_project(engine, project)


def containers(engine, project: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for container in engine.containers.list(filters={"label": f"{LABEL_PROJECT}={project}"}):
        found.setdefault(container.labels["fcgikit.service"], []).append(container)
    return found


def test_every_container_is_confined_as_docker_inspect_reports(engine, stack):
    project, url, _ = stack
    limits = {"workers": (512 * MiB, 256), "cgi": (256 * MiB, 128), "nginx": (256 * MiB, 256)}
    tmpfs = {"workers": {"/tmp"}, "cgi": {"/tmp"}, "nginx": {"/run/nginx", "/run/fcgikit", "/var/lib/nginx"}}
    found = containers(engine, project)
    assert sorted((s, len(c)) for s, c in found.items()) == [("cgi", 1), ("nginx", 1), ("workers", 2)]
    with logs_on_failure(engine, project):
        for service, group in found.items():
            for container in group:
                host = container.attrs["HostConfig"]
                where = f"{container.name}: "
                assert host["ReadonlyRootfs"] is True, where
                assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], where + str(host["CapAdd"])
                assert host["SecurityOpt"] == ["no-new-privileges"], where
                assert (host["Memory"], host["PidsLimit"]) == limits[service], where
                assert set(host["Tmpfs"]) == tmpfs[service], where
                assert not host["Privileged"], where
                # Nothing but the tmpfs directories can be written.
                wrote = container.exec_run(["sh", "-c", "touch /etc/x || touch /srv/x || touch /opt/x"])
                assert wrote.exit_code != 0 and b"Read-only file system" in wrote.output, where
                assert container.exec_run(["sh", "-c", f"touch {sorted(tmpfs[service])[0]}/x"]).exit_code == 0, where
                # Each process runs without capabilities and cannot gain any.
                status = container.exec_run(["cat", "/proc/1/status"]).output.decode()
                fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
                assert fields["CapEff"].strip() == "0" * 16 and fields["CapBnd"].strip() == "0" * 16, where
                assert fields["NoNewPrivs"].strip() == "1", where
                assert fields["Uid"].split()[0] != "0", where + "runs as root"
        [nginx] = found["nginx"]
        assert nginx.attrs["Config"]["User"] == "www-data"
        assert nginx.attrs["Config"]["Healthcheck"]["Test"][0] in ("CMD", "CMD-SHELL")
        deadline = time.monotonic() + 60
        while nginx.attrs["State"]["Health"]["Status"] != "healthy" and time.monotonic() < deadline:
            time.sleep(1)
            nginx.reload()
        assert nginx.attrs["State"]["Health"]["Status"] == "healthy", nginx.attrs["State"]["Health"]
        # nginx.conf lives on a volume of the container's own, so `docker cp` can write it.
        assert [m["Destination"] for m in nginx.attrs["Mounts"] if m["Type"] == "volume"] == ["/etc/nginx"]
        assert requests.get(url, timeout=10).status_code == 200


@example_app_only
def test_a_proxy_header_does_not_reach_the_app(stack):
    _, url, _ = stack
    environ = requests.get(url + "environ", headers={"Proxy": "http://evil.invalid:1/"}, timeout=10).text
    assert "PATH_INFO='/environ'" in environ and "evil.invalid" not in environ


def pool_timeouts(engine, project: str) -> int:
    """Processes the workers' managers killed as stuck (their status files)."""
    return sum(json.loads(c.exec_run(["cat", STATUS_FILE]).output)["timeouts"]
               for c in containers(engine, project)["workers"])


@example_app_only
def test_a_request_past_its_timeout_gets_504_and_kills_one_process(engine, stack):
    project, url, _ = stack
    before = pool_timeouts(engine, project)
    began = time.monotonic()
    answer = requests.get(url + "sleep?s=30", timeout=60)
    took = time.monotonic() - began
    print(f"GET /sleep?s=30 with timeout {TIMEOUT}: {answer.status_code} in {took:.2f}s")
    with logs_on_failure(engine, project):
        assert answer.status_code == 504, (answer.status_code, took)
        assert TIMEOUT - 0.2 <= took <= TIMEOUT + 2, took
        # The manager kills the stuck process once nginx has given up; a replay would be
        # killed too, on the other container or the same one, a timeout later.
        time.sleep(2 * TIMEOUT + commands.KILL_MARGIN + 3)
        assert pool_timeouts(engine, project) - before == 1


def pids_of(container) -> int:
    return int(container.stats(stream=False)["pids_stats"].get("current", 0))


def test_a_cgi_fork_bomb_stays_in_its_container_and_the_workers_keep_answering(engine, stack):
    project, url, _ = stack
    found = containers(engine, project)
    [cgi] = found["cgi"]
    # Never set off a fork bomb where nothing bounds it: it would take the whole machine.
    assert 0 < cgi.attrs["HostConfig"]["PidsLimit"] <= 128, "the cgi container has no pids limit"
    worker_pids = {c.name: pids_of(c) for c in found["workers"]}
    failures: list[str] = []
    latencies: list[float] = []
    stop = threading.Event()

    def app_client():  # one kept-alive client of the workers, all through the bomb
        with requests.Session() as session:
            while not stop.is_set():
                began = time.monotonic()
                try:
                    answer = session.get(url, timeout=10)
                    if answer.status_code != 200:
                        failures.append(f"HTTP {answer.status_code}")
                except requests.RequestException as exc:
                    failures.append(repr(exc))
                latencies.append(time.monotonic() - began)
                time.sleep(0.05)

    bombs = [threading.Thread(target=lambda: requests.get(url + "cgi-bin/bomb.py", timeout=60)) for _ in range(10)]
    client = threading.Thread(target=app_client)
    client.start()
    for bomb in bombs:
        bomb.start()
    peak = 0
    deadline = time.monotonic() + CGI_TIMEOUT * 3
    while time.monotonic() < deadline:
        peak = max(peak, pids_of(cgi))
    for bomb in bombs:
        bomb.join(timeout=90)
    stop.set()
    client.join(timeout=30)
    print(f"fork bomb x10: peak {peak} processes in the cgi container; {len(latencies)} requests to the "
          f"workers meanwhile, {len(failures)} failed, slowest {max(latencies, default=0):.3f}s")
    with logs_on_failure(engine, project):
        assert peak > 100, f"the bomb did not go off (peak {peak} processes)"
        # The cgi container's pids limit: a fork stops there. Processes that `docker exec`
        # puts in (the healthcheck's probe, a status read) join past it, a few at most.
        assert peak <= 128 + 16, peak
        assert failures == [], failures[:5]
        assert len(latencies) > 20 and max(latencies) < 5, (len(latencies), max(latencies, default=0))
        for container in found["workers"]:  # the workers' containers did not take part
            assert pids_of(container) <= worker_pids[container.name] + 4
        # The gateway kills each bomb at its timeout; then the container is back to normal.
        deadline = time.monotonic() + 60
        while pids_of(cgi) > 16 and time.monotonic() < deadline:
            time.sleep(1)
        assert pids_of(cgi) <= 16, project_logs(engine, project)
        assert requests.get(url + "cgi-bin/hello.sh", timeout=10).status_code == 200
