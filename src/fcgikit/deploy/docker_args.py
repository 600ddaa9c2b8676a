"""The arguments of the Docker calls a plan's steps make, built once (pure, no Docker SDK).

The engine passes them to the Docker SDK (docker_backend.Engine); a dry run renders the
very same arguments as the `docker` command line that does the same by hand. An argument
the renderer does not know is an error, so what runs and what is printed cannot drift.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .model import CAP_DROP, LABEL_HOST, LABEL_PROJECT, NGINX_CONF_PATH, SECURITY_OPT, ContainerSpec, network_name

RESTART_POLICY = "unless-stopped"  # back after a crash, a daemon restart or a reboot, until fcgikit stops it


def container_create_arguments(spec: ContainerSpec, network: str) -> dict:
    """docker SDK `containers.create(**arguments)` for `spec` on `network`."""
    return {
        "image": spec.image,
        "command": list(spec.command),
        "name": spec.name,
        "labels": spec.labels,
        "environment": dict(spec.env),
        "network": network,
        "ports": {f"{port}/tcp": _binding(spec.bind_address, host_port) for port, host_port in spec.ports},
        "restart_policy": {"Name": RESTART_POLICY},
        "detach": True,
        **confinement_arguments(spec),
    }


def confinement_arguments(spec: ContainerSpec) -> dict:
    """The create() arguments that confine a container (see model.Confinement)."""
    c = spec.confinement
    return {
        "read_only": c.read_only,
        "tmpfs": {path: options for path, options in c.tmpfs} or None,
        # docker.types.Mount(target=path, source=None, type="volume"), as the plain dict it is
        "mounts": [{"Target": path, "Source": None, "Type": "volume", "ReadOnly": False} for path in c.volumes] or None,
        "cap_drop": list(CAP_DROP),
        "cap_add": list(c.cap_add) or None,
        "security_opt": list(SECURITY_OPT),
        "mem_limit": c.memory if c.memory != "0" else None,
        "pids_limit": c.pids or None,
    }


def container_files(nginx_conf: str | None) -> dict[str, str]:
    """Files written into a container after it is created, before it starts."""
    return {NGINX_CONF_PATH: nginx_conf} if nginx_conf is not None else {}


def network_create_arguments(project: str, host: str) -> dict:
    """docker SDK `networks.create(**arguments)`: the project's network on one host."""
    return {"name": network_name(project), "driver": "bridge", "labels": {LABEL_PROJECT: project, LABEL_HOST: host}}


def _binding(address: str, host_port: int):
    return (address, host_port or None) if address else (host_port or None)


# --- rendered as docker command lines -------------------------------------------------------

# The options one create() argument renders to; its value's type depends on the argument.
_Render = Callable[[Any], list[str]]


def _each(flag: str, render: Callable[[Any], str] = str) -> Callable[[Iterable | None], list[str]]:
    return lambda values: [f"{flag} {shlex.quote(render(value))}" for value in values or ()]


def _pairs(flag: str) -> Callable[[Mapping | None], list[str]]:
    return lambda mapping: [f"{flag} {shlex.quote(f'{key}={value}')}" for key, value in (mapping or {}).items()]


def _ports(ports: Mapping | None) -> list[str]:
    options = []
    for port, binding in (ports or {}).items():
        address, host_port = binding if isinstance(binding, tuple) else ("", binding)
        published = f"{address}:{host_port or ''}" if address else str(host_port or "")
        container_port = port.removesuffix("/tcp")
        options.append(f"-p {published}:{container_port}" if published else f"-p {container_port}")
    return options


def _tmpfs(tmpfs: Mapping | None) -> list[str]:
    return [f"--tmpfs {path}:{options}" if options else f"--tmpfs {path}" for path, options in (tmpfs or {}).items()]


def _single(flag: str) -> Callable[[object], list[str]]:
    return lambda value: [f"{flag} {shlex.quote(str(value))}"] if value is not None else []


def _switch(flag: str) -> Callable[[object], list[str]]:
    return lambda value: [flag] if value else []


# Every create() argument, in the order its options are printed ("image" and "command" end the line).
_RUN_OPTIONS: dict[str, _Render] = {
    "detach": _switch("-d"),
    "name": _single("--name"),
    "network": _single("--network"),
    "restart_policy": lambda policy: [f"--restart {policy['Name']}"] if policy else [],
    "labels": _pairs("--label"),
    "environment": _pairs("-e"),
    "ports": _ports,
    "read_only": _switch("--read-only"),
    "tmpfs": _tmpfs,
    "mounts": _each("-v", lambda mount: mount["Target"]),
    "cap_drop": _each("--cap-drop"),
    "cap_add": _each("--cap-add"),
    "security_opt": _each("--security-opt"),
    "mem_limit": _single("--memory"),
    "pids_limit": _single("--pids-limit"),
}


def docker_run_line(arguments: dict, files: Mapping[str, str] | None = None) -> str:
    """`docker run -d ...` for container_create_arguments(); with files to put in before the
    start: `docker create ...`, `docker cp` each, `docker start` (as the engine does)."""
    unknown = set(arguments) - set(_RUN_OPTIONS) - {"image", "command"}
    if unknown:
        raise ValueError(f"no docker run option for {sorted(unknown)}: add it to _RUN_OPTIONS")
    options = [option for key, render in _RUN_OPTIONS.items() if key in arguments
               if not (files and key == "detach") for option in render(arguments[key])]
    image_and_command = " ".join([shlex.quote(arguments["image"]), shlex.join(arguments.get("command") or [])])
    verb = "create" if files else "run"
    line = f"docker {verb} {' '.join(options)} {image_and_command}".rstrip()
    if not files:
        return line
    name = arguments["name"]
    copies = [f"docker cp {shlex.quote(path.rsplit('/', 1)[-1])} {name}:{path}" for path in files]
    return " && ".join([line, *copies, f"docker start {name}"])


def docker_network_create_line(arguments: dict) -> str:
    unknown = set(arguments) - {"name", "driver", "labels"}
    if unknown:
        raise ValueError(f"no docker network create option for {sorted(unknown)}")
    options = [f"--driver {arguments['driver']}"] if arguments.get("driver") else []
    options += _pairs("--label")(arguments.get("labels"))
    return f"docker network create {' '.join(options)} {arguments['name']}"
