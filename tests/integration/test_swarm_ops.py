"""`fcgikit up --engine swarm` on the local engine as a single-node swarm: what the other
engines do that a swarm deployment must do as well (issues 12 and 14): the containers'
confinement as Swarm services and tasks.

The project is the one test_swarm_single.py uses too, deployed once (conftest's
swarm_deployment), under an image prefix of its own.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

import pytest  # noqa: E402

from fcgikit.testing import free_port  # noqa: E402
from tests.integration.swarm_support import (  # noqa: E402
    KeepAliveLoad,
    fcgikit,
    image_tags,
    service_logs,
    unique,
    wait_answering,
    write_app,
    write_spec,
)

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.timeout(900)]

SERVICE_LABEL = "com.docker.swarm.service.name"


@pytest.fixture
def deployment(swarm_deployment):
    """The project test_swarm_single.py deploys too (swarm_support.SharedSwarm, conftest.py):
    each test here begins from it as `up -f spec` leaves it and puts back what it changes."""
    return swarm_deployment


def status_field(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split()[1]
    return "?"


def test_services_and_their_tasks_are_confined_and_cannot_gain_privileges(engine, deployment):
    """cap_drop ALL, read-only root, a non-root user, memory and pids limits on each service
    and on its tasks' containers; no-new-privileges (which Docker 20.10 cannot set on a
    service) on every process of every task, set by the processes themselves."""
    project = deployment["project"]
    answer = wait_answering(deployment["url"], timeout=30)
    assert answer is not None and answer.status_code == 200, service_logs(project)
    found = engine.services.list(filters={"label": f"com.docker.stack.namespace={project}"})
    services = {s.name: s.attrs["Spec"] for s in found}
    assert set(services) == {f"{project}_{name}" for name in ("workers", "cgi", "nginx")}
    for name, spec in services.items():
        container = spec["TaskTemplate"]["ContainerSpec"]
        limits = spec["TaskTemplate"]["Resources"]["Limits"]
        assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"], name
        assert container.get("User") in ("fcgikit", "www-data"), name
        assert limits["MemoryBytes"] > 0 and limits["Pids"] > 0, (name, limits)
        tasks = engine.containers.list(filters={"label": f"{SERVICE_LABEL}={name}"})
        assert tasks, name
        for task in tasks:
            host = task.attrs["HostConfig"]
            assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"], task.name
            assert host["PidsLimit"] == limits["Pids"] and host["Memory"] == limits["MemoryBytes"], task.name
            # Inside the task: its first process (as `docker exec` shows it) ...
            first = task.exec_run(["cat", "/proc/1/status"]).output.decode()
            assert "NoNewPrivs:\t1" in first, (task.name, first)
            assert "\nUid:\t0\t" not in first, (task.name, first)
            # ... and every process it runs (its first process's descendants: not what `docker
            # exec` starts beside them, such as the HEALTHCHECK), seen from the host.
            init = task.attrs["State"]["Pid"]
            if not Path(f"/proc/{init}").exists():
                continue  # not this machine's pid namespace: /proc/1 above is what can be seen
            rows = [tuple(map(int, row)) for row in task.top(ps_args="-eo pid,ppid")["Processes"]]
            tree = {init}
            for _ in rows:
                tree |= {pid for pid, ppid in rows if ppid in tree}
            assert len(tree) > 1, (task.name, rows)
            for pid in tree:
                try:
                    command = Path(f"/proc/{pid}/cmdline").read_bytes()
                    no_new_privs, uid = status_field(pid, "NoNewPrivs"), status_field(pid, "Uid")
                except (FileNotFoundError, ProcessLookupError):
                    continue  # exited since the listing (the edge script's `sleep 1`, getent, awk)
                assert no_new_privs == "1", (task.name, pid, command)
                assert uid != "0", (task.name, pid)
    print(f"swarm confinement: {len(services)} services checked")


def releases_of(env: dict, spec: str) -> list[dict]:
    import json

    return json.loads(fcgikit(env, "releases", "-f", spec, "--json").stdout)["releases"]


def service_images(engine, project: str) -> dict[str, str]:
    return {s.name.split("_", 1)[1]: s.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            for s in engine.services.list(filters={"label": f"com.docker.stack.namespace={project}"})}


def test_up_records_releases_and_rollback_returns_to_one_without_building(engine, deployment):
    """Every successful `up --engine swarm` records a release (its image tags and stack file),
    its rolling update (a changed app directory) failing no request under keep-alive load;
    `rollback` updates the services to a release's images, building nothing, under load with
    no failed request; `build --prune` keeps every image a kept release names.

    Release numbers are counted from the newest one when the test begins (N below): the
    project is shared, and whatever ran before recorded its own."""
    import time

    env, spec, project, url = deployment["env"], str(deployment["spec"]), deployment["project"], deployment["url"]
    fcgikit(env, "up", "-f", spec)  # release N: what runs (recorded by an earlier up; an up changing nothing)
    before = releases_of(env, spec)
    first = before[-1]
    n = first["release"]
    assert first["current"] and first["rollback_of"] is None, first
    assert service_images(engine, project) == first["images"]
    old = (wait_answering(url, timeout=30).text or "").split(" pid")[0]
    assert old.startswith("version "), old

    new = unique("v")
    write_app(deployment["app_dir"], new)
    with KeepAliveLoad(url) as load:
        time.sleep(1)
        up = fcgikit(env, "up", "-f", spec)
        time.sleep(2)
    print(f"rolling update {old} -> {new} under keep-alive load: {load.ok} answered, {len(load.failures)} failed")
    assert f"recorded release {n + 1}" in up.stdout, up.stdout + up.stderr
    assert f"version {new}" in load.versions and load.failures == [], load.failures[:10]
    assert (wait_answering(url, timeout=30).text or "").startswith(f"version {new} ")
    second = releases_of(env, spec)[-1]
    assert second["release"] == n + 1
    assert second["images"]["workers"] != first["images"]["workers"]
    assert service_images(engine, project) == second["images"]
    assert "no change" in fcgikit(env, "up", "-f", spec).stdout
    assert releases_of(env, spec)[-1]["release"] == n + 1, "an up that changes nothing recorded a release"

    dry = fcgikit(env, "rollback", "-f", spec, "--dry-run")
    assert f"rollback to release {n}" in dry.stdout and "docker stack deploy" in dry.stdout, dry.stdout
    assert service_images(engine, project) == second["images"], "--dry-run changed something"

    with KeepAliveLoad(url) as load:
        time.sleep(1)
        started = time.monotonic()
        back = fcgikit(env, "rollback", "-f", spec)
        took = time.monotonic() - started
        time.sleep(2)
    print(f"swarm rollback {n + 1}->{n} in {took:.1f}s under keep-alive load: {load.ok} answered, "
          f"{len(load.failures)} failed")
    assert f"rolled back to release {n}" in back.stdout and f"recorded as release {n + 2}" in back.stdout, back.stdout
    assert "built" not in back.stderr, back.stderr
    assert service_images(engine, project) == first["images"]
    assert load.failures == [], load.failures[:10]
    assert old in load.versions
    for _ in range(10):
        assert (wait_answering(url, timeout=10).text or "").startswith(f"{old} ")
    rows = releases_of(env, spec)
    assert [(r["release"], r["rollback_of"]) for r in rows[-3:]] == [(n, None), (n + 1, None), (n + 2, n)]
    assert rows[-1]["current"] and rows[-1]["images"] == first["images"]
    listed = fcgikit(env, "releases", "-f", spec).stdout
    assert f"rollback to {n}" in listed, listed

    pruned = fcgikit(env, "build", "-f", spec, "--prune")
    kept = [line for line in pruned.stdout.splitlines() if "(kept: the images of releases " in line]
    assert len(kept) == 1, pruned.stdout
    numbers = kept[0].split("(kept: the images of releases ")[1].split(")")[0].split(", ")
    assert {str(n), str(n + 1), str(n + 2)} <= set(numbers), pruned.stdout
    present = image_tags(engine)
    assert {first["images"]["workers"], second["images"]["workers"], first["images"]["nginx"]} <= present
    # The app directory holds `new`, the services run `old` again: put the app back (the next
    # `up` would deploy `new` otherwise).
    write_app(deployment["app_dir"], old.removeprefix("version "))
    assert "no change" in fcgikit(env, "up", "-f", spec).stdout


def test_tls_self_signed_is_served_by_the_swarm_edge_with_its_key_as_a_docker_secret(engine, deployment):
    """`up --tls self-signed` on a swarm: HTTPS on the TLS port (TLS 1.2+, the chain checked
    against the development CA, HSTS), plain HTTP redirected, the certificate and key Docker
    secrets mounted into nginx only; the key never in what fcgikit or Docker shows. Then
    `up` with the stack file without TLS puts the deployment back: plain HTTP again."""
    project, port, url = deployment["project"], deployment["port"], deployment["url"]
    env = deployment["env"]
    tls_port = free_port()
    spec = str(write_spec(deployment["dir"], project, port, deployment["app_dir"], name="fcgikit-tls.yaml",
                          extra_nginx=f"    tls: {{port: {tls_port}, hsts: 31536000}}\n"))
    try:
        check_tls(engine, deployment, spec, tls_port)
    finally:
        plain = fcgikit(env, "up", "-f", str(deployment["spec"]), check=False)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    answer = wait_answering(url, timeout=30)
    assert answer is not None and answer.status_code == 200 and not answer.history, "HTTP not back"


def check_tls(engine, deployment: dict, spec: str, tls_port: int) -> None:
    import json
    import shutil
    import ssl
    import time
    import urllib.request
    import warnings

    import requests

    project, url = deployment["project"], deployment["url"]
    tls_dir, env = deployment["dir"] / "tls", deployment["env"]
    up = fcgikit(env, "up", "-f", spec, "--tls", "self-signed")
    ca = tls_dir / project / "ca.pem"
    assert f"https://127.0.0.1:{tls_port}/" in up.stdout and str(ca) in up.stdout, up.stdout + up.stderr

    context = ssl.create_default_context(cafile=str(ca))  # the chain and the name are checked
    https = f"https://localhost:{tls_port}/"
    deadline, answer = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        try:
            answer = urllib.request.urlopen(https, context=context, timeout=5)
            break
        except OSError:
            time.sleep(0.5)
    assert answer is not None and answer.status == 200, service_logs(project)
    assert answer.read().decode().startswith("version ")
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    import socket

    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        issuer = dict(item[0] for item in tls.getpeercert()["issuer"])
        assert issuer["commonName"] == f"fcgikit development CA ({project})"
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(ca))
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():  # TLSv1_1 is deprecated: named here to be refused
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):  # TLS 1.1 and older are refused (or never offered)
        with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw, \
                old.wrap_socket(raw, server_hostname="localhost"):
            pass
    if shutil.which("curl"):
        curl = subprocess.run(["curl", "-sS", "--cacert", str(ca), https], capture_output=True, text=True, timeout=30)
        assert curl.returncode == 0 and curl.stdout.startswith("version "), curl.stderr

    plain = requests.get(url, allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"] == f"https://127.0.0.1:{tls_port}/", plain.headers

    nginx = engine.services.get(f"{project}_nginx").attrs["Spec"]
    mounted = {s["File"]["Name"]: s["SecretName"] for s in nginx["TaskTemplate"]["ContainerSpec"]["Secrets"]}
    assert set(mounted) == {"tls.crt", "tls.key"}
    assert all(s["File"]["UID"] == "33" and s["File"]["Mode"] == 0o400
               for s in nginx["TaskTemplate"]["ContainerSpec"]["Secrets"])
    for name in ("workers", "cgi"):
        fastcgi = engine.services.get(f"{project}_{name}").attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
        assert not fastcgi.get("Secrets"), name
    key = "".join((tls_dir / project / "key.pem").read_text().splitlines()[1:-1])
    shown = [up.stdout, up.stderr]
    shown.append(subprocess.run(["docker", "service", "inspect", f"{project}_nginx"], capture_output=True, text=True,
                                timeout=30).stdout)
    edges = engine.containers.list(filters={"label": f"{SERVICE_LABEL}={project}_nginx"})
    shown.append(json.dumps([c.attrs for c in edges]))
    shown.append(fcgikit(env, "status", "-f", spec).stdout)
    shown.append(fcgikit(env, "logs", "nginx", "--file", spec, "--tail", "50").stdout)
    shown.append(fcgikit(env, "up", "-f", spec, "--tls", "self-signed", "--dry-run").stdout)
    assert not [text for text in shown if key[:40] in text]

    again = fcgikit(env, "up", "-f", spec, "--tls", "self-signed")
    assert "no change" in again.stdout, again.stdout + again.stderr


def test_a_broken_version_is_rolled_back_by_swarm_and_records_no_release(engine, deployment):
    """A version whose app cannot start (fails its HEALTHCHECK): Swarm rolls the update back,
    `up` exits 1 naming the failing task with its last log lines, every service runs the old
    version again (the others updated by the same deploy rolled back by fcgikit) and keeps
    serving, and no release is recorded. The app that runs is put back in its directory."""
    import json
    import ssl
    import urllib.request

    project, spec, env = deployment["project"], str(deployment["spec"]), deployment["env"]
    fcgikit(env, "up", "-f", spec)
    before = releases_of(env, spec)
    serving = service_images(engine, project)
    webapp = deployment["app_dir"] / "webapp.py"
    working = webapp.read_text()
    webapp.write_text(
        "def app(environ, start_response):\n    pass\n\n\n"
        "raise RuntimeError('this version cannot start: broken on purpose')\n")
    try:
        broken = fcgikit(env, "up", "-f", spec, check=False)
    finally:
        webapp.write_text(working)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    error = [line for line in broken.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "rolled back" in error[0] and f"{project}_workers." in error[0], broken.stderr
    assert "broken on purpose" in broken.stderr, "the failing task's log lines are not attached"
    # The cgi service runs the same image and became healthy with it (its gateway does not
    # import the app): rolled back too, so that no service is left on the broken version.
    assert f"also rolled back, so that no service runs the new version: {project}_cgi" in broken.stderr, broken.stderr
    assert releases_of(env, spec) == before, "a failed up recorded a release"
    assert service_images(engine, project) == serving
    url = json.loads(fcgikit(env, "status", "-f", spec, "--json").stdout)["url"]
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    for _ in range(10):
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            assert answer.status == 200 and answer.read().startswith(b"version ")
    # The rollback Swarm and fcgikit did stays in the services' update status: the next command
    # that waits for them to converge must not take it for a failure of its own.
    scaled = fcgikit(env, "scale", "cgi=2", "-f", spec, check=False)
    assert scaled.returncode == 0, scaled.stdout + scaled.stderr
    assert "no change" not in fcgikit(env, "up", "-f", spec).stdout  # back to the stack file's 1 cgi
