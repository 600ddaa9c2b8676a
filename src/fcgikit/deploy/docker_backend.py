"""The thin layer over one host's Docker engine (Docker SDK). No decisions are made here.

Containers and networks are found by the `fcgikit.project` label, never by name.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import docker
import docker.errors
from docker.models.containers import Container

from . import commands
from .errors import FcgikitError
from .hosts import Host
from .logs import LogRequest
from .model import LABEL_PROJECT, NGINX_CONF_PATH, NGINX_PID_PATH, ContainerSpec, RunningContainer
from .nginxconf import BACKENDS_PATH

LOG_TAIL = 40
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|z|[+-]\d\d:\d\d)$")


class ContainerFailed(FcgikitError):
    """A container did not become ready; the message carries its logs."""


@dataclass
class Engine:
    """One host's Docker engine, as used for one project."""

    host: Host
    client: docker.DockerClient

    @classmethod
    def connect(cls, host: Host) -> Engine:
        try:
            client = host.docker_client()
            client.ping()
        except docker.errors.DockerException as exc:
            raise FcgikitError(f"cannot reach the Docker engine of host {host.name}: {exc}") from exc
        return cls(host, client)

    # --- finding -------------------------------------------------------------------------

    def project_containers(self, project: str) -> list[Container]:
        return self.client.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})

    def observe_containers(self, project: str) -> list[RunningContainer]:
        return [describe_container(c) for c in self.project_containers(project)]

    def project_networks(self, project: str) -> list:
        return self.client.networks.list(filters={"label": f"{LABEL_PROJECT}={project}"})

    def container(self, name: str) -> Container:
        return self.client.containers.get(name)

    # --- networks ------------------------------------------------------------------------

    def create_network(self, arguments: dict) -> None:
        """`arguments`: docker_args.network_create_arguments()."""
        self.client.networks.create(**arguments)

    def remove_network(self, project: str) -> None:
        for network in self.project_networks(project):
            network.remove()

    # --- containers ----------------------------------------------------------------------

    def start(self, spec: ContainerSpec, arguments: dict, files: dict[str, str] | None = None) -> Container:
        """Create (`arguments`: docker_args.container_create_arguments(spec, ...), what a dry
        run prints too), put `files` in (before anything runs), start."""
        container = self.client.containers.create(**arguments)
        try:
            for directory, archive in _archives_of(files or {}):
                container.put_archive(directory, archive)
            container.start()
        except docker.errors.APIError as exc:
            container.remove(force=True, v=True)  # nothing half-made stays behind
            raise FcgikitError(f"cannot start {spec.name} on {self.host.name}: {exc.explanation or exc}") from exc
        return container

    def exec(self, name: str, argv: list[str], user: str | None = None,
             environment: dict[str, str] | None = None) -> tuple[int, str]:
        result = self.container(name).exec_run(argv, user=user or "", demux=False, environment=environment)
        return result.exit_code, (result.output or b"").decode("utf-8", "replace")

    def read_file(self, name: str, path: str) -> str | None:
        try:
            stream, _ = self.container(name).get_archive(path)
        except docker.errors.NotFound:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.next()
            handle = archive.extractfile(member) if member else None
            return handle.read().decode() if handle else None

    def write_file(self, name: str, path: str, text: str) -> None:
        for directory, archive in _archives_of({path: text}):
            self.container(name).put_archive(directory, archive)

    def replace_file_by_exec(self, name: str, path: str, text: str) -> None:
        """Write `text` to `path` inside the running container with `docker exec` (works on a
        tmpfs and a read-only root alike, where put_archive does not), replaced atomically."""
        script = 'umask 022 && printf %s "$1" > "$2.new" && mv -f "$2.new" "$2"'
        code, output = self.exec(name, ["sh", "-c", script, "sh", text, path])
        if code != 0:
            raise FcgikitError(f"cannot write {path} in {name} on {self.host.name}: {output.strip()}")

    def address_on(self, name: str, network: str) -> str | None:
        """The container's IP address on `network` (None: not attached, or gone)."""
        try:
            container = self.container(name)
        except docker.errors.NotFound:
            return None
        networks = container.attrs.get("NetworkSettings", {}).get("Networks") or {}
        address = (networks.get(network) or {}).get("IPAddress")
        return address or None

    def stop_and_remove(self, name: str, timeout: int) -> None:
        try:
            container = self.container(name)
        except docker.errors.NotFound:
            return
        if container.status == "running":
            container.stop(timeout=timeout)
        container.remove(force=True, v=True)  # and its anonymous volumes (nginx's /etc/nginx)

    def logs(self, name: str, tail: int | str = "all") -> str:
        try:
            return self.container(name).logs(tail=tail).decode("utf-8", "replace")
        except docker.errors.NotFound:
            return "(container is gone)"

    def log_lines(self, name: str, label: str, request: LogRequest) -> Iterator[tuple[str, str]]:
        """(label, line) for each of the container's log lines, Docker's timestamp in front."""
        since = request.since.as_epoch(time.time()) if request.since is not None else None
        stream = self.container(name).logs(
            stream=True, follow=request.follow, timestamps=True,
            tail="all" if request.tail is None else request.tail, since=since,
        )
        pending = b""
        for chunk in stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield label, line.decode("utf-8", "replace")
        if pending:
            yield label, pending.decode("utf-8", "replace")

    def published_port(self, name: str, port: int) -> int | None:
        container = self.container(name)
        container.reload()
        bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
        return int(bindings[0]["HostPort"]) if bindings else None

    def pool_status(self, name: str) -> dict | None:
        """The manager's status report (JSON), or None when there is none (yet)."""
        code, output = self.exec(name, commands.read_status_command())
        if code != 0:
            return None
        try:
            return json.loads(output)
        except ValueError:
            return None

    def nginx_workers(self, name: str) -> set[int]:
        """PIDs of the nginx worker processes (children of the master) in the container."""
        code, output = self.exec(name, ["sh", "-c", f"cat {NGINX_PID_PATH}; cat /proc/[0-9]*/stat 2>/dev/null"])
        return nginx_worker_pids(output) if code == 0 else set()

    def wait_reloaded(self, name: str, old_workers: set[int], timeout: float) -> bool:
        """Until nginx runs new workers and every old one has finished its requests and exited.

        `nginx -s reload` only signals the master; until the old workers are gone they
        may still send requests to the previous upstreams.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.nginx_workers(name)
            if current and not current & old_workers:
                return True
            time.sleep(0.2)
        return False

    # --- waiting ---------------------------------------------------------------------------

    def wait_answering(self, name: str, timeout: float = 60.0, interval: float = 0.5) -> None:
        """Until the container's own listener answers a real FastCGI request (probe).

        Gives up early when the container exits; either way the error carries its logs.
        """
        deadline = time.monotonic() + timeout
        last = "no probe ran yet"
        while time.monotonic() < deadline:
            container = self.container(name)
            if container.status not in ("created", "running"):  # exited, or restarting after exiting
                raise self._failure(name, f"exited ({_exit_description(container)}) before it answered")
            try:
                code, output = self.exec(name, commands.probe_command())
            except docker.errors.APIError as exc:  # e.g. the container stopped between the calls
                code, output = 1, str(exc)
            if code == 0:
                return
            last = output.strip() or f"probe exited {code}"
            time.sleep(interval)
        raise self._failure(
            name, f"did not answer a FastCGI request within {timeout:.0f}s (last probe: {last}); "
            "hint: is the app importable and listening on 0.0.0.0:9000?"
        )

    def _failure(self, name: str, what: str) -> ContainerFailed:
        logs = self.logs(name, tail=LOG_TAIL).rstrip() or "(no output)"
        return ContainerFailed(f"{name} on {self.host.name} {what}\n"
                               f"--- last {LOG_TAIL} log lines of {name} ---\n{logs}")


def describe_container(container: Container) -> RunningContainer:
    attrs = container.attrs
    state = attrs.get("State", {})
    ports = {}
    for key, bindings in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        if bindings:
            ports[int(key.split("/")[0])] = int(bindings[0]["HostPort"])
    networks = attrs.get("NetworkSettings", {}).get("Networks") or {}
    return RunningContainer.from_labels(
        container.id,
        container.name,
        container.labels,
        addresses={net: ip for net, settings in networks.items() if (ip := (settings or {}).get("IPAddress"))},
        image=attrs.get("Config", {}).get("Image", ""),
        state=state.get("Status", "unknown"),
        health=(state.get("Health") or {}).get("Status", ""),
        published=ports,
        created=docker_time(attrs.get("Created", "")),
    )


def docker_time(text: str) -> float:
    """Docker's RFC 3339 times (nanoseconds, `Z`) as epoch seconds; 0.0 when there is none."""
    found = _RFC3339.match(text or "")
    if not found or text.startswith("0001-"):
        return 0.0
    seconds, fraction, zone = found.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    return datetime.fromisoformat(seconds + zone).timestamp() + float("0." + (fraction or "0"))


def nginx_worker_pids(text: str) -> set[int]:
    """From `cat NGINX_PID_PATH; cat /proc/*/stat`: the processes whose parent is the master."""
    lines = text.splitlines()
    if not lines or not lines[0].strip().isdigit():
        return set()
    master = int(lines[0])
    workers = set()
    for line in lines[1:]:
        pid, _, rest = line.partition(" (")
        command, _, fields = rest.rpartition(") ")  # the command name may hold spaces or parentheses
        parts = fields.split()
        if pid.isdigit() and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) == master and command == "nginx":
            workers.add(int(pid))
    return workers


def read_nginx_conf(engine: Engine, name: str) -> str | None:
    return engine.read_file(name, NGINX_CONF_PATH)


def read_backends(engine: Engine, name: str) -> str | None:
    """The backends list in the running nginx (read with exec: it lives on a tmpfs, which
    `docker cp` does not see)."""
    try:
        code, output = engine.exec(name, ["cat", BACKENDS_PATH])
    except docker.errors.APIError:
        return None
    return output if code == 0 else None


def _exit_description(container: Container) -> str:
    state = container.attrs.get("State", {})
    return f"status {container.status}, exit code {state.get('ExitCode')}"


def _archives_of(files: dict[str, str]) -> list[tuple[str, bytes]]:
    """(directory, tar of its files) for each directory: Docker extracts into the directory
    given, which must be writable (a volume: the root filesystem may be read-only)."""
    by_directory: dict[str, dict[str, str]] = {}
    for path, text in files.items():
        directory, _, name = path.rpartition("/")
        by_directory.setdefault(directory or "/", {})[name] = text
    return [(directory, _tar_of(named)) for directory, named in sorted(by_directory.items())]


def _tar_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
