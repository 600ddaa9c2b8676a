"""A host: where containers run. The local engine is the single default host.

Planning only looks at a host's name and roles; the Docker operations get their
client from the host. Multi-host inventories (over SSH) produce more of these.
The Docker SDK is imported only when a client is asked for, so the pure planner
(deploy/plan.py, which imports this module) loads no Docker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .services import ROLES

if TYPE_CHECKING:
    import docker

ALL_ROLES = frozenset(ROLES)


def local_engine() -> docker.DockerClient:
    """The engine of this machine, as the environment names it (DOCKER_HOST, or the local socket)."""
    import docker

    return docker.from_env()


@dataclass(frozen=True)
class Host:
    name: str
    address: str  # where the host's published ports answer (the URL printed by `up`)
    roles: frozenset[str] = ALL_ROLES
    connect: Callable[[], docker.DockerClient] = field(default=local_engine, compare=False, repr=False)
    # Reached over SSH (an inventory host): its workers publish their FastCGI port on
    # `address`, and nginx on an edge host reaches them there (see deploy/placement.py).
    remote: bool = False

    def docker_client(self) -> docker.DockerClient:
        return self.connect()

    def has_role(self, role: str) -> bool:
        return role in self.roles


def local_host() -> Host:
    return Host(name="local", address="127.0.0.1")


def hosts_with_role(hosts: list[Host], role: str) -> list[Host]:
    return [host for host in hosts if host.has_role(role)]
