"""Planning: (spec, hosts, what runs now) -> the containers wanted and the steps to get there.

Pure: no Docker, no clock. `fcgikit up`, `scale` and `down` print a plan with
`--dry-run` and execute the same plan otherwise. The steps are ordered so that no
request fails: new containers start and answer before nginx is pointed at them,
and surplus ones are drained only after nginx has stopped sending them requests.
nginx gets its backends in place (UpdateBackends, no reload); it reloads only when its
nginx.conf really changes (ReloadNginx).
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from . import commands
from .docker_args import (
    container_create_arguments,
    container_files,
    docker_network_create_line,
    docker_run_line,
    network_create_arguments,
)
from .hosts import Host, hosts_with_role
from .model import NGINX_CONF_PATH, ContainerSpec, RunningContainer, network_name
from .nginxconf import BACKENDS_PATH, parse_backends, render_nginx_conf
from .placement import publish_on_remote_host
from .services import EDGE, SERVICES, ContainerFactory, removed_rank
from .services import factories as service_factories
from .spec import FASTCGI_PORT, NGINX_PORT, StackSpec


@dataclass(frozen=True)
class Observed:
    """What the hosts hold now for one project (found by label)."""

    containers: tuple[RunningContainer, ...] = ()
    networks: frozenset[str] = frozenset()  # names of hosts that already have the project network
    nginx_conf: str | None = None  # the conf inside the running nginx container
    backends: str | None = None  # the backends list inside it (nginxconf.BACKENDS_PATH)


class StepRunner(Protocol):
    """What executes a plan's steps on the hosts (operations.Stack): one method per kind of
    step, called by the step itself (`step.run(runner)`), so that a new kind of step cannot
    be planned without a way to run it."""

    def run_create_network(self, step: CreateNetwork) -> None: ...
    def run_start_container(self, step: StartContainer) -> None: ...
    def run_wait_answering(self, step: WaitAnswering) -> None: ...
    def run_reload_nginx(self, step: ReloadNginx) -> None: ...
    def run_renew_secrets(self, step: RenewSecrets) -> None: ...
    def run_update_backends(self, step: UpdateBackends) -> None: ...
    def run_check_end_to_end(self, step: CheckEndToEnd) -> None: ...
    def run_stop_container(self, step: StopContainer) -> None: ...
    def run_remove_container(self, step: RemoveContainer) -> None: ...
    def run_remove_network(self, step: RemoveNetwork) -> None: ...


# The steps. Each says what it does, the docker command that does the same by hand (rendered
# from the arguments the engine is given, where the step makes a Docker call with options:
# docker_args.py), and which method of the runner executes it.
@dataclass(frozen=True)
class CreateNetwork:
    host: str
    name: str
    project: str

    def describe(self) -> str:
        return f"create network {self.name} on {self.host}"

    def arguments(self) -> dict:
        return network_create_arguments(self.project, self.host)

    def docker_command(self) -> str:
        return docker_network_create_line(self.arguments())

    def run(self, runner: StepRunner) -> None:
        runner.run_create_network(self)


@dataclass(frozen=True)
class StartContainer:
    container: ContainerSpec
    network: str
    nginx_conf: str | None = None  # written into an nginx container before it starts

    def describe(self) -> str:
        c = self.container
        names = ", ".join(n for n, _ in c.secrets)
        secrets = f", then write secret(s) {names} into its /run/secrets" if c.secrets else ""
        return f"start {c.name} ({c.service}) on {c.host} from {c.image}{secrets}"

    def arguments(self) -> dict:
        """The Docker SDK's containers.create() arguments."""
        return container_create_arguments(self.container, self.network)

    def files(self) -> dict[str, str]:
        """Written in after the container is created, before it starts."""
        return container_files(self.nginx_conf)

    def docker_command(self) -> str:
        return docker_run_line(self.arguments(), self.files())

    def run(self, runner: StepRunner) -> None:
        runner.run_start_container(self)


@dataclass(frozen=True)
class WaitAnswering:
    container: ContainerSpec

    def describe(self) -> str:
        return f"wait until {self.container.name} answers a FastCGI request"

    def docker_command(self) -> str:
        return f"docker exec {self.container.name} {_shell(commands.probe_command())}"

    def run(self, runner: StepRunner) -> None:
        runner.run_wait_answering(self)


@dataclass(frozen=True)
class ReloadNginx:
    container: str
    host: str
    nginx_conf: str

    def describe(self) -> str:
        return f"write nginx.conf into {self.container} on {self.host} and reload nginx (no restart)"

    def docker_command(self) -> str:
        steps = [f"docker cp nginx.conf {self.container}:{NGINX_CONF_PATH}"]
        steps += [f"docker exec {self.container} {_shell(argv)}" for argv in commands.nginx_reload_commands()]
        return " && ".join(steps)

    def run(self, runner: StepRunner) -> None:
        runner.run_reload_nginx(self)


@dataclass(frozen=True)
class RenewSecrets:
    """A running nginx whose certificate or key changed: the new files written into its
    /run/secrets, then `nginx -t` and a reload (no restart, no refused connection)."""

    container: str
    host: str
    secrets: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        names = ", ".join(name for name, _ in self.secrets)
        return f"write the renewed {names} into {self.container} on {self.host} and reload nginx (no restart)"

    def docker_command(self) -> str:
        reload = " && ".join(f"docker exec {self.container} {_shell(argv)}"
                             for argv in commands.nginx_reload_commands())
        return f"docker exec {self.container} sh -c 'cat > /run/secrets/NAME' < NEW_FILE (each) && {reload}"

    def run(self, runner: StepRunner) -> None:
        runner.run_renew_secrets(self)


@dataclass(frozen=True)
class UpdateBackends:
    """Hand the running nginx its backends (no reload): the list is written into the
    container with `docker exec`, and the step ends once every nginx worker process serves
    it (so a backend left out gets no new request after this step)."""

    container: str
    host: str
    network: str
    backends: tuple[tuple[str, str, str], ...]  # (pool, address as planned, container name)

    def describe(self) -> str:
        pools: dict[str, list[str]] = {}
        for pool, _, name in self.backends:
            pools.setdefault(pool, []).append(name)
        listed = "; ".join(f"{pool}: {', '.join(names)}" for pool, names in sorted(pools.items())) or "none"
        return f"update backends of nginx in {self.container} on {self.host} (no reload): {listed}"

    def docker_command(self) -> str:
        # IP_OF_NAME: the container's address on the network (docker inspect), or the
        # published host address for a remote host; V: any version token.
        lines = ["version V"] + [f"{pool} {_ip_placeholder(address, name)} {name}"
                                 for pool, address, name in self.backends]
        return (f"printf '%s\\n' {' '.join(shlex.quote(line) for line in lines)} | docker exec -i {self.container} "
                f"sh -c 'cat > {BACKENDS_PATH}.new && mv -f {BACKENDS_PATH}.new {BACKENDS_PATH}'")

    def run(self, runner: StepRunner) -> None:
        runner.run_update_backends(self)

    def pools(self) -> dict[str, list[tuple[str, str]]]:
        result: dict[str, list[tuple[str, str]]] = {}
        for pool, address, name in self.backends:
            result.setdefault(pool, []).append((address, name))
        return result


@dataclass(frozen=True)
class CheckEndToEnd:
    host: str
    container: str
    url: str = "http://HOST:PORT/"  # where the edge answers, as far as the plan knows it

    def describe(self) -> str:
        return f"send GET / through {self.container} and expect an answer from the app"

    def docker_command(self) -> str:
        return f"curl -fsS {self.url}"

    def run(self, runner: StepRunner) -> None:
        runner.run_check_end_to_end(self)


@dataclass(frozen=True)
class RemoveContainer:
    container: RunningContainer
    stop_timeout: int = 10

    def describe(self) -> str:
        c = self.container
        why = "" if c.running else f" ({c.state})"
        return f"drain and remove {c.name} ({c.service}) on {c.host}{why}"

    def docker_command(self) -> str:
        return f"docker stop -t {self.stop_timeout} {self.container.name} && docker rm -f -v {self.container.name}"

    def run(self, runner: StepRunner) -> None:
        runner.run_remove_container(self)


@dataclass(frozen=True)
class StopContainer:
    """Stop an outdated nginx to free its port for the new one; it is removed only once the
    new one serves, and started again if the new one cannot start or does not answer."""

    container: RunningContainer
    stop_timeout: int = 10

    def describe(self) -> str:
        c = self.container
        return f"stop {c.name} ({c.service}) on {c.host}, kept until its replacement serves"

    def docker_command(self) -> str:
        return f"docker stop -t {self.stop_timeout} {self.container.name}"

    def run(self, runner: StepRunner) -> None:
        runner.run_stop_container(self)


@dataclass(frozen=True)
class RemoveNetwork:
    host: str
    name: str

    def describe(self) -> str:
        return f"remove network {self.name} on {self.host}"

    def docker_command(self) -> str:
        return f"docker network rm {self.name}"

    def run(self, runner: StepRunner) -> None:
        runner.run_remove_network(self)


Step = (CreateNetwork | StartContainer | WaitAnswering | ReloadNginx | RenewSecrets | UpdateBackends | CheckEndToEnd
        | StopContainer
        | RemoveContainer | RemoveNetwork)


@dataclass(frozen=True)
class Plan:
    project: str
    wanted: tuple[ContainerSpec, ...]  # every container once the plan has run (the placements)
    steps: tuple[Step, ...]
    nginx_conf: str | None = None
    kept: tuple[RunningContainer, ...] = field(default=())
    backends: tuple[tuple[str, str, str], ...] = ()  # (pool, address, name) nginx sends to once it ran

    @property
    def changes_nothing(self) -> bool:
        return not self.steps

    def placements(self) -> dict[str, list[str]]:
        """service -> ["name@host", ...], for printing."""
        result: dict[str, list[str]] = {}
        for container in self.wanted:
            result.setdefault(container.service, []).append(f"{container.name}@{container.host}")
        return result


def plan_up(
    spec: StackSpec, project: str, hosts: Sequence[Host], images: dict[str, str], observed: Observed
) -> Plan:
    """Steps that make the hosts run what `spec` describes, reusing every container that is current."""
    factories = publish_on_remote_host(service_factories(spec, project, images), hosts)
    keep: list[RunningContainer] = []
    start: list[ContainerSpec] = []
    remove: list[RunningContainer] = []
    for kind in SERVICES:
        found = [c for c in observed.containers if c.service == kind.name]
        if kind.name in factories:
            role_hosts = hosts_with_role(list(hosts), kind.role)
            kept, started = _place(kind.replicas(spec), role_hosts, factories[kind.name], found)
        else:
            kept, started = [], []  # the service left the spec: its containers go
        keep += kept
        start += started
        remove += [c for c in found if c not in kept]
    wanted = [factories[c.service](c.host, c.slot) for c in keep] + start
    conf = render_nginx_conf(spec.services)
    backends = _backends(wanted, {host.name: host for host in hosts})
    drain = {c.name: _stop_timeout(c, factories) for c in remove}
    steps = _order_up_steps(project, observed, start, keep, remove, conf, backends, drain)
    steps = [_with_edge_url(step, keep, start, hosts) for step in steps]
    return Plan(project, tuple(wanted), tuple(steps), conf, tuple(keep), backends)


def _with_edge_url(step: Step, keep: list[RunningContainer], start: list[ContainerSpec], hosts: Sequence[Host]) -> Step:
    """The end-to-end check with the edge's URL: the port a kept nginx publishes, the one a
    new nginx asks for (0: Docker picks one as it starts: PORT)."""
    if not isinstance(step, CheckEndToEnd):
        return step
    address = next((host.address for host in hosts if host.name == step.host), "HOST")
    port = next((str(c.published[NGINX_PORT]) for c in keep if c.name == step.container and NGINX_PORT in c.published),
                None)
    if port is None:
        port = next((str(host_port or "PORT") for c in start if c.name == step.container
                     for container_port, host_port in c.ports if container_port == NGINX_PORT), "PORT")
    return replace(step, url=f"http://{address}:{port}/")


def _stop_timeout(container: RunningContainer, factories: dict[str, ContainerFactory]) -> int:
    """How long a drain may take: the request timeout of the service's definition, else
    what the container was started with."""
    factory = factories.get(container.service)
    return factory(container.host, container.slot).stop_timeout if factory else container.stop_timeout


def plan_down(project: str, observed: Observed) -> Plan:
    """Remove every container and network carrying the project's label: nginx first, so no
    request is sent to a worker being removed."""
    containers = sorted(observed.containers, key=lambda c: (removed_rank(c.service), c.host, c.slot))
    steps: list[Step] = [RemoveContainer(c, c.stop_timeout) for c in containers]
    steps += [RemoveNetwork(host, network_name(project)) for host in sorted(observed.networks)]
    return Plan(project, (), tuple(steps))


def _place(
    count: int, hosts: list[Host], factory: ContainerFactory, found: list[RunningContainer]
) -> tuple[list[RunningContainer], list[ContainerSpec]]:
    """Which current containers to keep and which to start, spread evenly over `hosts`."""
    if not hosts:
        return [], []
    current = {host.name: _current_on(host.name, factory, found) for host in hosts}
    # Hosts that already hold more current containers get the larger shares: fewer moves.
    ranked = sorted(hosts, key=lambda host: -len(current[host.name]))
    shares = {host.name: count // len(hosts) + (1 if i < count % len(hosts) else 0) for i, host in enumerate(ranked)}
    used_slots = {c.slot for c in found}
    keep: list[RunningContainer] = []
    start: list[ContainerSpec] = []
    for host in hosts:
        kept_here = current[host.name][: shares[host.name]]
        keep += kept_here
        for _ in range(shares[host.name] - len(kept_here)):
            slot = _free_slot(used_slots)
            used_slots.add(slot)
            start.append(factory(host.name, slot))
    return keep, start


def _current_on(host: str, factory: ContainerFactory, found: list[RunningContainer]) -> list[RunningContainer]:
    """Containers on `host` that run the wanted definition and are not known to be broken."""
    return sorted(
        (
            c for c in found
            if c.host == host and c.running and c.health != "unhealthy" and c.secrets_current
            and c.config_hash == factory(host, c.slot).config_hash
        ),
        key=lambda c: c.slot,
    )


def _free_slot(used: set[int]) -> int:
    slot = 1
    while slot in used:
        slot += 1
    return slot


def _backends(wanted: list[ContainerSpec], hosts: dict[str, Host]) -> tuple[tuple[str, str, str], ...]:
    """(pool, address, container name) of every FastCGI container nginx is to send to."""
    pools = [kind.name for kind in SERVICES if kind.backend]  # the workers' pool first
    chosen = sorted((c for c in wanted if c.service in pools), key=lambda c: (pools.index(c.service), c.host, c.slot))
    return tuple((c.service, upstream_address(c, hosts[c.host]), c.name) for c in chosen)


def _same_backends(observed: Observed, wanted: tuple[tuple[str, str, str], ...], network: str) -> bool:
    """Does the running nginx's list name the same containers in the same pools, at the
    addresses they have now? A planned address that is a container name (on the edge's own
    host) is compared with that container's IP on the project network as the engine reports
    it now: after an engine restart a container comes back with another IP, and nginx,
    which connects to addresses, must be given it. A published `ip:port` (a remote host) is
    compared as it is: a lost host's worker started again elsewhere keeps its name but not
    its address."""
    running = parse_backends(observed.backends)
    if running is None:
        return False
    listed = sorted((pool, name) for pool, entries in running.items() for _, name in entries)
    if listed != sorted((pool, name) for pool, _, name in wanted):
        return False
    at = {(pool, name): address for pool, entries in running.items() for address, name in entries}
    ips = {c.name: c.addresses.get(network) for c in observed.containers if c.running}
    for pool, address, name in wanted:
        host, _, port = address.rpartition(":")
        expected = f"{ips.get(name)}:{port}" if host == name else address
        if (host == name or _is_ip_port(address)) and at.get((pool, name)) != expected:
            return False
    return True


def _is_ip_port(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return port.isdigit()


def upstream_address(container: ContainerSpec, host: Host) -> str:
    """How nginx reaches a worker: by container name on the project network (single host),
    or at the address and port it is published on (a remote host)."""
    if container.bind_address:
        return f"{container.bind_address}:{container.ports[0][1]}"
    return f"{container.name}:{FASTCGI_PORT}"


def _order_up_steps(
    project: str,
    observed: Observed,
    start: list[ContainerSpec],
    keep: list[RunningContainer],
    remove: list[RunningContainer],
    conf: str,
    backends: tuple[tuple[str, str, str], ...],
    drain: dict[str, int],
) -> list[Step]:
    network = network_name(project)
    used_hosts = sorted({c.host for c in start})
    steps: list[Step] = [CreateNetwork(h, network, project) for h in used_hosts if h not in observed.networks]
    started_backends = [c for c in start if c.service != EDGE]
    steps += [StartContainer(c, network) for c in started_backends]
    steps += [WaitAnswering(c) for c in started_backends]
    new_nginx = [c for c in start if c.service == EDGE]
    kept_nginx = [c for c in keep if c.service == EDGE]
    old_nginx = [c for c in remove if c.service == EDGE]
    # An outdated nginx must free its port before the new one can publish it: it is stopped,
    # and removed only once the new one has answered (else it is started again).
    steps += [StopContainer(c, drain[c.name]) for c in old_nginx]
    steps += [StartContainer(c, network, nginx_conf=conf) for c in new_nginx]
    # A reload only for a real change of nginx.conf; the backends change without one.
    reload = bool(kept_nginx) and observed.nginx_conf != conf
    if reload:
        steps.append(ReloadNginx(kept_nginx[0].name, kept_nginx[0].host, conf))
    renew = [RenewSecrets(c.name, c.host, c.secrets) for c in kept_nginx if c.secrets_renewed]
    steps += renew
    edge = (new_nginx or kept_nginx)[0] if (new_nginx or kept_nginx) else None
    update = False
    if edge is not None and (new_nginx or not _same_backends(observed, backends, network)):
        steps.append(UpdateBackends(edge.name, edge.host, network, backends))
        update = True
    if edge is not None and (new_nginx or reload or renew or update or started_backends):
        steps.append(CheckEndToEnd(edge.host, edge.name))
    steps += [RemoveContainer(c, drain[c.name]) for c in old_nginx]
    steps += [RemoveContainer(c, drain[c.name]) for c in remove if c.service != EDGE]
    return steps


def _ip_placeholder(address: str, name: str) -> str:
    host, _, port = address.rpartition(":")
    return f"IP_OF_{name}:{port}" if host == name else address


def _shell(argv: Sequence[str]) -> str:
    return shlex.join(argv)
