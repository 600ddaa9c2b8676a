"""`fcgikit --hosts` on three real hosts (containers with sshd and their own Docker engine):
one edge, two worker hosts, reached over SSH with strict host-key checking.

The tests share one bed and one deployment and run in file order: each starts from the
state the previous one left (as an operator's session would).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from fcgikit.fastcgi.client import fcgi_request
from tests.hosts.bed import TestBed

# Generous: on a clean engine the first test also makes the base (debootstrap), the host
# image (apt-get) and the stack images before anything is shipped.
pytestmark = [pytest.mark.multihost, pytest.mark.docker, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
ROLES = {"h1": ["edge"], "h2": ["workers"], "h3": ["workers", "cgi"]}
CGI_SCRIPT = '#!/bin/sh\nprintf "Content-Type: text/plain\\n\\nfrom the cgi gateway\\n"\n'


def snapshot_sources(directory: Path) -> Path:
    """A copy of the sources fcgikit builds its images from. The image tags hash them, so
    the deployment under test stays one version even while the work tree is edited."""
    for part in ("src", "images", "apps"):
        shutil.copytree(REPO / part, directory / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return directory


def stack_yaml(project: str, apps: Path, cgi_dir: Path, greeting: str = "hello", replicas: int = 2, port: int = 0) -> str:
    # Short timeouts: a cut-off worker host must be given up on quickly.
    return f"""\
project: {project}
services:
  nginx:
    port: {port}
    connect_timeout: 1
  workers:
    app: hello_wsgi:app
    path: {apps}
    processes: 2
    replicas: {replicas}
    timeout: 5
    env:
      GREETING: {greeting}
  cgi:
    scripts: {cgi_dir}
    processes: 1
    replicas: 1
    timeout: 5
"""


class Deployment:
    """The bed, its inventory and stack files, and the CLI run against them."""

    def __init__(self, bed: TestBed, workdir: Path):
        self.bed = bed
        self.sources = snapshot_sources(workdir / "sources")
        self.project = f"mh{bed.bed_id}"
        self.hosts_file = workdir / "hosts.yaml"
        self.hosts_file.write_text(bed.inventory_yaml(ROLES, connect_timeout=3))
        self.cgi_dir = workdir / "cgi-bin"
        self.cgi_dir.mkdir()
        (self.cgi_dir / "where.sh").write_text(CGI_SCRIPT)
        (self.cgi_dir / "where.sh").chmod(0o755)
        self.spec_file = workdir / "fcgikit.yaml"
        self.write_spec()

    def write_spec(self, **changes) -> None:
        self.spec_file.write_text(stack_yaml(self.project, self.sources / "apps", self.cgi_dir, **changes))

    def host(self, name: str):
        return next(host for host in self.bed.hosts if host.name == name)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fcgikit.cli", *args, "-f", str(self.spec_file), "--hosts", str(self.hosts_file)]

    def logs_command(self, *args: str) -> list[str]:
        """`logs` spells the stack file --file: its -f is --follow, as in Docker."""
        return [sys.executable, "-m", "fcgikit.cli", "logs", *args, "--file", str(self.spec_file),
                "--hosts", str(self.hosts_file)]

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        command = self.logs_command(*args[1:]) if args[0] == "logs" else self.command(*args)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and done.returncode != 0:
            raise AssertionError(f"fcgikit {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}\n{self.logs()}")
        return done

    def status(self) -> dict:
        return json.loads(self.run("status", "--json").stdout)

    def url(self, path: str = "/") -> str:
        return self.status()["url"].rstrip("/") + path

    def containers(self, service: str) -> list[dict]:
        return [c for c in self.status()["containers"] if c["service"] == service]

    def logs(self) -> str:
        """What every host's engine and containers said, for failure messages."""
        parts = []
        for host in self.bed.hosts:
            try:
                parts.append(f"--- {host.name} containers ---\n" + self.bed.exec(host, "docker ps -a"))
                parts.append(self.bed.exec(host, "for c in $(docker ps -aq); do docker logs --tail 15 $c 2>&1; done"))
            except Exception as exc:  # a cut-off host still answers docker exec; a dead one may not
                parts.append(f"--- {host.name}: {exc}")
        return "\n".join(parts)


    def env(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.sources / "src") + os.pathsep + env.get("PYTHONPATH", "")
        return env


class Client(threading.Thread):
    """GET requests one after another over one kept-alive connection (as browsers and HTTP
    libraries do) until stopped; counts successes and failures and the slowest answer.
    A failure is (began, ended, what), wall-clock times (time.time(): comparable with the
    timestamps Docker gives the edge's log lines)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.ok = 0
        self.failures: list[tuple[float, float, str]] = []
        self.slowest = 0.0
        self.slow: list[tuple[float, float]] = []  # (began, seconds) of answers slower than 2 s
        self.stopping = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stopping.is_set():
            began = time.time()
            try:
                response = session.get(self.url, timeout=30)
                if response.status_code == 200 and response.content.startswith(b"Hello"):
                    self.ok += 1
                else:
                    self.failures.append((began, time.time(), f"HTTP {response.status_code}: {response.content[:80]!r}"))
            except requests.RequestException as exc:
                self.failures.append((began, time.time(), repr(exc)))
                session = requests.Session()
            took = time.time() - began
            self.slowest = max(self.slowest, took)
            if took > 2.0:
                self.slow.append((began, took))

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("multihost")
    with TestBed(hosts=3, workdir=workdir / "bed") as bed:
        yield Deployment(bed, workdir)


def image_ids(bed: TestBed, host) -> set[str]:
    return set(bed.exec(host, "docker images -q --no-trunc").split())


def local_image_id(tag: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True, check=True).stdout.strip()


def test_up_serves_the_app_through_the_edge_and_ships_images_to_each_host(deployment):
    planned = deployment.run("up", "--dry-run").stdout  # fresh hosts: every image must travel
    address = {name: deployment.host(name).address for name in ("h1", "h2", "h3")}
    assert f"h1 ({address['h1']}): send fcgikit/nginx:" in planned, planned
    for name in ("h2", "h3"):
        assert f"{name} ({address[name]}): send fcgikit/fcgi-worker:" in planned, planned
    assert f"curl -fsS http://{address['h1']}:PORT/" in planned  # port 0: Docker picks it as nginx starts
    assert deployment.containers("workers") == [], "--dry-run started something"
    began = time.monotonic()
    done = deployment.run("up")
    print(f"first up: {time.monotonic() - began:.1f}s\n{done.stderr}")
    url = deployment.url()
    assert url.startswith(f"http://{deployment.host('h1').address}:")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200 and response.read().startswith(b"Hello from fcgikit")
    with urllib.request.urlopen(deployment.url("/cgi-bin/where.sh"), timeout=10) as response:
        assert response.read() == b"from the cgi gateway\n"
    assert [c["host"] for c in deployment.containers("cgi")] == ["h3"]  # the only cgi host

    workers = deployment.containers("workers")
    assert sorted(c["host"] for c in workers) == ["h2", "h3"]  # spread over both worker hosts
    worker_image = local_image_id(workers[0]["image"])
    nginx_image = local_image_id(deployment.containers("nginx")[0]["image"])
    assert worker_image in image_ids(deployment.bed, deployment.host("h2"))
    assert worker_image in image_ids(deployment.bed, deployment.host("h3"))
    assert nginx_image in image_ids(deployment.bed, deployment.host("h1"))
    assert worker_image not in image_ids(deployment.bed, deployment.host("h1"))  # edge runs no worker


def test_workers_listen_on_their_private_address_for_the_edge_only(deployment):
    h2 = deployment.host("h2")
    published = deployment.bed.exec(h2, "docker ps --format '{{.Ports}}'").split()
    assert published and all(port.startswith(f"{h2.address}:91") for port in published), published
    # This machine is not an edge host: the worker's allow-list closes the connection unanswered.
    port = int(published[0].split(":")[1].split("->")[0])
    with pytest.raises(Exception) as refused:
        fcgi_request((h2.address, port), params={"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/"}, timeout=5)
    assert "closed" in str(refused.value) or isinstance(refused.value, OSError)


def test_a_second_up_ships_nothing_and_changes_nothing(deployment):
    done = deployment.run("up")
    for host in ("h1", "h2", "h3"):
        assert f"{host}: images up to date, nothing sent" in done.stderr, done.stderr
    assert "no change" in done.stdout, done.stdout


def edge_conf(deployment) -> str:
    """The edge's nginx.conf and its backends list (the addresses are in the list)."""
    return deployment.bed.exec(deployment.host("h1"), f"docker exec {deployment.project}-nginx-1 "
                                                       "cat /etc/nginx/nginx.conf /run/fcgikit/backends")


def placements(deployment) -> list[tuple[str, str, str]]:
    return sorted((c["service"], c["name"], c["host"]) for c in deployment.status()["containers"])


def test_a_changed_host_key_on_a_worker_host_refuses_up_and_scale_and_changes_nothing(deployment):
    known_hosts = deployment.bed.known_hosts_path
    original = known_hosts.read_text()
    h2, h3 = deployment.host("h2"), deployment.host("h3")
    before, conf_before = placements(deployment), edge_conf(deployment)
    assert f"{h2.address}:" in conf_before
    # h2's address now answers with a key that is not the recorded one (h3's key stands in).
    h3_key = deployment.bed.exec(h3, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()
    known_hosts.write_text("".join(
        f"{h2.address} {h3_key[0]} {h3_key[1]}\n" if line.startswith(f"{h2.address} ") else line + "\n"
        for line in original.splitlines()))
    try:
        for command in (("up",), ("scale", "workers=4")):
            done = deployment.run(*command, check=False)
            assert done.returncode == 1, done.stdout + done.stderr
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert errors == [f"error: {command[0]} refused, nothing changed: h2 (root@{h2.address}): HOST KEY CHANGED "
                              f"(not the one in {known_hosts}); if the host was rebuilt, remove its old line there"], done.stderr
            assert "left out" not in done.stderr and "is up" not in done.stdout
        report = deployment.status()  # status still reports, naming why
        h2_row = next(row for row in report["hosts"] if row["name"] == "h2")
        assert not h2_row["reachable"] and "HOST KEY CHANGED" in h2_row["problem"]
    finally:
        known_hosts.write_text(original)
    assert placements(deployment) == before
    assert edge_conf(deployment) == conf_before


def test_a_new_nginx_port_another_program_holds_on_the_edge_host_is_refused_before_anything_changes(deployment):
    h1 = deployment.host("h1")
    port = 18000 + int(deployment.bed.bed_id, 16) % 1000
    holder = ("import os, socket, time\n"
              f"s = socket.socket(); s.bind(('0.0.0.0', {port:d})); s.listen()\n"
              "open('/tmp/port-holder.pid', 'w').write(str(os.getpid())); time.sleep(600)\n")
    deployment.bed.client.containers.get(h1.container).exec_run(["python3", "-c", holder], detach=True)
    deadline = time.monotonic() + 10
    while "holder" not in deployment.bed.exec(h1, "test -s /tmp/port-holder.pid && echo holder || true"):
        assert time.monotonic() < deadline, "the port holder did not start"
        time.sleep(0.2)
    before, url = placements(deployment), deployment.url()
    try:
        deployment.write_spec(port=port)
        done = deployment.run("up", check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: port {port} on host h1 ({h1.address}) is in use by another program; nothing changed "
                          "(free it or choose another nginx port)"], done.stderr
        assert "address already in use" not in done.stderr
    finally:
        deployment.write_spec()
        deployment.bed.exec(h1, "kill $(cat /tmp/port-holder.pid); rm -f /tmp/port-holder.pid")
    assert placements(deployment) == before
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200


def test_scale_up_and_down_under_continuous_requests_fails_none(deployment):
    client = Client(deployment.url())
    client.start()
    try:
        deployment.run("scale", "workers=6")
        hosts = [c["host"] for c in deployment.containers("workers")]
        assert sorted(hosts) == ["h2"] * 3 + ["h3"] * 3  # evenly over the worker hosts
        deployment.run("scale", "workers=2")
        assert sorted(c["host"] for c in deployment.containers("workers")) == ["h2", "h3"]
        time.sleep(1)
    finally:
        client.stop()
    assert client.ok > 20, f"only {client.ok} requests went through"
    assert client.failures == [], f"{len(client.failures)} failed of {client.ok + len(client.failures)}: {client.failures[:5]}"


def test_logs_follow_every_container_on_every_host_beyond_sshds_sessions_per_connection(deployment):
    """Twelve more containers of the project on h2, each printing a line every 0.3 s: more than
    sshd's sessions per connection (MaxSessions 10, six of them the Docker tunnel's), so only
    one session per host, multiplexing them all, can follow every one."""
    h2 = deployment.host("h2")
    [image] = {c["image"] for c in deployment.containers("workers") if c["host"] == "h2"}
    tickers = [f"{deployment.project}-ticker-{i}" for i in range(1, 13)]
    labels = f"--label fcgikit.project={deployment.project} --label fcgikit.service=ticker --label fcgikit.host=h2"
    deployment.bed.exec(h2, " ".join(
        f"docker run -d --name {name} {labels} --label fcgikit.slot={i} {image} "
        f"sh -c 'while :; do echo tick from {name}; sleep 0.3; done' >/dev/null &" for i, name in enumerate(tickers, 1)
    ) + " wait")
    try:
        shown = deployment.run("logs", "--tail", "1").stdout.splitlines()
        assert {line.split(" | ")[0].strip() for line in shown} >= {f"{name}@h2" for name in tickers}, shown
        assert any(line.startswith(f"{deployment.project}-nginx-1@h1 ") for line in shown), shown

        follower = subprocess.Popen(deployment.logs_command("-f", "-n", "0"), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=deployment.env())
        seen: set[str] = set()

        def read() -> None:
            for line in follower.stdout:
                label, _, text = line.partition(" | ")
                if text.startswith("tick from "):
                    seen.add(label.strip())

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while len(seen) < len(tickers) and time.monotonic() < deadline:
            time.sleep(0.2)
        follower.send_signal(signal.SIGINT)
        code = follower.wait(timeout=20)
        assert seen == {f"{name}@h2" for name in tickers}, (sorted(seen), follower.stderr.read())
        assert code == 0, follower.stderr.read()
        deadline = time.monotonic() + 10  # the host's shell and every `docker logs` end with the session
        while deployment.bed.exec(h2, "ps -eo args | grep -c '^docker logs' || true").strip() != "0":
            assert time.monotonic() < deadline, deployment.bed.exec(h2, "ps -eo pid,args")
            time.sleep(0.3)
    finally:
        deployment.bed.exec(h2, f"docker rm -f {' '.join(tickers)} >/dev/null")


def test_two_ups_at_once_one_proceeds_and_the_other_names_the_lock_holder(deployment):
    deployment.write_spec(greeting="hello again")  # real work for the first: replace every worker
    first = subprocess.Popen(deployment.command("up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=deployment.env())
    said = [first.stderr.readline()]  # its first step line: it holds the lock from before its first step
    second = subprocess.run(deployment.command("up"), capture_output=True, text=True, timeout=120, env=deployment.env())
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, "".join(said) + err
    assert second.returncode == 1, second.stdout + second.stderr
    refused = second.stderr
    assert f"deploy lock for {deployment.project} on h1 is held by" in refused, refused
    assert f"(pid {first.pid}, `fcgikit up`) since 20" in refused, refused  # who, doing what, since when
    # The lock is released once the winner is done: the next up proceeds.
    assert "no change" in deployment.run("up").stdout


def edge_marks(deployment, since: float) -> dict[str, float]:
    """When the edge marked each backend down since `since`: address -> the wall-clock time
    Docker stamped on nginx's first `fcgikit edge: backend ADDRESS down` line (nginx's own
    log times have whole seconds only; Docker's are taken as the line arrives)."""
    logged = deployment.bed.exec(deployment.host("h1"), f"docker logs --timestamps --since {since:.3f} "
                                                        f"{deployment.project}-nginx-1 2>&1")
    marks: dict[str, float] = {}
    for line in logged.splitlines():
        stamp, _, text = line.partition(" ")
        match = re.search(r"fcgikit edge: backend (\S+) down \(", text)
        if match and match.group(1) not in marks:
            whole, _, fraction = stamp.rstrip("Z").partition(".")  # RFC 3339, nanoseconds, zeros cut
            moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
            marks[match.group(1)] = moment.timestamp() + float("0." + (fraction or "0"))
    return marks


def test_a_worker_host_cut_off_under_load_loses_no_request_and_up_replaces_its_workers(deployment):
    """The rule (docs/multihost.md, "Host loss"): a request nginx had already sent to h2 when
    it was cut off may have reached its app and is not replayed: it ends as 504 at the
    request timeout. Every request begun after the edge marked h2's backends down is
    answered by h3. "Marked down" is read from the edge's own log, not guessed from when
    the test asked Docker to cut the host off (under load that call alone can take seconds:
    a request begun 2 s after the call was still in flight at the cut)."""
    h2, h3 = deployment.host("h2"), deployment.host("h3")
    listed = deployment.bed.exec(deployment.host("h1"), f"docker exec {deployment.project}-nginx-1 "
                                                       "cat /run/fcgikit/backends")
    h2_backends = {address for address in re.findall(r"\S+:\d+", listed) if address.startswith(f"{h2.address}:")}
    assert h2_backends, listed
    # Several keep-alive clients: while one waits on a request sent to h2, the others go on,
    # so requests begin in every nginx worker process right after the mark.
    clients = [Client(deployment.url()) for _ in range(4)]
    for client in clients:
        client.start()
    time.sleep(2)
    cut_called = time.time()
    deployment.bed.cut_off(h2)
    cut_done = time.time()
    try:
        deadline = time.monotonic() + 15
        while not (marks := edge_marks(deployment, cut_called - 1)).keys() >= h2_backends:
            assert time.monotonic() < deadline, f"the edge did not mark {sorted(h2_backends)} down: {marks}"
            time.sleep(0.5)
        marked_at = max(marks[address] for address in h2_backends)
        time.sleep(max(0.0, cut_done + 6 - time.time()))  # requests keep coming after the mark
        status = deployment.run("status")
        assert "h2" in status.stdout and "UNREACHABLE" in status.stdout, status.stdout

        done = deployment.run("up")
        assert "host h2 is unreachable" in done.stderr, done.stderr
        assert "update backends of nginx" in done.stderr and "reload nginx" not in done.stderr, done.stderr
        workers = deployment.containers("workers")
        assert sorted(c["host"] for c in workers) == ["h3", "h3"], workers
        time.sleep(2)
    finally:
        for client in clients:
            client.stop()
    failures = sorted(failure for client in clients for failure in client.failures)
    timeline = (f"cut called at 0, returned at {cut_done - cut_called:+.2f}s, h2 marked down at "
                f"{marked_at - cut_called:+.2f}s; failures (began, ended): "
                + ", ".join(f"({began - cut_called:+.2f}s, {ended - cut_called:+.2f}s) {what[:30]}"
                            for began, ended, what in failures))
    print(timeline)
    assert sum(client.ok for client in clients) > 20, timeline
    after_mark = [f for f in failures if f[0] >= marked_at]
    assert after_mark == [], f"requests begun after the edge marked h2 down failed: {timeline}"
    # Those begun before the mark: sent to h2 (in flight at the cut, or begun between the cut
    # and the mark on a kept-alive connection to h2), never replayed: nginx's 504 at the
    # request timeout (5 s), not a quick error. A client waits on such a request, so each
    # has at most one: the mark comes within seconds of the cut.
    assert all("HTTP 504" in what and ended - began >= 4.5 for began, ended, what in failures), timeline
    assert all(len(client.failures) <= 1 for client in clients), timeline
    assert marked_at - cut_done < 4, f"the edge took too long to mark h2 down: {timeline}"
    listed = deployment.bed.exec(deployment.host("h1"), f"docker exec {deployment.project}-nginx-1 "
                                                       "cat /run/fcgikit/backends")
    assert h2.address not in listed and h3.address in listed, listed


def test_the_lost_hosts_containers_are_marked_stale_when_it_is_back_until_the_next_up(deployment):
    h2 = deployment.host("h2")
    deployment.bed.reconnect(h2)
    workers = deployment.containers("workers")
    # The old worker on h2 is back beside its replacement on h3 (often under the same name).
    names = sorted((c["name"], c["host"], c["stale"]) for c in workers)
    old = [c for c in workers if c["host"] == "h2"]
    assert old and all(c["stale"] for c in old), names
    assert [c for c in workers if c["stale"]] == old, names
    table = deployment.run("status").stdout
    assert "STALE" in table and f"{old[0]['name']}@h2" in table, table

    deployment.run("up")  # reuses or removes them
    workers = deployment.containers("workers")
    assert not any(c["stale"] for c in workers), workers
    assert sorted(c["host"] for c in workers) == ["h2", "h3"], workers


def test_down_after_the_host_is_back_removes_everything(deployment):
    deployment.run("down")
    for host in deployment.bed.hosts:
        left = deployment.bed.exec(host, f"docker ps -aq --filter label=fcgikit.project={deployment.project}")
        assert left.strip() == "", f"{host.name} still has {left}"


def test_an_interrupted_up_releases_the_lock_and_simply_runs_again(deployment):
    deployment.write_spec(replicas=4)
    # Ctrl-C as at a terminal, however the tests were started: a shell running them in the
    # background leaves SIGINT ignored, and Python then never raises KeyboardInterrupt.
    up = subprocess.Popen(deployment.command("up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=deployment.env(),
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in up.stderr:  # Ctrl-C once the first worker container is being started
        seen.append(line)
        if line.startswith("• start") and "(workers)" in line:
            up.send_signal(signal.SIGINT)
            break
    rest = up.communicate(timeout=120)
    assert up.returncode == 130, "".join(seen) + rest[1]
    assert "interrupted" in rest[1]
    lock = subprocess.run([sys.executable, "-m", "fcgikit.cli", "lock", "status", "--hosts", str(deployment.hosts_file),
                           "-p", deployment.project], capture_output=True, text=True, env=deployment.env())
    assert "free" in lock.stdout, lock.stdout + lock.stderr

    deployment.run("up")
    with urllib.request.urlopen(deployment.url(), timeout=10) as response:
        assert response.status == 200
    assert sorted(c["host"] for c in deployment.containers("workers")) == ["h2", "h2", "h3", "h3"]
    deployment.run("down")


def test_status_reports_a_host_whose_engine_is_down_and_still_shows_the_others(deployment):
    h3 = deployment.host("h3")
    deployment.bed.exec(h3, "kill $(cat /var/run/docker.pid) && while [ -e /var/run/docker.pid ]; do sleep 0.2; done")
    report = deployment.status()
    rows = {row["name"]: row for row in report["hosts"]}
    assert rows["h1"]["reachable"] and rows["h2"]["reachable"]
    assert not rows["h3"]["reachable"] and "h3" in rows["h3"]["problem"], rows["h3"]
