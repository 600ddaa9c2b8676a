"""The edge on the local Docker engine, driven through the real `fcgikit` CLI.

It follows the workers without reloading nginx (issue 18, issue 12.3), with keep-alive clients:
- `scale workers=2 -> 8 -> 1 -> 3` under load: no failed request, no reload (nginx's
  worker processes are the same ones at the end), new replicas take traffic at once;
- `docker kill` of a worker container under load: no failed request, none slower than 1 s;
- worker processes killed in every container under load: no failed request;
- every worker container stopped: the CGI gateway answers (X-Fcgikit-Fallback: cgi), and
  FastCGI is back within 2 s of a worker answering again.
Load is sent to 127.0.0.1 only, by a few threads each holding one HTTP keep-alive
connection (requests.Session), for a bounded time.

Replacing nginx when its new port is taken: the site stays up. A changed `nginx.port` makes
`up` replace the nginx container. If another program holds the new port, `up` says so in one
line before it touches anything; if the port is taken anyway between that check and the new
nginx's start, the old nginx is started again, with the backends it had.

Real Docker, real listeners; the fixtures (unique image prefix and project) are tests/conftest.py's.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import docker.errors
import pytest
import requests
import yaml

from fcgikit.deploy.docker_backend import nginx_worker_pids
from fcgikit.deploy.errors import FcgikitError
from fcgikit.deploy.images import DEFAULT_BASE, ImageNames
from fcgikit.deploy.model import LABEL_PROJECT, NGINX_PID_PATH, STATUS_FILE
from fcgikit.deploy.operations import Stack
from fcgikit.deploy.spec import load_stack_spec, with_app
from tests.integration.stack_support import USER_APP, fcgikit, logs_on_failure, status, write_spec

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]
example_app_only = pytest.mark.skipif(bool(USER_APP), reason="checks the example app's answers")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def with_port(spec: Path, port: int) -> Path:
    data = yaml.safe_load(spec.read_text())
    data["services"]["nginx"]["port"] = port
    spec.write_text(yaml.safe_dump(data))
    return spec


def listener(port: int) -> socket.socket:
    """Another program's socket on `port` (every address, as a web server would hold it)."""
    held = socket.socket()
    held.bind(("0.0.0.0", port))
    held.listen()
    return held


def nginx_containers(engine, project: str) -> list[tuple[str, str]]:
    found = engine.containers.list(all=True, filters={"label": [f"{LABEL_PROJECT}={project}", "fcgikit.service=nginx"]})
    return sorted((c.name, c.status) for c in found)


def answers(url: str) -> bool:
    """GET / answered by the app (the example's greeting; any 200 from a user's app)."""
    response = requests.get(url, timeout=10)
    return response.status_code == 200 and (bool(USER_APP) or response.text.startswith("Hello"))


def test_a_new_nginx_port_held_by_another_program_is_refused_before_anything_changes(engine, cli_env, project, tmp_path):
    old_port, new_port = free_port(), free_port()
    spec = with_port(write_spec(tmp_path, workers=1, cgi=0), old_port)
    fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
    url = f"http://127.0.0.1:{old_port}/"
    before = nginx_containers(engine, project)
    with logs_on_failure(engine, project):
        assert answers(url)
        held = listener(new_port)
        try:
            done = fcgikit(cli_env, "up", "-p", project, "-f", str(with_port(spec, new_port)), check=False)
        finally:
            held.close()
        assert done.returncode == 1, done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: port {new_port} on host local (127.0.0.1) is in use by another program; "
                          "nothing changed (free it or choose another nginx port)"], done.stderr
        assert "address already in use" not in done.stderr
        assert nginx_containers(engine, project) == before == [(f"{project}-nginx-1", "running")]
        assert answers(url)
        # Once the port is free, the same command replaces nginx.
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        assert nginx_containers(engine, project) == [(f"{project}-nginx-2", "running")]
        assert answers(f"http://127.0.0.1:{new_port}/")


def test_when_the_new_nginx_cannot_start_the_old_one_serves_again(engine, cli_env, image_prefix, project, tmp_path):
    """The port is free when checked and taken by another program the moment the old nginx
    stops (as a race with another program would have it): Docker refuses the new nginx, and
    the old one must be running again, with its workers, at its old port."""
    old_port, new_port = free_port(), free_port()
    spec = with_port(write_spec(tmp_path, workers=1, cgi=0), old_port)
    fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
    url = f"http://127.0.0.1:{old_port}/"
    held: list[socket.socket] = []

    def say(line: str) -> None:
        if line.startswith(f"stop {project}-nginx-1 "):
            held.append(listener(new_port))  # taken between the check and the new nginx's start

    moved = load_stack_spec(with_port(spec, new_port))
    stack = Stack(spec=with_app(moved, USER_APP) if USER_APP else moved, project=project,
                  names=ImageNames(image_prefix, DEFAULT_BASE), say=say)
    with logs_on_failure(engine, project):
        assert answers(url)
        try:
            with pytest.raises(FcgikitError) as failed:
                stack.up()
        finally:
            for sock in held:
                sock.close()
        assert held, "the old nginx was never stopped"
        message = str(failed.value).splitlines()[0]
        assert f"cannot start {project}-nginx-2 on local" in message, message
        assert message.endswith(f"the previous nginx ({project}-nginx-1 on local) was started again and serves as before")
        assert nginx_containers(engine, project) == [(f"{project}-nginx-1", "running")]
        assert answers(url)
        assert [c["name"] for c in status(cli_env, project, spec)["containers"]] == [
            f"{project}-nginx-1", f"{project}-workers-1"]


# --- the edge follows the workers (issue 18, issue 12.3) ------------------------------------

CLIENTS = 6


class KeepAliveLoad:
    """CLIENTS threads, each sending GET / over its own kept-alive connection, until stopped."""

    def __init__(self, url: str, clients: int = CLIENTS):
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.fallback = 0  # answered 200 by the CGI gateway
        self.failures: list[str] = []
        self.slowest = 0.0
        self.last_fastcgi = 0.0  # monotonic time of the last answer from a FastCGI worker
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> KeepAliveLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                answer = session.get(self.url, timeout=10)
                elapsed = time.monotonic() - started
                good = answer.status_code == 200 and answer.text.startswith("Hello from fcgikit")
                with self.lock:
                    self.slowest = max(self.slowest, elapsed)
                    if not good:
                        self.failures.append(f"HTTP {answer.status_code} after {elapsed:.2f}s: {answer.text[:120]!r}")
                    elif answer.headers.get("X-Fcgikit-Fallback") == "cgi":
                        self.fallback += 1
                    else:
                        self.ok += 1
                        self.last_fastcgi = time.monotonic()
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(f"{exc!r} after {time.monotonic() - started:.2f}s")
                session = requests.Session()

    def answered(self) -> int:
        with self.lock:
            return self.ok + self.fallback

    def summary(self) -> str:
        return (f"{self.ok} FastCGI + {self.fallback} fallback answers, {len(self.failures)} failed, "
                f"slowest {self.slowest:.2f}s; first failures: {self.failures[:5]}")


def containers(engine, project: str, service: str):
    return sorted((c for c in engine.containers.list(filters={"label": f"{LABEL_PROJECT}={project}"})
                   if c.labels["fcgikit.service"] == service), key=lambda c: c.name)


def nginx_workers(engine, project: str) -> set[int]:
    """PIDs of nginx's worker processes: a reload replaces them all."""
    [nginx] = containers(engine, project, "nginx")
    output = nginx.exec_run(["sh", "-c", f"cat {NGINX_PID_PATH}; cat /proc/[0-9]*/stat 2>/dev/null"]).output.decode()
    workers = nginx_worker_pids(output)
    assert workers, output[:500]
    return workers


def requests_served(container) -> int:
    """The manager's count of requests begun (its status file, rewritten every second)."""
    try:
        output = container.exec_run(["cat", STATUS_FILE]).output
        return int(json.loads(output).get("accepted_conn") or 0)
    except (ValueError, docker.errors.APIError):
        return 0


@example_app_only
def test_scale_2_8_1_3_with_keepalive_clients_fails_nothing_and_never_reloads(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path, workers=2, cgi=1)
    with logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = status(cli_env, project, spec)["url"]
        workers_before = nginx_workers(engine, project)
        with KeepAliveLoad(url) as load:
            for replicas in (8, 1, 3):
                old = {c.name for c in containers(engine, project, "workers")}
                before = load.answered()
                result = fcgikit(cli_env, "scale", f"workers={replicas}", "-p", project, "-f", str(spec))
                assert "update backends of nginx" in result.stderr and "reload nginx" not in result.stderr, result.stderr
                current = containers(engine, project, "workers")
                assert len(current) == replicas
                new = [c for c in current if c.name not in old]
                # New replicas take traffic at once: within 2 s each has served requests
                # (its status file is at most 1 s old: read at 3 s).
                time.sleep(3)
                for container in new:
                    served = requests_served(container)
                    assert served >= 5, f"{container.name} served {served} requests 3 s after scale returned"
                assert load.answered() > before, "no answer while scaling"
        assert load.failures == [], load.summary()
        assert load.fallback == 0, load.summary()  # a worker could always take the request
        assert load.ok > 200, load.summary()
        assert nginx_workers(engine, project) == workers_before, "nginx reloaded or restarted"


@example_app_only
def test_a_killed_worker_container_costs_no_request_and_no_second(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path, workers=3, cgi=1)
    with logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = status(cli_env, project, spec)["url"]
        with KeepAliveLoad(url) as load:
            time.sleep(2)
            victim = containers(engine, project, "workers")[1]
            victim.kill()
            before = load.answered()
            time.sleep(4)
            assert load.answered() > before + 50, load.summary()
        assert load.failures == [], load.summary()
        assert load.slowest < 1.0, load.summary()
        assert load.fallback == 0, load.summary()
        # `status` shows it dead, `up` replaces it.
        report = status(cli_env, project, spec)
        assert any(c["name"] == victim.name and c["state"] == "exited" for c in report["containers"]), report
        result = fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        assert "update backends of nginx" in result.stderr, result.stderr
        assert len(containers(engine, project, "workers")) == 3
        # nginx's container restarts (its restart policy after a crash, an OOM kill): its tmpfs,
        # and the list in it, come back empty; it serves the workers again from the copy fcgikit
        # keeps on its /etc/nginx volume, not only through the fallback until the next `up`.
        [nginx] = containers(engine, project, "nginx")
        nginx.restart(timeout=10)
        deadline = time.monotonic() + 15
        while True:
            try:
                url = status(cli_env, project, spec)["url"]  # port 0: the host port may be a new one
                answer = requests.get(url, timeout=5)
                if answer.status_code == 200 and "X-Fcgikit-Fallback" not in answer.headers:
                    break
                seen = f"{answer.status_code} {dict(answer.headers)}"
            except (requests.RequestException, TypeError) as exc:
                seen = repr(exc)
            assert time.monotonic() < deadline, f"the restarted nginx does not serve the workers: {seen}"
            time.sleep(0.5)
        check_a_worker_back_at_another_address_is_handed_to_nginx(engine, cli_env, project, spec)


def check_a_worker_back_at_another_address_is_handed_to_nginx(engine, cli_env, project: str, spec: Path) -> None:
    """An engine restart brings containers back at other IPs. nginx connects to addresses:
    `up` must see that a kept worker's address changed and hand nginx the new one (it once
    compared names only, and left nginx with the old address)."""
    network = f"fcgikit-{project}"
    worker = containers(engine, project, "workers")[0]
    old_ip = worker.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
    worker.stop(timeout=10)
    # Another container takes the stopped worker's address, as after a restart of the engine.
    filler = engine.containers.run(worker.image.id, entrypoint=["sleep"], command=["120"], detach=True,
                                   network=network, name=f"{project}-filler")
    try:
        worker.start()
        worker.reload()
        new_ip = worker.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
        assert new_ip != old_ip, "the restarted worker kept its address: the test proves nothing"
        result = fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        assert "update backends of nginx" in result.stderr, result.stderr
        [nginx] = containers(engine, project, "nginx")
        listed = nginx.exec_run(["cat", "/run/fcgikit/backends"]).output.decode()
        assert f"{new_ip}:9000 {worker.name}" in listed and f"{old_ip}:9000 {worker.name}" not in listed, listed
        again = fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        assert "update backends" not in again.stderr, again.stderr  # and now nothing to do
    finally:
        filler.remove(force=True)


@example_app_only
def test_every_worker_stopped_the_cgi_gateway_answers_and_fastcgi_comes_back(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path, workers=2, cgi=1)
    with logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = status(cli_env, project, spec)["url"]
        workers = containers(engine, project, "workers")
        with KeepAliveLoad(url, clients=3) as load:
            time.sleep(1)
            for container in workers:
                container.stop(timeout=10)  # by hand: fcgikit is not running, the edge is on its own
            time.sleep(1)
            fallback_before = load.fallback
            time.sleep(3)
            assert load.fallback > fallback_before + 5, load.summary()
            answer = requests.get(url, timeout=10)
            assert answer.status_code == 200 and answer.headers.get("X-Fcgikit-Fallback") == "cgi", answer.headers
            assert answer.text.startswith("Hello from fcgikit")
            # One worker back: FastCGI answers again within 2 s of it answering a request.
            workers[0].start()
            deadline = time.monotonic() + 60
            while workers[0].exec_run(["python3", "-m", "fcgikit.probe", "-q", "127.0.0.1:9000"]).exit_code != 0:
                assert time.monotonic() < deadline, "the restarted worker never answered"
                time.sleep(0.2)
            answering = time.monotonic()
            while load.last_fastcgi < answering:
                assert time.monotonic() - answering < 2.0, f"no FastCGI answer 2 s after a worker answers: {load.summary()}"
                time.sleep(0.05)
        assert load.failures == [], load.summary()
        [cgi] = containers(engine, project, "cgi")
        assert "fallback" in cgi.logs(tail=200).decode("utf-8", "replace").lower()


KILL_ONE_CHILD = """
import os, random, signal
children = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            fields = open(f"/proc/{entry}/stat").read().rpartition(") ")[2].split()
        except OSError:
            continue
        if fields[1] == "1":  # a child of the manager (PID 1); docker exec's own have PPID 0
            children.append(int(entry))
os.kill(random.choice(children), signal.SIGKILL)
"""


@example_app_only
def test_processes_killed_in_every_container_cost_no_request(engine, cli_env, project, tmp_path):
    spec = write_spec(tmp_path, workers=3, cgi=1)
    with logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = status(cli_env, project, spec)["url"]
        workers = containers(engine, project, "workers")
        with KeepAliveLoad(url) as load:
            time.sleep(1)
            for _ in range(6):  # one process killed in every container, every second
                for container in workers:
                    assert container.exec_run(["python3", "-c", KILL_ONE_CHILD]).exit_code == 0
                time.sleep(1)
            before = load.answered()
            time.sleep(2)
            assert load.answered() > before, load.summary()
        assert load.failures == [], load.summary()
        assert load.fallback == 0, load.summary()  # no container was taken out
        [nginx] = containers(engine, project, "nginx")
        assert "down (connect" not in nginx.logs().decode("utf-8", "replace")
