"""up / scale / status / logs / down / build: the plan, executed on the hosts' engines.

Each operation observes (containers found by label), plans (pure, see plan.py),
and then either prints the plan (dry run) or executes its steps in order.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar

import docker.errors

from . import commands, logs, services
from . import images as img
from . import secrets as sec
from .commands import NGINX_PORT
from .docker_backend import ContainerFailed, Engine, read_backends, read_nginx_conf
from .errors import FcgikitError
from .hosts import Host, local_host
from .logs import LineFormat, LogReader, LogRequest
from .model import LABEL_SECRETS, NGINX_CONF_PATH, RunningContainer
from .nginxconf import (
    BACKENDS_PATH,
    LOADED_PATH,
    SAVED_BACKENDS_PATH,
    backends_version,
    parse_backends,
    render_backends,
)
from .plan import (
    CheckEndToEnd,
    CreateNetwork,
    Observed,
    Plan,
    ReloadNginx,
    RemoveContainer,
    RemoveNetwork,
    RenewSecrets,
    StartContainer,
    StopContainer,
    UpdateBackends,
    WaitAnswering,
    plan_down,
    plan_up,
)
from .releases import Release, ReleaseStore, images_of, keep_releases, rollback_target
from .services import EDGE
from .spec import FASTCGI_PORT, NGINX_TLS_PORT, StackSpec, with_deployed_app, with_replicas
from .tls import read_cert_and_key

Say = Callable[[str], None]
T = TypeVar("T")


def _quiet(_: str) -> None:
    pass


class Engines(Protocol):
    """Where a stack's containers run and how they are reached: what differs between the local
    engine (LocalEngine, below) and the inventory's hosts over SSH (multihost.SshHosts). The
    Stack does everything else (observe, plan, run the steps, status, logs) the same way."""

    hosts: list[Host]

    def connect(self, host_name: str) -> Engine: ...
    def build_host(self) -> str: ...  # whose engine builds the images
    def release_host(self) -> str: ...  # where the release records live
    def each_host(self, work: Callable[[str], T]) -> tuple[dict[str, T], dict[str, BaseException]]: ...
    def every_host(self, action: str, work: Callable[[str], T]) -> dict[str, T]: ...
    def ship_images(self, tags: dict[str, str], say: Say, progress: Say) -> list: ...
    def shipping_notes(self, tags: dict[str, str]) -> list[str]: ...
    def port_free(self, host_name: str, port: int) -> bool: ...
    def require_verified(self, command: str) -> None: ...
    def deploy_lock(self, project: str, command: str) -> contextlib.AbstractContextManager: ...
    def host_rows(self, failures: dict[str, BaseException]) -> list[dict] | None: ...
    def log_sources(self, containers: Sequence[RunningContainer], request: LogRequest,
                    engine: Callable[[str], Engine]) -> tuple[list[str], list[LogReader]]: ...


class LocalEngine:
    """The engine of this machine (DOCKER_HOST, else the local socket): it builds the images
    and runs every container; nothing is shipped, no host can be unverified, no lock."""

    def __init__(self, hosts: Sequence[Host]):
        self.hosts = list(hosts)

    def connect(self, host_name: str) -> Engine:
        host = next((h for h in self.hosts if h.name == host_name), None)
        if host is None:
            raise FcgikitError(f"no host named {host_name} in this deployment")
        return Engine.connect(host)

    def build_host(self) -> str:
        return self.hosts[0].name

    def release_host(self) -> str:
        return self.hosts[0].name

    def each_host(self, work: Callable[[str], T]) -> tuple[dict[str, T], dict[str, BaseException]]:
        """`work(host name)` on every host, one after the other, a failure raised as it is."""
        return {host.name: work(host.name) for host in self.hosts}, {}

    def every_host(self, action: str, work: Callable[[str], T]) -> dict[str, T]:
        return self.each_host(work)[0]

    def ship_images(self, tags: dict[str, str], say: Say, progress: Say) -> list:
        return []  # built where they run

    def shipping_notes(self, tags: dict[str, str]) -> list[str]:
        return []

    def port_free(self, host_name: str, port: int) -> bool:
        """Whether this machine can listen on `port`, as Docker will."""
        return local_port_free(port)

    def require_verified(self, command: str) -> None:
        pass

    def deploy_lock(self, project: str, command: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def host_rows(self, failures: dict[str, BaseException]) -> list[dict] | None:
        return None  # `status` shows no host lines for the one local engine

    def log_sources(self, containers: Sequence[RunningContainer], request: LogRequest,
                    engine: Callable[[str], Engine]) -> tuple[list[str], list[LogReader]]:
        """One stream per container, each labelled with its name."""
        labels = [c.name for c in containers]
        readers: list[LogReader] = [
            functools.partial(engine(c.host).log_lines, c.name, c.name, request) for c in containers
        ]
        return labels, readers


@dataclass
class Stack:
    """One project's stack on its hosts' engines (by default: the local engine)."""

    spec: StackSpec
    project: str
    engines: Engines = field(default_factory=lambda: LocalEngine([local_host()]))
    hosts: list[Host] = field(init=False)  # the engines' hosts
    names: img.ImageNames = field(default_factory=img.ImageNames)
    say: Say = _quiet  # one line per step done
    progress: Say = _quiet  # transient progress (builds)
    wait_timeout: float = 60.0
    app: str | None = None  # --app as given, recorded with each release
    keep_releases: int | None = None  # releases kept (None: FCGIKIT_KEEP_RELEASES, else 5)
    reload_timeout: float = 40.0
    backends_timeout: float = 10.0  # until every nginx worker process serves a new backends list
    _engines: dict[str, Engine] = field(default_factory=dict, init=False, repr=False)
    _tags: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # the last image_tags()
    # The secrets' values read for the plan being made or run (never printed, never stored).
    _secret_values: dict[str, bytes] | None = field(default=None, init=False, repr=False)
    # (host, name) of the containers the running plan started (removed again if it fails early).
    _started: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    # Outdated nginx containers stopped by the running plan, until their replacement serves.
    _stopped_edges: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    _edge_backends: dict[tuple[str, str], str | None] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.hosts = self.engines.hosts

    # --- the hosts' engines (self.engines) and observation ------------------------------------

    def engine(self, host_name: str) -> Engine:
        if host_name not in self._engines:
            self._engines[host_name] = self.engines.connect(host_name)
        return self._engines[host_name]

    def each_host(self, work: Callable[[str], T]) -> tuple[dict[str, T], dict[str, BaseException]]:
        """`work(host name)` on every host: (values by host, failures by host)."""
        return self.engines.each_host(work)

    def every_host(self, action: str, work: Callable[[str], T]) -> dict[str, T]:
        """`work(host name)` on every host, by host; any failure fails `action`."""
        return self.engines.every_host(action, work)

    def ship_images(self, tags: dict[str, str]) -> list:
        """Put the images on each host that runs them and lacks them (the build host has them)."""
        return self.engines.ship_images(tags, self.say, self.progress)

    def require_verified_hosts(self, command: str) -> None:
        """Refuse `command` before anything is looked at when a host cannot be trusted."""
        self.engines.require_verified(command)

    def deploy_lock(self, command: str) -> contextlib.AbstractContextManager:
        """Held while `command` changes the stack (over SSH: on the primary host)."""
        return self.engines.deploy_lock(self.project, command)

    def port_free(self, host_name: str, port: int) -> bool:
        return self.engines.port_free(host_name, port)

    def observe(self) -> Observed:
        """What runs, looked at on every host; a host that fails is named with the rest."""

        def look(name: str):
            engine = self.engine(name)
            found = self.check_secrets(engine, engine.observe_containers(self.project))
            has_network = bool(engine.project_networks(self.project))
            nginx = [c for c in found if c.service == EDGE and c.running]
            edge = (read_nginx_conf(engine, nginx[0].name), read_backends(engine, nginx[0].name)) if nginx else None
            return found, has_network, edge

        seen = self.every_host("looking at the hosts", look)
        containers = [c for found, _, _ in seen.values() for c in found]
        networks = frozenset(name for name, (_, has_network, _) in seen.items() if has_network)
        edges = [edge for _, _, edge in seen.values() if edge is not None]
        conf, backends = edges[0] if edges else (None, None)
        return Observed(tuple(containers), networks, conf, backends)

    # --- images ---------------------------------------------------------------------------

    def build(self, *, tag_latest: bool = False) -> dict[str, img.BuiltImage]:
        """Build what is missing (the base first); returns kind -> image."""
        client = self.engine(self._build_host()).client
        root = img.source_root()
        base = img.ensure_base(client, self.names, self.progress)
        extra = ("latest",) if tag_latest else ()
        built = {}
        for context in self._contexts(root):
            built[context.kind] = img.build_image(client, context, self.names, base, self.progress, extra_tags=extra)
        return built

    def image_tags(self, *, build: bool) -> dict[str, str]:
        """service -> image tag; builds missing images when `build`, else only computes tags."""
        if build:
            built = self.build()
            for image in built.values():
                if image.built:
                    self.say(f"built {image.tag}")
            tags = {kind: image.tag for kind, image in built.items()}
        else:
            tags = self._expected_tags()
        self._tags = services.image_tags(tags)
        if build:
            self.ship_images(dict(self._tags))
        return dict(self._tags)

    def _expected_tags(self) -> dict[str, str]:
        client = self.engine(self._build_host()).client
        root = img.source_root()
        base = img.present_base(client, self.names)
        base_id = img.image_id(client, base) if base else None
        tags = {}
        for context in self._contexts(root):
            suffix = context.content_hash(base_id) if base_id else "(hash known once the base exists)"
            tags[context.kind] = f"{self.names.repository(context.kind)}:{suffix}"
        return tags

    def image_notes(self) -> list[str]:
        """For a dry run: the images `up` would build here first, and send to each host lacking
        them (the plan's steps start after)."""
        client = self.engine(self._build_host()).client
        expected = self._expected_tags()
        if img.present_base(client, self.names) is None:
            built_here = [f"build the base {self.names.base} (pulled, else made with debootstrap: about a minute), "
                          "then the images"]
        else:
            built_here = [f"build {tag} here" for tag in sorted(set(expected.values()))
                          if not img.image_exists(client, tag)]
        return built_here + self.engines.shipping_notes(services.image_tags(expected))

    def _contexts(self, root: Path) -> list[img.BuildContext]:
        cgi = self.spec.services.cgi
        workers = self.spec.services.workers
        worker = img.worker_context(root, workers.path, cgi.scripts if cgi else None, workers.app,
                                    workers.packages)
        return [worker, img.nginx_context(root)]

    def _build_host(self) -> str:
        return self.engines.build_host()

    # --- operations -----------------------------------------------------------------------

    def plan_up(self, *, build: bool = True) -> Plan:
        self.require_verified_hosts("up")
        self.read_secrets(self.spec)
        return plan_up(self.spec, self.project, self.hosts, self.image_tags(build=build), self.observe())

    # --- secrets (secrets.py): read where fcgikit runs, delivered after each start ---------------

    def read_secrets(self, spec: StackSpec) -> dict[str, bytes]:
        """Every value the deployment of `spec` needs, read now (an unreadable one: nothing changes)."""
        values = sec.read_values(spec)
        tls = spec.services.nginx.tls
        if tls is not None:  # the certificate and key: nginx's secrets
            edges = [host.address for host in self.hosts if "edge" in host.roles]
            values.update(read_cert_and_key(tls, self.project, edges))
        self._secret_values = values
        return values

    def check_secrets(self, engine: Engine, found: list[RunningContainer]) -> list[RunningContainer]:
        """While planning: a running container whose secrets are missing (restarted by the
        engine) or hold other values than those read now is not current (replaced)."""
        if not self._secret_values and not any(c.secrets for c in found):
            return found
        values = self._secret_values or {}
        checked = []
        for c in found:
            if c.secrets and c.running and self._secret_values is not None:
                try:
                    code, output = engine.exec(c.name, sec.check_command(c.secrets))
                except docker.errors.APIError:
                    code, output = 1, ""
                if code == 0 and c.service == EDGE and not sec.delivered_match(output, c.secrets, values):
                    c = replace(c, secrets_renewed=True)  # a new certificate: written in, nginx reloaded
                elif code != 0 or not sec.delivered_match(output, c.secrets, values):
                    c = replace(c, secrets_current=False)
            checked.append(c)
        return checked

    def deliver_secrets(self, host: str, name: str, mounts) -> None:
        values = self._secret_values or {}
        missing = [secret for secret, _ in mounts if secret not in values]
        if missing:
            raise FcgikitError(f"{name} needs secret(s) {', '.join(missing)}, which this run did not read")
        engine = self.engine(host)
        for argv, environment in sec.delivery_execs(mounts, values):
            code, output = engine.exec(name, argv, environment=environment)
            if code != 0:
                raise FcgikitError(f"cannot write {argv[-1]} into {name} on {host}: {output.strip()[:200]}")

    def up(self) -> UpResult:
        with self.deploy_lock("up"):
            plan = self.plan_up(build=True)
            if not plan.changes_nothing:
                self.execute(plan)
            release = self.record_release(self._tags, self.spec, self.app)
            return UpResult(plan, self.url(), changed=not plan.changes_nothing, release=release)

    # --- releases: recorded by up, returned to by rollback (releases.py) ---------------------

    def release_host(self) -> str:
        """Where the release records live: the one host (the primary edge host with --hosts)."""
        return self.engines.release_host()

    def release_store(self) -> ReleaseStore:
        return ReleaseStore(self.engine(self.release_host()).client, self.project)

    def releases(self) -> list[Release]:
        return self.release_store().list()

    def current_release(self) -> Release | None:
        """The newest release (what the last successful up or rollback deployed), if any."""
        found = self.releases()
        return found[-1] if found else None

    def record_release(self, images: dict[str, str], spec: StackSpec, app: str | None,
                       rollback_of: int | None = None) -> Release | None:
        store = self.release_store()
        release = store.record(images, spec, app or "", rollback_of)
        for gone in store.trim(keep_releases(self.keep_releases)):
            self.say(f"forgot release {gone.number} (keeping the last {keep_releases(self.keep_releases)})")
        return release

    def plan_rollback(self, number: int | None = None, *, dry_run: bool = False) -> tuple[Release, Plan]:
        """The release to return to and the plan that does it, with the release's images and
        stack file (nothing is built; the images must still be there)."""
        self.require_verified_hosts("rollback")
        target = rollback_target(self.releases(), number)
        spec = target.stack_spec()
        self.read_secrets(spec)
        self.release_images_ready(target, dry_run=dry_run)
        return target, plan_up(spec, self.project, self.hosts, dict(target.images), self.observe())

    def release_images_ready(self, release: Release, *, dry_run: bool) -> None:
        """The release's images must still exist on this engine (kept by `build --prune`)."""
        client = self.engine(self._build_host()).client
        missing = sorted(tag for tag in set(release.images.values()) if not img.image_exists(client, tag))
        if missing:
            raise FcgikitError(f"release {release.number}'s image {missing[0]} is no longer on this machine "
                               f"(removed by hand?); nothing changed")
        if not dry_run:
            self.ship_images(dict(release.images))

    def rollback(self, number: int | None = None) -> RollbackResult:
        with self.deploy_lock("rollback" + (f" {number}" if number is not None else "")):
            target, plan = self.plan_rollback(number)
            if not plan.changes_nothing:
                self.execute(plan)
            release = self.record_release(dict(target.images), target.stack_spec(), target.app,
                                          rollback_of=target.number)
            return RollbackResult(target, plan, self.url(), changed=not plan.changes_nothing, release=release)

    def prune(self, built: set[str], keep: int | None = None) -> tuple[list[Release], list[str]]:
        """Forget releases beyond the newest `keep`, then remove this prefix's images that
        neither a container, the images just built nor a kept release uses."""
        store = self.release_store()
        forgotten = store.trim(keep_releases(keep if keep is not None else self.keep_releases))
        kept = images_of(store.list())
        client = self.engine(self._build_host()).client
        return forgotten, img.prune_images(client, self.names, set(built) | kept)

    def plan_scale(self, replicas: dict[str, int], *, build: bool = True) -> Plan:
        self.require_verified_hosts("scale")
        release = self.deployed_release()
        if release is not None:  # what runs, not what the sources are now: no build, no roll forward
            self.release_images_ready(release, dry_run=not build)
            self.say(f"scaling release {release.number} as it runs (its images and stack file; "
                     "`fcgikit up` deploys changes)")
            return self._plan_replicas(release.stack_spec(), replicas, dict(release.images))
        return self._plan_replicas(self.spec, replicas, None, build=build)

    def deployed_release(self) -> Release | None:
        """The newest release when it is what runs (every running container's image is one of
        its images): `scale` then scales it, whatever the sources or the stack file say now
        (after a `rollback`, scale must not bring the newer code back)."""
        release = self.current_release()
        if release is None:
            return None
        running = {c.image for c in self._every_container() if c.running}
        return release if running and running <= set(release.images.values()) else None

    def _plan_replicas(self, spec: StackSpec, replicas: dict[str, int], tags: dict[str, str] | None, *,
                       build: bool = False) -> Plan:
        scaled = spec
        try:
            for service, count in replicas.items():
                scaled = with_replicas(scaled, service, count)
        except ValueError as exc:
            raise FcgikitError(str(exc)) from None
        self.read_secrets(scaled)
        tags = tags if tags is not None else self.image_tags(build=build)
        return plan_up(scaled, self.project, self.hosts, tags, self.observe())

    def scale(self, replicas: dict[str, int]) -> UpResult:
        with self.deploy_lock("scale " + " ".join(f"{service}={count}" for service, count in replicas.items())):
            plan = self.plan_scale(replicas)
            if not plan.changes_nothing:
                self.execute(plan)
            return UpResult(plan, self.url(), changed=not plan.changes_nothing)

    def keep_deployed_app(self) -> str | None:
        """Before scaling: serve the app that runs, never another one. Without --app, the
        running workers' app replaces the stack file's (returned); an --app that is not the
        one running is refused: changing the app is `up`'s work."""
        deployed = deployed_app(self._every_container())
        wanted = commands.app_label(self.spec.services.workers)
        if deployed is None or deployed == wanted:
            return None
        if self.app:
            raise FcgikitError(
                f"scale changes replica counts, not the app: the workers of {self.project} serve {deployed}, "
                f"not {wanted} (--app {self.app}); to serve it, run `fcgikit up --app {self.app}`")
        try:
            self.spec = with_deployed_app(self.spec, deployed)
            self.app = deployed  # as if given: what a release records
        except ValueError as exc:
            raise FcgikitError(f"scale keeps the app that runs, but {exc}; run `fcgikit up` to deploy the app "
                               "the stack file names") from None
        self.say(f"keeping the app the workers serve, {deployed} (the stack file names {wanted}; "
                 "`fcgikit up` changes the app)")
        return deployed

    def plan_down(self) -> Plan:
        self.require_verified_hosts("down")
        return plan_down(self.project, self.observe())

    def down(self) -> Plan:
        with self.deploy_lock("down"):
            plan = self.plan_down()
            self.execute(plan)
            return plan

    # --- executing a plan ------------------------------------------------------------------

    def execute(self, plan: Plan) -> None:
        """Run the steps in order. If a new container fails before nginx uses it, the
        containers this run started are removed again, so the old stack keeps serving.
        A replaced nginx is only stopped until its successor answers; if the successor
        cannot start or answer, the old one is started again."""
        self.check_edge_ports(plan)
        self._started = []
        self._stopped_edges = []
        self._edge_backends = {}
        nginx_touched = False
        try:
            for batch in _batches(plan.steps):
                for step in batch:
                    self.say(step.describe())
                self._run_batch(batch)
                nginx_touched = nginx_touched or any(_touches_nginx(step) for step in batch)
        except BaseException as exc:
            stopped = list(self._stopped_edges)
            restored: list[tuple[str, str]] = []
            problem = None
            if stopped:
                try:
                    restored = self._restore_edges(plan, self._started)
                    nginx_touched = False  # the old nginx serves with its old upstreams again
                except Exception as error:  # say so with the original failure; leave the rest as it is
                    problem = error
            if not nginx_touched:
                for host, name in reversed(self._started):
                    self.engine(host).stop_and_remove(name, timeout=5)
            if stopped and isinstance(exc, Exception):
                first, _, rest = str(exc).partition("\n")
                if problem is None:
                    again = ", ".join(f"{name} on {host}" for host, name in restored)
                    note = f"{first}; the previous nginx ({again}) was started again and serves as before"
                else:
                    old = ", ".join(f"{name} on {host}" for host, name in stopped)
                    why = " ".join(str(problem).split())
                    note = f"{first}; the previous nginx ({old}) could not be brought back: {why}"
                raise FcgikitError(note + (f"\n{rest}" if rest else "")) from exc
            raise

    # --- the edge: its port checked first, the old one kept until the new one serves ---------

    def check_edge_ports(self, plan: Plan) -> None:
        """Before anything changes: the host port each new nginx publishes must be free, unless
        the nginx it replaces holds it (that one frees it)."""
        freed = {
            (step.container.host, port) for step in plan.steps
            if isinstance(step, StopContainer) and step.container.running
            for port in step.container.published.values()
        }
        for step in plan.steps:
            if not (isinstance(step, StartContainer) and step.container.service == EDGE):
                continue
            host = step.container.host
            for _, port in step.container.ports:
                if port and (host, port) not in freed and not self.port_free(host, port):
                    raise FcgikitError(f"port {port} on host {self._describe_host(host)} is in use by another "
                                       f"program; nothing changed (free it or choose another nginx port)")

    def _describe_host(self, host_name: str) -> str:
        host = next((h for h in self.hosts if h.name == host_name), None)
        return f"{host_name} ({host.address})" if host is not None else host_name

    def run_stop_container(self, step: StopContainer) -> None:
        c = step.container
        try:
            container = self.engine(c.host).container(c.name)
        except docker.errors.NotFound:
            return
        if container.status == "running":
            # Its backends list lives on a tmpfs, emptied when the container stops: kept here,
            # so that an old nginx started again serves the same backends as before.
            self._edge_backends[(c.host, c.name)] = read_backends(self.engine(c.host), c.name)
            container.stop(timeout=step.stop_timeout)
            self._stopped_edges.append((c.host, c.name))

    def _restore_edges(self, plan: Plan, started: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The new nginx out, the stopped old one back; returns the old ones started again."""
        new_edges = {(s.container.host, s.container.name) for s in plan.steps
                     if isinstance(s, StartContainer) and s.container.service == EDGE}
        for host, name in started:
            if (host, name) in new_edges:
                self.engine(host).stop_and_remove(name, timeout=5)  # frees the port it may hold
        restored = []
        for host, name in self._stopped_edges:
            engine = self.engine(host)
            container = engine.container(name)
            container.start()
            mounts = sec.mounts_from_label(container.labels.get(LABEL_SECRETS, ""))
            if mounts:  # its tmpfs came back empty
                self.deliver_secrets(host, name, mounts)
            backends = self._edge_backends.get((host, name))
            if backends:  # likewise
                self._hand_backends(engine, name, backends)
            restored.append((host, name))
        self._stopped_edges = []
        for host, name in restored:
            self.run_check_end_to_end(CheckEndToEnd(host, name))  # "serves as before" must be true
        return restored

    def _run_batch(self, batch: list) -> None:
        if len(batch) == 1:
            batch[0].run(self)
            return
        # Draining containers are independent of each other: stop them all at once.
        with ThreadPoolExecutor(max_workers=min(8, len(batch))) as pool:
            for future in [pool.submit(step.run, self) for step in batch]:
                future.result()

    # --- the steps (plan.StepRunner): each step calls the method that runs it ----------------

    def run_create_network(self, step: CreateNetwork) -> None:
        self.engine(step.host).create_network(step.arguments())

    def run_start_container(self, step: StartContainer) -> None:
        c = step.container
        self.engine(c.host).start(c, step.arguments(), step.files())
        self._started.append((c.host, c.name))
        if c.secrets:  # before anything waits for it or sends it a request
            self.deliver_secrets(c.host, c.name, c.secrets)

    def run_wait_answering(self, step: WaitAnswering) -> None:
        self.engine(step.container.host).wait_answering(step.container.name, timeout=self.wait_timeout)

    def run_remove_container(self, step: RemoveContainer) -> None:
        self.engine(step.container.host).stop_and_remove(step.container.name, step.stop_timeout)
        if (step.container.host, step.container.name) in self._stopped_edges:
            self._stopped_edges.remove((step.container.host, step.container.name))  # its successor serves

    def run_remove_network(self, step: RemoveNetwork) -> None:
        self.engine(step.host).remove_network(self.project)

    def run_reload_nginx(self, step: ReloadNginx) -> None:
        engine = self.engine(step.host)
        old_workers = engine.nginx_workers(step.container)
        old_conf = engine.read_file(step.container, NGINX_CONF_PATH)
        engine.write_file(step.container, NGINX_CONF_PATH, step.nginx_conf)
        for argv in commands.nginx_reload_commands():
            code, output = engine.exec(step.container, argv)
            if code != 0:
                # nginx keeps serving with the config it has loaded: put that one back on disk too,
                # so the next `up` sees the difference and tries again.
                if old_conf is not None:
                    engine.write_file(step.container, NGINX_CONF_PATH, old_conf)
                raise FcgikitError(f"{' '.join(argv)} failed in {step.container}: {output.strip()}")
        # Only once the old workers are gone does no request go to containers about to drain.
        if not engine.wait_reloaded(step.container, old_workers, timeout=self.reload_timeout):
            self.say(f"nginx's previous workers are still finishing requests after {self.reload_timeout:.0f}s; "
                     "going on (draining containers finish their requests too)")

    def run_renew_secrets(self, step: RenewSecrets) -> None:
        """New certificate files in, checked by `nginx -t`, then a reload. If nginx refuses
        them, the old files are not back (they are not kept): nginx keeps serving with the
        ones it loaded, and the error says so."""
        engine = self.engine(step.host)
        old_workers = engine.nginx_workers(step.container)
        self.deliver_secrets(step.host, step.container, step.secrets)
        for argv in commands.nginx_reload_commands():
            code, output = engine.exec(step.container, argv)
            if code != 0:
                raise FcgikitError(f"nginx refused the renewed files in {step.container} ({' '.join(argv)}): "
                                   f"{output.strip()[:300]}; it keeps serving with the ones it had loaded")
        if not engine.wait_reloaded(step.container, old_workers, timeout=self.reload_timeout):
            self.say(f"nginx's previous workers are still finishing requests after "
                     f"{self.reload_timeout:.0f}s; going on")

    def run_update_backends(self, step: UpdateBackends) -> None:
        """Write the list into the running nginx and wait until its worker processes serve it.

        Addresses by container name (the edge host's own network) become the container's IP:
        the Lua balancer connects to addresses, it resolves no names. A container that has
        no address (it stopped meanwhile) is left out, and said so.
        """
        engine = self.engine(step.host)
        pools: dict[str, list[tuple[str, str]]] = {}
        for pool, address, name in step.backends:
            resolved = self._resolve_backend(engine, step.network, address, name)
            if resolved is None:
                self.say(f"{name} has no address on {step.network}: left out of nginx's backends")
                continue
            pools.setdefault(pool, []).append((resolved, name))
        self._hand_backends(engine, step.container, render_backends(pools))

    def _hand_backends(self, engine: Engine, container: str, text: str) -> None:
        """Write a backends list into the running nginx; return once every one of its worker
        processes serves it."""
        engine.replace_file_by_exec(container, BACKENDS_PATH, text)
        try:  # kept for a restart of the container, which empties BACKENDS_PATH's tmpfs
            engine.write_file(container, SAVED_BACKENDS_PATH, text)
        except docker.errors.APIError as exc:
            self.say(f"could not keep a copy of the backends in {container} ({SAVED_BACKENDS_PATH}): {exc}; "
                     "if it restarts, it serves no worker until the next `fcgikit up`")
        version = backends_version(text)
        deadline = time.monotonic() + self.backends_timeout
        while time.monotonic() < deadline:
            code, output = engine.exec(container, ["cat", LOADED_PATH])
            if code == 0 and output.strip() == version:
                return
            time.sleep(0.1)
        raise FcgikitError(f"nginx in {container} did not load its new backends within "
                           f"{self.backends_timeout:.0f}s (no {LOADED_PATH} with version {version}); "
                           f"its error log: {engine.logs(container, tail=5).strip()}")

    @staticmethod
    def _resolve_backend(engine: Engine, network: str, address: str, name: str) -> str | None:
        host, _, port = address.rpartition(":")
        if host == name:  # on the edge's own host: by container name on the project network
            ip = engine.address_on(name, network)
            return f"{ip}:{port}" if ip else None
        try:
            ipaddress.ip_address(host)
            return address
        except ValueError:
            return f"{socket.gethostbyname(host)}:{port}"

    def run_check_end_to_end(self, step: CheckEndToEnd, timeout: float = 20.0) -> None:
        url = self.url()
        if url is None:
            raise FcgikitError(f"{step.container} publishes no port")
        deadline = time.monotonic() + timeout
        problem = ""
        while time.monotonic() < deadline:
            status, problem = http_get(url)
            if status is not None and status < 500:
                return
            time.sleep(0.3)
        logs = self.engine(step.host).logs(step.container, tail=20).rstrip()
        raise ContainerFailed(f"GET {url} through {step.container} failed: {problem}\n"
                              f"--- last 20 log lines of {step.container} ---\n{logs}")

    # --- reporting ---------------------------------------------------------------------------

    def url(self) -> str | None:
        return self._edge_url(self._every_container())

    def _edge_url(self, containers: Sequence[RunningContainer]) -> str | None:
        addresses = {host.name: host.address for host in self.hosts}
        for c in containers:
            if c.service == EDGE and c.running and NGINX_PORT in c.published:
                return edge_url(addresses[c.host], c.published)
        return None

    def status(self) -> dict:
        """Every host at once; a host whose engine fails (over SSH) is reported with the rest."""

        def containers_on(name: str):
            engine = self.engine(name)
            found = sorted(engine.observe_containers(self.project), key=_display_order)
            return [(c, engine.pool_status(c.name) if c.running and c.service != EDGE else None) for c in found]

        by_host, failed = self.each_host(containers_on)
        seen = [(c, pool) for found in by_host.values() for c, pool in found]
        try:
            stale = self.stale_containers([c for c, _ in seen])
        except Exception:  # the edge host failing now is reported in its row; mark nothing
            stale = set()
        report = {
            "project": self.project,
            "url": self._edge_url([c for c, _ in seen]),
            "containers": [_status_row(c, pool, stale=(c.host, c.name) in stale) for c, pool in seen],
        }
        rows = self.engines.host_rows(failed)
        if rows is not None:
            report["hosts"] = rows
        return report

    def stale_containers(self, containers: Sequence[RunningContainer]) -> set[tuple[str, str]]:
        """(host, name) of the FastCGI containers the running nginx no longer sends requests to
        (see find_stale), read from the backends list inside it (docker exec) and its time."""
        edge = next((c for c in containers if c.service == EDGE and c.running), None)
        if edge is None:
            return set()
        try:
            code, output = self.engine(edge.host).exec(
                edge.name, ["sh", "-c", f"stat -c %Y {BACKENDS_PATH} && cat {BACKENDS_PATH}"])
        except docker.errors.DockerException:
            return set()  # no list to judge by: mark nothing
        if code != 0:
            return set()
        written, _, text = output.partition("\n")
        by_name = {host.name: host for host in self.hosts}
        return find_stale(containers, by_name, text, float(written.strip() or 0), resolve=_resolve_quietly)

    def logs(self, services: Sequence[str], request: LogRequest) -> Iterator[str]:
        """The log lines of the services' containers (every service when none is named), each
        prefixed by its container: merged by time, or as they come when following."""
        found = logs.select_containers(self._every_container(), services, self.project)
        labels, readers = self.log_sources(found, request)
        line_format = logs.LineFormat(labels, request.timestamps)
        if request.follow:
            discover = functools.partial(self._log_sources_started_since, found, services, request, line_format)
            yield from map(line_format, logs.merge_followed(readers, discover))
            return
        with ThreadPoolExecutor(max_workers=min(8, len(readers))) as pool:
            read = [line for lines in pool.map(lambda reader: list(reader()), readers) for line in lines]
        yield from map(line_format, logs.merge_by_time(logs.group_by_label(read)))

    def _log_sources_started_since(self, known: list[RunningContainer], services: Sequence[str], request: LogRequest,
                                   line_format: LineFormat) -> list[LogReader]:
        """While following: the readers of the containers started since (each from its first
        line), remembered in `known`."""
        seen = {(c.host, c.name, c.id) for c in known}
        fresh = [c for c in self._every_container()
                 if (c.host, c.name, c.id) not in seen and (not services or c.service in services)]
        if not fresh:
            return []
        known += fresh
        labels, readers = self.log_sources(fresh, replace(request, tail=None, since=None))
        line_format.widen(labels)
        return readers

    def _every_container(self) -> list[RunningContainer]:
        found = self.every_host("looking at the hosts", lambda name: self.engine(name).observe_containers(self.project))
        return [c for containers in found.values() for c in containers]

    def log_sources(
        self, containers: Sequence[RunningContainer], request: LogRequest
    ) -> tuple[list[str], list[LogReader]]:
        """The label printed for each container, and the readers of their lines."""
        return self.engines.log_sources(containers, request, self.engine)

def deployed_app(containers: Sequence[RunningContainer]) -> str | None:
    """The app the running workers serve (their LABEL_APP); the most common one while an
    `up` is changing it; None when no running worker says (none, or a FastCGI program)."""
    apps = Counter(c.app for c in containers if c.service == "workers" and c.running and c.app)
    return apps.most_common(1)[0][0] if apps else None


def edge_url(address: str, published: dict[int, int]) -> str:
    """The stack's address: HTTPS when nginx publishes its TLS port."""
    if NGINX_TLS_PORT in published:
        port = published[NGINX_TLS_PORT]
        return f"https://{address}/" if port == 443 else f"https://{address}:{port}/"
    return f"http://{address}:{published[NGINX_PORT]}/"


def _batches(steps) -> list[list]:
    """Consecutive removals of FastCGI containers form one batch; every other step is alone."""
    def drains_backend(step) -> bool:
        return isinstance(step, RemoveContainer) and step.container.service != EDGE

    batches: list[list] = []
    for step in steps:
        if drains_backend(step) and batches and drains_backend(batches[-1][0]):
            batches[-1].append(step)
        else:
            batches.append([step])
    return batches


def _touches_nginx(step) -> bool:
    return isinstance(step, (ReloadNginx, RenewSecrets, UpdateBackends)) or (
        isinstance(step, StartContainer) and step.container.service == EDGE)


@dataclass(frozen=True)
class UpResult:
    plan: Plan
    url: str | None
    changed: bool
    release: Release | None = None  # recorded by this run (None: the newest one already was this)


@dataclass(frozen=True)
class RollbackResult:
    target: Release
    plan: Plan
    url: str | None
    changed: bool
    release: Release | None = None


def _display_order(c: RunningContainer) -> tuple:
    return (services.shown_rank(c.service), c.slot)


def find_stale(
    containers: Sequence[RunningContainer], hosts: dict[str, Host], backends: str | None, written: float,
    resolve: Callable[[str], str] = lambda address: address,
) -> set[tuple[str, str]]:
    """FastCGI containers that are not in nginx's backends list (nginxconf.BACKENDS_PATH)
    although they are older than that list: left running on a host that was lost while `up`
    replaced them (they come back under the same names as their replacements), or by an `up`
    killed half-way. The next `up` or `scale` reuses or removes them. A container started
    after the list was written is not stale but not in rotation yet (a scale in progress).
    Pure (`resolve`: a host address to the IP the list holds).

    Nothing is marked when there is no list, or it names no backend: then it cannot tell."""
    pools = parse_backends(backends)
    entries = [entry for listed in (pools or {}).values() for entry in listed]
    if not entries:
        return set()
    stale = set()
    for c in containers:
        if c.service not in services.BACKENDS or (written and c.created > written):
            continue
        host = hosts.get(c.host)
        if c.published and host is not None:  # a remote worker host: nginx reaches its address
            addresses = {f"{resolve(host.address)}:{port}" for port in c.published.values()}
            listed = any(address in addresses and name == c.name for address, name in entries)
        else:  # beside nginx: its address on the project network, under its name
            listed = any(name == c.name and address.endswith(f":{FASTCGI_PORT}") for address, name in entries)
        if not listed:
            stale.add((c.host, c.name))
    return stale


def _resolve_quietly(address: str) -> str:
    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        try:
            return socket.gethostbyname(address)
        except OSError:
            return address


def _status_row(c: RunningContainer, pool: dict | None, *, stale: bool = False) -> dict:
    row = {
        "name": c.name, "service": c.service, "host": c.host, "state": c.state,
        "health": c.health or "-", "image": c.image, "published": c.published,
        # Not among nginx's upstream servers: left from a host that was lost (or an up killed
        # half-way); the next up or scale reuses or removes it.
        "stale": stale,
    }
    if pool is not None:
        children = pool.get("children", {})
        row["pool"] = {
            "state": pool.get("state"),
            "processes": children.get("total"),
            "busy": children.get("busy"),
            "idle": children.get("idle"),
            "accepted_conn": pool.get("accepted_conn"),
            "listen_queue": pool.get("listen_queue"),
            "restarts": pool.get("restarts"),
        }
    return row


def local_port_free(port: int) -> bool:
    """Whether a listener on every IPv4 address could take `port` here (what docker-proxy does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            return exc.errno != errno.EADDRINUSE  # e.g. EACCES below 1024: Docker (root) can, so do not guess
    return True


def http_get(url: str) -> tuple[int | None, str]:
    """One GET: (status or None, what to report). Used by the end-to-end checks of every engine."""
    # Over HTTPS the check asks whether the stack answers, not whether this machine trusts the
    # certificate's issuer (a development CA) or the name (an address here): not verified.
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            response.read()
            return response.status, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return None, str(getattr(exc, "reason", exc))
