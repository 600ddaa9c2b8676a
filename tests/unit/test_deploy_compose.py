"""compose.yaml runs the example stack exactly as `fcgikit up` would (same images, same commands)."""

from pathlib import Path

import yaml

from fcgikit.deploy import commands
from fcgikit.deploy.model import CAP_DROP, SECURITY_OPT
from fcgikit.deploy.spec import load_stack_spec

ROOT = Path(__file__).resolve().parents[2]


def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def compose_override():
    return yaml.safe_load((ROOT / "compose.override.yaml").read_text())["services"]


def test_compose_commands_are_the_ones_fcgikit_up_runs():
    spec = load_stack_spec(ROOT / "deploy" / "fcgikit.yaml")
    services = compose()
    assert services["workers"]["command"] == commands.worker_command(spec.services.workers)
    assert services["cgi"]["command"] == commands.cgi_command(spec.services.cgi, spec.services.workers.app)
    assert "--wsgi-fallback" in services["cgi"]["command"]  # the example stack falls back to fork-CGI
    environment = dict(services["workers"]["environment"])
    # The log format passes through from the shell running compose (fcgikit up: the stack file's env).
    assert environment.pop("FCGIKIT_LOG_FORMAT") == services["cgi"]["environment"]["FCGIKIT_LOG_FORMAT"] \
        == "${FCGIKIT_LOG_FORMAT:-text}"
    assert environment == spec.services.workers.env


def test_compose_uses_the_latest_tags_fcgikit_build_makes():
    services = compose()
    assert services["workers"]["image"] == services["cgi"]["image"] == "fcgikit/fcgi-worker:latest"
    assert services["nginx"]["image"] == "fcgikit/nginx:latest"
    assert services["nginx"]["ports"] == [
        {"target": 8080, "published": "${FCGIKIT_PORT:-8080}", "protocol": "tcp", "mode": "host"}]


def test_compose_is_also_a_swarm_stack_file():
    """`docker stack deploy` refuses a depends_on mapping, mem_limit and pids_limit, drops the short
    tmpfs form, and this engine has no IPVS (no virtual IPs, no ingress routing mesh)."""
    services = compose()
    assert services["nginx"]["depends_on"] == ["workers", "cgi"]
    for name, service in services.items():
        assert "mem_limit" not in service and "pids_limit" not in service and "tmpfs" not in service, name
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
    assert all(port["mode"] == "host" for port in services["nginx"]["ports"])


def test_compose_replicas_are_the_example_specs():
    spec = load_stack_spec(ROOT / "deploy" / "fcgikit.yaml")
    services = compose()
    assert services["workers"]["deploy"]["replicas"] == spec.services.workers.replicas
    assert services["cgi"]["deploy"]["replicas"] == spec.services.cgi.replicas


def test_compose_confines_every_container_as_fcgikit_up_does():
    spec = load_stack_spec(ROOT / "deploy" / "fcgikit.yaml")
    services = compose()
    wanted = {
        "workers": commands.worker_container("p", "h", 1, "i", spec.services.workers),
        "cgi": commands.cgi_container("p", "h", 1, "i", spec.services.cgi),
        "nginx": commands.nginx_container("p", "h", 1, "i", spec.services.nginx),
    }
    for name, container in wanted.items():
        c, service = container.confinement, services[name]
        assert service["read_only"] is c.read_only, name
        # The same directories as tmpfs, in the form both Compose and Swarm read (no uid option:
        # the nginx image makes them mode 1777, which the tmpfs takes over).
        assert service["volumes"] == [{"type": "tmpfs", "target": path} for path, _ in c.tmpfs], name
        assert service["cap_drop"] == list(CAP_DROP) and "cap_add" not in service, name
        assert service["security_opt"] == list(SECURITY_OPT), name
        # Compose reads its limits from compose.override.yaml, Swarm the memory from deploy.resources.
        override = compose_override()[name]
        assert (override["mem_limit"], override["pids_limit"]) == (c.memory, c.pids), name
        assert service["deploy"]["resources"]["limits"]["memory"] == c.memory, name
    # compose runs the baked-in nginx.conf: nothing is written in, so /etc/nginx needs no volume.
    assert "healthcheck" in services["nginx"]
