"""The stack across the inventory's hosts: the same Stack as on one host (operations.Stack),
over SshHosts, its engines: each host's engine reached over SSH.

What changes against the local stack:
- images are built on this machine and shipped to each host that lacks them (ship.py);
- FastCGI containers on remote hosts publish on their host's private address and nginx
  lists them as address:port (placement.py, used by the planner);
- `up`, `scale` and `down` hold the deploy lock on the primary host (lock.py);
- a host that cannot be reached is reported and left out: `up` places its share on the
  remaining hosts, `status` shows it as unreachable;
- a host whose SSH host key cannot be verified (changed, or unknown) is not an outage but a
  security failure: `up`, `scale` and `down` refuse to run at all (nothing changed), as
  they do when the primary host cannot be reached; `status` shows it with the reason.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
import docker.errors

from .docker_backend import Engine
from .errors import FcgikitError
from .hosts import Host, local_host
from .inventory import Inventory, load_inventory
from .lock import DeployLock
from .logs import LogReader, LogRequest, host_logs_script, split_named_line
from .operations import Stack
from .services import services_of_role
from .ship import ShipReport, default_layer_digests, host_images, local_images, plan_shipment, ship
from .ssh import Fleet, HostsFailed, on_each_host, require_all

BUILD_HOST = "(local)"  # images are built by this machine's engine, then shipped


def images_for_host(roles: frozenset[str], tags: dict[str, str]) -> list[str]:
    """The image tags a host with these roles runs, each once (pure)."""
    wanted = [tags[service] for role in sorted(roles) for service in services_of_role(role)]
    return list(dict.fromkeys(wanted))


def listening_command(port: int) -> str:
    """A shell command printing how many sockets listen on TCP `port` (any address, IPv4 or 6)."""
    return (f"cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | "
            f"awk '$4 == \"0A\" && $2 ~ /:{port:04X}$/ {{n++}} END {{print n + 0}}'")


def inventory_hosts(inventory: Inventory, reachable: Callable[[str], bool], connect) -> list[Host]:
    """The planner's hosts: the reachable ones, in inventory order (pure apart from `connect`)."""
    return [
        Host(
            name=entry.name,
            address=entry.address,
            roles=frozenset(entry.roles),
            connect=functools.partial(connect, entry.name),
            remote=True,
        )
        for entry in inventory.hosts
        if reachable(entry.name)
    ]


@dataclass
class SshHosts:
    """The inventory's hosts as a Stack's engines (operations.Engines): each host's engine
    reached over SSH, every host looked at in parallel, images built here and shipped."""

    hosts: list[Host]
    inventory: Inventory
    fleet: Fleet
    local_client: docker.DockerClient | None = None
    ship_reports: list[ShipReport] = field(default_factory=list)

    # --- engines: this machine's builds, the hosts' over SSH ------------------------------------

    def connect(self, host_name: str) -> Engine:
        if host_name == BUILD_HOST:
            return Engine(local_host(), self._local())
        host = next((h for h in self.hosts if h.name == host_name), None)
        if host is None:
            raise FcgikitError(f"no host named {host_name} in this deployment")
        return Engine.connect(host)

    def _local(self) -> docker.DockerClient:
        if self.local_client is None:
            self.local_client = docker.from_env()
        return self.local_client

    def build_host(self) -> str:
        return BUILD_HOST

    def release_host(self) -> str:
        """The primary edge host, where the deploy lock lives."""
        return self.inventory.primary.name

    def each_host(self, work):
        """At once on every host; a host that fails is reported with the others (ssh.on_each_host)."""
        outcomes = on_each_host([host.name for host in self.hosts], work)
        return ({outcome.host: outcome.value for outcome in outcomes if outcome.ok},
                {outcome.host: outcome.error for outcome in outcomes if not outcome.ok})

    def every_host(self, action: str, work):
        return require_all(action, on_each_host([host.name for host in self.hosts], work))

    # --- images: built here, shipped there -------------------------------------------------

    def ship_images(self, tags: dict[str, str], say, progress) -> list[ShipReport]:
        local = self._local()
        digests = default_layer_digests()  # shared by the hosts: each layer hashed once

        def report_progress(host: str, sent: int, expected: int) -> None:
            share = f" of ~{expected / 1e6:.0f} MB" if expected else ""
            progress(f"ship {host}: {sent / 1e6:.0f} MB sent{share}")

        def ship_to(host: Host) -> ShipReport:
            session = self.fleet.session(host.name)
            wanted = local_images(local, images_for_host(host.roles, tags))
            shipment = plan_shipment(host.name, wanted, host_images(session.docker()))
            return ship(session, local, shipment, report_progress, digests)

        by_name = {host.name: host for host in self.hosts}
        outcomes = on_each_host(by_name, lambda name: ship_to(by_name[name]))
        self.ship_reports = [outcome.value for outcome in outcomes if outcome.ok]
        for report in self.ship_reports:
            say(str(report))
        if any(not outcome.ok for outcome in outcomes):
            raise HostsFailed("shipping images", outcomes)
        return self.ship_reports

    def shipping_notes(self, tags: dict[str, str]) -> list[str]:
        """For a dry run: what each host would be sent."""
        local = self._local()
        by_name = {host.name: host for host in self.hosts}

        def preview(name: str) -> str:
            host = by_name[name]
            refs = images_for_host(host.roles, tags)
            known = [image for ref in refs for image in _local_image(local, ref)]
            unbuilt = [ref for ref in refs if ref not in {image.ref for image in known}]
            shipment = plan_shipment(name, known, host_images(self.fleet.session(name).docker()))
            return shipment_note(host, shipment, unbuilt)

        outcomes = on_each_host(list(by_name), preview)
        return [outcome.value if outcome.ok else f"{outcome.host}: cannot tell what it lacks: {outcome.error}"
                for outcome in outcomes]

    def port_free(self, host_name: str, port: int) -> bool:
        """Whether anything listens on TCP `port` on the host (read from the kernel's socket
        tables over SSH: /proc/net/tcp and tcp6, state 0A = LISTEN; needs nothing installed)."""
        output = self.fleet.session(host_name).run(listening_command(port), timeout=30).stdout
        return output.strip() == "0"

    # --- up, scale, down and rollback: refused on an unverified host, under the deploy lock ---

    def require_verified(self, command: str) -> None:
        """Refuse to change anything while a host's key cannot be verified (who answers there
        may not be that host): leaving it out would rewrite nginx's upstream without it."""
        rejected = self.fleet.key_rejected
        if rejected:
            lines = [str(error).splitlines()[0] for error in rejected.values()]
            rest = "".join(f"\n{line}" for line in lines[1:])
            raise FcgikitError(f"{command} refused, nothing changed: {lines[0]}{rest}")

    def deploy_lock(self, project: str, command: str) -> DeployLock:
        """On the primary host (lock.py), taken once every host is known to be who it says."""
        self.require_verified(command.split()[0])  # before the lock is even taken
        primary = self.inventory.primary.name
        if primary not in self.fleet.sessions:
            raise FcgikitError(
                f"the primary host {primary} holds the deploy lock and cannot be reached: "
                f"{self.fleet.unreachable.get(primary)}"
            )
        return DeployLock(self.fleet.session(primary), project, command)

    # --- logs: one SSH session per host, however many containers it runs ---------------------

    def log_sources(self, containers, request: LogRequest, engine=None) -> tuple[list[str], list[LogReader]]:
        """One reader per host: a shell there runs `docker logs` for each of its containers."""
        by_host: dict[str, list[str]] = {}
        for c in containers:
            by_host.setdefault(c.host, []).append(c.name)
        labels = [f"{c.name}@{c.host}" for c in containers]
        readers: list[LogReader] = [
            functools.partial(self._host_log_lines, host, names, request) for host, names in by_host.items()
        ]
        return labels, readers

    def _host_log_lines(self, host: str, names: list[str], request: LogRequest):
        channel = self.fleet.session(host).transport.open_session(timeout=10)
        try:
            channel.set_combine_stderr(True)
            channel.exec_command(host_logs_script(names, request))
            for raw in channel.makefile("rb"):
                yield split_named_line(raw.decode("utf-8", "replace").rstrip("\n"), host)
        finally:
            channel.close()  # the host's shell sees its stdin end and stops every `docker logs`

    # --- reporting ---------------------------------------------------------------------------

    def host_rows(self, failures: dict | None = None) -> list[dict]:
        """Every inventory host: unreachable over SSH, or its engine failed (`failures`), or fine."""
        failures = failures or {}
        rows = []
        for entry in self.inventory.hosts:
            problem = self.fleet.unreachable.get(entry.name) or failures.get(entry.name)
            rows.append({
                "name": entry.name,
                "address": entry.address,
                "roles": list(entry.roles),
                "reachable": problem is None,
                "problem": str(problem) if problem is not None else "",
            })
        return rows


def _local_image(client, ref: str) -> list:
    try:
        return local_images(client, [ref])
    except docker.errors.ImageNotFound:
        return []  # not built yet


def shipment_note(host: Host, shipment, unbuilt: list[str]) -> str:
    """One line per host for a dry run: what `up` would send there over SSH (pure)."""
    parts = []
    for image in shipment.send:
        parts.append(f"send {image.ref} ({image.size / 1e6:.0f} MB with every layer)")
    parts += [f"tag {ref} (the image is there)" for _, ref in shipment.tag]
    parts += [f"send {ref} once built, unless it has the same image" for ref in unbuilt]
    if shipment.skip_layers:
        parts.append(f"{len(shipment.skip_layers)} layer(s) of it are there already and are not sent")
    where = f"{host.name} ({host.address})"
    return f"{where}: " + ("; ".join(parts) if parts else "has every image, nothing to send")


def open_remote_stack(stack_kwargs: dict, hosts_file, *, accept_new_host_keys: bool = False) -> Stack:
    """Connect to every inventory host in parallel; unreachable ones are reported, not fatal."""
    inventory = load_inventory(hosts_file)
    fleet = Fleet(inventory.targets(), accept_new_host_keys=accept_new_host_keys)
    atexit.register(fleet.close)
    fleet.connect()
    say = stack_kwargs.get("say", lambda text: None)
    for name, problem in fleet.unreachable.items():
        if name in fleet.key_rejected:  # not an outage: up, scale and down refuse to run
            say(f"host {name} cannot be verified, not used: {str(problem).splitlines()[0]}")
        else:
            say(f"host {name} is unreachable, left out: {problem}")
    hosts = inventory_hosts(inventory, lambda name: name in fleet.sessions, lambda name: fleet.session(name).docker())
    if not hosts:
        raise HostsFailed("connecting", fleet.connect_outcomes)
    return Stack(engines=SshHosts(hosts=hosts, inventory=inventory, fleet=fleet), **stack_kwargs)
