"""compose.yaml runs the example stack exactly as `fcgikit up` would (same images, same commands)."""

from pathlib import Path

import yaml

from fcgikit.deploy import commands
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
    assert services["nginx"]["ports"] == ["${FCGIKIT_PORT:-8080}:80"]
    assert services["nginx"]["depends_on"]["workers"]["condition"] == "service_healthy"
