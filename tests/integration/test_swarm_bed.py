"""`--engine swarm` across the test bed: three hosts with their own engines made one swarm by
`fcgikit hosts bootstrap`, images shipped by ID, tasks placed by role, a host cut off.

This machine's engine is not put in swarm mode here: the bed's hosts form the swarm.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from tests.hosts.bed import TestBed
from tests.integration.swarm_support import KeepAliveLoad, env_without_fcgikit, fcgikit, unique, wait_answering

pytestmark = [pytest.mark.extended, pytest.mark.multihost, pytest.mark.docker, pytest.mark.swarm,
              pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
ROLES = {"h1": ["edge"], "h2": ["workers"], "h3": ["workers", "cgi"]}


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with TestBed(hosts=3, workdir=tmp_path_factory.mktemp("swarm-bed")) as bed:
        yield bed


@pytest.fixture(scope="module")
def deployment(bed, tmp_path_factory):
    directory = tmp_path_factory.mktemp("swarm-bed-spec")
    inventory = directory / "hosts.yaml"
    inventory.write_text(bed.inventory_yaml(ROLES))
    project = unique("sb")
    app_dir = directory / "app"  # a copy: the rolling update test changes it
    app_dir.mkdir()
    (app_dir / "hello_wsgi.py").write_text((ROOT / "apps" / "hello_wsgi.py").read_text())
    spec = directory / "fcgikit.yaml"
    spec.write_text(f"""project: {project}
engine: swarm
services:
  nginx:
    port: 8080
  workers:
    app: hello_wsgi:app
    path: {app_dir}
    processes: 2
    replicas: 2
  cgi:
    scripts: {ROOT / "apps" / "cgi-bin"}
    processes: 1
    replicas: 1
""")
    prefix = unique("fcgikit-swarmbed-")
    env = dict(env_without_fcgikit(), FCGIKIT_IMAGE_PREFIX=prefix, FCGIKIT_HOSTS=str(inventory))
    built = fcgikit(env, "build", "-f", str(spec), timeout=900)
    yield {"bed": bed, "env": env, "spec": str(spec), "project": project, "inventory": inventory, "app_dir": app_dir,
           "tags": [line.split()[0] for line in built.stdout.splitlines() if line.startswith(prefix)]}
    import docker

    client = docker.from_env()
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(prefix + "/"):
                client.images.remove(tag, force=True)


def bed_hosts(bed):
    return {host.name: host for host in bed.hosts}


def test_bootstrap_makes_one_swarm_labelled_by_role_and_a_rerun_changes_nothing(deployment):
    env, bed = deployment["env"], deployment["bed"]
    first = fcgikit(env, "hosts", "bootstrap")
    assert "swarm initialised on h1" in first.stdout and "h2 joined" in first.stdout and "h3 joined" in first.stdout
    token_hint = "SWMTKN"
    assert token_hint not in first.stdout + first.stderr, "a join token was printed"
    nodes = bed.exec(bed_hosts(bed)["h1"], "docker node ls --format '{{.Hostname}} {{.Status}}'")
    assert sorted(nodes.split()) == sorted("h1 Ready h2 Ready h3 Ready".split()), nodes
    labels = bed.exec(bed_hosts(bed)["h1"],
                      "docker node inspect h3 --format '{{json .Spec.Labels}}'")
    assert json.loads(labels) == {"fcgikit.role.workers": "true", "fcgikit.role.cgi": "true"}
    again = fcgikit(env, "hosts", "bootstrap")
    assert again.stdout.startswith("no change"), again.stdout


def test_up_ships_the_images_and_places_tasks_by_role(deployment):
    env, spec, bed = deployment["env"], deployment["spec"], deployment["bed"]
    started = time.monotonic()
    up = fcgikit(env, "up", "-f", spec)
    took = time.monotonic() - started
    edge = bed_hosts(bed)["h1"]
    assert f"http://{edge.address}:8080/" in up.stdout, up.stdout
    answer = wait_answering(f"http://{edge.address}:8080/", timeout=10)
    assert answer is not None and answer.text.startswith("Hello")
    assert wait_answering(f"http://{edge.address}:8080/cgi-bin/hello.sh", timeout=10).status_code == 200
    # Each host holds exactly the images its roles run, shipped from here (no registry).
    worker_tag, nginx_tag = sorted(deployment["tags"], key=lambda tag: "nginx" in tag)
    for host, wanted, unwanted in (("h1", nginx_tag, worker_tag), ("h2", worker_tag, nginx_tag),
                                   ("h3", worker_tag, nginx_tag)):
        images = bed.exec(bed_hosts(bed)[host], "docker images --format '{{.Repository}}:{{.Tag}}'")
        assert wanted in images and unwanted not in images, (host, images)
    report = json.loads(fcgikit(env, "status", "-f", spec, "--json").stdout)
    placed = {(row["service"], row["host"]) for row in report["containers"] if row["state"] == "running"}
    assert ("nginx", "h1") in placed and ("cgi", "h3") in placed
    assert {host for service, host in placed if service == "workers"} <= {"h2", "h3"}
    started = time.monotonic()
    again = fcgikit(env, "up", "-f", spec)
    rerun = time.monotonic() - started
    print(f"swarm up across 3 bed hosts: {took:.1f}s (images built before, shipped in it); rerun {rerun:.1f}s")
    assert "no change" in again.stdout and again.stderr.count("nothing sent") == 3, again.stderr
    # Targets: under 60 s and under 3 s. A rerun is about 1.5 s of work (SSH to three hosts,
    # their image lists, the manager's services) plus 1-2.5 s of Python imports, more when
    # others load this machine: bounded loosely here, the figures are printed above.
    assert took < 60 and rerun < 10


def test_scale_and_a_rolling_update_under_keepalive_load_fail_no_request(deployment):
    env, spec, bed = deployment["env"], deployment["spec"], deployment["bed"]
    url = f"http://{bed_hosts(bed)['h1'].address}:8080/"
    with KeepAliveLoad(url) as load:
        time.sleep(1)
        fcgikit(env, "scale", "workers=8", "-f", spec)
        time.sleep(3)
        fcgikit(env, "scale", "workers=2", "-f", spec)
        time.sleep(3)
    print(f"scale 2->8->2 across hosts under keep-alive load: {load.ok} answered, {len(load.failures)} failed")
    assert load.ok > 50 and load.failures == [], load.failures[:10]

    app = deployment["app_dir"] / "hello_wsgi.py"
    app.write_text(app.read_text().replace('f"Hello from fcgikit', 'f"Hello again from fcgikit'))
    with KeepAliveLoad(url) as load:
        time.sleep(1)
        update = fcgikit(env, "up", "-f", spec)  # a new worker image: built, shipped to h2 and h3, rolled
        time.sleep(2)
    print(f"rolling update across hosts under keep-alive load: {load.ok} answered, {len(load.failures)} failed")
    assert "h2: sent" in update.stderr and "h3: sent" in update.stderr, update.stderr
    assert load.failures == [], load.failures[:10]
    answered = {version.split(" (pid")[0] for version in load.versions}
    assert answered == {"Hello from fcgikit", "Hello again from fcgikit"}, load.versions


def releases_of(env: dict, spec: str) -> list[dict]:
    return json.loads(fcgikit(env, "releases", "-f", spec, "--json").stdout)["releases"]


def service_images(bed, project: str) -> dict[str, str]:
    """What the manager's services run: service -> image."""
    manager = bed_hosts(bed)["h1"]
    names = bed.exec(manager, f"docker service ls -q --filter label=com.docker.stack.namespace={project}").split()
    shown = bed.exec(manager, "docker service inspect --format "
                              "'{{.Spec.Name}} {{.Spec.TaskTemplate.ContainerSpec.Image}}' " + " ".join(names))
    return {name.split("_", 1)[1]: image for name, image in (line.split() for line in shown.splitlines())}


ASK_THE_APP = ("from fcgikit.fastcgi.client import fcgi_request, get_params; "
               "print(fcgi_request('127.0.0.1:9000', get_params('/')).http()[2].decode().strip())")


def replica_answers(bed, project: str) -> list[tuple[str, str, str]]:
    """Each running workers task asked directly (FastCGI on its own loopback, in its container on
    its node): (node, image, answer), so no replica hides behind the edge's balancer."""
    hosts = bed_hosts(bed)
    tasks = bed.exec(hosts["h1"], f"docker service ps {project}_workers --no-trunc --filter desired-state=running "
                                  "--format '{{.ID}} {{.Node}} {{.Image}} {{.CurrentState}}'")
    answers = []
    for line in tasks.splitlines():
        task, node, image, state = line.split(maxsplit=3)
        assert state.startswith("Running"), line
        container = bed.exec(hosts[node], f"docker ps -q --filter label=com.docker.swarm.task.id={task}").strip()
        asked = bed.exec(hosts[node], f"docker exec {container} python3 -c {shlex.quote(ASK_THE_APP)}")
        answers.append((node, image, asked.strip()))
    return answers


def test_rollback_across_hosts_under_keepalive_load_brings_version_1_back_on_every_replica(deployment):
    """`rollback --engine swarm --hosts`: the releases live on the manager (h1); release 1's worker
    image, still on h2 and h3, runs again on every replica, start-first, no request failing."""
    env, spec, bed, project = deployment["env"], deployment["spec"], deployment["bed"], deployment["project"]
    url = f"http://{bed_hosts(bed)['h1'].address}:8080/"
    rows = releases_of(env, spec)
    assert [(r["release"], r["rollback_of"]) for r in rows] == [(1, None), (2, None)], rows
    first, second = rows
    assert first["images"]["workers"] != second["images"]["workers"]
    before = replica_answers(bed, project)
    assert len(before) == 2 and all(answer.startswith("Hello again from fcgikit") for _, _, answer in before), before

    with KeepAliveLoad(url) as load:
        time.sleep(1)
        started = time.monotonic()
        back = fcgikit(env, "rollback", "-f", spec, timeout=240)
        done = time.monotonic()
        time.sleep(2)
    print(f"swarm rollback 2->1 across 3 bed hosts in {done - started:.1f}s under keep-alive load: "
          f"{load.ok} answered, {len(load.failures)} failed")
    assert "rolled back to release 1" in back.stdout and "recorded as release 3" in back.stdout, back.stdout
    assert "built" not in back.stderr, back.stderr
    assert load.failures == [], load.failures[:10]
    seen = {version.split(" (pid")[0] for _, version in load.answers}
    assert seen == {"Hello from fcgikit", "Hello again from fcgikit"}, seen
    after = {version.split(" (pid")[0] for began, version in load.answers if began > done}
    assert after == {"Hello from fcgikit"}, after

    assert service_images(bed, project) == first["images"]
    replicas = replica_answers(bed, project)
    print(f"replicas after the rollback: {replicas}")
    assert len(replicas) == 2 and {node for node, _, _ in replicas} <= {"h2", "h3"}, replicas
    assert all(image == first["images"]["workers"] and answer.startswith("Hello from fcgikit")
               for _, image, answer in replicas), replicas
    rows = releases_of(env, spec)
    assert [(r["release"], r["rollback_of"]) for r in rows] == [(1, None), (2, None), (3, 1)], rows
    assert rows[-1]["current"] and rows[-1]["images"] == first["images"]


def test_a_worker_host_cut_off_loses_no_request_and_swarm_restores_the_replicas(deployment):
    env, spec, bed = deployment["env"], deployment["spec"], deployment["bed"]
    hosts = bed_hosts(bed)
    url = f"http://{hosts['h1'].address}:8080/"
    fcgikit(env, "scale", "workers=4", "-f", spec)
    cut = None
    # The clients wait longer than nginx's request timeout (30 s, the spec's default): a request
    # nginx gives up on ends as its 504, not as the client's own timeout at the same moment (with
    # both at 30 s, a run saw 4 ReadTimeouts at 30.0 s where another saw 4 504s).
    with KeepAliveLoad(url, timeout=40) as load:
        time.sleep(1)
        bed.cut_off(hosts["h2"])
        cut = time.monotonic()
        restored = None
        while time.monotonic() - cut < 90:
            report = json.loads(fcgikit(env, "status", "-f", spec, "--json").stdout)
            running = [row for row in report["containers"]
                       if row["service"] == "workers" and row["state"] == "running" and row["host"] == "h3"]
            if len(running) == 4:
                restored = time.monotonic() - cut
                break
            time.sleep(2)
        # Until every request sent to h2 before the cut has ended (nginx's 504 at 30 s), so that
        # each is counted below (the load's threads are joined 15 s each at most).
        time.sleep(max(2.0, cut + 32 - time.monotonic()))
    try:
        print(f"worker host cut off: 4 workers running on h3 again after {restored}s; "
              f"{load.ok} answered, {len(load.failures)} failed, slowest {load.slowest:.1f}s")
        assert restored is not None and restored < 60, "Swarm did not restore the replicas within 60 s"
        # As with --hosts (test_multihost_deploy): a request nginx had already sent to h2 when it
        # was cut off (in flight, or on a kept-alive connection) may have reached its app, so it
        # is not replayed (docs/stack.md, "Timeouts and retries"): it ends as nginx's 504 at the
        # request timeout, one per client connection at most. Once the edge's probes have marked
        # h2's tasks down (about 1 s), nothing fails.
        late = [what for began, what in zip(load.failure_times, load.failures, strict=True) if began > cut + 2]
        assert load.ok > 50 and late == [], late[:5]
        assert all("504" in what for what in load.failures), load.failures[:5]
        assert len(load.failures) <= len(load.threads), load.failures
    finally:
        bed.reconnect(hosts["h2"])


def test_down_removes_the_stack_from_the_swarm(deployment):
    env, spec, bed = deployment["env"], deployment["spec"], deployment["bed"]
    done = fcgikit(env, "down", "-f", spec)
    assert "is down" in done.stdout
    services = bed.exec(bed_hosts(bed)["h1"], "docker service ls -q")
    assert services.strip() == ""
