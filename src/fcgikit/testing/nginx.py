"""A private nginx on 127.0.0.1 for tests and benchmarks.

Runs Debian's nginx binary as the current user with its own prefix directory, a
config written from the caller's snippets and a free port, and stops it again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ..fastcgi.nginx_params import app_params, stock_params
from ..fastcgi.nginx_params import render as render_params
from . import free_port, wait_for_port

# `include fastcgi_params;` gives Debian's stock file, as on a user's own nginx;
# `include fcgikit_app_params;` what the stack's `location /` sends (fastcgi/nginx_params.py).
FASTCGI_PARAMS = render_params(stock_params())
FCGIKIT_APP_PARAMS = render_params(app_params())

CONFIG = """\
{user}daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log {log_level};
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    fastcgi_temp_path {prefix}/fastcgi;
    proxy_temp_path {prefix}/proxy;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 0;
    keepalive_requests 100000;
    {http_conf}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        {server_conf}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )
    if not found:
        raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx-light; or run ./setup.sh)")
    return found


class Nginx:
    """`with Nginx(server_conf, http_conf) as ngx: ngx.url("/")`.

    The file `fastcgi_params` in the prefix holds Debian's stock FastCGI params, so a
    location can say `include fastcgi_params;` as it would on Debian; `fcgikit_app_params`
    holds what the stack's edge sends to the workers (SCRIPT_NAME "", PATH_INFO $uri).
    """

    def __init__(
        self,
        server_conf: str,
        http_conf: str = "",
        *,
        workers: int = 1,
        log_level: str = "info",
        port: int | None = None,
    ) -> None:
        self.server_conf = server_conf
        self.http_conf = http_conf
        self.workers = workers
        self.log_level = log_level
        self.port = port
        self.prefix: Path | None = None
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> Nginx:
        self.prefix = Path(tempfile.mkdtemp(prefix="fcgikit-nginx-"))
        self.port = self.port or free_port()
        (self.prefix / "fastcgi_params").write_text(FASTCGI_PARAMS)
        (self.prefix / "fcgikit_app_params").write_text(FCGIKIT_APP_PARAMS)
        self.write_config()
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout, process=self.process)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"nginx did not start: {exc}\n{self.error_log()}") from exc
        return self

    def write_config(self) -> None:
        assert self.prefix is not None
        # As root, nginx's workers would run as nobody and could not reach the
        # test's private sockets and files; a test server has nothing to protect.
        user = "user root;\n" if os.geteuid() == 0 else ""
        text = CONFIG.format(
            user=user,
            prefix=self.prefix,
            port=self.port,
            workers=self.workers,
            log_level=self.log_level,
            http_conf=self.http_conf,
            server_conf=self.server_conf,
        )
        (self.prefix / "nginx.conf").write_text(text)

    def reload(self, server_conf: str | None = None, http_conf: str | None = None) -> None:
        """Rewrites the config and sends SIGHUP, as `nginx -s reload` does."""
        if server_conf is not None:
            self.server_conf = server_conf
        if http_conf is not None:
            self.http_conf = http_conf
        self.write_config()
        self.process.send_signal(signal.SIGHUP)
        time.sleep(0.3)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def error_log(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process and self.process.stderr:
            self.process.stderr.close()
        if self.prefix:
            shutil.rmtree(self.prefix, ignore_errors=True)
            self.prefix = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
