"""Releases, rollback and secrets with `--hosts` on two real hosts (containers with sshd and
their own Docker engine): h1 the edge, h2 the workers. The release record lives on the
primary edge host; a secret read here reaches the worker on h2 through SSH, into its tmpfs
only; rollback returns to the previous release without a failed request."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import requests

from tests.hosts.bed import TestBed
from tests.integration.test_multihost_deploy import Deployment

pytestmark = [pytest.mark.multihost, pytest.mark.docker, pytest.mark.timeout(900)]

ROLES = {"h1": ["edge"], "h2": ["workers", "cgi"]}
SECRET_SPEC = """
secrets:
  api_token:
    from_env: MH_API_TOKEN
"""


class KeepAlive(threading.Thread):
    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.ok, self.failures, self.seen = url, threading.Event(), 0, [], []

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    answer = session.get(self.url, timeout=30)
                    if answer.status_code != 200:
                        self.failures.append(f"HTTP {answer.status_code}")
                    else:
                        self.ok += 1
                        self.seen.append(answer.text.split(" (")[0])
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mhreleases")
    with TestBed(hosts=2, workdir=workdir / "bed") as bed:
        deployment = Deployment(bed, workdir)
        deployment.hosts_file.write_text(bed.inventory_yaml(ROLES, connect_timeout=3))
        yield deployment


GREETING_APP = """\
import os


def app(environ, start_response):
    body = (os.environ["GREETING"] + " (from the worker host)\\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def with_secret(deployment: Deployment, greeting: str) -> None:
    (deployment.sources / "apps" / "greeting_app.py").write_text(GREETING_APP)
    deployment.write_spec(greeting=greeting, replicas=1)
    text = deployment.spec_file.read_text().replace("    env:\n", "    secrets: [api_token]\n    env:\n", 1)
    text = text.replace("app: hello_wsgi:app", "app: greeting_app:app")
    deployment.spec_file.write_text(text + SECRET_SPEC)


def test_releases_live_on_the_edge_host_secrets_reach_the_worker_host_and_rollback_fails_nothing(deployment, monkeypatch):
    token = f"mh-token-{uuid.uuid4().hex}"
    monkeypatch.setenv("MH_API_TOKEN", token)
    h1, h2 = deployment.host("h1"), deployment.host("h2")
    with_secret(deployment, "first")
    done = deployment.run("up")
    assert "recorded release 1" in done.stdout, done.stdout
    with_secret(deployment, "second")
    assert "recorded release 2" in deployment.run("up").stdout
    url = deployment.url()
    assert requests.get(url, timeout=10).text.startswith("second")

    records = deployment.bed.exec(h1, "docker ps -a --filter label=fcgikit.release.project --format '{{.Names}}'")
    assert sorted(records.split()) == [f"{deployment.project}-release-1", f"{deployment.project}-release-2"]
    assert deployment.bed.exec(h2, "docker ps -aq --filter label=fcgikit.release.project").strip() == ""
    listed = json.loads(deployment.run("releases", "--json").stdout)
    assert listed["host"] == "h1" and [r["release"] for r in listed["releases"]] == [1, 2]

    worker = deployment.containers("workers")[0]["name"]
    assert deployment.bed.exec(h2, f"docker exec {worker} cat /run/secrets/api_token") == token
    inspected = deployment.bed.exec(h2, f"docker inspect {worker}") + deployment.bed.exec(
        h1, f"docker inspect $(docker ps -aq --filter label=fcgikit.project={deployment.project}) "
            f"$(docker ps -aq --filter label=fcgikit.release.project={deployment.project})")
    assert token not in inspected and "/run/secrets" in inspected

    client = KeepAlive(url)
    client.start()
    try:
        back = deployment.run("rollback")
    finally:
        client.stop.set()
        client.join(timeout=60)
    assert "rolled back to release 1" in back.stdout, back.stdout
    assert client.failures == [], client.failures[:5]
    assert client.ok > 10 and client.seen[-1] == "first", client.seen[-3:]
    printed = done.stdout + done.stderr + back.stdout + back.stderr + deployment.run("status").stdout
    assert token not in printed
