"""compose.yaml runs the example stack exactly as `fcgikit up` would (same images, same commands)."""

from pathlib import Path

import yaml

from fcgikit.deploy import commands
from fcgikit.deploy.model import CAP_DROP, SECURITY_OPT
from fcgikit.deploy.spec import load_stack_spec

ROOT = Path(__file__).resolve().parents[2]


def compose():
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def test_compose_commands_are_the_ones_fcgikit_up_runs():
    spec = load_stack_spec(ROOT / "deploy" / "fcgikit.yaml")
    services = compose()
    assert services["workers"]["command"] == commands.worker_command(spec.services.workers)
    assert services["cgi"]["command"] == commands.cgi_command(spec.services.cgi)
    assert services["workers"]["environment"] == spec.services.workers.env


def test_compose_uses_the_latest_tags_fcgikit_build_makes():
    services = compose()
    assert services["workers"]["image"] == services["cgi"]["image"] == "fcgikit/fcgi-worker:latest"
    assert services["nginx"]["image"] == "fcgikit/nginx:latest"
    assert services["nginx"]["ports"] == ["${FCGIKIT_PORT:-8080}:8080"]
    assert services["nginx"]["depends_on"]["workers"]["condition"] == "service_healthy"


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
        assert service["tmpfs"] == [f"{path}:{options}" if options else path for path, options in c.tmpfs], name
        assert service["cap_drop"] == list(CAP_DROP) and "cap_add" not in service, name
        assert service["security_opt"] == list(SECURITY_OPT), name
        assert (service["mem_limit"], service["pids_limit"]) == (c.memory, c.pids), name
    # compose runs the baked-in nginx.conf: nothing is written in, so /etc/nginx needs no volume.
    assert "healthcheck" in services["nginx"]
