"""`--engine swarm`: the stack as Docker Swarm services (`docker stack deploy`).

Swarm keeps the declared replicas running by itself (a killed task or a lost node's tasks
are started again elsewhere); fcgikit writes the stack file from fcgikit.yaml, deploys it,
waits until it has converged and reports on it by task.

- Images are named by content-hash tag and deployed with `--resolve-image never`: no node
  asks a registry; the images must be on the node (built here for the local engine).
- Every service uses `endpoint_mode: dnsrr` and nginx publishes in `mode: host`: neither
  needs IPVS (this kernel has none: no virtual IPs, no routing mesh).
- nginx follows the tasks with no fcgikit command run and no reload: its command is a
  small script (a Swarm config, swarm_edge.sh) that resolves `tasks.workers` / `tasks.cgi`
  every second and writes the backends list the edge's Lua balancer re-reads by itself.
- Rolling updates start the new task first and wait for its HEALTHCHECK (`order:
  start-first`); a task that does not become healthy rolls the service back
  (`failure_action: rollback`), and `up` exits 1 naming it, with its last log lines.

The stack file is built by a pure function (`stack_file`), so the unit tests and `--dry-run`
show exactly what is deployed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import docker
import docker.errors
import yaml

from . import commands
from . import images as img
from . import secrets as sec
from .errors import FcgikitError
from .model import LABEL_CONFIG, LABEL_PROJECT, LABEL_SERVICE
from .multihost import SshHosts
from .nginxconf import BACKENDS_PATH, fallback_enabled, render_nginx_conf
from .operations import Stack, edge_url, http_get, local_port_free
from .releases import Release, rollback_target
from .services import SERVICE_ROLE, shown_rank
from .spec import FASTCGI_PORT, NGINX_PORT, NGINX_TLS_PORT, ContainerSettings, StackSpec, with_replicas
from .ssh import HostSession
from .tls import TLS_MOUNTS, read_cert_and_key

Say = Callable[[str], None]

STACK_LABEL = "com.docker.stack.namespace"
EDGE_SCRIPT = Path(__file__).with_name("swarm_edge.sh")
EDGE_SCRIPT_TARGET = "/etc/fcgikit/swarm-edge.sh"
RUN_DIR = "/run/fcgikit"
SWARM_NODE_LABEL = "fcgikit.role."  # node label fcgikit.role.ROLE=true (multi-host placement)
HEALTH_INTERVAL = "2s"  # the image's HEALTHCHECK, checked often: a new task serves within seconds
UPDATE_MONITOR = "10s"  # a task that fails within this after it started fails the update
# A Swarm config holding the project's random key: the Docker secrets' names carry an HMAC of
# their value under it (a new value, a new secret, a rolling update), never a plain digest.
SECRET_KEY_LABEL = "fcgikit.secret-key"
# The first stack file version whose schema takes deploy.resources.limits.pids (docker CLI 20.10+).
STACK_FILE_VERSION = "3.9"


def _quiet(_: str) -> None:
    pass


# --- the stack file (pure) ----------------------------------------------------------------


def swarm_nginx_conf(spec: StackSpec) -> str:
    """nginx.conf for the swarm edge: the Lua balancer's upstreams (no backend in the file);
    the edge script writes their backends list from Swarm's DNS."""
    return render_nginx_conf(spec.services, header="Rendered by fcgikit for Docker Swarm: the backends come from "
                             f"{BACKENDS_PATH}, written by the edge script from tasks.workers and tasks.cgi "
                             "(docs/swarm.md).")


def unsupported_on_swarm(spec: StackSpec) -> list[str]:
    """What fcgikit.yaml asks for that `--engine swarm` does not deploy (pure): nothing now."""
    return []


def secret_names_used(spec: StackSpec) -> list[str]:
    """The Docker secrets the stack file names: the services' secrets, and nginx's certificate
    and key with `nginx.tls` (tls.crt, tls.key, mounted where the docker engine writes them)."""
    return sec.used_names(spec) + ([name for name, _ in TLS_MOUNTS] if spec.services.nginx.tls is not None else [])


def secret_version_name(project: str, name: str, value: bytes, key: bytes) -> str:
    """The Docker secret holding this value: a new value is a new secret (they are immutable)."""
    return f"{project}_{name}_{hmac.new(key, value, hashlib.sha256).hexdigest()[:12]}"


def _with_secrets(service: dict, mounts: Sequence[sec.Mount]) -> None:
    """Docker secrets mounted at /run/secrets/NAME, readable by the worker image's user only."""
    if not mounts:
        return
    uid = str(commands.WORKER_UID)
    service["secrets"] = [{"source": name, "target": name, "uid": uid, "gid": uid, "mode": 0o400}
                          for name, _ in mounts]
    exported = sec.export_command(mounts, service["command"])
    if tuple(exported) != tuple(service["command"]):  # a stack file interpolates $: $$ is a plain $
        service["command"] = [part.replace("$", "$$") for part in exported]


def _duration(seconds: int) -> str:
    return f"{seconds}s"


# Named as the images' USER: a service runs as it even from an image that forgot it.
WORKER_USER = "fcgikit"
NGINX_USER = "www-data"


def _confined(settings: ContainerSettings, tmpfs: Sequence[tuple[str, str]], user: str) -> dict:
    """The local engine's confinement (commands.confinement) as a service: read-only root,
    tmpfs, no capability but cap_add, a non-root user. The memory and pids limits are under
    deploy.resources (_deploy); no-new-privileges, which a Swarm service of Docker 20.10 cannot
    ask for, is set by the processes themselves (runtime/prctl.py, swarm_edge.sh)."""
    service = {
        "user": user,
        "read_only": settings.read_only,
        # Swarm mounts a tmpfs with no uid option: it takes the mode of the directory it covers
        # (the images make those 1777 or world-writable as /tmp).
        "volumes": [{"type": "tmpfs", "target": path} for path, _ in tmpfs],
        "cap_drop": ["ALL"],
    }
    if settings.cap_add:
        service["cap_add"] = list(settings.cap_add)
    return service


def _deploy(project: str, service: str, replicas: int, settings: ContainerSettings, *, order: str,
            placement: Sequence[str]) -> dict:
    deploy: dict = {
        "mode": "replicated",
        "replicas": replicas,
        "endpoint_mode": "dnsrr",
        "labels": {LABEL_PROJECT: project, LABEL_SERVICE: service},
        "restart_policy": {"condition": "any", "delay": "1s"},
        "update_config": {"parallelism": 1, "delay": "0s", "order": order, "failure_action": "rollback",
                          "monitor": UPDATE_MONITOR},
        "rollback_config": {"parallelism": 1, "order": order},
    }
    limits: dict = {}
    if settings.memory != "0":
        limits["memory"] = settings.memory
    if settings.pids:  # Swarm API 1.41 (Docker 20.10); the stack file needs version 3.9 (CLI 20.10+)
        limits["pids"] = settings.pids
    if limits:
        deploy["resources"] = {"limits": limits}
    if placement:
        deploy["placement"] = {"constraints": list(placement)}
    return deploy


def role_constraint(service: str) -> str:
    return f"node.labels.{SWARM_NODE_LABEL}{SERVICE_ROLE[service]} == true"


@dataclass(frozen=True)
class StackFiles:
    """What `docker stack deploy` reads: the stack file and the files its configs name."""

    stack: dict
    files: dict[str, str]  # file name (beside the stack file) -> content

    @property
    def hashes(self) -> dict[str, str]:
        """service -> hash of its definition (carried as a label: an unchanged one is not redeployed)."""
        return {name: service["deploy"]["labels"][LABEL_CONFIG] for name, service in self.stack["services"].items()}


def stack_file(spec: StackSpec, project: str, tags: dict[str, str], *, port: int,
               placement: bool = False, secret_names: dict[str, str] | None = None) -> StackFiles:
    """The stack file for fcgikit.yaml (pure). `tags`: service -> image; `placement`: place
    services on nodes by their role labels (multi-host); `secret_names`: secret -> the Docker
    secret holding its current value (secret_version_name)."""
    services = spec.services
    conf = swarm_nginx_conf(spec)
    script = EDGE_SCRIPT.read_text()
    conf_name = f"{project}_nginx_conf_{_short_hash(conf)}"
    script_name = f"{project}_edge_script_{_short_hash(script)}"
    pools = "workers cgi" if services.cgi is not None else "workers"
    out: dict = {}

    workers = services.workers
    out["workers"] = {
        "image": tags["workers"],
        "command": commands.worker_command(workers),
        "environment": dict(sorted(workers.env.items())),
        "healthcheck": {"interval": HEALTH_INTERVAL},
        "stop_grace_period": _duration(workers.timeout + commands.DRAIN_MARGIN),
        **_confined(workers.container, commands.WORKER_TMPFS, WORKER_USER),
        "deploy": _deploy(project, "workers", workers.replicas, workers.container, order="start-first",
                          placement=[role_constraint("workers")] if placement else []),
    }
    if services.cgi is not None:
        cgi = services.cgi
        out["cgi"] = {
            "image": tags["cgi"],
            "command": commands.cgi_command(cgi, workers.app if fallback_enabled(services) else None),
            "environment": dict(sorted(cgi.env.items())),
            "healthcheck": {"interval": HEALTH_INTERVAL},
            "stop_grace_period": _duration(cgi.timeout + commands.DRAIN_MARGIN),
            **_confined(cgi.container, commands.WORKER_TMPFS, WORKER_USER),
            "deploy": _deploy(project, "cgi", cgi.replicas, cgi.container, order="start-first",
                              placement=[role_constraint("cgi")] if placement else []),
        }
    _with_secrets(out["workers"], sec.mounts_for(spec, workers.secrets))
    if services.cgi is not None:
        _with_secrets(out["cgi"], sec.mounts_for(spec, services.cgi.secrets))
    nginx = services.nginx
    ports = [{"target": NGINX_PORT, "published": port, "protocol": "tcp", "mode": "host"}]
    if nginx.tls is not None:  # HTTPS: nginx.conf has its server; the certificate and key are Docker secrets
        ports.append({"target": NGINX_TLS_PORT, "published": nginx.tls.port, "protocol": "tcp", "mode": "host"})
    out["nginx"] = {
        "image": tags["nginx"],
        "command": ["sh", EDGE_SCRIPT_TARGET],
        "environment": {"FCGIKIT_EDGE_POOLS": pools, "FCGIKIT_EDGE_PORT": str(FASTCGI_PORT)},
        # Published on the node's own port (no routing mesh): a second nginx task cannot hold
        # it at the same time, so nginx is replaced stop-first (a second or two without it).
        "ports": ports,
        "configs": [
            {"source": "nginx_conf", "target": "/etc/nginx/nginx.conf", "mode": 0o444},
            {"source": "edge_script", "target": EDGE_SCRIPT_TARGET, "mode": 0o555},
        ],
        "stop_grace_period": "10s",
        **_confined(nginx.container, commands.NGINX_TMPFS, NGINX_USER),
        "deploy": _deploy(project, "nginx", 1, nginx.container, order="stop-first",
                          placement=[role_constraint("nginx")] if placement else []),
    }
    if nginx.tls is not None:  # readable by nginx (www-data) only
        uid = str(commands.NGINX_UID)
        out["nginx"]["secrets"] = [{"source": name, "target": name, "uid": uid, "gid": uid, "mode": 0o400}
                                   for name, _ in TLS_MOUNTS]
    for name, service in out.items():
        service["labels"] = {LABEL_PROJECT: project, LABEL_SERVICE: name}
        definition = json.dumps(service, sort_keys=True) + (conf + script if name == "nginx" else "")
        # A new value of one of its secrets is a new Docker secret: the service is updated.
        definition += json.dumps([(secret_names or {}).get(item["source"], "") for item in service.get("secrets", [])])
        service["deploy"]["labels"][LABEL_CONFIG] = _short_hash(definition)
    stack = {
        "version": STACK_FILE_VERSION,
        "services": out,
        "configs": {
            "nginx_conf": {"name": conf_name, "file": "./nginx.conf"},
            "edge_script": {"name": script_name, "file": "./swarm-edge.sh"},
        },
    }
    used = secret_names_used(spec)
    if used:
        names = secret_names or {}
        stack["secrets"] = {name: {"external": True, "name": names.get(name, f"{project}_{name}_(new)")}
                            for name in used}
    return StackFiles(stack, {"nginx.conf": conf, "swarm-edge.sh": script})


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --- the plan (what --dry-run prints; the same steps run) ----------------------------------


@dataclass(frozen=True)
class SwarmStep:
    action: str  # init, write, deploy, converge, check, scale, remove, gone: what SwarmStack.run does
    what: str
    argv: tuple[str, ...] = ()  # the command run (and printed by --dry-run), when it is one

    def describe(self) -> str:
        return self.what

    def docker_command(self) -> str:
        return " ".join(self.argv) if self.argv else "(fcgikit)"


@dataclass(frozen=True)
class SwarmPlan:
    project: str
    replicas: dict[str, int]
    steps: tuple[SwarmStep, ...]
    files: StackFiles | None = None
    # service -> the hash of its definition before this plan (the services deployed then)
    previous: dict[str, str] = field(default_factory=dict)

    @property
    def changes_nothing(self) -> bool:
        return not self.steps

    @property
    def wanted(self) -> tuple[str, ...]:
        return tuple(f"{service}.{n}" for service, count in self.replicas.items() for n in range(1, count + 1))

    def placements(self) -> dict[str, list[str]]:
        return {service: [f"{count} task(s) of service {self.project}_{service}"]
                for service, count in self.replicas.items()}


@dataclass(frozen=True)
class SwarmResult:
    plan: SwarmPlan
    url: str | None
    changed: bool
    release: Release | None = None  # recorded by this run (None: the newest one already was this)


@dataclass(frozen=True)
class SwarmRollbackResult:
    target: Release
    plan: SwarmPlan
    url: str | None
    changed: bool
    release: Release | None = None


# --- the stack on a swarm ----------------------------------------------------------------


class SwarmFailed(FcgikitError):
    pass


@dataclass
class SwarmStack:
    """One project as a Swarm stack on the local engine (a manager node)."""

    spec: StackSpec
    project: str
    names: img.ImageNames = field(default_factory=img.ImageNames)
    say: Say = _quiet
    progress: Say = _quiet
    init_swarm: bool = False  # the user's consent to `docker swarm init` on the local engine
    state_dir: Path | None = None  # where the stack file is written (default: ~/.local/state/fcgikit/swarm/PROJECT)
    converge_timeout: float = 180.0
    # With an inventory (--hosts): the Stack over SshHosts that builds here and ships to each host,
    # holds the deploy lock and reaches the primary edge host's engine, a swarm manager.
    remote: Stack | None = None
    app: str | None = None  # --app as given, recorded with each release
    keep_releases: int | None = None  # releases kept (None: FCGIKIT_KEEP_RELEASES, else 5)
    _client: docker.DockerClient | None = field(default=None, init=False, repr=False)
    _tags: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # of the last plan_up
    _images: Stack | None = field(default=None, init=False, repr=False)
    _secret_values: dict[str, bytes] | None = field(default=None, init=False, repr=False)

    # --- engine ------------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = self._manager().docker() if self.remote is not None else docker.from_env()
        return self._client

    def _hosts(self) -> SshHosts:
        """With an inventory: the hosts the remote Stack reaches over SSH (its engines)."""
        engines = self.remote.engines if self.remote is not None else None
        if not isinstance(engines, SshHosts):
            raise TypeError("SwarmStack.remote is a Stack over multihost.SshHosts (open_remote_stack)")
        return engines

    def _manager(self) -> HostSession:
        """The primary edge host's SSH session (with an inventory)."""
        hosts = self._hosts()
        primary = hosts.inventory.primary.name
        if primary not in hosts.fleet.sessions:
            raise FcgikitError(f"the primary host {primary} (the swarm manager) cannot be reached: "
                               f"{hosts.fleet.unreachable.get(primary)}")
        return hosts.fleet.session(primary)

    def docker_env(self) -> dict[str, str] | None:
        """The docker CLI's environment: with an inventory, the manager's engine over SSH."""
        if self.remote is None:
            return None
        return dict(os.environ, DOCKER_HOST=self._manager().tunnel().base_url)

    def images(self) -> Stack:
        """Image building as for `fcgikit up`: here, and shipped to each host lacking them. It
        keeps the release records too (releases.py), where the other engines keep them: on the
        local engine, the manager here; on the primary edge host, the manager, with --hosts."""
        if self.remote is not None:
            return self.remote
        if self._images is None:
            self._images = Stack(spec=self.spec, project=self.project, names=self.names, say=self.say,
                                 progress=self.progress, app=self.app, keep_releases=self.keep_releases)
        return self._images

    def swarm_state(self) -> tuple[str, bool]:
        info = self.client.info().get("Swarm", {})
        return info.get("LocalNodeState", "inactive"), bool(info.get("ControlAvailable"))

    def _swarm_steps(self) -> list[SwarmStep]:
        state, manager = self.swarm_state()
        if state == "active":
            if not manager:
                raise FcgikitError("the local Docker engine is a swarm worker, not a manager: run fcgikit "
                                   "on a manager node (docker node ls there); nothing changed")
            return []
        if state != "inactive":
            raise FcgikitError(f"the local Docker engine's swarm is {state}; nothing changed")
        if self.remote is not None:
            primary = self._hosts().inventory.primary.name
            raise FcgikitError(f"{primary} (the primary edge host) is not a swarm manager: "
                               "run `fcgikit hosts bootstrap --hosts FILE` first; nothing changed")
        if not self.init_swarm:
            raise FcgikitError("the local Docker engine is not in swarm mode: give --init-swarm to let fcgikit "
                               "run `docker swarm init --advertise-addr 127.0.0.1` (a single-node swarm; "
                               "`docker swarm leave --force` undoes it), or init it yourself; nothing changed")
        return [SwarmStep("init", "make the local engine a single-node swarm",
                          ("docker", "swarm", "init", "--advertise-addr", "127.0.0.1"))]

    def _services(self) -> dict[str, docker.models.services.Service]:
        found = {}
        for service in self.client.services.list(filters={"label": f"{STACK_LABEL}={self.project}"}):
            found[service.attrs["Spec"]["Labels"].get(LABEL_SERVICE, service.name.split("_", 1)[-1])] = service
        return found

    def _stack_dir(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir
        return Path.home() / ".local" / "state" / "fcgikit" / "swarm" / self.project

    # --- planning ----------------------------------------------------------------------------

    def _port(self, services: dict, spec: StackSpec) -> int:
        port = spec.services.nginx.port
        if port:
            return port
        nginx = services.get("nginx")  # 0: any free port, kept once chosen
        if nginx is not None:
            for published in nginx.attrs["Spec"].get("EndpointSpec", {}).get("Ports", []):
                if published.get("TargetPort") == NGINX_PORT:
                    return published["PublishedPort"]
        from ..testing import free_port

        return free_port()

    def plan_up(self, *, build: bool = True, spec: StackSpec | None = None, tags: dict[str, str] | None = None,
                dry_run: bool | None = None) -> SwarmPlan:
        """`tags`: these images (a release's, for rollback) instead of building the sources'."""
        spec = spec or self.spec
        dry_run = not build if dry_run is None else dry_run
        steps = self._swarm_steps()
        tags = dict(tags) if tags is not None else self.images().image_tags(build=build)
        self._tags = tags
        services = self._services() if not steps else {}
        port = self._port(services, spec)
        values = sec.read_values(spec)  # before anything changes: an unreadable source stops here
        if spec.services.nginx.tls is not None:  # the certificate and key (made now with self_signed)
            values.update(read_cert_and_key(spec.services.nginx.tls, self.project, self._edge_addresses()))
        key = self._secret_key(create=not dry_run) if values else None  # --dry-run creates nothing
        names = {name: secret_version_name(self.project, name, value, key)
                 for name, value in values.items()} if key is not None else {}
        files = stack_file(spec, self.project, tags, port=port, placement=self.remote is not None,
                           secret_names=names)
        self._secret_values = values
        replicas = {name: s["deploy"]["replicas"] for name, s in files.stack["services"].items()}
        current = {name: s.attrs["Spec"]["Labels"].get(LABEL_CONFIG) for name, s in services.items()}
        # `scale` (docker service scale) changes the replicas, not the definition's hash: up goes
        # back to the file's replicas.
        deployed = {name: s.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
                    for name, s in services.items()}
        if current == files.hashes and deployed == replicas and not steps:
            return SwarmPlan(self.project, replicas, (), files)
        if "nginx" not in services or current.get("nginx") != files.hashes["nginx"]:
            published = {p.get("PublishedPort") for p in services["nginx"].attrs["Spec"].get("EndpointSpec", {})
                         .get("Ports", [])} if "nginx" in services else set()
            for wanted in [port] + ([spec.services.nginx.tls.port] if spec.services.nginx.tls is not None else []):
                if wanted not in published:  # a port nginx holds already is not another program's
                    self._check_port(wanted)
        path = self._stack_dir() / "stack.yaml"
        existing = {secret.name for secret in self.client.secrets.list()} if names else set()
        missing = sorted((name, version) for name, version in names.items() if version not in existing)
        if missing:
            steps.append(SwarmStep("secrets", "create Docker secret(s) " + ", ".join(
                f"{name} as {version}" for name, version in missing) + " (values read on this machine)"))
        elif values and not names:
            steps.append(SwarmStep("secrets", "create the project's secret key and Docker secret(s) "
                                   + ", ".join(values)))
        steps += [
            SwarmStep("write", f"write the stack file {path} (and nginx.conf, swarm-edge.sh beside it)"),
            SwarmStep("deploy", f"deploy stack {self.project}: " + ", ".join(f"{n} x{r}" for n, r in replicas.items()),
                      ("docker", "stack", "deploy", "--prune", "--resolve-image", "never", "-c", str(path),
                       self.project)),
            SwarmStep("converge", "wait until every service runs its replicas of the new definition "
                      "(rolled back if one fails)"),
            SwarmStep("check", f"check GET / on port {port} through nginx"),
        ]
        return SwarmPlan(self.project, replicas, tuple(steps), files, previous=current)

    def _edge_addresses(self) -> list[str]:
        """With an inventory: the edge hosts' addresses, named in a development certificate."""
        if self.remote is None:
            return []
        return [entry.address for entry in self._hosts().inventory.hosts if "edge" in entry.roles]

    def _check_port(self, port: int) -> None:
        if self.remote is None:
            if not local_port_free(port):
                raise FcgikitError(f"port {port} on this host is in use by another program; nothing changed "
                                   "(free it or choose another nginx port)")
            return
        hosts = self._hosts()
        for entry in hosts.inventory.hosts:
            reachable = entry.name in hosts.fleet.sessions
            if "edge" in entry.roles and reachable and not self.remote.port_free(entry.name, port):
                raise FcgikitError(f"port {port} on host {entry.name} ({entry.address}) is in use by another program; "
                                   "nothing changed (free it or choose another nginx port)")

    def plan_scale(self, replicas: dict[str, int], *, build: bool = True) -> SwarmPlan:
        services = self._services()
        if any(service not in services for service in replicas):  # not deployed yet: an up with the new counts
            return self.plan_up(build=build, spec=self._scaled(replicas))
        counts = {name: s.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas", 0)
                  for name, s in services.items()}
        changed = {service: count for service, count in replicas.items() if counts.get(service) != count}
        if not changed:
            return SwarmPlan(self.project, counts, ())
        steps = [SwarmStep("scale", f"scale {self.project}_{service} from {counts[service]} to {count} tasks "
                           "(until the next up, which goes back to the file's replicas)",
                           ("docker", "service", "scale", "--detach", f"{self.project}_{service}={count}"))
                 for service, count in changed.items()]
        counts.update(changed)
        return SwarmPlan(self.project, counts, (*steps, SwarmStep("converge", "wait until they run them")))

    def _scaled(self, replicas: dict[str, int]) -> StackSpec:
        scaled = self.spec
        try:
            for service, count in replicas.items():
                scaled = with_replicas(scaled, service, count)
        except ValueError as exc:
            raise FcgikitError(str(exc)) from None
        return scaled

    def keep_deployed_app(self) -> None:
        """`scale` changes only replica counts (`docker service scale`): the tasks keep their image."""
        return None

    def keep_deployed_tls(self) -> None:
        """No HTTPS on a swarm yet (refused when the stack file asks for it)."""
        return None

    def image_notes(self) -> list[str]:
        return []

    def plan_down(self) -> SwarmPlan:
        services = self._services()
        state, _ = self.swarm_state()
        if state != "active" or not services:
            return SwarmPlan(self.project, {}, ())
        return SwarmPlan(self.project, {}, (
            SwarmStep("remove", f"remove stack {self.project} (services {', '.join(sorted(services))}, "
                                "its network and configs)",
                      ("docker", "stack", "rm", self.project)),
            SwarmStep("gone", "wait until its containers and network are gone"),
        ))

    # --- operations ----------------------------------------------------------------------------

    def build(self, *, tag_latest: bool = False):
        return self.images().build(tag_latest=tag_latest)

    def up(self) -> SwarmResult:
        with self._lock("up"):
            result = self.execute(self.plan_up(build=True))
            release = self.images().record_release(dict(self._tags), self.spec, self.app)
            return replace(result, release=release)

    # --- releases: recorded by up, returned to by rollback (releases.py, as the other engines) ----

    def release_host(self) -> str:
        return self.images().release_host()

    def releases(self) -> list[Release]:
        return self.images().releases()

    def current_release(self) -> Release | None:
        return self.images().current_release()

    def plan_rollback(self, number: int | None = None, *, dry_run: bool = False) -> tuple[Release, SwarmPlan]:
        """The release to return to and the stack file of its images and fcgikit.yaml: nothing is
        built; its images must still be here (shipped again to nodes lacking them, --hosts)."""
        target = rollback_target(self.releases(), number)
        self.images().release_images_ready(target, dry_run=dry_run)
        return target, self.plan_up(build=False, spec=target.stack_spec(), tags=dict(target.images), dry_run=dry_run)

    def rollback(self, number: int | None = None) -> SwarmRollbackResult:
        """The services updated to the release's images and definition, as `up` updates them
        (start-first, gated by the HEALTHCHECK); recorded as a new release."""
        with self._lock("rollback"):
            target, plan = self.plan_rollback(number)
            result = self.execute(plan)
            release = self.images().record_release(dict(target.images), target.stack_spec(), target.app,
                                                   rollback_of=target.number)
            return SwarmRollbackResult(target, plan, result.url, changed=result.changed, release=release)

    def prune(self, built: set[str], keep: int | None = None):
        """`build --prune`: as the other engines, never an image a kept release names."""
        return self.images().prune(built, keep if keep is not None else self.keep_releases)

    def scale(self, replicas: dict[str, int]) -> SwarmResult:
        with self._lock("scale"):
            return self.execute(self.plan_scale(replicas))

    def down(self) -> SwarmPlan:
        with self._lock("down"):
            plan = self.plan_down()
            self.execute(plan)
            return plan

    def _lock(self, command: str):
        """With an inventory: the deploy lock on the primary host, as for `--hosts`."""
        return self.remote.deploy_lock(command) if self.remote is not None else contextlib.nullcontext()

    def execute(self, plan: SwarmPlan) -> SwarmResult:
        if plan.changes_nothing:
            return SwarmResult(plan, self.url(), changed=False)
        started = time.time()  # compared with Docker's timestamps (epoch seconds), not a monotonic clock
        for step in plan.steps:
            self.say(step.describe())
            self.run(step, plan, started)
        if plan.files is not None:
            self._remove_unused_configs(plan.files)
            self._remove_unused_secrets(plan.files)
        return SwarmResult(plan, self.url(), changed=True)

    def run(self, step: SwarmStep, plan: SwarmPlan, started: float) -> None:
        if step.action in ("init", "scale", "remove"):
            _run(step.argv, env=self.docker_env())
        elif step.action in ("secrets", "write"):
            assert plan.files is not None  # plan_up's steps, with its files
            if step.action == "secrets":
                self._create_secrets(plan.files)
            else:
                self._write(plan.files)
        elif step.action == "deploy":
            _run(step.argv, cwd=self._stack_dir(), env=self.docker_env())
        elif step.action == "converge":
            self.wait_converged(plan.files.hashes if plan.files else None, started, plan.previous)
        elif step.action == "check":
            self.check_end_to_end()
        elif step.action == "gone":
            self.wait_gone()
        else:  # pragma: no cover - a new action without an executor
            raise TypeError(f"no executor for {step!r}")

    def wait_gone(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The low-level list: the high-level one inspects each container, which races their removal.
            containers = self.client.api.containers(all=True, filters={"label": f"{STACK_LABEL}={self.project}"})
            networks = self.client.networks.list(filters={"label": f"{STACK_LABEL}={self.project}"})
            if not containers and not networks:
                # The stack file and its configs' files were for this stack only.
                shutil.rmtree(self._stack_dir(), ignore_errors=True)
                return
            time.sleep(0.5)
        raise SwarmFailed(f"stack {self.project} removed, but its containers or network are still there "
                          f"after {timeout:.0f}s")

    # --- writing, deploying, converging ----------------------------------------------------------------

    def _write(self, files: StackFiles) -> None:
        directory = self._stack_dir()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "stack.yaml").write_text(
            "# Written by fcgikit from fcgikit.yaml for `docker stack deploy`; rewritten by every up.\n"
            + yaml.safe_dump(files.stack, sort_keys=False))
        for name, content in files.files.items():
            (directory / name).write_text(content)

    def wait_converged(self, hashes: dict[str, str] | None, started: float,
                       previous: dict[str, str] | None = None) -> None:
        """Until every service runs its desired replicas of its current definition. A service
        whose update rolled back, or whose new tasks keep failing, fails `up` with the failing
        task and its last log lines; the other services this deploy updated are rolled back
        too (`previous`: their definitions before it), so the stack stays at one version."""
        deadline = time.monotonic() + self.converge_timeout
        while True:
            services = self._services()
            pending = []
            for name, service in services.items():
                service.reload()
                problem = self._service_problem(name, service, hashes, started)
                if problem:
                    undone = self._roll_back_others(name, services, hashes, previous or {})
                    if undone:
                        problem += ("\nalso rolled back, so that no service runs the new version: "
                                    + ", ".join(undone))
                    raise SwarmFailed(problem)
                if not self._converged(service):
                    pending.append(name)
            if not pending and (hashes is None or set(hashes) <= set(services)):
                return
            if time.monotonic() > deadline:
                raise SwarmFailed(f"stack {self.project}: {', '.join(pending)} did not reach its replicas within "
                                  f"{self.converge_timeout:.0f}s\n" + self._failing_tasks_report(pending))
            time.sleep(0.5)

    def _roll_back_others(self, failed: str, services: dict, hashes: dict[str, str] | None,
                          previous: dict[str, str], timeout: float = 90.0) -> list[str]:
        """`docker service rollback` of each other service this deploy changed (Swarm rolls
        back only the one whose update failed: the cgi service, say, would keep the new image
        while the workers went back), then wait until they run their previous definition."""
        undone = []
        for name, service in services.items():
            if name == failed or hashes is None or name not in previous or previous[name] == hashes.get(name):
                continue  # the failing one (Swarm's), one this deploy added, or one it did not change
            service.reload()
            if service.attrs["Spec"].get("Labels", {}).get(LABEL_CONFIG) != hashes.get(name):
                continue  # not (or no longer) at the new definition
            _run(["docker", "service", "rollback", "--detach", service.name], env=self.docker_env())
            undone.append(name)
        deadline = time.monotonic() + timeout
        waiting = list(undone)
        while waiting and time.monotonic() < deadline:
            time.sleep(0.5)
            for name in list(waiting):
                service = services[name]
                service.reload()
                if (service.attrs["Spec"].get("Labels", {}).get(LABEL_CONFIG) == previous[name]
                        and self._converged(service)):
                    waiting.remove(name)
        return [services[name].name + (" (still rolling back)" if name in waiting else "") for name in undone]

    def _converged(self, service) -> bool:
        spec = service.attrs["Spec"]
        update = (service.attrs.get("UpdateStatus") or {}).get("State")
        if update in ("updating", "rollback_started"):
            return False
        desired = spec["Mode"].get("Replicated", {}).get("Replicas", 0)
        image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
        running = [t for t in service.tasks(filters={"desired-state": "running"})
                   if t["Status"]["State"] == "running" and t["Spec"]["ContainerSpec"]["Image"] == image]
        return len(running) == desired

    def _service_problem(self, name: str, service, hashes: dict[str, str] | None, started: float) -> str | None:
        update = service.attrs.get("UpdateStatus") or {}
        state = update.get("State") if _newer(update, started) else None
        if state in ("updating", "rollback_started"):
            return None  # Swarm decides: wait for the update or its rollback to end
        if state in ("rollback_completed", "rollback_paused", "paused"):
            failed = self._failed_tasks(service, started)
            message = update.get("Message", "")
            return (f"the update of {service.name} failed and was rolled back ({message}); the previous version "
                    f"keeps serving" + self._describe_failed(failed))
        failed = self._failed_tasks(service, started)
        running = [t for t in service.tasks(filters={"desired-state": "running"}) if t["Status"]["State"] == "running"]
        if len(failed) >= 3 and not running:
            return f"{service.name}: its tasks keep failing" + self._describe_failed(failed)
        return None

    def _failed_tasks(self, service, started: float) -> list[dict]:
        failed = []
        for task in service.tasks():
            status = task["Status"]
            if status["State"] in ("failed", "rejected") and _epoch(status.get("Timestamp", "")) >= started - 1:
                failed.append(task)
        return sorted(failed, key=lambda t: t["Status"].get("Timestamp", ""), reverse=True)

    def _describe_failed(self, failed: list[dict]) -> str:
        if not failed:
            return ""
        task = failed[0]
        name = self._task_name(task)
        status = task["Status"]
        reason = status.get("Err") or status.get("Message") or status["State"]
        logs = _task_logs(task["ID"], 20, self.docker_env())
        tail = f"\n--- last log lines of {name} ---\n{logs}" if logs else ""
        return f": task {name} {status['State']}: {reason}{tail}"

    def _failing_tasks_report(self, names: Sequence[str]) -> str:
        services = self._services()
        lines = []
        for name in names:
            for task in services[name].tasks():
                status = task["Status"]
                if status["State"] != "running" and task["DesiredState"] == "running":
                    why = status.get("Err") or status.get("Message", "")
                    lines.append(f"{self._task_name(task)}: {status['State']} {why}")
        return "\n".join(lines)

    def _task_name(self, task: dict) -> str:
        service = self.client.services.get(task["ServiceID"]).name if task.get("ServiceID") else "?"
        return f"{service}.{task.get('Slot', '?')}"

    # --- secrets: Docker secrets, one per value -------------------------------------------------

    def _secret_key(self, *, create: bool) -> bytes | None:
        found = self.client.configs.list(filters={"label": f"{SECRET_KEY_LABEL}={self.project}"})
        if found:
            return base64.b64decode(found[0].attrs["Spec"]["Data"])
        if not create:
            return None
        key = os.urandom(32)
        self.client.configs.create(name=f"{self.project}_fcgikit_secret_key", data=key,
                                   labels={SECRET_KEY_LABEL: self.project})
        return key

    def _create_secrets(self, files: StackFiles) -> None:
        values = self._secret_values or {}
        existing = {secret.name for secret in self.client.secrets.list()}
        for name, entry in files.stack.get("secrets", {}).items():
            if entry["name"] not in existing:
                self.client.secrets.create(name=entry["name"], data=values[name],
                                           labels={STACK_LABEL: self.project, LABEL_PROJECT: self.project})

    def _remove_unused_secrets(self, files: StackFiles) -> None:
        keep = {entry["name"] for entry in files.stack.get("secrets", {}).values()}
        _remove_all_but(keep, self.client.secrets.list(filters={"label": f"{LABEL_PROJECT}={self.project}"}))

    def _remove_unused_configs(self, files: StackFiles) -> None:
        keep = {config["name"] for config in files.stack["configs"].values()}
        _remove_all_but(keep, self.client.configs.list(filters={"label": f"{STACK_LABEL}={self.project}"}))

    def check_end_to_end(self, timeout: float = 30.0) -> None:
        url = self.url()
        if url is None:
            raise SwarmFailed(f"{self.project}_nginx publishes no port")
        deadline = time.monotonic() + timeout
        problem = ""
        while time.monotonic() < deadline:
            status, problem = http_get(url)
            if status is not None and status < 500:
                return
            time.sleep(0.3)
        raise SwarmFailed(f"GET {url} through {self.project}_nginx failed: {problem}\n"
                          f"--- last 20 log lines of {self.project}_nginx ---\n"
                          + _task_logs(f"{self.project}_nginx", 20, self.docker_env()))

    # --- reporting ------------------------------------------------------------------------------

    def url(self) -> str | None:
        """Where nginx answers: its port on this machine, or on the node its task runs on."""
        nginx = self._services().get("nginx")
        if nginx is None:
            return None
        ports = nginx.attrs["Spec"].get("EndpointSpec", {}).get("Ports", [])
        published = {p["TargetPort"]: p["PublishedPort"] for p in ports if p.get("PublishedPort")}
        if NGINX_PORT not in published:
            return None
        address = "127.0.0.1"
        if self.remote is not None:
            running = [t for t in nginx.tasks(filters={"desired-state": "running"})
                       if t["Status"]["State"] == "running"]
            if not running:
                return None
            node = self.client.nodes.get(running[0]["NodeID"])
            address = node.attrs.get("Status", {}).get("Addr") or address
        return edge_url(address, published)

    def status(self) -> dict:
        """Tasks per node: desired versus running, and why a task is not running."""
        state, _ = self.swarm_state()
        if state != "active":
            return {"project": self.project, "engine": "swarm", "url": None, "containers": [], "services": [],
                    "problem": "the local Docker engine is not in swarm mode"}
        nodes = {node.id: node.attrs["Description"]["Hostname"] for node in self.client.nodes.list()}
        rows, summary = [], []
        for name, service in sorted(self._services().items(), key=lambda item: shown_rank(item[0])):
            spec = service.attrs["Spec"]
            desired = spec["Mode"].get("Replicated", {}).get("Replicas", 0)
            image = spec["TaskTemplate"]["ContainerSpec"]["Image"]
            tasks = service.tasks()
            current = [t for t in tasks if t["DesiredState"] == "running"]
            running = [t for t in current if t["Status"]["State"] == "running"]
            update = (service.attrs.get("UpdateStatus") or {}).get("State", "")
            summary.append({"service": name, "name": service.name, "desired": desired, "running": len(running),
                            "image": image, "update": update})
            for task in sorted(current, key=lambda t: t.get("Slot", 0)):
                status = task["Status"]
                rows.append({
                    "name": f"{service.name}.{task.get('Slot', '?')}", "service": name,
                    "host": nodes.get(task.get("NodeID", ""), "-"), "state": status["State"],
                    "health": "-", "image": task["Spec"]["ContainerSpec"]["Image"], "published": {},
                    "stale": False, "desired_state": task["DesiredState"],
                    "error": status.get("Err", "") if status["State"] != "running" else "",
                })
        return {"project": self.project, "engine": "swarm", "url": self.url(), "containers": rows,
                "services": summary}

    def logs(self, services: Sequence[str], request) -> Iterator[str]:
        """`docker service logs` of each service (every one when none is named), each line
        prefixed by its task and node; one after another, or all as they come with -f."""
        found = self._services()
        names = list(services) or sorted(found, key=shown_rank)
        missing = [name for name in names if name not in found]
        if missing:
            raise FcgikitError(f'no "{missing[0]}" service in stack {self.project}')
        processes = []
        for name in names:
            argv = ["docker", "service", "logs", "--no-trunc", f"{self.project}_{name}"]
            if request.follow:
                argv.insert(3, "--follow")
            if request.tail is not None:
                argv[3:3] = ["--tail", str(request.tail)]
            if request.since is not None:
                argv[3:3] = ["--since", request.since.text]
            if request.timestamps:
                argv.insert(3, "--timestamps")
            processes.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                              env=self.docker_env()))
        try:
            if not request.follow:
                for process in processes:
                    assert process.stdout is not None  # stdout=PIPE
                    for line in process.stdout:
                        yield line.rstrip("\n")
                return
            import queue
            import threading

            lines: queue.Queue[str] = queue.Queue()

            def pump(process) -> None:
                for line in process.stdout:
                    lines.put(line.rstrip("\n"))

            for process in processes:
                threading.Thread(target=pump, args=(process,), daemon=True).start()
            while True:
                yield lines.get()
        finally:
            for process in processes:
                process.kill()
                process.wait()


def _run(argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    if done.returncode != 0:
        raise SwarmFailed(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _task_logs(task_or_service: str, tail: int, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["docker", "service", "logs", "--raw", "--tail", str(tail), task_or_service],
                          capture_output=True, text=True, timeout=30, env=env)
    return (done.stdout + done.stderr).rstrip()


def _epoch(timestamp: str) -> float:
    from .docker_backend import docker_time

    return docker_time(timestamp) if timestamp else 0.0


def _newer(update: dict, started: float) -> bool:
    return _epoch(update.get("CompletedAt") or update.get("StartedAt") or "") >= started - 1


def _remove_all_but(keep: set[str], objects: Sequence) -> None:
    """Remove the Swarm secrets or configs not named in keep."""
    for obj in objects:
        if obj.name not in keep:
            try:
                obj.remove()
            except docker.errors.APIError:
                pass  # still used by a task on its way out; the next up removes it
