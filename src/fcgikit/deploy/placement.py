"""How a FastCGI container on a remote host is reached, and by whom (pure).

On one host nginx reaches workers by name on the project network. Across hosts it
cannot: each worker publishes its FastCGI port on its host's private address only (not
on every interface), at a port derived from its slot, so the planner knows every
upstream `address:port` before anything starts. Only the edge hosts may connect: the
manager's allow-list (`--allow`, FCGI_WEB_SERVER_ADDRS) holds their addresses, plus
the container's own loopback for the readiness probe and the HEALTHCHECK.

Connections from nginx arrive from the edge host's address: its engine masquerades
the nginx container's traffic, and the worker host's engine forwards the published
port without rewriting the source (checked by tests/integration/test_multihost_bed.py).

A FastCGI container on the edge host itself is not published at all: nginx reaches it
by name on the host's project network, as on a single host (through the host's address
it would arrive from nginx's container address, which no allow-list holds). The
inventory therefore allows workers on an edge host only when it is the only edge host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from .hosts import Host, hosts_with_role
from .model import ContainerSpec
from .services import KINDS
from .spec import FASTCGI_PORT

# Published ports per service: base + slot (services.py). Slots stay well below 500 (at most
# 100 replicas, plus the ones being replaced), so workers and the CGI gateway never collide.
LOOPBACK = "127.0.0.1"
MANAGER_MODULES = ("fcgikit.serve", "fcgikit.spawn", "fcgikit.cgi")

Factory = Callable[[str, int], ContainerSpec]


def published_port(service: str, slot: int) -> int:
    base = KINDS[service].published_port_base
    if base is None:
        raise ValueError(f"{service} is not published on its host")
    return base + slot


def allowed_addresses(hosts: Sequence[Host]) -> list[str]:
    """Who may open FastCGI connections to a remote worker: the edge hosts, and itself."""
    return [host.address for host in hosts_with_role(list(hosts), "edge")] + [LOOPBACK]


def with_allow_list(command: tuple[str, ...], addresses: Sequence[str]) -> tuple[str, ...]:
    """The manager's command with `--allow` added right after `python3 -m MODULE`."""
    for index, part in enumerate(command):
        if part in MANAGER_MODULES and index > 0 and command[index - 1] == "-m":
            return (*command[: index + 1], "--allow", ",".join(addresses), *command[index + 1 :])
    raise ValueError(f"not a fcgikit manager command: {' '.join(command)}")


def remote_fastcgi_container(spec: ContainerSpec, host: Host, allowed: Sequence[str]) -> ContainerSpec:
    return dataclasses.replace(
        spec,
        ports=((FASTCGI_PORT, published_port(spec.service, spec.slot)),),
        bind_address=host.address,
        command=with_allow_list(spec.command, allowed),
    )


def publish_on_remote_host(factories: dict[str, Factory], hosts: Sequence[Host]) -> dict[str, Factory]:
    """The planner's container factories, changed for FastCGI containers placed on remote hosts."""
    by_name = {host.name: host for host in hosts}
    if not any(host.remote for host in hosts):
        return factories
    allowed = allowed_addresses(hosts)

    def remote_aware(factory: Factory) -> Factory:
        def make(host_name: str, slot: int) -> ContainerSpec:
            spec = factory(host_name, slot)
            host = by_name.get(host_name)
            if host is None or not host.remote or host.has_role("edge"):
                return spec  # beside nginx: reached by name on the project network, never published
            return remote_fastcgi_container(spec, host, allowed)

        return make

    return {
        service: remote_aware(factory) if KINDS[service].published_port_base is not None else factory
        for service, factory in factories.items()
    }
