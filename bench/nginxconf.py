"""The one nginx config every scenario runs behind.

Only the upstream's server differs between FastCGI scenarios, and the keep_conn scenario
adds upstream keepalive and `fastcgi_keep_conn on`. The peers that speak another protocol
get the same server block with `location /` passed the way their users configure it:
gunicorn over HTTP (`proxy_pass`, upstream keepalive, HTTP/1.1 and an empty Connection
header, as nginx's docs say for upstream keepalive), uWSGI over its own protocol
(`uwsgi_pass`, the same params as the FastCGI locations). Buffers are sized so that
neither the 64 KiB request body nor the 1 MiB response touches the disk, which would
measure the disk rather than the server.
"""

from __future__ import annotations

from fcgikit.fastcgi import nginx_params
from fcgikit.fastcgi.nginx_params import render as render_params

UPSTREAM = "fcgikit_bench_backend"

# What the stack's edge sends (fastcgi/nginx_params.py) without SCRIPT_NAME and PATH_INFO,
# which each location sets its own way: a duplicate param would test who wins, not speed.
_BENCH_PARAMS = nginx_params.COMMON + [("HTTP_HOST", "$host")]
COMMON_PARAMS = render_params(_BENCH_PARAMS)

PROTOCOLS = ("fastcgi", "http", "uwsgi")

SERVER_CONF = """\
root {www_dir};
client_body_buffer_size 128k;
{prefix}_buffer_size 64k;
{prefix}_buffers 32 64k;
{prefix}_busy_buffers_size 128k;
{prefix}_max_temp_file_size 0;
{keep_conn}
location = /ceiling {{
    default_type text/plain;
    return 200 "Hello, world!\\n";
}}
{locations}"""

FASTCGI_LOCATIONS = """\
location /cgi-bin/ {{
{params}
    fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
    fastcgi_param  SCRIPT_FILENAME    $document_root$fastcgi_script_name;
    fastcgi_pass {upstream};
}}
location /php/ {{
{params}
    fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
    fastcgi_param  SCRIPT_FILENAME    $document_root$fastcgi_script_name;
    fastcgi_param  REDIRECT_STATUS    200;
    fastcgi_pass {upstream};
}}
location / {{
{params}
    fastcgi_param  SCRIPT_NAME        "";
    fastcgi_param  PATH_INFO          $uri;
    fastcgi_pass {upstream};
}}
"""

# gunicorn's docs put it behind proxy_pass; upstream keepalive needs HTTP/1.1 and the
# client's Connection header cleared. gunicorn's sync workers answer "Connection: close"
# anyway (they serve one connection per request); gthread workers keep it.
HTTP_LOCATIONS = """\
location / {{
    proxy_pass http://{upstream};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
}}
"""

# The uwsgi protocol has no keep-alive: one connection per request, as FastCGI without
# keep_conn.
UWSGI_LOCATIONS = """\
location / {{
{params}
    uwsgi_param  SCRIPT_NAME        "";
    uwsgi_param  PATH_INFO          $uri;
    uwsgi_pass {upstream};
}}
"""


def indent(text: str, prefix: str = "    ") -> str:
    return "".join(prefix + line for line in text.splitlines(keepends=True)).rstrip("\n")


def render_server_conf(www_dir: str, keep_conn: bool, protocol: str = "fastcgi") -> str:
    """The inside of `server { }` (fcgikit.testing.nginx.Nginx adds `listen`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown upstream protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if keep_conn and protocol == "uwsgi":
        raise ValueError("the uwsgi protocol has no keep-alive (uwsgi_pass opens a connection per request)")
    templates = {"fastcgi": FASTCGI_LOCATIONS, "http": HTTP_LOCATIONS, "uwsgi": UWSGI_LOCATIONS}
    params = (render_params(_BENCH_PARAMS, directive="uwsgi_param")
              if protocol == "uwsgi" else COMMON_PARAMS)
    return SERVER_CONF.format(
        www_dir=www_dir,
        prefix={"http": "proxy"}.get(protocol, protocol),
        keep_conn="fastcgi_keep_conn on;" if keep_conn and protocol == "fastcgi" else "",
        locations=templates[protocol].format(params=indent(params), upstream=UPSTREAM),
    )


KEEPALIVE = 16  # idle upstream connections nginx keeps: the stack's default (deploy spec `keepalive`)


def render_http_conf(backend: str, keep_conn: bool, keepalive_connections: int = KEEPALIVE) -> str:
    """The upstream block; `backend` is host:port (a closed port for the nginx-only ceiling)."""
    keepalive = f"    keepalive {keepalive_connections};\n" if keep_conn else ""
    return f"upstream {UPSTREAM} {{\n    server {backend};\n{keepalive}}}\n"
