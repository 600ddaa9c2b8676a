"""Command lines and container definitions built from the spec (pure, no Docker).

Like Kamal's command builders: they only build, so what would run can be printed
(`--dry-run`) and asserted exactly in unit tests.
"""

from __future__ import annotations

from dataclasses import replace

from . import secrets as sec
from .model import STATUS_FILE, Confinement, ContainerSpec
from .spec import (
    APP_DIR,
    FASTCGI_PORT,
    NGINX_PORT,
    NGINX_TLS_PORT,
    CgiService,
    ContainerSettings,
    NginxService,
    WorkersService,
)
from .tls import TLS_MOUNTS

# Where the images keep things (see images/fcgi-worker/Dockerfile).
CGI_DIR = "/srv/cgi-bin"
# Past the request timeout the manager kills a stuck child; give the drain that long and a bit.
DRAIN_MARGIN = 5
# nginx answers 504 when a worker has been silent for the request timeout; the manager kills
# the process stuck in that request this many seconds later, once nginx has given up on it
# (a kill first would end the request as nginx's 502, "upstream prematurely closed").
KILL_MARGIN = 2


def pool_flags(processes: int, timeout: int, max_requests: int = 0, kill_margin: int = 0) -> list[str]:
    """The spawn-fcgi style flags every manager (serve, spawn, cgi) shares.

    -n: the manager is the container's main process, so it must not daemonize.
    A draining child gets as long as a request may take; a busy one is killed as
    stuck `kill_margin` seconds after that.
    """
    flags = ["-n", "-a", "0.0.0.0", "-p", str(FASTCGI_PORT), "-F", str(processes),
             "--timeout", str(timeout + kill_margin), "--graceful-timeout", str(timeout)]
    if max_requests:
        flags += ["--max-requests", str(max_requests)]
    return flags + ["--status-file", STATUS_FILE]


def worker_command(workers: WorkersService) -> list[str]:
    flags = pool_flags(workers.processes, workers.timeout, workers.max_requests, kill_margin=KILL_MARGIN)
    if workers.program:
        return ["python3", "-m", "fcgikit.spawn", *flags, "--", *workers.program]
    assert workers.app is not None  # WorkersService has exactly one of app and program
    return ["python3", "-m", "fcgikit.serve", *flags, workers.app]


def cgi_command(cgi: CgiService, fallback_app: str | None = None) -> list[str]:
    """The CGI gateway; with `fallback_app` (workers.fallback: cgi) it also runs that WSGI
    app, from the image's app directory, once for each request nginx marks FCGIKIT_FALLBACK."""
    command = ["python3", "-m", "fcgikit.cgi", *pool_flags(cgi.processes, cgi.timeout), "--root", CGI_DIR]
    if fallback_app:
        command += ["--wsgi-fallback", fallback_app, "--wsgi-fallback-dir", APP_DIR]
    return command


def nginx_command() -> list[str]:
    return ["nginx", "-g", "daemon off;"]


def probe_command(uri: str = "/") -> list[str]:
    """Run inside a worker container: one real FastCGI request to its own listener."""
    return ["python3", "-m", "fcgikit.probe", f"127.0.0.1:{FASTCGI_PORT}", "--uri", uri, "--timeout", "3"]


def nginx_reload_commands() -> list[list[str]]:
    # Test first: a config nginx refuses must fail loudly here, not leave the old one silently.
    return [["nginx", "-t", "-q"], ["nginx", "-s", "reload"]]


def read_status_command() -> list[str]:
    return ["cat", STATUS_FILE]


# Where each container's processes write; everything else is read-only (`read_only: true`).
# The workers' and the gateway's /tmp: the status file, spooled request bodies, CGI scripts'
# temporary files. nginx (www-data, uid 33 in Debian): its pid, temporary files, and
# /run/fcgikit (written into with `docker exec`, as www-data).
WORKER_TMPFS = (("/tmp", ""),)
NGINX_TMPFS = tuple((path, "uid=33,gid=33") for path in ("/run/nginx", "/run/fcgikit", "/var/lib/nginx"))
# nginx.conf is written in before nginx starts and on every reload (`docker cp`), which a
# read-only root filesystem refuses: /etc/nginx is an anonymous volume (the image's files
# copied in, removed with the container). Only root may write it; nginx runs as www-data.
NGINX_VOLUMES = ("/etc/nginx",)


def confinement(
    settings: ContainerSettings, tmpfs: tuple[tuple[str, str], ...], volumes: tuple[str, ...] = ()
) -> Confinement:
    return Confinement(read_only=settings.read_only, tmpfs=tmpfs, volumes=volumes, cap_add=tuple(settings.cap_add),
                       memory=settings.memory, pids=settings.pids)


WORKER_UID = 10001  # the image's `fcgikit` user
NGINX_UID = 33  # www-data


def with_secrets(container: ContainerSpec, mounts: tuple[sec.Mount, ...], uid: int) -> ContainerSpec:
    """The container waiting for its secrets (see secrets.py): the tmpfs, the wrapped command."""
    if not mounts:
        return container
    confinement = Confinement(**{**container.confinement.__dict__,
                                 "tmpfs": container.confinement.tmpfs + (sec.tmpfs(uid),)})
    return replace(container, command=sec.wrap_command(container.command), confinement=confinement, secrets=mounts)


def worker_container(project: str, host: str, slot: int, image: str, workers: WorkersService,
                     secrets: tuple[sec.Mount, ...] = ()) -> ContainerSpec:
    return with_secrets(ContainerSpec(
        project=project,
        service="workers",
        host=host,
        slot=slot,
        image=image,
        command=tuple(worker_command(workers)),
        env=tuple(sorted(workers.env.items())),
        stop_timeout=workers.timeout + DRAIN_MARGIN,
        confinement=confinement(workers.container, WORKER_TMPFS),
        app=app_label(workers),
    ), secrets, WORKER_UID)


def app_label(workers: WorkersService) -> str:
    """The app the workers serve, as `--app` takes it: DIR:MODULE:APP, or MODULE:APP from the
    example apps; nothing for a FastCGI program."""
    if workers.app is None:
        return ""
    return f"{workers.path}:{workers.app}" if workers.path is not None else workers.app


def cgi_container(project: str, host: str, slot: int, image: str, cgi: CgiService,
                  secrets: tuple[sec.Mount, ...] = (), fallback_app: str | None = None) -> ContainerSpec:
    return with_secrets(ContainerSpec(
        project=project,
        service="cgi",
        host=host,
        slot=slot,
        image=image,
        command=tuple(cgi_command(cgi, fallback_app)),
        env=tuple(sorted(cgi.env.items())),
        stop_timeout=cgi.timeout + DRAIN_MARGIN,
        confinement=confinement(cgi.container, WORKER_TMPFS),
    ), secrets, WORKER_UID)


def nginx_container(project: str, host: str, slot: int, image: str, nginx: NginxService) -> ContainerSpec:
    """With `tls`: HTTPS on NGINX_TLS_PORT too, the certificate and key delivered like secrets."""
    tls_port = ((NGINX_TLS_PORT, nginx.tls.port),) if nginx.tls is not None else ()
    return with_secrets(ContainerSpec(
        project=project,
        service="nginx",
        host=host,
        slot=slot,
        image=image,
        command=tuple(nginx_command()),
        ports=((NGINX_PORT, nginx.port),) + tls_port,
        stop_timeout=10,
        confinement=confinement(nginx.container, NGINX_TMPFS, NGINX_VOLUMES),
    ), TLS_MOUNTS if nginx.tls is not None else (), NGINX_UID)
