"""Docker Swarm on the local engine (a single-node swarm): compose.yaml as a stack file, and
`fcgikit up --engine swarm`. The engine is in swarm mode only while these tests run
(swarm_support.local_swarm); they run one session at a time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import docker  # noqa: E402
import docker.errors  # noqa: E402
import pytest  # noqa: E402

from fcgikit.testing import free_port  # noqa: E402
from tests.integration.swarm_support import (  # noqa: E402
    env_without_fcgikit,
    local_swarm,
    remove_stack,
    service_logs,
    stack_containers,
    unique,
    wait_answering,
)

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine():
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but no Docker engine answers: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def swarm(engine):
    with local_swarm(engine) as initialised:
        yield initialised


@pytest.fixture(scope="module")
def image_prefix(engine):
    """`fcgikit build` under a prefix of this module's own; its images are removed afterwards."""
    prefix = unique("fcgikit-swarmtest-")
    env = env_without_fcgikit()
    done = subprocess.run([sys.executable, "-m", "fcgikit.cli", "build", "--image-prefix", prefix],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr
    yield prefix
    for image in engine.images.list():
        for tag in image.tags:
            if tag.startswith(prefix + "/"):
                with contextlib.suppress(docker.errors.APIError):
                    engine.images.remove(tag, force=True)


def test_compose_file_deploys_as_a_swarm_stack(engine, swarm, image_prefix, tmp_path):
    """The same compose.yaml `docker compose up` runs (test_stack.py) is a stack file: dnsrr
    services, nginx published in host mode, confined, with the memory limits."""
    compose = (ROOT / "compose.yaml").read_text().replace("image: fcgikit/", f"image: {image_prefix}/")
    (tmp_path / "compose.yaml").write_text(compose)
    stack, port = unique("cs"), free_port()
    env = dict(env_without_fcgikit(), FCGIKIT_PORT=str(port))
    try:
        deploy = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", "compose.yaml", stack],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert deploy.returncode == 0, deploy.stderr
        answer = wait_answering(f"http://127.0.0.1:{port}/")
        assert answer is not None and answer.status_code == 200, service_logs(stack)
        assert "Hello" in answer.text
        cgi = wait_answering(f"http://127.0.0.1:{port}/cgi-bin/hello.sh", timeout=30)
        assert cgi is not None and cgi.status_code == 200, service_logs(stack)
        services = {s.name: s.attrs["Spec"] for s in engine.services.list(filters={"label": f"com.docker.stack.namespace={stack}"})}
        assert set(services) == {f"{stack}_workers", f"{stack}_cgi", f"{stack}_nginx"}
        for name, spec in services.items():
            container = spec["TaskTemplate"]["ContainerSpec"]
            assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"], name
            assert [m["Target"] for m in container["Mounts"] if m["Type"] == "tmpfs"], name
            assert spec["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] > 0, name
            assert spec["EndpointSpec"]["Mode"] == "dnsrr", name
        assert spec_of(services, stack, "workers")["Mode"]["Replicated"]["Replicas"] == 2
        [published] = spec_of(services, stack, "nginx")["EndpointSpec"]["Ports"]
        assert (published["PublishMode"], published["PublishedPort"]) == ("host", port)
    finally:
        remove_stack(engine, stack)
    assert stack_containers(engine, stack) == []


def spec_of(services: dict, stack: str, service: str) -> dict:
    return services[f"{stack}_{service}"]
