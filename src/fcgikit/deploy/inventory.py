"""The inventory, `hosts.yaml`: which hosts a stack runs on, how to reach them, what they do.

    ssh:                         # defaults for every host
      user: deploy
      key: ~/.ssh/id_ed25519
      known_hosts: ~/.ssh/known_hosts
    hosts:
      - name: edge1
        address: 10.0.0.10       # the host's private address: workers listen only there
        roles: [edge]
      - name: app1
        address: 10.0.0.11
        port: 2222               # per-host overrides of user, port, key
        roles: [workers, cgi]

Validated like the stack file (unknown keys rejected, every error with its path).
The first edge host is the primary one: the deploy lock lives there.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ConfigError, load_config_file

Role = Literal["edge", "workers", "cgi"]
HOST_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
# A DNS name or an IP address; resolution is left to SSH.
HOST_ADDRESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")
SSH_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshSettings(_Strict):
    user: str = Field("root", pattern=SSH_USER.pattern, json_schema_extra={"expected": "a login name"})
    port: int = Field(22, ge=1, le=65535)
    key: Path | None = Field(None, description="private key file; default: the SSH agent and ~/.ssh keys")
    known_hosts: Path = Field(Path("~/.ssh/known_hosts"), description="where host keys are checked")
    connect_timeout: int = Field(10, ge=1, le=300, description="seconds to wait for a host to answer")


class HostEntry(_Strict):
    name: str = Field(json_schema_extra={"expected": "a name of lowercase letters, digits, - and _ (at most 40)"})
    address: str = Field(json_schema_extra={"expected": "an IP address or a DNS name"})
    roles: list[Role] = Field(min_length=1)
    user: str | None = Field(None, pattern=SSH_USER.pattern, json_schema_extra={"expected": "a login name"})
    port: int | None = Field(None, ge=1, le=65535)
    key: Path | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not HOST_NAME.match(value):
            raise ValueError(f'expected lowercase letters, digits, "-" and "_" (at most 40), got "{value}"')
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if _is_ip(value) or HOST_ADDRESS.match(value):
            return value
        raise ValueError(f'expected an IP address or a DNS name, got "{value}"')

    @field_validator("roles")
    @classmethod
    def _roles_once(cls, value: list[str]) -> list[str]:
        repeated = sorted({role for role in value if value.count(role) > 1})
        if repeated:
            raise ValueError(f"role {', '.join(repeated)} listed more than once")
        return value


class Inventory(_Strict):
    ssh: SshSettings = SshSettings()
    hosts: list[HostEntry] = Field(min_length=1)

    @field_validator("hosts")
    @classmethod
    def _hosts_fit_together(cls, hosts: list[HostEntry]) -> list[HostEntry]:
        problems = _duplicates(hosts, lambda h: h.name, "name") + _duplicates(
            hosts, lambda h: (h.address, h.port), "address"
        )
        for role in ("edge", "workers"):
            if not any(role in host.roles for host in hosts):
                problems.append(f'no host has the role "{role}"; at least one must')
        edges = [index for index, host in enumerate(hosts) if "edge" in host.roles]
        shared = [index for index in edges if {"workers", "cgi"} & set(hosts[index].roles)]
        if len(edges) > 1 and shared:
            problems.append(
                f"hosts/{shared[0]} runs workers or cgi beside an edge, which works only with a single edge "
                "host (other edges could not reach them); give the edges hosts of their own"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return hosts

    @property
    def primary(self) -> HostEntry:
        """The host that holds the deploy lock: the first edge host."""
        return next(host for host in self.hosts if "edge" in host.roles)

    def with_role(self, role: str) -> list[HostEntry]:
        return [host for host in self.hosts if role in host.roles]

    def host(self, name: str) -> HostEntry:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def target(self, name: str) -> SshTarget:
        """How to reach one host: its own settings over the inventory's defaults."""
        host = self.host(name)
        return SshTarget(
            name=host.name,
            address=host.address,
            user=host.user or self.ssh.user,
            port=host.port or self.ssh.port,
            key=host.key or self.ssh.key,
            known_hosts=self.ssh.known_hosts,
            connect_timeout=self.ssh.connect_timeout,
        )

    def targets(self) -> list[SshTarget]:
        return [self.target(host.name) for host in self.hosts]


@dataclass(frozen=True)
class SshTarget:
    """Everything needed to open an SSH connection to one host."""

    name: str
    address: str
    user: str
    port: int
    key: Path | None
    known_hosts: Path
    connect_timeout: int = 10

    def __str__(self) -> str:
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.name} ({self.user}@{self.address}{port})"


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate; resolve `~` and paths relative to the file; the key files must exist."""
    path = Path(path)
    inventory: Inventory = load_config_file(path, Inventory)
    inventory = resolve_paths(inventory, path.resolve().parent)
    problems = missing_key_files(inventory)
    if problems:
        raise ConfigError(str(path), problems)
    return inventory


def resolve_paths(inventory: Inventory, base: Path) -> Inventory:
    def resolve(value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        return value if value.is_absolute() else (base / value).resolve()

    ssh = inventory.ssh.model_copy(
        update={"key": resolve(inventory.ssh.key), "known_hosts": resolve(inventory.ssh.known_hosts)}
    )
    hosts = [host.model_copy(update={"key": resolve(host.key)}) for host in inventory.hosts]
    return inventory.model_copy(update={"ssh": ssh, "hosts": hosts})


def missing_key_files(inventory: Inventory) -> list[str]:
    problems = []
    if inventory.ssh.key is not None and not inventory.ssh.key.is_file():
        problems.append(f"ssh/key: no such file: {inventory.ssh.key}")
    for index, host in enumerate(inventory.hosts):
        if host.key is not None and not host.key.is_file():
            problems.append(f"hosts/{index}/key: no such file: {host.key}")
    return problems


def _duplicates(hosts: list[HostEntry], key, what: str) -> list[str]:
    seen: dict[object, int] = {}
    problems = []
    for index, host in enumerate(hosts):
        value = key(host)
        if value in seen:
            shown = getattr(host, what)
            problems.append(f'{what} "{shown}" is used twice (hosts/{seen[value]} and hosts/{index})')
        else:
            seen[value] = index
    return problems


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False
