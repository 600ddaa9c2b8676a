"""The stack description, `fcgikit.yaml`: what runs, how many, with which limits.

Validated eagerly and strictly (unknown keys are errors) so that a typo is reported
before anything starts. Relative paths are resolved against the file's directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ConfigError, load_config_file

PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MODULE_APP = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
NGINX_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
# Debian package names (policy 5.6.1), optionally pinned: php-cgi, php8.2-mysql, libfoo1=1.2-3
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")
# A document root as nginx's `root` takes it unquoted (no space, ";", "{", "$", quote).
DOCUMENT_ROOT = re.compile(r"^[A-Za-z0-9_./@+-]+$")
INDEX_FILE = re.compile(r"^[A-Za-z0-9_@+-][A-Za-z0-9_.@+-]*$")
# Where the worker image keeps the app's directory (`workers.path`), see images/fcgi-worker/Dockerfile.
APP_DIR = "/srv/app"

# Every FastCGI listener in a container listens here; nginx reaches it over the project network.
FASTCGI_PORT = 9000
# nginx listens here inside its container: a port above 1024, so it runs as www-data with
# no capability at all; the host port (`services.nginx.port`) is mapped onto it.
NGINX_PORT = 8080


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Secret(_Strict):
    """A value read on the machine that runs fcgikit (never stored in the stack file) and
    delivered into the containers that name it: a file /run/secrets/NAME in a tmpfs, or also
    an environment variable of the app's processes (see docs/secrets.md)."""

    from_file: Path | None = Field(None, description="read from this file (relative: to the stack file)")
    from_env: str | None = Field(
        None, json_schema_extra={"expected": "an environment variable name such as DB_PASSWORD"},
        description="read from this environment variable of the machine running fcgikit",
    )
    deliver: Literal["file", "env"] = Field("file", description="file: /run/secrets/NAME; env: also $VARIABLE")
    variable: str | None = Field(
        None, json_schema_extra={"expected": "an environment variable name such as DB_PASSWORD"},
        description='with deliver: env, the variable\'s name (default: NAME in upper case, "-" and "." as "_")',
    )

    @field_validator("from_env", "variable")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(f'expected an environment variable name such as DB_PASSWORD, got "{value}"')
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Secret:
        if (self.from_file is None) == (self.from_env is None):
            raise ValueError('set exactly one of "from_file" (a file on this machine) or "from_env" '
                             '(an environment variable of this machine)')
        if self.variable is not None and self.deliver != "env":
            raise ValueError('"variable" names the environment variable of deliver: env; add deliver: env')
        return self

    def env_variable(self, name: str) -> str:
        """The variable the app sees with deliver: env ("" for deliver: file)."""
        if self.deliver != "env":
            return ""
        return self.variable or re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


MEMORY_SIZE = re.compile(r"^(0|[1-9][0-9]*[kKmMgG]?)$")
CAPABILITY = re.compile(r"^[A-Z][A-Z0-9_]*$")
MIN_MEMORY = 16 * 1024 * 1024


def memory_bytes(size: str) -> int:
    """ "512m" -> bytes ("0" -> 0: no limit)."""
    units = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    unit = size[-1].lower()
    return int(size[:-1]) * units[unit] if unit in units else int(size)


class ContainerSettings(_Strict):
    """How each container of a service is confined. Always: no capabilities but `cap_add`,
    no new privileges (setuid binaries gain nothing). The defaults differ per service."""

    memory: str = Field(
        "256m", pattern=MEMORY_SIZE.pattern,
        json_schema_extra={"expected": 'a size such as "256m" or "1g" (at least 16m), or "0" for no limit'},
        description="memory limit of each container (its tmpfs files count too)",
    )
    pids: int = Field(128, ge=0, le=1_000_000, description="processes and threads in each container (0: no limit)")
    read_only: bool = Field(True, description="read-only root filesystem (the tmpfs directories stay writable)")
    cap_add: list[str] = Field(
        [], json_schema_extra={"expected": "a list of capability names such as NET_BIND_SERVICE"},
        description="capabilities to give back (all are dropped)",
    )

    @field_validator("memory")
    @classmethod
    def _memory_minimum(cls, value: str) -> str:
        if value != "0" and memory_bytes(value) < MIN_MEMORY:
            raise ValueError(f'expected at least 16m (or "0" for no limit), got "{value}"')
        return value.lower()

    @field_validator("cap_add")
    @classmethod
    def _capabilities(cls, value: list[str]) -> list[str]:
        names = [name.upper().removeprefix("CAP_") for name in value]
        for given, name in zip(value, names, strict=True):
            if not CAPABILITY.match(name):
                raise ValueError(f'expected capability names such as NET_BIND_SERVICE, got "{given}"')
        return names

    def check_room_for(self, processes: int, per_process: int, where: str) -> None:
        """A pids limit leaves room for the pool (and what `docker exec` runs beside it)."""
        needed = processes * per_process + PIDS_HEADROOM
        if self.pids and self.pids < needed:
            raise ValueError(f"container/pids: {self.pids} is too few for {processes} {where}: "
                             f"expected at least {needed} (or 0 for no limit)")


PIDS_HEADROOM = 16  # the manager, the healthcheck, `docker exec` of status and probes


class NginxContainer(ContainerSettings):
    pids: int = Field(256, ge=0, le=1_000_000, description="processes and threads (0: no limit)")


class WorkersContainer(ContainerSettings):
    memory: str = Field("512m", pattern=MEMORY_SIZE.pattern,
                        json_schema_extra={"expected": 'a size such as "512m" or "1g" (at least 16m), '
                                                       'or "0" for no limit'})
    pids: int = Field(256, ge=0, le=1_000_000, description="processes and threads (0: no limit)")


class CgiContainer(ContainerSettings):
    pass  # 256m, 128 processes: a fork bomb stays inside its container


# nginx listens for HTTPS here inside its container (above 1024: no capability needed).
NGINX_TLS_PORT = 8443


class TlsSettings(_Strict):
    """HTTPS at the edge (see docs/tls.md): the user's PEM certificate and key, delivered into
    nginx like secrets, or a development certificate fcgikit makes (`self_signed`)."""

    cert: Path | None = Field(None, description="PEM certificate, the chain after it (relative: to the stack file)")
    key: Path | None = Field(None, description="PEM private key of the certificate")
    self_signed: bool = Field(False, description="development only: a certificate from a CA fcgikit makes")
    port: int = Field(443, ge=1, le=65535, description="host port nginx serves HTTPS on")
    redirect: bool = Field(True, description="HTTP answers 301 to the same URL on HTTPS")
    hsts: int = Field(0, ge=0, le=63072000,
                      description="Strict-Transport-Security max-age in seconds (0: no header); 31536000 is a year")

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsSettings:
        if self.self_signed:
            if self.cert is not None or self.key is not None:
                raise ValueError('either "cert" and "key" or "self_signed: true", not both')
        elif (self.cert is None) != (self.key is None):
            raise ValueError('set both "cert" and "key" (PEM files)')
        return self

    @property
    def complete(self) -> bool:
        """A certificate is named (or made): else only `--tls self-signed` can complete it."""
        return self.self_signed or self.cert is not None

    @property
    def files(self) -> tuple[Path, Path] | None:
        """The user's certificate and key (the validator above allows both or neither)."""
        if self.cert is None or self.key is None:
            return None
        return self.cert, self.key


# Idle upstream connections each nginx worker process keeps (`keepalive N;`, one cache per
# upstream and nginx worker, shared by every backend address the Lua balancer picks). Below
# the concurrent requests per nginx worker, nginx closes most connections after their answer
# and opens new ones, and fastcgi_keep_conn's saving is lost: at 64 client connections,
# `keepalive 64` made 1.23x-1.51x the req/s of the former default 16 (docs/bench.md).
# fcgikit.serve's workers hold any number of idle connections in one event loop (up to 256
# per process, worker/connection.py MAX_CONNS), so a larger cache costs them nothing.
DEFAULT_KEEPALIVE = 64


class NginxService(_Strict):
    port: int = Field(8080, ge=0, le=65535, description="host port; 0 picks a free one")
    client_max_body_size: str = Field(
        "1m", pattern=NGINX_SIZE.pattern, json_schema_extra={"expected": 'a size such as "1m", "512k" or "0"'}
    )
    connect_timeout: float = Field(
        0.5, ge=0.05, le=3600,
        description="seconds to connect to a worker (a private network: a backend that does not accept "
                    "within it is skipped at once and probed back in)",
    )
    keepalive: int = Field(
        DEFAULT_KEEPALIVE, ge=1, le=10000,
        description="idle FastCGI connections each nginx worker process keeps (all backends together); "
                    "at least the concurrent requests expected per nginx worker process",
    )
    tls: TlsSettings | None = Field(None, description="HTTPS: cert and key, or self_signed")
    container: NginxContainer = NginxContainer()

    @model_validator(mode="after")
    def _ports_differ(self) -> NginxService:
        if self.tls is not None and self.tls.port == self.port:
            raise ValueError(f"tls/port: {self.tls.port} is also the HTTP port; give HTTPS its own port")
        return self


class WorkersService(_Strict):
    app: str | None = Field(
        None, json_schema_extra={"expected": "MODULE:APP, e.g. hello_wsgi:app"}, description="a WSGI app"
    )
    program: list[str] | None = Field(
        None, min_length=1, description="argv of a FastCGI program to run under the manager instead of app"
    )
    path: Path | None = Field(None, description="directory holding the app's modules (default: the example apps)")
    processes: int = Field(4, ge=1, le=256)
    replicas: int = Field(2, ge=0)
    max_requests: int = Field(0, ge=0, description="recycle a process after this many requests; 0 never")
    timeout: int = Field(30, ge=1, le=3600, description="seconds a request may take")
    env: dict[str, str] = {}
    secrets: list[str] = Field([], description="names under the top-level secrets: delivered to each container")
    container: WorkersContainer = WorkersContainer()
    root: str | None = Field(
        None, json_schema_extra={"expected": 'a directory such as "." or "public" (under the app directory) '
                                             'or an absolute path in the container'},
        description="for a program that runs script files (php-cgi): their document root; nginx sends "
                    "SCRIPT_FILENAME=ROOT/SCRIPT and REDIRECT_STATUS=200. Relative: under the app "
                    "directory (workers/path, /srv/app in the image)",
    )
    index: str | None = Field(
        None, json_schema_extra={"expected": "a file name such as index.php"},
        description="with root: the script a URI ending in / runs (default index.php)",
    )
    packages: list[str] = Field(
        [], json_schema_extra={"expected": "a list of Debian package names such as php-cgi"},
        description="Debian packages installed into the worker image (apt, from the base's source)",
    )
    fallback: Literal["cgi", "none"] | None = Field(
        None, description='"cgi": when no worker can take a request, the CGI gateway runs the WSGI app once for it; '
                          '"none": 502. Default: cgi when the stack has a cgi service and the workers serve an app',
    )

    def document_root(self) -> str | None:
        """`root` in the container: relative ones are under APP_DIR (None: not a script program)."""
        if self.root is None:
            return None
        if self.root.startswith("/"):
            return self.root.rstrip("/") or "/"
        parts = [part for part in self.root.split("/") if part not in ("", ".")]
        return "/".join([APP_DIR, *parts])

    def index_file(self) -> str:
        return self.index or "index.php"

    def effective_fallback(self, has_cgi: bool) -> str:
        if self.fallback is not None:
            return self.fallback
        return "cgi" if has_cgi and self.app is not None else "none"

    @field_validator("app")
    @classmethod
    def _module_app(cls, value: str | None) -> str | None:
        if value is not None and not MODULE_APP.match(value):
            raise ValueError(f'expected MODULE:APP, e.g. hello_wsgi:app, got "{value}"')
        return value

    @field_validator("root")
    @classmethod
    def _document_root(cls, value: str | None) -> str | None:
        if value is not None and (not DOCUMENT_ROOT.match(value) or ".." in value.split("/")):
            raise ValueError('expected a directory such as "." or "public" (under the app directory) or an '
                             f'absolute path in the container, without "..", spaces or ";", got "{value}"')
        return value

    @field_validator("index")
    @classmethod
    def _index_file(cls, value: str | None) -> str | None:
        if value is not None and not INDEX_FILE.match(value):
            raise ValueError(f'expected a file name such as index.php, got "{value}"')
        return value

    @field_validator("packages")
    @classmethod
    def _package_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not DEBIAN_PACKAGE.match(name):
                raise ValueError(f'expected Debian package names such as php-cgi, got "{name}"')
        return value

    @model_validator(mode="after")
    def _app_or_program(self) -> WorkersService:
        if (self.app is None) == (self.program is None):
            raise ValueError('set exactly one of "app" (a WSGI MODULE:APP) or "program" (a FastCGI program)')
        if self.app is not None and self.root is not None:
            raise ValueError('"root" is the document root of a FastCGI program that runs script files '
                             '(program: [/usr/bin/php-cgi]); a WSGI app has none: remove it')
        if self.index is not None and self.root is None:
            raise ValueError('"index" needs "root" (the document root the index file is in)')
        self.container.check_room_for(self.processes, 1, "processes")
        return self


class CgiService(_Strict):
    scripts: Path | None = Field(None, description="directory of CGI scripts (default: the example scripts)")
    processes: int = Field(2, ge=1, le=256)
    replicas: int = Field(1, ge=0)
    timeout: int = Field(30, ge=1, le=3600)
    env: dict[str, str] = {}
    secrets: list[str] = Field([], description="names under the top-level secrets: delivered to each container")
    container: CgiContainer = CgiContainer()

    @model_validator(mode="after")
    def _room_for_programs(self) -> CgiService:
        # Each gateway process runs one program at a time, which may start a few of its own.
        self.container.check_room_for(self.processes, CGI_PIDS_PER_PROCESS, "gateway processes")
        return self


CGI_PIDS_PER_PROCESS = 4


class Services(_Strict):
    nginx: NginxService = NginxService()
    workers: WorkersService
    cgi: CgiService | None = None

    @model_validator(mode="after")
    def _fallback_needs_cgi(self) -> Services:
        if self.workers.fallback == "cgi":
            if self.cgi is None:
                raise ValueError('workers/fallback: "cgi" needs a cgi service (services/cgi) to run the app')
            if self.workers.app is None:
                raise ValueError('workers/fallback: "cgi" runs a WSGI app (workers/app); '
                                 'a FastCGI program has none: use "none"')
        return self


class StackSpec(_Strict):
    project: str | None = Field(
        None, json_schema_extra={"expected": "a name of lowercase letters, digits, - and _ (at most 40)"}
    )
    engine: Literal["docker", "swarm"] | None = Field(
        None, description="docker (default: containers on the local engine or --hosts over SSH) or swarm "
                          "(Docker Swarm services; --engine on the command line wins)",
    )
    services: Services
    secrets: dict[str, Secret] = Field(
        {}, description="values read where fcgikit runs and delivered to the services that name them"
    )

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, Secret]) -> dict[str, Secret]:
        for name in value:
            if not SECRET_NAME.match(name):
                raise ValueError(f'secret name "{name}": use letters, digits, "_", "-" and "." '
                                 "(a file name, at most 64)")
        return value

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str | None) -> str | None:
        if value is not None and not PROJECT_NAME.match(value):
            raise ValueError(f'expected lowercase letters, digits, "-" and "_" (at most 40), got "{value}"')
        return value

    def replicas(self, service: str) -> int:
        from .services import KINDS  # the table builds containers from this module's types

        return KINDS[service].replicas(self)


def load_stack_spec(path: str | Path) -> StackSpec:
    """Load, validate and resolve relative paths against the file's directory."""
    path = Path(path)
    spec: StackSpec = load_config_file(path, StackSpec)
    problems = unknown_secret_references(spec)
    if problems:
        raise ConfigError(str(path), problems)
    spec = resolve_paths(spec, path.resolve().parent)
    problems = missing_document_root(spec)
    if problems:
        raise ConfigError(str(path), problems)
    return spec


def missing_document_root(spec: StackSpec) -> list[str]:
    """A relative `workers.root` that is no directory of the app directory (`workers.path`)."""
    workers = spec.services.workers
    if workers.root is None or workers.root.startswith("/") or workers.path is None:
        return []
    directory = workers.path / workers.root
    if directory.is_dir():
        return []
    return [f'services/workers/root: "{workers.root}" is not a directory of the app directory {workers.path} '
            f"(workers/path; it is {APP_DIR} in the image)"]


def incomplete_tls(spec: StackSpec) -> list[str]:
    tls = spec.services.nginx.tls
    if tls is None or tls.complete:
        return []
    return ['services/nginx/tls: set "cert" and "key" (PEM files) or "self_signed: true", '
            "or give `--tls self-signed`"]


def unknown_secret_references(spec: StackSpec) -> list[str]:
    """A service naming a secret the top-level `secrets:` does not define (pure)."""
    from .services import BACKENDS  # the services that take secrets

    problems = []
    for service in BACKENDS:
        section = getattr(spec.services, service)
        for index, name in enumerate(section.secrets if section is not None else []):
            if name not in spec.secrets:
                known = ", ".join(spec.secrets) or "none is"
                problems.append(f'services/{service}/secrets/{index}: no secret "{name}" under secrets: '
                                f"({known} defined)")
    return problems


def resolve_paths(spec: StackSpec, base: Path) -> StackSpec:
    workers = spec.services.workers
    if workers.path is not None and not workers.path.is_absolute():
        workers = workers.model_copy(update={"path": (base / workers.path).resolve()})
    cgi = spec.services.cgi
    if cgi is not None and cgi.scripts is not None and not cgi.scripts.is_absolute():
        cgi = cgi.model_copy(update={"scripts": (base / cgi.scripts).resolve()})
    nginx = spec.services.nginx
    if nginx.tls is not None and nginx.tls.files is not None:
        cert, key = nginx.tls.files
        nginx = nginx.model_copy(update={"tls": nginx.tls.model_copy(update={
            "cert": (base / cert).resolve(), "key": (base / key).resolve()})})
    services = spec.services.model_copy(update={"workers": workers, "cgi": cgi, "nginx": nginx})
    secrets = {
        name: secret.model_copy(update={"from_file": (base / secret.from_file).resolve()})
        if secret.from_file is not None and not secret.from_file.is_absolute() else secret
        for name, secret in spec.secrets.items()
    }
    return spec.model_copy(update={"services": services, "secrets": secrets})


def with_replicas(spec: StackSpec, service: str, replicas: int) -> StackSpec:
    """The same spec with one service's replica count changed (what `fcgikit scale` asks for)."""
    from .services import SCALABLE

    section = getattr(spec.services, service, None)
    if service not in SCALABLE or section is None:
        raise ValueError(f'cannot scale "{service}": the stack has no such scalable service')
    services = spec.services.model_copy(update={service: section.model_copy(update={"replicas": replicas})})
    return spec.model_copy(update={"services": services})


def with_deployed_app(spec: StackSpec, label: str) -> StackSpec:
    """The spec serving the app named by a running worker's label (commands.app_label)."""
    parts = label.rsplit(":", 2)
    path = Path(parts[0]) if len(parts) == 3 else None
    if path is not None and not path.is_dir():
        raise ValueError(f"the directory of the deployed app {label} is not on this machine")
    target = ":".join(parts[-2:])
    updated = spec.services.workers.model_copy(update={"app": target, "program": None, "path": path,
                                                    "root": None, "index": None})
    return spec.model_copy(update={"services": spec.services.model_copy(update={"workers": updated})})


def with_app(spec: StackSpec, app: str) -> StackSpec:
    """The spec serving the user's own app (`--app PATH[:CALLABLE or MODULE:APP]`).

    PATH a directory: its modules are the app's (with the spec's MODULE:APP, or the one given);
    PATH a .py file: that module, callable `app` unless another is given.
    """
    where, _, name = app.partition(":")
    path = Path(where).expanduser().resolve()
    workers = spec.services.workers
    target: str | None
    if path.is_file() and path.suffix == ".py":
        target = f"{path.stem}:{name or 'app'}"
        path = path.parent
    elif path.is_dir():
        target = name or workers.app
        if target is None:
            raise ValueError(f"--app {app}: name the WSGI app as {where}:MODULE:APP (the spec runs a program)")
    else:
        what = "is neither a directory nor a .py file" if path.exists() else "does not exist"
        raise ValueError(f"--app {app}: {path} {what} (expected a directory of modules or a .py file)")
    if not MODULE_APP.match(target):
        raise ValueError(f'--app {app}: expected MODULE:APP after the path, e.g. {where}:myapp:application')
    updated = workers.model_copy(update={"app": target, "program": None, "path": path,
                                                    "root": None, "index": None})
    return spec.model_copy(update={"services": spec.services.model_copy(update={"workers": updated})})


def with_self_signed_tls(spec: StackSpec) -> StackSpec:
    """`fcgikit up --tls self-signed`: the stack file's tls settings (port, redirect, hsts)
    with a development certificate, or HTTPS on port 443 when it has none."""
    nginx = spec.services.nginx
    settings = (nginx.tls.model_dump() if nginx.tls is not None else {})
    settings.update(cert=None, key=None, self_signed=True)
    nginx = nginx.model_copy(update={"tls": TlsSettings(**settings)})
    return spec.model_copy(update={"services": spec.services.model_copy(update={"nginx": nginx})})
