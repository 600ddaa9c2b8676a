"""Reaching hosts over SSH: fabric connections, a Docker client per host, work in parallel.

Host keys are checked strictly against the inventory's known_hosts file: an unknown
host is refused unless the user opts in with `--accept-new-host-keys` (OpenSSH's
`StrictHostKeyChecking=accept-new`: a new key is recorded, a changed key is still refused).

Each host's Docker engine is driven through the same SSH connection: a private Unix
socket on this machine whose every connection becomes an SSH channel running
`docker system dial-stdio` on the host (what `docker -H ssh://` does), so the Docker SDK
talks to the remote engine as if it were local.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import fabric
import paramiko
from docker.transport import UnixHTTPAdapter

from .errors import FcgikitError
from .inventory import SshTarget

DOCKER_DIAL = "docker system dial-stdio"
KEEPALIVE_SECONDS = 5
# sshd allows 10 sessions per connection (MaxSessions). The Docker tunnel uses at most 6
# at once and the SDK keeps at most 2 idle, leaving room for commands and image streams.
TUNNEL_CHANNELS = 6
DOCKER_POOL_SIZE = 2
_known_hosts_lock = threading.Lock()


class HostUnreachable(FcgikitError):
    """A host could not be reached or refused us; the message says which and why."""


class HostKeyRejected(HostUnreachable):
    """The host answered with a key that is not the one in known_hosts (changed), or with one
    known_hosts does not hold (unknown). Not an outage: who answers cannot be verified, so
    operations that change hosts refuse to run instead of leaving the host out."""


# -- host keys ---------------------------------------------------------------------


class AcceptNewHostKey(paramiko.MissingHostKeyPolicy):
    """Record an unknown host's key in known_hosts and go on (changed keys are still refused)."""

    def __init__(self, known_hosts: Path):
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        # Appended under a lock: hosts connect in parallel and must not overwrite each other.
        with _known_hosts_lock:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            with open(self.known_hosts, "a", encoding="ascii") as file:
                file.write(known_hosts_line(hostname, key.get_name(), key.get_base64()) + "\n")
            os.chmod(self.known_hosts, 0o600)


def known_hosts_line(hostname: str, key_type: str, key_base64: str) -> str:
    return f"{hostname} {key_type} {key_base64}"


def host_key_policy(target: SshTarget, accept_new: bool) -> paramiko.MissingHostKeyPolicy:
    return AcceptNewHostKey(target.known_hosts) if accept_new else paramiko.RejectPolicy()


# -- connections -------------------------------------------------------------------


def connect_kwargs(target: SshTarget) -> dict[str, Any]:
    """paramiko's connect() arguments: with a key in the inventory, that key and nothing else."""
    if target.key is None:
        return {}
    return {"key_filename": str(target.key), "look_for_keys": False, "allow_agent": False}


def open_connection(target: SshTarget, *, accept_new_host_keys: bool = False) -> fabric.Connection:
    connection = fabric.Connection(
        host=target.address,
        user=target.user,
        port=target.port,
        connect_timeout=target.connect_timeout,
        connect_kwargs=connect_kwargs(target),
    )
    # fabric accepts any host key by default; we do not.
    if target.known_hosts.is_file():
        connection.client.load_host_keys(str(target.known_hosts))
    connection.client.set_missing_host_key_policy(host_key_policy(target, accept_new_host_keys))
    try:
        connection.open()
    except (paramiko.SSHException, OSError) as exc:
        raise connection_failure(target, exc) from exc
    connection.transport.set_keepalive(KEEPALIVE_SECONDS)
    return connection


def connection_failure(target: SshTarget, exc: Exception) -> HostUnreachable:
    """What a failed connect means (pure): a host key that cannot be verified is a
    HostKeyRejected (a security failure), anything else a HostUnreachable (an outage)."""
    text = str(exc)
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyRejected(
            f"{target}: HOST KEY CHANGED (not the one in {target.known_hosts}); "
            "if the host was rebuilt, remove its old line there"
        )
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in text:
        return HostKeyRejected(
            f"{target}: unknown host key (not in {target.known_hosts}); verify it and add it, "
            "or pass --accept-new-host-keys to record it"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return HostUnreachable(f"{target}: authentication failed ({text})")
    if isinstance(exc, paramiko.SSHException):
        return HostUnreachable(f"{target}: SSH failed: {text}")
    return HostUnreachable(f"{target}: cannot connect: {getattr(exc, 'strerror', None) or exc}")


class DockerTunnel:
    """A local Unix socket that forwards each connection to the host's Docker engine."""

    def __init__(self, transport: paramiko.Transport, name: str):
        self.transport = transport
        self.directory = tempfile.mkdtemp(prefix=f"fcgikit-{name}-")  # mode 0700: ours alone
        self.path = os.path.join(self.directory, "docker.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.closed = False
        self.channels = threading.BoundedSemaphore(TUNNEL_CHANNELS)
        threading.Thread(target=self._accept_loop, name=f"docker-tunnel-{name}", daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"unix://{self.path}"

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                local, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(local,), daemon=True).start()

    def _forward(self, local: socket.socket) -> None:
        # A connection beyond the limit waits here (the SDK's request waits with it).
        with self.channels:
            self._forward_over_channel(local)

    def _forward_over_channel(self, local: socket.socket) -> None:
        try:
            channel = self.transport.open_session(timeout=10)
            channel.exec_command(DOCKER_DIAL)
        except (paramiko.SSHException, OSError, EOFError):
            local.close()  # the SDK sees a closed connection and raises
            return
        # When either side is done the exchange is over (the SDK closes a connection it
        # will not reuse; the engine closes one it has finished with): close both ends
        # at once, which also ends the other pump and frees the SSH session.
        finished = threading.Event()
        for read, write in ((local.recv, channel.sendall), (channel.recv, local.sendall)):
            threading.Thread(target=_pump, args=(read, write, finished.set), daemon=True).start()
        finished.wait()
        try:
            channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the SSH connection itself went away (host down, fleet closing): nothing to close
        _close(local)


def _pump(read: Callable[[int], bytes], write: Callable[[bytes], Any], done: Callable[[], Any]) -> None:
    try:
        while data := read(65536):
            write(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        try:
            done()
        except (OSError, EOFError, paramiko.SSHException):
            pass


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class _OnePoolAdapter(UnixHTTPAdapter):
    """The SDK's adapter keeps a connection pool per URL (so per image ID inspected, per
    container...), each holding an idle connection: over SSH, every one of them holds a
    session, and sshd allows ten. One pool for the whole engine keeps a few."""

    def get_connection(self, url, proxies=None):
        return super().get_connection("http+docker://localhost", proxies)


def docker_client_over(tunnel: DockerTunnel, timeout: int) -> docker.DockerClient:
    client = docker.DockerClient(base_url=tunnel.base_url, timeout=timeout)
    client.api.adapters["http+docker://"].close()  # the one the API version was asked on
    adapter = _OnePoolAdapter(f"http+unix://{tunnel.path}", timeout, max_pool_size=DOCKER_POOL_SIZE)
    client.api.mount("http+docker://", adapter)
    client.api._custom_adapter = adapter
    return client


class HostSession:
    """One host reached over SSH: commands through fabric, containers through the Docker SDK."""

    def __init__(self, target: SshTarget, connection: fabric.Connection):
        self.target = target
        self.connection = connection
        self._tunnel: DockerTunnel | None = None
        self._docker: docker.DockerClient | None = None

    @classmethod
    def open(cls, target: SshTarget, *, accept_new_host_keys: bool = False) -> HostSession:
        return cls(target, open_connection(target, accept_new_host_keys=accept_new_host_keys))

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def transport(self) -> paramiko.Transport:
        return self.connection.transport

    def tunnel(self) -> DockerTunnel:
        """The local socket forwarding to this host's engine (DOCKER_HOST for the docker CLI)."""
        if self._tunnel is None:
            self._tunnel = DockerTunnel(self.transport, self.name)
        return self._tunnel

    def docker(self, timeout: int = 60) -> docker.DockerClient:
        if self._docker is None:
            self._docker = docker_client_over(self.tunnel(), timeout)
        return self._docker

    def run(self, command: str, *, timeout: float | None = 60) -> fabric.Result:
        """A command on the host; raises HostUnreachable when it fails, with its output."""
        result = self.connection.run(command, hide=True, warn=True, timeout=timeout, in_stream=False)
        if not result.ok:
            raise HostUnreachable(
                f"{self.target}: `{command}` exited {result.exited}: {(result.stderr or result.stdout).strip()}"
            )
        return result

    def close(self) -> None:
        if self._docker is not None:
            self._docker.close()
        if self._tunnel is not None:
            self._tunnel.close()
        self.connection.close()


# -- many hosts at once --------------------------------------------------------------


@dataclass(frozen=True)
class HostOutcome:
    """What happened on one host: a value, or the error that stopped it."""

    host: str
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class HostsFailed(FcgikitError):
    """Some hosts failed; the message gives every host's outcome, not only the first error."""

    def __init__(self, action: str, outcomes: list[HostOutcome]):
        self.action = action
        self.outcomes = outcomes
        super().__init__(format_outcomes(action, outcomes))


def format_outcomes(action: str, outcomes: list[HostOutcome]) -> str:
    failed = [outcome for outcome in outcomes if not outcome.ok]
    lines = [f"{action}: {len(failed)} of {len(outcomes)} host(s) failed"]
    for outcome in outcomes:
        lines.append(f"  {outcome.host}: " + ("ok" if outcome.ok else _one_line(outcome.error)))
    return "\n".join(lines)


def _one_line(error: BaseException | None) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0] if isinstance(error, HostUnreachable) else " ".join(text.split())


def on_each_host(names: Iterable[str], work: Callable[[str], Any], *, max_parallel: int = 8) -> list[HostOutcome]:
    """Run `work(name)` for every host at once; every host's outcome, in the order given."""
    names = list(names)
    if not names:
        return []

    def attempt(name: str) -> HostOutcome:
        try:
            return HostOutcome(name, value=work(name))
        except Exception as exc:  # reported per host; the caller decides what a failure means
            return HostOutcome(name, error=exc)

    with ThreadPoolExecutor(max_workers=min(max_parallel, len(names))) as pool:
        return list(pool.map(attempt, names))


def require_all(action: str, outcomes: list[HostOutcome]) -> dict[str, Any]:
    """The values by host, or HostsFailed naming every host's outcome."""
    if any(not outcome.ok for outcome in outcomes):
        raise HostsFailed(action, outcomes)
    return {outcome.host: outcome.value for outcome in outcomes}


class Fleet:
    """Sessions to the inventory's hosts, opened in parallel and kept for one command."""

    def __init__(self, targets: list[SshTarget], *, accept_new_host_keys: bool = False):
        self.targets = {target.name: target for target in targets}
        self.accept_new_host_keys = accept_new_host_keys
        self.sessions: dict[str, HostSession] = {}
        self.unreachable: dict[str, BaseException] = {}
        self.connect_outcomes: list[HostOutcome] = []

    def connect(self) -> list[HostOutcome]:
        """Open every host; those that fail are remembered as unreachable, not raised."""
        outcomes = self.connect_outcomes = on_each_host(self.targets, self._open)
        for outcome in outcomes:
            if outcome.error is None:
                self.sessions[outcome.host] = outcome.value
            else:
                self.unreachable[outcome.host] = outcome.error
        return outcomes

    def _open(self, name: str) -> HostSession:
        return HostSession.open(self.targets[name], accept_new_host_keys=self.accept_new_host_keys)

    @property
    def key_rejected(self) -> dict[str, HostKeyRejected]:
        """The hosts refused because their key could not be verified (changed or unknown)."""
        return {name: error for name, error in self.unreachable.items() if isinstance(error, HostKeyRejected)}

    def session(self, name: str) -> HostSession:
        if name not in self.sessions:
            raise HostUnreachable(str(self.unreachable.get(name, f"{name}: not connected")))
        return self.sessions[name]

    def close(self) -> None:
        for session in self.sessions.values():
            try:
                session.close()
            except Exception:  # closing a dead host's connection must not hide the real outcome
                pass
        self.sessions.clear()

    def __enter__(self) -> Fleet:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
