"""The services are said once (deploy/services.py); what else names them agrees with it."""

import typing

from fcgikit.deploy import images
from fcgikit.deploy.inventory import Role
from fcgikit.deploy.services import BACKENDS, EDGE, IMAGE_KINDS, KINDS, ROLES, SCALABLE, SERVICES, SHOWN, factories
from fcgikit.deploy.spec import CgiService, NginxService, Services, StackSpec, WorkersService

IMAGES = {"workers": "fk/fcgi-worker:aaa", "cgi": "fk/fcgi-worker:aaa", "nginx": "fk/nginx:bbb"}


def spec(cgi=True) -> StackSpec:
    return StackSpec(services=Services(nginx=NginxService(port=8080), workers=WorkersService(app="m:app", replicas=3),
                                       cgi=CgiService(replicas=2) if cgi else None))


def test_each_kind_builds_containers_of_its_own_service_from_its_own_image():
    built = factories(spec(), "demo", IMAGES)
    assert list(built) == [kind.name for kind in SERVICES]
    for kind in SERVICES:
        container = built[kind.name]("h1", 1)
        assert container.service == kind.name and container.image == IMAGES[kind.name]
        assert container.name == f"demo-{kind.name}-1"
    assert list(factories(spec(cgi=False), "demo", IMAGES)) == ["workers", "nginx"]


def test_the_derived_lists_agree():
    assert EDGE == "nginx" and BACKENDS == ("workers", "cgi") and SCALABLE == BACKENDS
    assert SHOWN == ("nginx", "workers", "cgi") and ROLES == ("edge", "workers", "cgi")
    assert set(typing.get_args(Role)) == set(ROLES)  # the inventory's schema names the same roles
    assert [KINDS[name].replicas(spec()) for name in SHOWN] == [1, 3, 2]
    assert KINDS["cgi"].replicas(spec(cgi=False)) == 0


def test_every_image_a_service_runs_is_built():
    root = images.source_root()
    built = {images.nginx_context(root).kind, images.worker_context(root, None, None, "m:app", []).kind}
    assert set(IMAGE_KINDS) == built
