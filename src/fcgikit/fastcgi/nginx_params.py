"""The FastCGI params nginx sends to fcgikit, written once (stdlib only).

Every nginx configuration fcgikit writes or runs takes its `fastcgi_param` lines
from here: the stack's edge (deploy/nginxconf.py, and through it the compose
image's images/nginx/nginx.conf), the tests' private nginx (testing/nginx.py) and
the benchmark's (bench/nginxconf.py).

SCRIPT_NAME, decided: an app behind the stack is mounted at the root, so
`location /` sends SCRIPT_NAME "" and the whole path as PATH_INFO ($uri), what
PEP 3333 means for an app at the root; `/cgi-bin/` sends the path as SCRIPT_NAME
and no PATH_INFO, and the CGI gateway splits /cgi-bin/prog/extra itself (the
longest existing prefix is the program). The tests' `include fastcgi_params` is
on purpose something else: Debian's stock file (`stock_params()`, SCRIPT_NAME
$fastcgi_script_name and no PATH_INFO), what a user's own nginx sends, which the
worker must take as an app at the root too (worker/wsgi.py). Tests that want
exactly what the stack's `location /` sends include `fcgikit_app_params`.
"""

from __future__ import annotations

from collections.abc import Iterable

# The CGI/1.1 meta-variables every location sends, spelled out instead of including
# Debian's fastcgi_params, so SCRIPT_NAME/PATH_INFO are sent once and mean what we want.
COMMON: list[tuple[str, str]] = [
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx"),  # no version: nothing to learn about the edge from an app's page
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
    # httpoxy: a client's `Proxy:` header would reach the app as HTTP_PROXY, which many HTTP
    # libraries take for their outgoing proxy. Set here, nginx passes it empty instead.
    ("HTTP_PROXY", ""),
]

# Debian's /etc/nginx/fastcgi_params (nginx 1.22), what `include fastcgi_params;` sends.
_STOCK: list[tuple[str, str]] = [
    ("QUERY_STRING", "$query_string"),
    ("REQUEST_METHOD", "$request_method"),
    ("CONTENT_TYPE", "$content_type"),
    ("CONTENT_LENGTH", "$content_length"),
    ("SCRIPT_NAME", "$fastcgi_script_name"),
    ("REQUEST_URI", "$request_uri"),
    ("DOCUMENT_URI", "$document_uri"),
    ("DOCUMENT_ROOT", "$document_root"),
    ("SERVER_PROTOCOL", "$server_protocol"),
    ("REQUEST_SCHEME", "$scheme"),
    ("HTTPS", "$https if_not_empty"),
    ("GATEWAY_INTERFACE", "CGI/1.1"),
    ("SERVER_SOFTWARE", "nginx/$nginx_version"),
    ("REMOTE_ADDR", "$remote_addr"),
    ("REMOTE_PORT", "$remote_port"),
    ("REMOTE_USER", "$remote_user"),
    ("SERVER_ADDR", "$server_addr"),
    ("SERVER_PORT", "$server_port"),
    ("SERVER_NAME", "$server_name"),
]


def app_params() -> list[tuple[str, str]]:
    """`location /`: the WSGI app (or FastCGI program) mounted at the root."""
    return COMMON + [("SCRIPT_NAME", ""), ("PATH_INFO", "$uri")]


def script_params() -> list[tuple[str, str]]:
    """`location /` for a FastCGI program that runs script files, php-cgi the common one
    (`workers.root`): the script's file under the location's `root`, what the URI left over
    as PATH_INFO (`fastcgi_split_path_info`), and REDIRECT_STATUS, without which php-cgi
    (cgi.force_redirect, on in Debian) refuses every request."""
    return COMMON + [
        ("DOCUMENT_ROOT", "$document_root"),
        ("SCRIPT_FILENAME", "$document_root$fastcgi_script_name"),
        ("SCRIPT_NAME", "$fastcgi_script_name"),
        ("PATH_INFO", "$fastcgi_path_info"),
        ("REDIRECT_STATUS", "200"),
    ]


def cgi_params(root: str) -> list[tuple[str, str]]:
    """`location /cgi-bin/`: the CGI gateway, programs under `root`."""
    return COMMON + [("DOCUMENT_ROOT", root), ("SCRIPT_NAME", "$uri"), ("PATH_INFO", "")]


def stock_params() -> list[tuple[str, str]]:
    """Debian's stock fastcgi_params: what a user's own nginx sends with `include fastcgi_params;`."""
    return list(_STOCK)


def quote(value: str) -> str:
    """A param's value as nginx reads it: "" for empty, quoted when it holds a space
    (but a `$variable if_not_empty` form stays as it is)."""
    if value == "":
        return '""'
    if value.startswith("$") or " " not in value:
        return value
    return f'"{value}"'


def render(params: Iterable[tuple[str, str]], indent: int = 0, directive: str = "fastcgi_param") -> str:
    """`fastcgi_param NAME VALUE;` lines (or uwsgi_param), each indented by `indent` spaces."""
    pad = " " * indent
    return "".join(f"{pad}{directive} {name} {quote(value)};\n" for name, value in params)
