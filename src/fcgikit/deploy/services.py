"""The services of a stack, said once: nginx (the edge), the workers and the CGI gateway.

Whatever differs between them (the hosts' role they run on, the image they run, whether
`scale` takes them, the order they are shown and removed in, how their containers are
built) is a field of their ServiceKind here; the planner, the engines, the CLI and the
stack file's helpers read it from this table instead of naming the services again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import commands
from .model import ContainerSpec
from .nginxconf import fallback_enabled
from .secrets import mounts_for
from .spec import StackSpec

ContainerFactory = Callable[[str, int], ContainerSpec]  # (host, slot) -> the container wanted there


def _workers(spec: StackSpec, project: str, image: str) -> ContainerFactory:
    workers = spec.services.workers
    mounts = mounts_for(spec, workers.secrets)
    return lambda host, slot: commands.worker_container(project, host, slot, image, workers, mounts)


def _cgi(spec: StackSpec, project: str, image: str) -> ContainerFactory:
    cgi = spec.services.cgi
    assert cgi is not None  # called for the services the stack has (factories())
    mounts = mounts_for(spec, cgi.secrets)
    fallback_app = spec.services.workers.app if fallback_enabled(spec.services) else None
    return lambda host, slot: commands.cgi_container(project, host, slot, image, cgi, mounts, fallback_app)


def _nginx(spec: StackSpec, project: str, image: str) -> ContainerFactory:
    nginx = spec.services.nginx
    return lambda host, slot: commands.nginx_container(project, host, slot, image, nginx)


@dataclass(frozen=True)
class ServiceKind:
    name: str  # the stack file's services/NAME, the containers' fcgikit.service label
    role: str  # the inventory role of the hosts it runs on
    image: str  # the image it runs (images.BuildContext.kind)
    backend: bool  # a FastCGI pool nginx sends requests to (else: the edge itself)
    scalable: bool  # `fcgikit scale NAME=N`; else one container
    shown: int  # rank in status and logs
    removed: int  # rank in `down` (the edge first: no request goes to a worker being removed)
    published_port_base: int | None  # on a remote host, published at base + slot (placement.py)
    factory: Callable[[StackSpec, str, str], ContainerFactory]  # (spec, project, image) -> its containers

    def section(self, spec: StackSpec):
        """Its part of the stack file (None: the stack has no such service)."""
        return getattr(spec.services, self.name)

    def replicas(self, spec: StackSpec) -> int:
        section = self.section(spec)
        return 0 if section is None else section.replicas if self.scalable else 1


# In planning order: the pools are started and answering before the edge is pointed at them.
SERVICES = (
    ServiceKind("workers", role="workers", image="fcgi-worker", backend=True, scalable=True, shown=1, removed=2,
                published_port_base=9100, factory=_workers),
    ServiceKind("cgi", role="cgi", image="fcgi-worker", backend=True, scalable=True, shown=2, removed=1,
                published_port_base=9600, factory=_cgi),
    ServiceKind("nginx", role="edge", image="nginx", backend=False, scalable=False, shown=0, removed=0,
                published_port_base=None, factory=_nginx),
)
KINDS = {kind.name: kind for kind in SERVICES}
EDGE = next(kind.name for kind in SERVICES if not kind.backend)
BACKENDS = tuple(kind.name for kind in SERVICES if kind.backend)
SCALABLE = tuple(kind.name for kind in SERVICES if kind.scalable)
SHOWN = tuple(kind.name for kind in sorted(SERVICES, key=lambda kind: kind.shown))  # nginx, workers, cgi
SERVICE_ROLE = {kind.name: kind.role for kind in SERVICES}
IMAGE_KINDS = tuple(dict.fromkeys(kind.image for kind in SERVICES))  # fcgi-worker, nginx
ROLES = tuple(dict.fromkeys(SERVICE_ROLE[name] for name in SHOWN))  # edge, workers, cgi


def shown_rank(service: str) -> int:
    """Where a service's containers come in status and logs (an unknown one last)."""
    return KINDS[service].shown if service in KINDS else len(SERVICES)


def removed_rank(service: str) -> int:
    return KINDS[service].removed if service in KINDS else len(SERVICES)


def services_of_role(role: str) -> tuple[str, ...]:
    return tuple(kind.name for kind in SERVICES if kind.role == role)


def factories(spec: StackSpec, project: str, images: dict[str, str]) -> dict[str, ContainerFactory]:
    """service -> its container factory, for the services the stack has (images: service -> tag)."""
    return {kind.name: kind.factory(spec, project, images[kind.name])
            for kind in SERVICES if kind.section(spec) is not None}


def image_tags(built: dict[str, str]) -> dict[str, str]:
    """service -> tag, from image kind -> tag."""
    return {kind.name: built[kind.image] for kind in SERVICES}
