"""nginx.conf for the stack, rendered from the worker and CGI gateway addresses (pure).

Requests for `/` go to the WSGI/FastCGI workers, `/cgi-bin/` to the CGI gateway,
each through an `upstream` with kept-alive FastCGI connections.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import NGINX_PID_PATH
from .spec import NGINX_PORT, Services

WORKERS_UPSTREAM = "fcgikit_workers"
CGI_UPSTREAM = "fcgikit_cgi"
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

# The CGI/1.1 meta-variables, spelled out instead of including Debian's
# fastcgi_params, so SCRIPT_NAME/PATH_INFO are sent once and mean what we want.
_COMMON_PARAMS = [
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    # httpoxy: a client's `Proxy:` header would reach the app as HTTP_PROXY, which many HTTP
    # libraries take for their outgoing proxy. Set here, nginx passes it empty instead.
    ("HTTP_PROXY", ""),
]


def render_nginx_conf(
    services: Services, workers: Sequence[str], cgi: Sequence[str], *, listen: str = str(NGINX_PORT),
    user: str | None = None,
    header: str = "Rendered by fcgikit from the containers actually running; do not edit by hand.",
) -> str:
    """The whole /etc/nginx/nginx.conf; `workers` and `cgi` are FastCGI addresses (host:port).

    nginx's master runs as www-data in its container (no `user`: that needs root); give
    `user` only for a master started as root.
    """
    http = _indent(render_http_conf(services, workers, cgi, listen=listen), 1)
    user_line = f"user {user};\n" if user else ""
    return _MAIN.format(header=header, user_line=user_line, pid=NGINX_PID_PATH, http=http)


def render_http_conf(services: Services, workers: Sequence[str], cgi: Sequence[str], *,
                     listen: str = str(NGINX_PORT)) -> str:
    """What goes inside `http { }`: limits, upstreams and the server."""
    nginx = services.nginx
    parts = [
        "server_tokens off;",
        "access_log /dev/stdout;",
        render_upstream(WORKERS_UPSTREAM, workers, nginx.keepalive),
    ]
    if services.cgi is not None:
        parts.append(render_upstream(CGI_UPSTREAM, cgi, nginx.keepalive))
    server = render_server_conf(services, has_workers=bool(workers), has_cgi=bool(cgi))
    parts.append(f"server {{\n    listen {listen};\n{_indent(server, 1)}\n}}")
    parts.append(render_health_server(listen))
    return "\n".join(part for part in parts if part)


HEALTH_HOST = "fcgikit-health"


def render_health_server(listen: str) -> str:
    """What the container's HEALTHCHECK asks (`Host: fcgikit-health`, GET /health): nginx
    itself answers on its public listener, whatever the backends do. Any other Host goes
    to the first server, the app's."""
    return (f"server {{\n    listen {listen};\n    server_name {HEALTH_HOST};\n    access_log off;\n"
            f"    location = /health {{\n        return 200 \"ok\\n\";\n    }}\n"
            f"    location / {{\n        return 404;\n    }}\n}}")


def render_upstream(name: str, addresses: Sequence[str], keepalive: int) -> str:
    if not addresses:
        return ""  # nginx refuses an empty upstream; the location answers 503 itself
    servers = "".join(f"    server {address} max_fails=1 fail_timeout=5s;\n" for address in addresses)
    return f"upstream {name} {{\n{servers}    keepalive {keepalive};\n}}"


def render_server_conf(services: Services, *, has_workers: bool, has_cgi: bool, cgi_root: str = CGI_ROOT) -> str:
    """What goes inside `server { }` after `listen`: the two locations.

    `cgi_root` is the directory that holds cgi-bin/ where the gateway runs.
    """
    workers = services.workers
    blocks = [
        f"client_max_body_size {services.nginx.client_max_body_size};",
        _location("/", WORKERS_UPSTREAM if has_workers else None, _app_params(), services.nginx.connect_timeout,
                  workers.timeout, workers.timeout)
    ]
    if services.cgi is not None:
        blocks.append(
            _location("/cgi-bin/", CGI_UPSTREAM if has_cgi else None, _cgi_params(cgi_root),
                      services.nginx.connect_timeout, services.cgi.timeout + CGI_READ_MARGIN, services.cgi.timeout)
        )
    return "\n".join(blocks)


def retry_window_ms(connect: int, timeout: int) -> int:
    """How long after its start a failed request may still go to another server: a connect
    that timed out and a little more, never as long as the request timeout."""
    return min(connect * 1000 + RETRY_WINDOW_MS, timeout * 1000)


def _location(path: str, upstream: str | None, params: list[tuple[str, str]], connect: int, read: int,
              timeout: int) -> str:
    if upstream is None:
        return f"location {path} {{\n    return 503;\n}}"
    lines = [
        f"fastcgi_pass {upstream};",
        "fastcgi_keep_conn on;",
        # Another server gets the request only when it failed before it can have reached an
        # app (see RETRY_WINDOW_MS), and only for idempotent methods: without "non_idempotent"
        # nginx never replays POST, LOCK or PATCH (stated here on purpose, not left implicit).
        "fastcgi_next_upstream error timeout;",
        "fastcgi_next_upstream_tries 3;",
        f"fastcgi_next_upstream_timeout {retry_window_ms(connect, timeout)}ms;",
        f"fastcgi_connect_timeout {connect}s;",
        f"fastcgi_send_timeout {read}s;",
        f"fastcgi_read_timeout {read}s;",
        *(f"fastcgi_param {name} {_quote(value)};" for name, value in params),
    ]
    return f"location {path} {{\n" + "".join(f"    {line}\n" for line in lines) + "}"


def _app_params() -> list[tuple[str, str]]:
    # The app is mounted at the root: all of the path is PATH_INFO (PEP 3333).
    return _COMMON_PARAMS + [("SCRIPT_NAME", ""), ("PATH_INFO", "$uri")]


def _cgi_params(cgi_root: str) -> list[tuple[str, str]]:
    # The gateway splits /cgi-bin/prog/extra itself (the longest existing prefix is the program).
    return _COMMON_PARAMS + [("DOCUMENT_ROOT", cgi_root), ("SCRIPT_NAME", "$uri"), ("PATH_INFO", "")]


def _quote(value: str) -> str:
    return '""' if value == "" else value if value.startswith("$") or " " not in value else f'"{value}"'


def _indent(text: str, levels: int) -> str:
    pad = "    " * levels
    return "\n".join(pad + line if line else line for line in text.splitlines())


_MAIN = """\
# {header}
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

    nginx resolves `workers` once at start, to every replica compose runs then.
    """
    from .spec import CgiService, WorkersService

    services = Services(workers=WorkersService(app="hello_wsgi:app"), cgi=CgiService())
    header = ("For compose.yaml (upstreams by service name); `fcgikit up` writes its own. "
              "Rendered by fcgikit.deploy.nginxconf.render_compose_nginx_conf().")
    return render_nginx_conf(services, ["workers:9000"], ["cgi:9000"], header=header)
