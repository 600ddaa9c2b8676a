"""The one nginx config every scenario runs behind.

Only the upstream's server differs between scenarios, and the keep_conn scenario adds
upstream keepalive and `fastcgi_keep_conn on`. Buffers are sized so that neither the
64 KiB request body nor the 1 MiB response touches the disk, which would measure the
disk rather than the FastCGI server.
"""

from __future__ import annotations

UPSTREAM = "fcgikit_bench_backend"

# The usual FastCGI params (Debian's fastcgi_params) without SCRIPT_NAME and PATH_INFO,
# which each location sets its own way: a duplicate param would test who wins, not speed.
COMMON_PARAMS = """\
fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  REQUEST_METHOD     $request_method;
fastcgi_param  CONTENT_TYPE       $content_type;
fastcgi_param  CONTENT_LENGTH     $content_length;
fastcgi_param  REQUEST_URI        $request_uri;
fastcgi_param  DOCUMENT_URI       $document_uri;
fastcgi_param  DOCUMENT_ROOT      $document_root;
fastcgi_param  SERVER_PROTOCOL    $server_protocol;
fastcgi_param  REQUEST_SCHEME     $scheme;
fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;
fastcgi_param  REMOTE_ADDR        $remote_addr;
fastcgi_param  REMOTE_PORT        $remote_port;
fastcgi_param  SERVER_ADDR        $server_addr;
fastcgi_param  SERVER_PORT        $server_port;
fastcgi_param  SERVER_NAME        $server_name;
fastcgi_param  HTTP_HOST          $host;
"""

SERVER_CONF = """\
root {www_dir};
client_body_buffer_size 128k;
fastcgi_buffer_size 64k;
fastcgi_buffers 32 64k;
fastcgi_busy_buffers_size 128k;
fastcgi_max_temp_file_size 0;
{keep_conn}
location = /ceiling {{
    default_type text/plain;
    return 200 "Hello, world!\\n";
}}
location /cgi-bin/ {{
{params}
    fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
    fastcgi_param  SCRIPT_FILENAME    $document_root$fastcgi_script_name;
    fastcgi_pass {upstream};
}}
location / {{
{params}
    fastcgi_param  SCRIPT_NAME        "";
    fastcgi_param  PATH_INFO          $uri;
    fastcgi_pass {upstream};
}}
"""


def indent(text: str, prefix: str = "    ") -> str:
    return "".join(prefix + line for line in text.splitlines(keepends=True)).rstrip("\n")


def render_server_conf(www_dir: str, keep_conn: bool) -> str:
    """The inside of `server { }` (fcgikit.testing.nginx.Nginx adds `listen`)."""
    return SERVER_CONF.format(
        www_dir=www_dir,
        keep_conn="fastcgi_keep_conn on;" if keep_conn else "",
        params=indent(COMMON_PARAMS),
        upstream=UPSTREAM,
    )


def render_http_conf(backend: str, keep_conn: bool) -> str:
    """The upstream block; `backend` is host:port (a closed port for the nginx-only ceiling)."""
    keepalive = "    keepalive 16;\n" if keep_conn else ""
    return f"upstream {UPSTREAM} {{\n    server {backend};\n{keepalive}}}\n"
