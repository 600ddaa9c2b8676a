"""`fcgikit hosts bootstrap`: the inventory's hosts made into one Docker Swarm, over SSH.

Idempotent, and rerunnable after a failure half-way (each step looks first, then acts):
1. Docker on every host (`docker version`); where it is missing, Debian's `docker.io` is
   installed (apt-get, as root or with `sudo -n`), as Kamal's `server bootstrap` does.
2. The primary host (the inventory's first edge host) is a swarm manager: `docker swarm
   init --advertise-addr ADDRESS` unless it already is one.
3. Every other host joins it as a worker: the join token is read over SSH from the
   manager and handed to the joining host on its standard input: it is never printed,
   never in a command line, never written to disk here.
4. Each node is labelled with its inventory roles (`fcgikit.role.ROLE=true`; a role the
   host no longer has loses its label): the stack's placement constraints use them.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from .errors import FcgikitError
from .inventory import Inventory
from .services import ROLES
from .ssh import Fleet, HostSession, on_each_host, require_all

SWARM_PORT = 2377
ROLE_LABEL = "fcgikit.role."

Say = Callable[[str], None]


class BootstrapError(FcgikitError):
    pass


@dataclass(frozen=True)
class NodeState:
    host: str
    state: str  # inactive, active, pending, error, locked
    node_id: str
    manager: bool


def run(session: HostSession, command: str, *, stdin: str | None = None, timeout: float = 120,
        sudo: bool = False) -> str:
    """A command on the host; on failure the error names the host and the command (which
    never holds a secret: those come on stdin)."""
    if sudo:
        command = f"sudo -n sh -c {shlex.quote(command)}"
    result = session.connection.run(command, hide=True, warn=True, timeout=timeout,
                                    in_stream=io.StringIO(stdin) if stdin is not None else False)
    if not result.ok:
        raise BootstrapError(f"{session.target}: `{command}` exited {result.exited}: "
                             f"{(result.stderr or result.stdout).strip()}")
    return result.stdout.strip()


def ensure_docker(session: HostSession, say: Say) -> str:
    """Docker's server version on the host, installing Debian's docker.io where it is missing."""
    found = session.connection.run("docker version --format '{{.Server.Version}}'", hide=True, warn=True,
                                   timeout=60, in_stream=False)
    if found.ok and found.stdout.strip():
        return found.stdout.strip()
    missing = session.connection.run("command -v docker", hide=True, warn=True, timeout=30, in_stream=False)
    if missing.ok:  # installed, but its engine does not answer (stopped, or not ours to use)
        raise BootstrapError(f"{session.target}: docker is installed but its engine does not answer: "
                             f"{(found.stderr or found.stdout).strip()} "
                             "(start it, or add the user to the docker group)")
    sudo = run(session, "id -u") != "0"
    say(f"{session.name}: installing docker.io (apt-get)")
    run(session, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io",
        timeout=900, sudo=sudo)
    run(session, "systemctl enable --now docker 2>/dev/null || service docker start", timeout=120, sudo=sudo)
    return run(session, "docker version --format '{{.Server.Version}}'")


def node_state(session: HostSession) -> NodeState:
    fields = "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{.Swarm.ControlAvailable}}"
    text = run(session, f"docker info --format '{fields}'")
    state, _, rest = text.partition(" ")
    node_id, _, manager = rest.partition(" ")
    return NodeState(session.name, state, node_id.strip(), manager.strip() == "true")


def bootstrap(inventory: Inventory, fleet: Fleet, say: Say) -> list[str]:
    """Make the inventory one swarm; returns what was done (empty: nothing to do)."""
    if fleet.unreachable:
        problems = "; ".join(f"{name}: {str(error).splitlines()[0]}" for name, error in fleet.unreachable.items())
        raise BootstrapError(f"every host must be reachable to bootstrap, nothing changed: {problems}")
    done: list[str] = []
    names = [entry.name for entry in inventory.hosts]
    versions = require_all("checking Docker", on_each_host(names, lambda name: ensure_docker(fleet.session(name), say)))
    primary = inventory.primary
    manager = fleet.session(primary.name)
    state = node_state(manager)
    if state.state == "inactive":
        say(f"{primary.name}: docker swarm init --advertise-addr {primary.address}")
        run(manager, f"docker swarm init --advertise-addr {primary.address}")
        done.append(f"swarm initialised on {primary.name}")
        state = node_state(manager)
    elif state.state != "active" or not state.manager:
        kind = "worker" if state.state == "active" else state.state
        raise BootstrapError(f"{primary.name} (the primary edge host) is a swarm {kind}, "
                             "not a manager: make it one, or `docker swarm leave` there, and run bootstrap again")
    members = _members(manager)
    token: str | None = None
    for entry in inventory.hosts[0:]:
        if entry.name == primary.name:
            continue
        session = fleet.session(entry.name)
        current = node_state(session)
        if current.state == "active" and current.node_id in members:
            continue
        if current.state == "active":
            raise BootstrapError(f"{entry.name} is in another swarm (node {current.node_id} is not among "
                                 f"{primary.name}'s nodes): `docker swarm leave` there, then run bootstrap again")
        if current.state == "pending" or current.state == "error":
            run(session, "docker swarm leave --force")
        if token is None:
            token = run(manager, "docker swarm join-token -q worker")  # kept in memory only
        say(f"{entry.name}: joining the swarm of {primary.name}")
        run(session, f'read -r token && docker swarm join --token "$token" {primary.address}:{SWARM_PORT}',
            stdin=token + "\n")
        done.append(f"{entry.name} joined")
    members = _members(manager)
    node_ids = require_all("reading the node IDs",
                           on_each_host(names, lambda name: node_state(fleet.session(name)).node_id))
    for entry in inventory.hosts:
        node_id = node_ids[entry.name]
        labels = members.get(node_id, {})
        add = [f"{ROLE_LABEL}{role}=true" for role in ROLES
               if role in entry.roles and labels.get(f"{ROLE_LABEL}{role}") != "true"]
        remove = [f"{ROLE_LABEL}{role}" for role in ROLES
                  if role not in entry.roles and f"{ROLE_LABEL}{role}" in labels]
        if add or remove:
            options = " ".join([f"--label-add {label}" for label in add] + [f"--label-rm {label}" for label in remove])
            run(manager, f"docker node update {options} {node_id}")
            done.append(f"{entry.name} labelled {', '.join(entry.roles)}")
    for name, version in versions.items():
        say(f"{name}: Docker {version}")
    return done


def _members(manager: HostSession) -> dict[str, dict[str, str]]:
    """node ID -> its labels, as the manager sees them."""
    ids = run(manager, "docker node ls -q").split()
    if not ids:
        return {}
    import json

    nodes = json.loads(run(manager, "docker node inspect " + " ".join(ids)))
    return {node["ID"]: node.get("Spec", {}).get("Labels") or {} for node in nodes}
