"""The Swarm stack file fcgikit deploys (`--engine swarm`), built from fcgikit.yaml (pure)."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from fcgikit.cli import cli
from fcgikit.deploy import commands
from fcgikit.deploy.model import LABEL_CONFIG, LABEL_PROJECT
from fcgikit.deploy.spec import load_stack_spec, with_replicas
from fcgikit.deploy.swarm import EDGE_SCRIPT_TARGET, stack_file, swarm_nginx_conf

ROOT = Path(__file__).resolve().parents[2]
TAGS = {"workers": "p/fcgi-worker:aaa", "cgi": "p/fcgi-worker:aaa", "nginx": "p/nginx:bbb"}


@pytest.fixture
def spec():
    return load_stack_spec(ROOT / "deploy" / "fcgikit.yaml")


def test_services_are_dnsrr_replicated_with_the_commands_fcgikit_up_runs(spec):
    stack = stack_file(spec, "demo", TAGS, port=8080).stack
    services = stack["services"]
    assert set(services) == {"workers", "cgi", "nginx"}
    assert services["workers"]["command"] == commands.worker_command(spec.services.workers)
    assert services["cgi"]["command"] == commands.cgi_command(spec.services.cgi, spec.services.workers.app)
    assert services["workers"]["deploy"]["replicas"] == 2 and services["cgi"]["deploy"]["replicas"] == 1
    for name, service in services.items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name  # no IPVS needed
        assert service["image"] == TAGS[name] and not service["image"].endswith(":latest"), name
        assert service["labels"][LABEL_PROJECT] == "demo", name


def test_rolling_updates_start_first_and_roll_back_for_the_fastcgi_services(spec):
    services = stack_file(spec, "demo", TAGS, port=8080).stack["services"]
    for name in ("workers", "cgi"):
        update = services[name]["deploy"]["update_config"]
        assert (update["order"], update["failure_action"]) == ("start-first", "rollback"), name
        assert services[name]["healthcheck"] == {"interval": "2s"}  # the image's check, often: the gate
    # nginx holds the node's port in host mode: two tasks cannot, so it is replaced stop-first.
    assert services["nginx"]["deploy"]["update_config"]["order"] == "stop-first"


def test_nginx_is_published_in_host_mode_and_follows_the_tasks_by_its_script(spec):
    files = stack_file(spec, "demo", TAGS, port=18080)
    nginx = files.stack["services"]["nginx"]
    assert nginx["ports"] == [{"target": 8080, "published": 18080, "protocol": "tcp", "mode": "host"}]
    assert nginx["command"] == ["sh", EDGE_SCRIPT_TARGET]
    assert nginx["environment"]["FCGIKIT_EDGE_POOLS"] == "workers cgi"
    targets = {c["target"] for c in nginx["configs"]}
    assert targets == {"/etc/nginx/nginx.conf", EDGE_SCRIPT_TARGET}
    assert set(files.files) == {"nginx.conf", "swarm-edge.sh"}
    # Config names carry their content's hash: Swarm configs cannot change, a new one is made.
    names = [c["name"] for c in files.stack["configs"].values()]
    assert all(name.startswith("demo_") and len(name.rsplit("_", 1)[1]) == 12 for name in names)


def test_the_nginx_conf_is_the_lua_edges_with_no_backend_in_it(spec):
    conf = swarm_nginx_conf(spec)
    assert 'balancer_by_lua_block { require("fcgikit_edge").balance("workers") }' in conf
    assert 'balancer_by_lua_block { require("fcgikit_edge").balance("cgi") }' in conf
    assert "server 127.0.0.1:1 down;" in conf and "9000" not in conf


def test_the_cgi_gateway_is_the_fallback_as_with_fcgikit_up(spec):
    services = stack_file(spec, "demo", TAGS, port=8080).stack["services"]
    assert services["cgi"]["command"] == commands.cgi_command(spec.services.cgi, spec.services.workers.app)
    assert "--wsgi-fallback" in services["cgi"]["command"]


def test_confinement_and_limits_are_carried_over(spec):
    services = stack_file(spec, "demo", TAGS, port=8080).stack["services"]
    wanted = {
        "workers": commands.worker_container("p", "h", 1, "i", spec.services.workers).confinement,
        "cgi": commands.cgi_container("p", "h", 1, "i", spec.services.cgi).confinement,
        "nginx": commands.nginx_container("p", "h", 1, "i", spec.services.nginx).confinement,
    }
    for name, confinement in wanted.items():
        service = services[name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert [v["target"] for v in service["volumes"]] == [path for path, _ in confinement.tmpfs], name
        assert service["deploy"]["resources"]["limits"]["memory"] == confinement.memory, name
        assert service["deploy"]["resources"]["limits"]["pids"] == confinement.pids > 0, name
        assert service.get("cap_add", []) == list(confinement.cap_add), name
        assert service["user"] in ("fcgikit", "www-data"), name
    assert stack_file(spec, "demo", TAGS, port=8080).stack["version"] == "3.9"  # the first to take pids
    assert services["workers"]["stop_grace_period"] == f"{spec.services.workers.timeout + commands.DRAIN_MARGIN}s"


def test_role_placement_only_with_an_inventory(spec):
    assert "placement" not in stack_file(spec, "demo", TAGS, port=8080).stack["services"]["workers"]["deploy"]
    placed = stack_file(spec, "demo", TAGS, port=8080, placement=True).stack["services"]
    assert placed["workers"]["deploy"]["placement"]["constraints"] == ["node.labels.fcgikit.role.workers == true"]
    assert placed["nginx"]["deploy"]["placement"]["constraints"] == ["node.labels.fcgikit.role.edge == true"]


def test_a_service_hash_changes_with_its_definition_only(spec):
    before = stack_file(spec, "demo", TAGS, port=8080).hashes
    assert stack_file(spec, "demo", TAGS, port=8080).hashes == before  # deterministic: a rerun changes nothing
    scaled = stack_file(with_replicas(spec, "workers", 5), "demo", TAGS, port=8080).hashes
    assert scaled["workers"] != before["workers"]
    assert (scaled["cgi"], scaled["nginx"]) == (before["cgi"], before["nginx"])
    moved = stack_file(spec, "demo", TAGS, port=9090).hashes
    assert moved["nginx"] != before["nginx"] and moved["workers"] == before["workers"]
    assert all(len(value) == 12 for value in before.values())
    services = stack_file(spec, "demo", TAGS, port=8080).stack["services"]
    assert services["workers"]["deploy"]["labels"][LABEL_CONFIG] == before["workers"]


def test_without_cgi_there_is_no_cgi_service_nor_pool(tmp_path):
    spec_file = tmp_path / "fcgikit.yaml"
    spec_file.write_text("services:\n  workers:\n    app: hello_wsgi:app\n")
    files = stack_file(load_stack_spec(spec_file), "demo", TAGS, port=8080)
    assert set(files.stack["services"]) == {"workers", "nginx"}
    assert files.stack["services"]["nginx"]["environment"]["FCGIKIT_EDGE_POOLS"] == "workers"
    assert "swarm-cgi" not in files.files["nginx.conf"]


def test_engine_in_the_stack_file_is_checked(tmp_path):
    spec_file = tmp_path / "fcgikit.yaml"
    spec_file.write_text("engine: kubernetes\nservices:\n  workers:\n    app: hello_wsgi:app\n")
    result = CliRunner().invoke(cli, ["up", "--dry-run", "-f", str(spec_file)])
    assert result.exit_code == 1
    assert "engine" in result.output and "kubernetes" in result.output


def test_tls_is_https_published_with_the_certificate_and_key_as_docker_secrets(spec):
    from fcgikit.deploy.spec import with_self_signed_tls

    tls = with_self_signed_tls(spec)
    names = {"tls.crt": "demo_tls.crt_111", "tls.key": "demo_tls.key_222"}
    files = stack_file(tls, "demo", TAGS, port=8080, secret_names=names)
    nginx = files.stack["services"]["nginx"]
    published = [(p["target"], p["published"], p["mode"]) for p in nginx["ports"]]
    assert published == [(8080, 8080, "host"), (8443, 443, "host")]
    assert [(s["source"], s["target"], s["uid"], s["mode"]) for s in nginx["secrets"]] == [
        ("tls.crt", "tls.crt", "33", 0o400), ("tls.key", "tls.key", "33", 0o400)]
    assert files.stack["secrets"] == {name: {"external": True, "name": value} for name, value in names.items()}
    assert "listen 8443 ssl;" in files.files["nginx.conf"] and "/run/secrets/tls.key" in files.files["nginx.conf"]
    assert "secrets" not in files.stack["services"]["workers"]
    # A new certificate is a new Docker secret: nginx is updated, the others are not.
    renewed = stack_file(tls, "demo", TAGS, port=8080, secret_names={**names, "tls.crt": "demo_tls.crt_333"})
    assert renewed.hashes["nginx"] != files.hashes["nginx"] and renewed.hashes["workers"] == files.hashes["workers"]
    plain = stack_file(spec, "demo", TAGS, port=8080)
    assert "secrets" not in plain.stack and len(plain.stack["services"]["nginx"]["ports"]) == 1


class _RolledBackEarlier:
    """A service whose last update was rolled back an hour ago, running its replica now."""

    name = "p_cgi"
    attrs = {
        "Spec": {"Mode": {"Replicated": {"Replicas": 1}}, "TaskTemplate": {"ContainerSpec": {"Image": "p/w:1"}},
                 "Labels": {}},
        "UpdateStatus": {"State": "rollback_completed", "Message": "rollback completed",
                         "StartedAt": "2026-01-01T10:00:00.0Z", "CompletedAt": "2026-01-01T10:00:30.0Z"},
    }

    def reload(self):
        pass

    def tasks(self, filters=None):
        running = {"Status": {"State": "running", "Timestamp": "2026-01-01T10:00:30.0Z"},
                   "Spec": {"ContainerSpec": {"Image": "p/w:1"}}}
        failed = {"Status": {"State": "failed", "Timestamp": "2026-01-01T10:00:10.0Z", "Err": "unhealthy"},
                  "Spec": {"ContainerSpec": {"Image": "p/w:2"}}}
        return [running] if filters else [running, failed, failed, failed]


def test_an_update_rolled_back_before_this_command_does_not_fail_it(spec, monkeypatch):
    """A failed `up` leaves the service's rollback in its UpdateStatus until its next update; a
    later `up` or `scale` converging is not that failure (only what happened since it began is)."""
    from fcgikit.deploy.swarm import SwarmPlan, SwarmStack, SwarmStep

    stack = SwarmStack(spec, "p")
    monkeypatch.setattr(SwarmStack, "_services", lambda self: {"cgi": _RolledBackEarlier()})
    plan = SwarmPlan("p", {"cgi": 1}, (SwarmStep("converge", "wait until they run them"),))
    assert stack.execute(plan).changed


class _Deployed:
    def __init__(self, name: str, definition: dict):
        self.name = name
        self.attrs = {"Spec": {"Labels": definition["deploy"]["labels"],
                               "Mode": {"Replicated": {"Replicas": definition["deploy"]["replicas"]}}}}


def test_up_after_a_scale_goes_back_to_the_files_replicas(spec, monkeypatch, tmp_path):
    """`scale` changes a service's replicas, not its definition (its hash label): the next `up`
    deploys the file's replicas again, as `scale` says; an up with nothing scaled changes nothing."""
    from fcgikit.deploy.swarm import SwarmStack

    class Images:
        def image_tags(self, build=True):
            return dict(TAGS)

    files = stack_file(spec, "demo", TAGS, port=8080)
    deployed = {name: _Deployed(f"demo_{name}", definition) for name, definition in files.stack["services"].items()}
    stack = SwarmStack(spec, "demo", state_dir=tmp_path)
    monkeypatch.setattr(SwarmStack, "images", lambda self: Images())
    monkeypatch.setattr(SwarmStack, "_swarm_steps", lambda self: [])
    monkeypatch.setattr(SwarmStack, "_services", lambda self: deployed)
    monkeypatch.setattr(SwarmStack, "_port", lambda self, services, spec: 8080)
    assert stack.plan_up(build=False).changes_nothing
    wanted = files.stack["services"]["workers"]["deploy"]["replicas"]
    deployed["workers"].attrs["Spec"]["Mode"]["Replicated"]["Replicas"] = wanted + 3  # fcgikit scale workers=N
    plan = stack.plan_up(build=False)
    assert [step.action for step in plan.steps] == ["write", "deploy", "converge", "check"]
    assert plan.replicas["workers"] == wanted
