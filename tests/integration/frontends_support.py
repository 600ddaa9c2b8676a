"""Apache, lighttpd and Caddy from Debian's archive, each a child process of the test.

Each runs in the foreground as the test's child, with its own config file, logs
and state in a work directory, on 127.0.0.1 and a free port, in a process group
of its own (stopped with SIGTERM, then SIGKILL, to the whole group: Apache's
children and lighttpd's `bin-path` programs go with it).

A missing binary skips the test with the package to install, except in CI
(CI=true), where it fails: CI must run these tests, not skip them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fcgikit.testing import free_port, wait_for_port

from .cgi_support import stop_group

SEARCH_PATH = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")


def require(program: str, package: str) -> str:
    """The path of `program`; else a skip (a failure in CI) naming the package."""
    found = shutil.which(program) or next(
        (str(Path(d) / program) for d in SEARCH_PATH if (Path(d) / program).exists()), None)
    if found:
        return found
    reason = f"{program} is not installed (Debian: apt-get install {package}; or run ./setup.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


class FrontEnd:
    """One web server: `with Apache(conf) as web: web.url("/")`; its directory goes at stop."""

    name = "?"

    def __init__(self, conf: str, *, port: int | None = None) -> None:
        self.conf = conf
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.dir = Path("/nonexistent")  # made by start()

    @property
    def output(self) -> Path:
        return self.dir / "output.log"

    # What a subclass provides.
    def argv(self) -> list[str]:
        raise NotImplementedError

    def config(self) -> str:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def error_log(self) -> str:
        return ""

    def start(self, timeout: float = 20.0) -> FrontEnd:
        self.argv()  # first: a missing binary skips before anything is made
        # Its own world-readable directory (pytest's tmp_path is private to its
        # user): Apache's workers run as nobody under root.
        self.dir = Path(tempfile.mkdtemp(prefix=f"fcgikit-{self.name}-"))
        self.dir.chmod(0o755)
        argv = self.argv()
        self.config_path.write_text(self.config())
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                            cwd=self.dir, env=self.env(), start_new_session=True)
        try:
            wait_for_port("127.0.0.1", self.port, timeout, process=self.process)
        except Exception as exc:
            logs = self.logs()
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc}\n{logs}") from exc
        return self

    @property
    def config_path(self) -> Path:
        return self.dir / f"{self.name}.conf"

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self) -> str:
        """Its own error log and whatever it printed, for assertion messages."""
        return (f"\n--- {self.name} error log ---\n{self.error_log()[-6000:]}"
                f"\n--- {self.name} output ---\n{read(self.output)[-3000:]}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        stop_group(self.process, timeout)
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> FrontEnd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


APACHE_MODULES = "/usr/lib/apache2/modules"


class Apache(FrontEnd):
    """Apache 2.4 (event MPM) in the foreground, loading only the modules named.

    `conf` is the part of httpd.conf that routes requests (ProxyPass, SetHandler...).
    """

    name = "apache"

    def __init__(self, conf: str, *, modules: tuple[str, ...] = (), port: int | None = None,
                 log_level: str = "warn") -> None:
        super().__init__(conf, port=port)
        self.modules = ("mpm_event", "authz_core", "proxy", "proxy_fcgi", *modules)
        self.log_level = log_level

    def argv(self) -> list[str]:
        return [require("apache2", "apache2-bin"), "-f", str(self.config_path), "-DFOREGROUND"]

    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C"}

    def config(self) -> str:
        loads = "\n".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so" for m in self.modules)
        # As root Apache must switch its workers to another user: it refuses to
        # serve as root. They only need the network (and files made readable).
        user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
        return f"""\
ServerRoot {self.dir}
{loads}
{user}Listen 127.0.0.1:{self.port}
ServerName localhost
PidFile {self.dir}/httpd.pid
DefaultRuntimeDir {self.dir}
ErrorLog {self.dir}/error.log
LogLevel {self.log_level}
StartServers 1
ServerLimit 2
ThreadsPerChild 32
MaxRequestWorkers 64
MinSpareThreads 8
MaxSpareThreads 64
Timeout 60
MaxKeepAliveRequests 0
{self.conf}
"""

    def error_log(self) -> str:
        return read(self.dir / "error.log")

    def proxy_errors(self) -> list[str]:
        """mod_proxy's and mod_proxy_fcgi's complaints (AH01067 "Failed to read
        FastCGI header", AH00898 "Error reading from remote server", ...)."""
        return [line for line in self.error_log().splitlines()
                if re.search(r"\[proxy\w*:(warn|error|crit|alert|emerg)\]", line)]

    def backend_connections(self) -> int:
        """FastCGI connections Apache opened (needs LogLevel proxy:debug: AH02824)."""
        return self.error_log().count("AH02824: ")


class Lighttpd(FrontEnd):
    """lighttpd 1.4 in the foreground (-D). `conf` holds fastcgi.server and the like.

    It runs as the test's user, root included (no server.username): the programs
    it starts itself (`bin-path`) are the test's Python and php-cgi, which another
    user may not be able to run (a Python under /root/.pyenv).
    """

    name = "lighttpd"

    def __init__(self, conf: str, *, docroot: Path | None = None, port: int | None = None) -> None:
        super().__init__(conf, port=port)
        self.docroot = docroot

    def argv(self) -> list[str]:
        return [require("lighttpd", "lighttpd"), "-D", "-f", str(self.config_path)]

    def config(self) -> str:
        uploads = self.dir / "uploads"
        uploads.mkdir(exist_ok=True)
        uploads.chmod(0o1777)
        return f"""\
server.modules += ("mod_fastcgi")
server.bind = "127.0.0.1"
server.port = {self.port}
server.document-root = "{self.docroot or self.dir}"
server.errorlog = "{self.dir}/error.log"
server.upload-dirs = ("{uploads}")
{self.conf}
"""

    def error_log(self) -> str:
        return read(self.dir / "error.log")


class Caddy(FrontEnd):
    """Caddy 2 (`caddy run`) with a Caddyfile; no admin endpoint, no automatic HTTPS.

    `conf` is the body of the one site block (reverse_proxy, php_fastcgi, root...).
    """

    name = "caddy"

    def argv(self) -> list[str]:
        return [require("caddy", "caddy"), "run", "--config", str(self.config_path), "--adapter", "caddyfile"]

    @property
    def config_path(self) -> Path:
        return self.dir / "Caddyfile"

    def env(self) -> dict[str, str]:
        # Caddy keeps state under $HOME / XDG dirs: keep it in the work directory.
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.dir),
                "XDG_DATA_HOME": str(self.dir / "data"), "XDG_CONFIG_HOME": str(self.dir / "config")}

    def config(self) -> str:
        return f"""\
{{
    admin off
    auto_https off
    log {{
        output file {self.dir}/error.log
        level INFO
    }}
}}
http://127.0.0.1:{self.port} {{
    bind 127.0.0.1
{self.conf}
}}
"""

    def error_log(self) -> str:
        return read(self.dir / "error.log")




def php_cgi() -> str:
    return require("php-cgi", "php-cgi")
