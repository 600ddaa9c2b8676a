"""nginx.conf for the stack (pure).

Requests for `/` go to the WSGI/FastCGI workers, `/cgi-bin/` to the CGI gateway,
each through an `upstream` with kept-alive FastCGI connections. The upstreams' backends
are not in this file: a Lua balancer (images/nginx/fcgikit_edge.lua) picks them from
the list fcgikit writes into the running container (`render_backends`,
BACKENDS_PATH), so scaling changes that list and never reloads nginx. The file changes,
and nginx reloads, only for real configuration changes (limits, timeouts, keepalive).

With `workers.fallback: cgi`, a request no FastCGI worker could take (none live, or
every try failed to connect) is sent to the CGI gateway, which runs the same WSGI app
once, in a process of its own (FastCGI param FCGIKIT_FALLBACK=1).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence

from ..fastcgi.nginx_params import app_params, cgi_params, script_params
from ..fastcgi.nginx_params import render as render_params
from .model import NGINX_PID_PATH
from .spec import NGINX_PORT, NGINX_TLS_PORT, Services, TlsSettings
from .tls import redirect_target, tls_directives

WORKERS_UPSTREAM = "fcgikit_workers"
CGI_UPSTREAM = "fcgikit_cgi"
FALLBACK_LOCATION = "@fcgikit_fallback"
FALLBACK_PARAM = "FCGIKIT_FALLBACK"
# The edge's run-time state in the nginx container (a tmpfs where the root is read-only):
# fcgikit writes BACKENDS_PATH with `docker exec`; nginx writes LOADED_PATH once every
# worker process serves that version.
RUN_DIR = "/run/fcgikit"
BACKENDS_PATH = f"{RUN_DIR}/backends"
LOADED_PATH = f"{RUN_DIR}/loaded"
# A copy of the list on the nginx container's /etc/nginx volume (written like nginx.conf):
# fcgikit_edge.lua reads it when BACKENDS_PATH is missing, after the container restarted.
SAVED_BACKENDS_PATH = "/etc/nginx/fcgikit-backends"
LUA_DIR = "/usr/share/fcgikit/lua"  # fcgikit_edge.lua, put there by images/nginx/Dockerfile
# The upstreams' only `server`: never used while fcgikit's list is loaded ("down"); with
# the list loaded and no backend live, nginx answers 502 "no live upstreams".
PLACEHOLDER_SERVER = "127.0.0.1:1 down"
FALLBACK_WINDOW_MARGIN = 0.5  # seconds past connect_timeout
CGI_ROOT = "/srv"  # in the worker image the scripts are /srv/cgi-bin/NAME, served at /cgi-bin/NAME
# The CGI gateway answers 504 itself when a program outlives the timeout (and kills its
# process group): nginx waits a little longer, so that the gateway's answer is the one sent.
CGI_READ_MARGIN = 5
# A Python worker stuck in a request has no answer to give: its manager can only kill it,
# which nginx would see as "upstream prematurely closed" (502). So nginx gives up first, at
# the request timeout itself (504), and the manager kills the stuck process a little later
# (commands.KILL_MARGIN): the client gets 504 at the timeout, one process is killed.
# Replays: nginx may pass a failed request to another server only within RETRY_WINDOW of
# its start, i.e. while it can only have failed to connect (refused, or not accepted within
# connect_timeout; or a kept-alive connection the worker had closed); never after a
# timeout or a reset in the middle of the answer, which come later.
RETRY_WINDOW_MS = 500  # past connect_timeout



def render_nginx_conf(
    services: Services, *, listen: str = str(NGINX_PORT), user: str | None = None,
    header: str = "Rendered by fcgikit from fcgikit.yaml; the backends come from " + BACKENDS_PATH + ".",
    static_backends: dict[str, Sequence[str]] | None = None,
) -> str:
    """The whole /etc/nginx/nginx.conf.

    nginx's master runs as www-data in its container (no `user`: that needs root); give
    `user` only for a master started as root. `static_backends` (pool -> host:port names,
    compose.yaml's `workers:9000`): the upstreams' own `server` lines, resolved by nginx at
    start and used while no list has been written (a stack started without fcgikit).
    """
    http = _indent(render_http_conf(services, listen=listen, static_backends=static_backends), 1)
    user_line = f"user {user};\n" if user else ""
    return _MAIN.format(header=header, user_line=user_line, pid=NGINX_PID_PATH, http=http)


def render_http_conf(
    services: Services, *, listen: str = str(NGINX_PORT), static_backends: dict[str, Sequence[str]] | None = None,
) -> str:
    """What goes inside `http { }`: limits, the Lua edge, upstreams and the server."""
    nginx = services.nginx
    static = static_backends or {}
    parts = [
        "server_tokens off;",
        "access_log /dev/stdout;",
        *render_edge_conf(),
        render_upstream(WORKERS_UPSTREAM, "workers", nginx.keepalive, static.get("workers", ())),
    ]
    if services.cgi is not None:
        parts.append(render_upstream(CGI_UPSTREAM, "cgi", nginx.keepalive, static.get("cgi", ())))
    tls = services.nginx.tls
    server = render_server_conf(services, https=tls is not None)
    if tls is None:
        parts.append(f"server {{\n    listen {listen};\n{_indent(server, 1)}\n}}")
    else:
        parts += render_tls_servers(tls, server, listen)
    parts.append(render_health_server(listen))
    return "\n".join(part for part in parts if part)


HEALTH_HOST = "fcgikit-health"


def render_tls_servers(tls: TlsSettings, server: str, listen: str, tls_listen: str = str(NGINX_TLS_PORT)) -> list[str]:
    """The HTTPS server (the app's locations) and, on the HTTP port, either the redirect to
    it or the same locations again (`redirect: false`)."""
    https = "\n".join([f"listen {tls_listen} ssl;", *tls_directives(tls), server])
    if tls.redirect:
        plain = f"location / {{\n    return 301 {redirect_target(tls)};\n}}"
    else:
        plain = server
    return [f"server {{\n{_indent(https, 1)}\n}}", f"server {{\n    listen {listen};\n{_indent(plain, 1)}\n}}"]


def render_health_server(listen: str) -> str:
    """What the container's HEALTHCHECK asks (`Host: fcgikit-health`, GET /health): nginx
    itself answers on its public listener, whatever the backends do. Any other Host goes
    to the first server, the app's."""
    return (f"server {{\n    listen {listen};\n    server_name {HEALTH_HOST};\n    access_log off;\n"
            f"    location = /health {{\n        return 200 \"ok\\n\";\n    }}\n"
            f"    location / {{\n        return 404;\n    }}\n}}")


def render_edge_conf() -> list[str]:
    """The http-level lines of the Lua edge: its module, its shared marks, its timers."""
    return [
        f'lua_package_path "{LUA_DIR}/?.lua;;";',
        "lua_shared_dict fcgikit_edge 1m;",
        "lua_socket_log_errors off;  # the probes of a backend marked down fail quietly",
        'init_worker_by_lua_block { require("fcgikit_edge").init_worker() }',
    ]


def render_upstream(name: str, pool: str, keepalive: int, static: Sequence[str] = ()) -> str:
    """An upstream whose backends the Lua balancer picks from the list's `pool` entries.

    `keepalive` after the balancer: the kept-alive connections are per backend address.
    """
    servers = [f"server {address} max_fails=1 fail_timeout=2s;" for address in static] or [
        f"server {PLACEHOLDER_SERVER};"]
    lines = [*servers, f'balancer_by_lua_block {{ require("fcgikit_edge").balance("{pool}") }}',
             f"keepalive {keepalive};"]
    return f"upstream {name} {{\n" + "".join(f"    {line}\n" for line in lines) + "}"


def render_server_conf(services: Services, *, cgi_root: str = CGI_ROOT, https: bool = False) -> str:
    """What goes inside `server { }` after `listen`: the locations.

    `cgi_root` is the directory that holds cgi-bin/ where the gateway runs; `https`: the
    apps get HTTPS=on over TLS (wsgi.url_scheme https), as CGI/1.1 servers set it.
    """
    workers = services.workers
    fallback = fallback_enabled(services)
    tls_params = [("HTTPS", "$https")] if https else []
    root = workers.document_root()
    if root is None:
        # Only fcgikit's own worker takes kept connections: an exec'd program (a libfcgi C
        # program, like php-cgi) stays on a kept connection while it is idle (see _location).
        workers_location = _location("/", WORKERS_UPSTREAM, app_params() + tls_params, services.nginx.connect_timeout,
                                     workers.timeout, workers.timeout,
                                     extra=[f"error_page 502 504 = {FALLBACK_LOCATION};"] if fallback else [],
                                     keep_conn=workers.program is None)
    else:
        workers_location = _location("/", WORKERS_UPSTREAM, script_params() + tls_params,
                                     services.nginx.connect_timeout, workers.timeout, workers.timeout,
                                     head=script_directives(root, workers.index_file()), keep_conn=False)
    blocks = [f"client_max_body_size {services.nginx.client_max_body_size};", workers_location]
    if services.cgi is not None:
        blocks.append(
            _location("/cgi-bin/", CGI_UPSTREAM, cgi_params(cgi_root) + tls_params,
                      services.nginx.connect_timeout, services.cgi.timeout + CGI_READ_MARGIN, services.cgi.timeout)
        )
    if fallback:
        blocks.append(_fallback_location(services, tls_params))
    return "\n".join(blocks)


def script_directives(root: str, index: str) -> list[str]:
    """`location /` of a program that runs script files (`workers.root`, php-cgi): the files
    are in the worker's image, not nginx's, so nginx only names them. A URI ending in / runs
    `index`; /page.php/extra runs page.php with PATH_INFO /extra (the split on the index's
    suffix, as Debian's snippets/fastcgi-php.conf does for .php)."""
    lines = [f"root {root};", f"fastcgi_index {index};"]
    suffix = index[index.rfind("."):] if "." in index.lstrip(".") else ""
    if suffix:
        lines.append(f"fastcgi_split_path_info ^(.+?{re.escape(suffix)})(/.*)$;")
    return lines


def fallback_enabled(services: Services) -> bool:
    """`workers.fallback` as it applies: "cgi" by default when there is a CGI service and
    the workers serve a WSGI app (the gateway runs that app once per request)."""
    return services.workers.effective_fallback(services.cgi is not None) == "cgi"


def _fallback_location(services: Services, extra_params: Sequence[tuple[str, str]] = ()) -> str:
    """Where error_page sends what no FastCGI worker took: the CGI gateway, which runs the
    WSGI app once (FCGIKIT_FALLBACK). The Lua check lets through only requests that no
    worker can have run (see fcgikit_edge.lua): one that reached an app keeps its error."""
    cgi = services.cgi
    assert cgi is not None
    # A failure this soon after the request's start can only be a failed connect or a
    # kept-alive connection the worker had closed: the request never ran.
    window = round(services.nginx.connect_timeout + FALLBACK_WINDOW_MARGIN, 3)
    location = _location(FALLBACK_LOCATION, CGI_UPSTREAM, app_params() + list(extra_params) + [(FALLBACK_PARAM, "1")],
                         services.nginx.connect_timeout, cgi.timeout + CGI_READ_MARGIN, cgi.timeout,
                         extra=[f'access_by_lua_block {{ require("fcgikit_edge").fallback({window}) }}'])
    return location


def retry_window_ms(connect: float, timeout: int) -> int:
    """How long after its start a failed request may still go to another server: a connect
    that timed out and a little more, never as long as the request timeout."""
    return min(round(connect * 1000) + RETRY_WINDOW_MS, timeout * 1000)


def _location(path: str, upstream: str, params: list[tuple[str, str]], connect: float, read: int,
              timeout: int, extra: Sequence[str] = (), head: Sequence[str] = (), keep_conn: bool = True) -> str:
    # keep_conn False: an exec'd program such as php-cgi serves one connection at a time and
    # has no handoff (docs/spawn.md), so an idle connection nginx kept would hold one of its
    # processes while requests on new connections wait; php-fpm's users' nginx does not keep
    # them either (Debian's snippets/fastcgi-php.conf).
    lines = [
        *head,
        f"fastcgi_pass {upstream};",
        *(["fastcgi_keep_conn on;"] if keep_conn else []),
        # Another server gets the request only when it failed before it can have reached an
        # app (see RETRY_WINDOW_MS), and only for idempotent methods: without "non_idempotent"
        # nginx never replays POST, LOCK or PATCH (stated here on purpose, not left implicit).
        "fastcgi_next_upstream error timeout;",
        "fastcgi_next_upstream_tries 3;",
        f"fastcgi_next_upstream_timeout {retry_window_ms(connect, timeout)}ms;",
        f"fastcgi_connect_timeout {_milliseconds(connect)};",
        f"fastcgi_send_timeout {read}s;",
        f"fastcgi_read_timeout {read}s;",
        *render_params(params).splitlines(),  # the params of fastcgi/nginx_params.py
        *extra,
    ]
    return f"location {path} {{\n" + "".join(f"    {line}\n" for line in lines) + "}"


def _milliseconds(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def render_backends(backends: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """The list fcgikit writes to BACKENDS_PATH: pool -> [(ip:port, name)], with a version
    (a hash of the entries) that nginx echoes in LOADED_PATH once it serves them."""
    lines = [f"{pool} {address} {name}".rstrip() for pool in sorted(backends) for address, name in backends[pool]]
    version = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
    return "\n".join([f"version {version}", *lines]) + "\n"


def parse_backends(text: str | None) -> dict[str, list[tuple[str, str]]] | None:
    """The inverse of render_backends (None for no or unreadable text)."""
    if not text or not text.startswith("version "):
        return None
    result: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            result.setdefault(parts[0], []).append((parts[1], parts[2] if len(parts) > 2 else ""))
    return result


def backends_version(text: str) -> str:
    first = text.splitlines()[0] if text else ""
    return first.split()[1] if first.startswith("version ") and len(first.split()) > 1 else ""


def _indent(text: str, levels: int) -> str:
    pad = "    " * levels
    return "\n".join(pad + line if line else line for line in text.splitlines())


_MAIN = """\
# {header}
load_module modules/ndk_http_module.so;
load_module modules/ngx_http_lua_module.so;
{user_line}worker_processes auto;
pid {pid};
error_log /dev/stderr warn;

events {{
    worker_connections 1024;
}}

http {{
{http}
}}
"""


def render_compose_nginx_conf() -> str:
    """The config baked into the nginx image, for compose.yaml: its services by DNS name.

    nginx resolves `workers` once at start, to every replica compose runs then; with
    no list written into the container the balancer leaves the choice to nginx's own
    round robin over them. (fcgikit writes its own config and list.)
    """
    from .spec import CgiService, WorkersService

    services = Services(workers=WorkersService(app="hello_wsgi:app"), cgi=CgiService())
    header = ("For compose.yaml (upstreams by service name); `fcgikit up` writes its own. "
              "Rendered by fcgikit.deploy.nginxconf.render_compose_nginx_conf().")
    return render_nginx_conf(services, header=header,
                             static_backends={"workers": ["workers:9000"], "cgi": ["cgi:9000"]})
