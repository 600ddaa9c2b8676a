"""The plain data planning works on: containers wanted, containers found, labels.

Everything fcgikit starts carries the labels below and is found again by them,
never by its name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

LABEL_PROJECT = "fcgikit.project"
LABEL_SERVICE = "fcgikit.service"
LABEL_HOST = "fcgikit.host"
LABEL_SLOT = "fcgikit.slot"
LABEL_CONFIG = "fcgikit.config"  # hash of everything that defines the container (image, command, env, ports)
LABEL_STOP_TIMEOUT = "fcgikit.stop-timeout"  # seconds a drain may take, for whoever stops it later
LABEL_SECRETS = "fcgikit.secrets"  # the names of the secrets delivered into it (never values)
LABEL_APP = "fcgikit.app"  # the WSGI app workers serve, as --app names it (DIR:MODULE:APP): `scale` keeps it

# In the container images:
STATUS_FILE = "/tmp/fcgikit-status.json"
NGINX_CONF_PATH = "/etc/nginx/nginx.conf"
NGINX_PID_PATH = "/run/nginx/nginx.pid"  # nginx runs as www-data: its own directory, a tmpfs


def network_name(project: str) -> str:
    return f"fcgikit-{project}"


def container_name(project: str, service: str, slot: int) -> str:
    return f"{project}-{service}-{slot}"


# Every container runs with no capabilities (but what `cap_add` gives back) and cannot gain
# privileges (no-new-privileges: setuid binaries do not raise them).
CAP_DROP = ("ALL",)
SECURITY_OPT = ("no-new-privileges",)


@dataclass(frozen=True)
class Confinement:
    """What a container may do and use, beyond its command."""

    read_only: bool = True  # read-only root filesystem
    tmpfs: tuple[tuple[str, str], ...] = ()  # (path, mount options): where its processes write
    volumes: tuple[str, ...] = ()  # anonymous volumes (container paths): files fcgikit writes in with `docker cp`
    cap_add: tuple[str, ...] = ()
    memory: str = "0"  # Docker's size syntax; "0": no limit
    pids: int = 0  # 0: no limit

    def definition(self) -> list:
        return [self.read_only, [list(t) for t in self.tmpfs], list(self.volumes), list(self.cap_add),
                self.memory, self.pids]


@dataclass(frozen=True)
class ContainerSpec:
    """A container as it should run: everything needed to create it."""

    project: str
    service: str
    host: str
    slot: int
    image: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[int, int], ...] = ()  # (container port, host port; 0 = any free one)
    stop_timeout: int = 10
    bind_address: str = ""  # publish `ports` on this host address only ("" = every address)
    confinement: Confinement = field(default_factory=lambda: Confinement())
    # (secret name, environment variable or ""): delivered into /run/secrets after the start
    secrets: tuple[tuple[str, str], ...] = ()
    app: str = ""  # workers: the app served (a label, not part of the definition's hash: the image and command are)

    @property
    def name(self) -> str:
        return container_name(self.project, self.service, self.slot)

    @property
    def config_hash(self) -> str:
        """Identifies the definition, not the instance: same hash, same container behaviour."""
        definition = [self.service, self.host, self.image, self.command, self.env, self.ports]
        if self.bind_address:  # only when set, so single-host hashes stay what they were
            definition.append(self.bind_address)
        definition.append(self.confinement.definition())  # a changed limit replaces the container
        if self.secrets:  # the names only: a changed value is found by comparing inside (secrets.py)
            definition.append([list(m) for m in self.secrets])
        return hashlib.sha256(json.dumps(definition).encode()).hexdigest()[:16]

    @property
    def labels(self) -> dict[str, str]:
        labels = {
            LABEL_PROJECT: self.project,
            LABEL_SERVICE: self.service,
            LABEL_HOST: self.host,
            LABEL_SLOT: str(self.slot),
            LABEL_CONFIG: self.config_hash,
            LABEL_STOP_TIMEOUT: str(self.stop_timeout),
            **({LABEL_SECRETS: ",".join(f"{n}={v}" if v else n for n, v in self.secrets)} if self.secrets else {}),
        }
        if self.app:
            labels[LABEL_APP] = self.app
        return labels


@dataclass(frozen=True)
class RunningContainer:
    """A container found on a host by its project label (running or not)."""

    id: str
    name: str
    service: str
    host: str
    slot: int
    image: str
    config_hash: str
    state: str = "running"  # Docker's State.Status: created, running, exited, ...
    health: str = ""  # Docker's health status when the image has a HEALTHCHECK
    published: dict[int, int] = field(default_factory=dict)  # container port -> host port
    stop_timeout: int = 10
    created: float = 0.0  # when the engine created it (epoch seconds; 0 = not known)
    secrets: tuple[tuple[str, str], ...] = ()  # delivered into it (from its label)
    secrets_current: bool = True  # its delivered secrets are the values read now (and are there)
    # nginx only: delivered, but other values than those read now (a renewed certificate):
    # written in again and nginx reloaded, not replaced
    secrets_renewed: bool = False
    app: str = ""  # workers: the app they serve (LABEL_APP)
    addresses: dict[str, str] = field(default_factory=dict)  # network name -> its IP there, now

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_labels(cls, id: str, name: str, labels: dict[str, str], **observed) -> RunningContainer:
        secrets = (item.partition("=") for item in labels.get(LABEL_SECRETS, "").split(",") if item)
        return cls(
            id=id,
            name=name,
            service=labels.get(LABEL_SERVICE, ""),
            host=labels.get(LABEL_HOST, ""),
            slot=int(labels.get(LABEL_SLOT, "0") or 0),
            image=observed.pop("image", ""),
            config_hash=labels.get(LABEL_CONFIG, ""),
            stop_timeout=int(labels.get(LABEL_STOP_TIMEOUT, "10") or 10),
            secrets=tuple((name, variable) for name, _, variable in secrets),
            app=labels.get(LABEL_APP, ""),
            **observed,
        )
