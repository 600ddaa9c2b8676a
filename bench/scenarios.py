"""What the benchmark runs: workloads, servers and the scenarios pairing them (pure data).

Every Python server runs the same WSGI app (apps/hello_wsgi.py), both C managers run the
same libfcgi program (apps/hello.c), both CGI gateways run the same scripts
(apps/www/cgi-bin/), php-fpm and fcgikit.spawn + php-cgi run the same PHP script
(apps/www/php/hello.php), and nginx's config is the same for all of them but for the
upstream and, for the peers that do not speak FastCGI (gunicorn over HTTP, uWSGI over its
own protocol), the pass directive of `location /` (see nginxconf.py).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
APPS_DIR = BENCH_DIR / "apps"
WWW_DIR = APPS_DIR / "www"
HOST = "127.0.0.1"
PROCESSES = 2  # every server runs two workers: one per core of the reference machine

HELLO_BODY = b"Hello, world!\n"


@dataclass(frozen=True)
class Workload:
    """One kind of request and the answer that proves the server ran the right app."""

    path: str
    method: str = "GET"
    body_size: int = 0
    expect_body: bytes | None = HELLO_BODY
    expect_length: int | None = None

    def check(self, status: int, body: bytes) -> str | None:
        """Why this answer is wrong, or None when it is right."""
        if status != 200:
            return f"{self.method} {self.path} answered {status}: {body[:300]!r}"
        if self.expect_body is not None and body != self.expect_body:
            return f"{self.method} {self.path} answered {body[:300]!r}, expected {self.expect_body!r}"
        if self.expect_length is not None and len(body) != self.expect_length:
            return f"{self.method} {self.path} answered {len(body)} bytes, expected {self.expect_length}"
        return None


CEILING = Workload("/ceiling")
HELLO = Workload("/")
ECHO_64K = Workload("/echo", "POST", 64 * 1024, expect_body=None, expect_length=64 * 1024)
BIG_1MIB = Workload("/big", expect_body=None, expect_length=1 << 20)
CGI_PY = Workload("/cgi-bin/hello.py")
CGI_SH = Workload("/cgi-bin/hello.sh")
CGI_WSGI = Workload("/cgi-bin/hello_wsgi.py")
PHP_HELLO = Workload("/php/hello.php")


@dataclass(frozen=True)
class Paths:
    """Where a run finds its files; `c_hello` is compiled into the run's work dir."""

    work_dir: Path
    apps_dir: Path = APPS_DIR
    www_dir: Path = WWW_DIR

    @property
    def c_hello(self) -> Path:
        return self.work_dir / "hello-fcgi"

    def pidfile(self, port: int) -> Path:
        return self.work_dir / f"server-{port}.pid"

    def php_fpm_conf(self, port: int) -> Path:
        return self.work_dir / f"php-fpm-{port}.conf"


def python_module_missing(module: str) -> str | None:
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    return None if found else f"python module {module} is not importable yet"


def program_missing(program: str) -> str | None:
    return None if shutil.which(program) else f"{program} is not installed (run ./setup.sh)"


@dataclass(frozen=True)
class Server:
    """How to start one FastCGI server on a port; `None` command means nginx alone."""

    name: str
    ours: bool
    requires_modules: tuple[str, ...] = ()
    requires_programs: tuple[str, ...] = ()
    needs_c_hello: bool = False
    writes_pidfile: bool = False  # spawn-fcgi: its children outlive it, their pids are in the file
    # A CGI gateway's programs live for one request, and fcgiwrap lets the kernel reap them
    # (their CPU time then shows nowhere in /proc): no CPU-per-request figure for these.
    forks_per_request: bool = False
    argv: object = None  # callable(port, paths) -> list[str]
    protocol: str = "fastcgi"  # how nginx talks to it: fastcgi, http (proxy_pass) or uwsgi (uwsgi_pass)
    prepare: object = None  # callable(port, paths): writes the files the command needs (php-fpm's config)
    stack: str = ""  # --containers without a URL: the container stack (bench/stacks.py) it runs in

    def missing(self) -> str | None:
        """Why this server cannot run here, or None."""
        for module in self.requires_modules:
            if reason := python_module_missing(module):
                return reason
        for program in self.requires_programs + (("gcc",) if self.needs_c_hello else ()):
            if reason := program_missing(program):
                return reason
        return None

    def command(self, port: int, paths: Paths) -> list[str] | None:
        return self.argv(port, paths) if self.argv else None

    def prepare_files(self, port: int, paths: Paths) -> None:
        if self.prepare:
            self.prepare(port, paths)


def pool_flags(port: int) -> list[str]:
    """spawn-fcgi's flags, which fcgikit.serve, .spawn and .cgi take too (-n: foreground)."""
    return ["-n", "-a", HOST, "-p", str(port), "-F", str(PROCESSES)]


NGINX_ONLY = Server("nginx", ours=False)
SERVE = Server(
    "fcgikit.serve", ours=True, requires_modules=("fcgikit.serve",),
    argv=lambda port, p: [sys.executable, "-m", "fcgikit.serve", *pool_flags(port), "hello_wsgi:app"],
)
FLUP = Server(
    "flup", ours=False, requires_modules=("flup.server.fcgi_fork",),
    argv=lambda port, p: [sys.executable, str(p.apps_dir / "run_flup.py"), HOST, str(port), str(PROCESSES)],
)


def uwsgi_argv(socket_flag: str, port: int, p: Paths) -> list[str]:
    return ["uwsgi", socket_flag, f"{HOST}:{port}", "--wsgi-file", str(p.apps_dir / "hello_wsgi.py"),
            "--callable", "app", "--master", "--processes", str(PROCESSES), "--disable-logging", "--die-on-term"]


UWSGI = Server(
    "uwsgi", ours=False, requires_programs=("uwsgi",),
    argv=lambda port, p: uwsgi_argv("--fastcgi-socket", port, p),
)
# uWSGI's best case: its own binary protocol behind nginx's uwsgi_pass.
UWSGI_NATIVE = Server(
    "uwsgi (uwsgi protocol)", ours=False, requires_programs=("uwsgi",), protocol="uwsgi",
    argv=lambda port, p: uwsgi_argv("--socket", port, p),
)
GTHREAD_THREADS = 4  # gunicorn's gthread workers: threads per worker process


def gunicorn_argv(worker_class: str, port: int) -> list[str]:
    threads = ["--threads", str(GTHREAD_THREADS)] if worker_class == "gthread" else []
    return [sys.executable, "-m", "gunicorn", "--workers", str(PROCESSES), "--worker-class", worker_class,
            *threads, "--bind", f"{HOST}:{port}", "hello_wsgi:app"]


GUNICORN_SYNC = Server(
    "gunicorn (sync)", ours=False, requires_modules=("gunicorn",), protocol="http",
    argv=lambda port, p: gunicorn_argv("sync", port),
)
GUNICORN_GTHREAD = Server(
    "gunicorn (gthread)", ours=False, requires_modules=("gunicorn",), protocol="http",
    argv=lambda port, p: gunicorn_argv("gthread", port),
)
FCGIKIT_SPAWN = Server(
    "fcgikit.spawn", ours=True, requires_modules=("fcgikit.spawn.__main__",), needs_c_hello=True,
    argv=lambda port, p: [sys.executable, "-m", "fcgikit.spawn", *pool_flags(port), "--", str(p.c_hello)],
)
SPAWN_FCGI = Server(
    "spawn-fcgi", ours=False, requires_programs=("spawn-fcgi",), needs_c_hello=True, writes_pidfile=True,
    argv=lambda port, p: ["spawn-fcgi", "-a", HOST, "-p", str(port), "-F", str(PROCESSES),
                          "-P", str(p.pidfile(port)), "--", str(p.c_hello)],
)


def php_fpm_program() -> str:
    """Debian's php-fpm binary is versioned (php-fpm8.2); the newest one installed."""
    if shutil.which("php-fpm"):
        return "php-fpm"
    found = sorted(glob.glob("/usr/sbin/php-fpm[0-9]*"), key=lambda path: [
        int(part) if part.isdigit() else 0 for part in path.rsplit("php-fpm", 1)[1].split(".")])
    return found[-1] if found else "php-fpm"


def php_fpm_config(port: int) -> str:
    """php-fpm's own config for one pool: static, PROCESSES children, no access log.

    Nothing else of the system's (/etc/php/*/fpm/pool.d) is read; php.ini is Debian's, as
    php-cgi's is (/etc/php/*/cgi/php.ini: the same production defaults). No `user`: as root
    php-fpm runs with -R and its children stay root, as the php-cgi children of fcgikit.spawn do."""
    return (f"[global]\nerror_log = /proc/self/fd/2\ndaemonize = no\n\n"
            f"[bench]\nlisten = {HOST}:{port}\npm = static\npm.max_children = {PROCESSES}\n")


def write_php_fpm_config(port: int, p: Paths) -> None:
    p.php_fpm_conf(port).write_text(php_fpm_config(port))


PHP_FPM = Server(
    "php-fpm", ours=False, requires_programs=(php_fpm_program(),), prepare=write_php_fpm_config,
    argv=lambda port, p: [php_fpm_program(), "-F", "-O", "-y", str(p.php_fpm_conf(port)),
                          *(["-R"] if os.geteuid() == 0 else [])],
)
# PHP_FCGI_CHILDREN unset: one php-cgi per slot, the manager supervising each.
SPAWN_PHP = Server(
    "fcgikit.spawn + php-cgi", ours=True, requires_modules=("fcgikit.spawn.__main__",),
    requires_programs=("php-cgi",),
    argv=lambda port, p: [sys.executable, "-m", "fcgikit.spawn", *pool_flags(port), "--", "php-cgi"],
)
# php-cgi leaves after PHP_FCGI_MAX_REQUESTS requests, 500 when the variable is unset, and the
# manager starts another. fcgikit.spawn sets it to 0 (never) when --max-requests is 0, as
# php-fpm's pm.max_requests is by default; this scenario shows what php-cgi's own 500 costs.
SPAWN_PHP_RECYCLE_500 = dataclasses.replace(
    SPAWN_PHP, name="fcgikit.spawn + php-cgi, PHP_FCGI_MAX_REQUESTS=500",
    argv=lambda port, p: ["env", "PHP_FCGI_MAX_REQUESTS=500", *SPAWN_PHP.command(port, p)],
)
FCGIKIT_CGI = Server(
    "fcgikit.cgi", ours=True, requires_modules=("fcgikit.cgi.__main__",), forks_per_request=True,
    argv=lambda port, p: [sys.executable, "-m", "fcgikit.cgi", *pool_flags(port), "--root", str(p.www_dir)],
)
FCGIWRAP = Server(
    "fcgiwrap", ours=False, requires_programs=("fcgiwrap",), forks_per_request=True,
    argv=lambda port, p: ["fcgiwrap", "-c", str(PROCESSES), "-s", f"tcp:{HOST}:{port}"],
)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    server: Server
    workload: Workload
    keep_conn: bool = False  # nginx: upstream keepalive (+ fastcgi_keep_conn on for FastCGI)
    # with keep_conn: the idle connections nginx's upstream keeps. 16, as the figures of issues 6
    # and 16 were measured; the stack renders 64 since 2026-12-05 (the -ka64 scenario is that).
    keepalive: int = 16
    # --quick measures it at the highest concurrency only, without a warm-up: the peers
    # added for issue 16 keep CI's quick run short (it checks they answer, not their speed).
    quick_brief: bool = False

    @property
    def ours(self) -> bool:
        return self.server.ours


SCENARIOS = [
    Scenario("nginx-return", "nginx `return 200` itself (the ceiling)", NGINX_ONLY, CEILING),
    Scenario("serve-hello", "fcgikit.serve, WSGI hello", SERVE, HELLO),
    Scenario("serve-hello-keepconn", "fcgikit.serve, WSGI hello, fastcgi_keep_conn", SERVE, HELLO, keep_conn=True),
    Scenario("flup-hello", "flup prefork, WSGI hello", FLUP, HELLO),
    Scenario("uwsgi-hello", "uWSGI FastCGI mode, WSGI hello", UWSGI, HELLO),
    Scenario("spawn-c-hello", "fcgikit.spawn + libfcgi C hello", FCGIKIT_SPAWN, HELLO),
    Scenario("spawn-fcgi-c-hello", "spawn-fcgi + libfcgi C hello", SPAWN_FCGI, HELLO),
    Scenario("cgi-py-hello", "fcgikit.cgi, Python CGI hello", FCGIKIT_CGI, CGI_PY),
    Scenario("fcgiwrap-py-hello", "fcgiwrap, Python CGI hello", FCGIWRAP, CGI_PY),
    Scenario("cgi-sh-hello", "fcgikit.cgi, shell CGI hello", FCGIKIT_CGI, CGI_SH),
    Scenario("fcgiwrap-sh-hello", "fcgiwrap, shell CGI hello", FCGIWRAP, CGI_SH),
    Scenario("cgi-wsgi-hello", "fcgikit.cgi, the WSGI hello app as a CGI script", FCGIKIT_CGI, CGI_WSGI),
    Scenario("serve-post64k", "fcgikit.serve, 64 KiB POST echoed", SERVE, ECHO_64K),
    Scenario("flup-post64k", "flup prefork, 64 KiB POST echoed", FLUP, ECHO_64K),
    Scenario("uwsgi-post64k", "uWSGI FastCGI mode, 64 KiB POST echoed", UWSGI, ECHO_64K),
    Scenario("serve-1mib", "fcgikit.serve, 1 MiB response", SERVE, BIG_1MIB),
    Scenario("flup-1mib", "flup prefork, 1 MiB response", FLUP, BIG_1MIB),
    Scenario("uwsgi-1mib", "uWSGI FastCGI mode, 1 MiB response", UWSGI, BIG_1MIB),
    # What users deploy instead (issue 16): gunicorn behind proxy_pass, uWSGI over uwsgi_pass,
    # php-fpm; and fcgikit.serve as the stack runs it (keep_conn) on the larger requests.
    *(Scenario(f"gunicorn-{kind}-{name}", f"gunicorn {kind} workers behind proxy_pass, {what}", server,
               workload, keep_conn=True, quick_brief=True)
      for kind, server in (("sync", GUNICORN_SYNC), ("gthread", GUNICORN_GTHREAD))
      for name, what, workload in (("hello", "WSGI hello", HELLO), ("post64k", "64 KiB POST echoed", ECHO_64K),
                                   ("1mib", "1 MiB response", BIG_1MIB))),
    Scenario("uwsgi-native-hello", "uWSGI over uwsgi_pass (its own protocol), WSGI hello", UWSGI_NATIVE, HELLO,
             quick_brief=True),
    Scenario("uwsgi-native-post64k", "uWSGI over uwsgi_pass, 64 KiB POST echoed", UWSGI_NATIVE, ECHO_64K,
             quick_brief=True),
    Scenario("uwsgi-native-1mib", "uWSGI over uwsgi_pass, 1 MiB response", UWSGI_NATIVE, BIG_1MIB,
             quick_brief=True),
    Scenario("serve-hello-keepconn-ka64", "fcgikit.serve, WSGI hello, fastcgi_keep_conn, upstream keepalive 64",
             SERVE, HELLO, keep_conn=True, keepalive=64, quick_brief=True),
    Scenario("serve-post64k-keepconn", "fcgikit.serve, 64 KiB POST echoed, fastcgi_keep_conn", SERVE, ECHO_64K,
             keep_conn=True, quick_brief=True),
    Scenario("serve-1mib-keepconn", "fcgikit.serve, 1 MiB response, fastcgi_keep_conn", SERVE, BIG_1MIB,
             keep_conn=True, quick_brief=True),
    Scenario("spawn-php-hello", "fcgikit.spawn + php-cgi (one per slot), PHP hello", SPAWN_PHP, PHP_HELLO,
             quick_brief=True),
    Scenario("spawn-php-hello-recycle500", "fcgikit.spawn + php-cgi, PHP_FCGI_MAX_REQUESTS=500 (php-cgi's "
             "own default), PHP hello", SPAWN_PHP_RECYCLE_500, PHP_HELLO, quick_brief=True),
    Scenario("php-fpm-hello", "php-fpm, pm = static, PHP hello", PHP_FPM, PHP_HELLO, quick_brief=True),
]

# --containers: the same HTTP requests against a running `fcgikit up` stack, whatever app it serves,
# so only the status (and for the echo, the length) is checked.
STACK_SCENARIOS = [
    Scenario("stack-hello", "stack: GET / (WSGI workers)", NGINX_ONLY, Workload("/", expect_body=None)),
    Scenario("stack-post64k", "stack: 64 KiB POST to /echo", NGINX_ONLY, ECHO_64K),
    Scenario("stack-cgi-sh", "stack: shell CGI script", NGINX_ONLY, Workload("/cgi-bin/hello.sh", expect_body=None)),
    Scenario("stack-cgi-py", "stack: Python CGI script", NGINX_ONLY, Workload("/cgi-bin/hello.py", expect_body=None)),
]

# --containers without a URL: the stacks the harness builds and starts itself (bench/stacks.py),
# the same WSGI app in each, PROCESSES worker processes in one app container behind nginx in
# a container. The fcgikit stack is `fcgikit up`'s own; the peers use its nginx image and config.
STACK_FCGIKIT = Server("fcgikit stack (fcgikit up: nginx + fcgikit.serve, fastcgi_keep_conn)", ours=True,
                       stack="fcgikit")
# The same worker container behind a second nginx with a static upstream, as the stack's edge
# was before it followed the workers without reloads (issue 18's Lua balancer): the edge's cost.
STACK_FCGIKIT_STATIC = Server("fcgikit stack, static upstream (no Lua balancer)", ours=True, stack="fcgikit-static")
STACK_FCGIKIT_STATIC_KA16 = Server("fcgikit stack, static upstream, keepalive 16 (the old default)", ours=True,
                                   stack="fcgikit-static-ka16")
STACK_GUNICORN = Server("gunicorn stack (nginx proxy_pass + gunicorn sync workers)", ours=False, protocol="http",
                        stack="gunicorn")
STACK_UWSGI = Server("uWSGI stack (nginx uwsgi_pass + uWSGI)", ours=False, protocol="uwsgi", stack="uwsgi")
# PHP: fcgikit.spawn + php-cgi against php-fpm, in fcgikit's worker image with PHP added, behind
# fcgikit's nginx config with the PHP params.
STACK_PHP_FCGIKIT = Server("PHP stack (nginx + fcgikit.spawn -- php-cgi)", ours=True, stack="php-fcgikit")
STACK_PHP_FPM = Server("PHP stack (nginx + php-fpm, pm = static)", ours=False, stack="php-fpm")
# php-cgi forking its own children under one slot (PHP_FCGI_CHILDREN): they share its memory.
STACK_PHP_FCGIKIT_CHILDREN = Server("PHP stack (nginx + PHP_FCGI_CHILDREN=2 fcgikit.spawn -F 1 -- php-cgi)", ours=True,
                                    stack="php-fcgikit-children")
BUILT_STACK_SCENARIOS = [
    *(Scenario(f"stack-{server.stack}-{name}", f"{server.name}, {what}", server, workload, quick_brief=True)
      for server in (STACK_FCGIKIT, STACK_GUNICORN, STACK_UWSGI)
      for name, what, workload in (("hello", "WSGI hello", HELLO), ("post64k", "64 KiB POST echoed", ECHO_64K),
                                   ("1mib", "1 MiB response", BIG_1MIB))),
    Scenario("stack-fcgikit-static-hello", f"{STACK_FCGIKIT_STATIC.name}, WSGI hello", STACK_FCGIKIT_STATIC, HELLO,
             quick_brief=True),
    Scenario("stack-fcgikit-static-ka16-hello", f"{STACK_FCGIKIT_STATIC_KA16.name}, WSGI hello",
             STACK_FCGIKIT_STATIC_KA16, HELLO, quick_brief=True),
    *(Scenario(f"stack-{server.stack}-hello", f"{server.name}, PHP hello", server, PHP_HELLO, quick_brief=True)
      for server in (STACK_PHP_FCGIKIT, STACK_PHP_FPM, STACK_PHP_FCGIKIT_CHILDREN)),
]


@dataclass(frozen=True)
class Comparison:
    """ours / peer in requests per second; `target` is the ratio to reach, None if informative."""

    ours: str
    peer: str
    target: float | None
    what: str


COMPARISONS = [
    Comparison("serve-hello", "flup-hello", 2.0, "fcgikit.serve vs flup"),
    Comparison("serve-hello", "uwsgi-hello", 1.0, "fcgikit.serve vs uWSGI"),
    Comparison("serve-hello", "cgi-wsgi-hello", 20.0, "FastCGI worker vs fork-CGI, same app"),
    Comparison("cgi-py-hello", "fcgiwrap-py-hello", 0.9, "fcgikit.cgi vs fcgiwrap, Python script"),
    Comparison("cgi-sh-hello", "fcgiwrap-sh-hello", 0.9, "fcgikit.cgi vs fcgiwrap, shell script"),
    Comparison("spawn-c-hello", "spawn-fcgi-c-hello", 0.95, "fcgikit.spawn vs spawn-fcgi, same C program"),
    Comparison("serve-hello-keepconn", "serve-hello", None, "fcgikit.serve with keep_conn vs without"),
    Comparison("serve-post64k", "flup-post64k", None, "64 KiB POST: fcgikit.serve vs flup"),
    Comparison("serve-post64k", "uwsgi-post64k", None, "64 KiB POST: fcgikit.serve vs uWSGI"),
    Comparison("serve-1mib", "flup-1mib", None, "1 MiB response: fcgikit.serve vs flup"),
    Comparison("serve-1mib", "uwsgi-1mib", None, "1 MiB response: fcgikit.serve vs uWSGI"),
    Comparison("serve-hello", "nginx-return", None, "fcgikit.serve vs the nginx ceiling"),
    # Issue 16: what users deploy instead.
    Comparison("serve-hello-keepconn", "gunicorn-sync-hello", 2.0, "fcgikit.serve (keep_conn) vs gunicorn sync"),
    Comparison("serve-hello-keepconn", "uwsgi-native-hello", 1.3, "fcgikit.serve (keep_conn) vs uWSGI uwsgi_pass"),
    Comparison("serve-hello", "uwsgi-native-hello", 1.0, "fcgikit.serve (no keep_conn) vs uWSGI uwsgi_pass"),
    Comparison("spawn-php-hello", "php-fpm-hello", 0.95, "fcgikit.spawn + php-cgi vs php-fpm static"),
    Comparison("serve-hello-keepconn-ka64", "uwsgi-native-hello", None,
               "fcgikit.serve (keep_conn, keepalive 64) vs uWSGI uwsgi_pass"),
    Comparison("serve-hello-keepconn-ka64", "serve-hello-keepconn", None,
               "fcgikit.serve keep_conn: upstream keepalive 64 vs 16"),
    Comparison("spawn-php-hello-recycle500", "php-fpm-hello", None,
               "fcgikit.spawn + php-cgi recycled every 500 requests (php-cgi's default) vs php-fpm static"),
    Comparison("serve-hello-keepconn", "gunicorn-gthread-hello", None, "fcgikit.serve (keep_conn) vs gunicorn gthread"),
    Comparison("serve-hello", "gunicorn-sync-hello", None, "fcgikit.serve (no keep_conn) vs gunicorn sync"),
    Comparison("uwsgi-native-hello", "uwsgi-hello", None, "uWSGI: uwsgi_pass vs its FastCGI mode"),
    Comparison("serve-post64k-keepconn", "gunicorn-sync-post64k", None,
               "64 KiB POST: fcgikit.serve (keep_conn) vs gunicorn sync"),
    Comparison("serve-post64k-keepconn", "gunicorn-gthread-post64k", None,
               "64 KiB POST: fcgikit.serve (keep_conn) vs gunicorn gthread"),
    Comparison("serve-post64k-keepconn", "uwsgi-native-post64k", None,
               "64 KiB POST: fcgikit.serve (keep_conn) vs uWSGI uwsgi_pass"),
    Comparison("serve-1mib-keepconn", "gunicorn-sync-1mib", None,
               "1 MiB response: fcgikit.serve (keep_conn) vs gunicorn sync"),
    Comparison("serve-1mib-keepconn", "gunicorn-gthread-1mib", None,
               "1 MiB response: fcgikit.serve (keep_conn) vs gunicorn gthread"),
    Comparison("serve-1mib-keepconn", "uwsgi-native-1mib", None,
               "1 MiB response: fcgikit.serve (keep_conn) vs uWSGI uwsgi_pass"),
    # Issue 16: the container stacks (--containers without a URL).
    Comparison("stack-fcgikit-hello", "stack-gunicorn-hello", 2.0, "fcgikit stack vs gunicorn stack"),
    Comparison("stack-fcgikit-hello", "stack-uwsgi-hello", 1.2, "fcgikit stack vs uWSGI stack (uwsgi_pass)"),
    Comparison("stack-fcgikit-post64k", "stack-gunicorn-post64k", None, "64 KiB POST: fcgikit stack vs gunicorn stack"),
    Comparison("stack-fcgikit-post64k", "stack-uwsgi-post64k", None, "64 KiB POST: fcgikit stack vs uWSGI stack"),
    Comparison("stack-fcgikit-1mib", "stack-gunicorn-1mib", None, "1 MiB response: fcgikit stack vs gunicorn stack"),
    Comparison("stack-fcgikit-1mib", "stack-uwsgi-1mib", None, "1 MiB response: fcgikit stack vs uWSGI stack"),
    Comparison("stack-fcgikit-hello", "stack-fcgikit-static-hello", 0.95,
               "fcgikit stack: the Lua balancer edge vs a static upstream"),
    Comparison("stack-fcgikit-static-hello", "stack-fcgikit-static-ka16-hello", None,
               "fcgikit stack, static upstream: keepalive 64 (the default) vs 16"),
    Comparison("stack-fcgikit-static-hello", "stack-uwsgi-hello", None,
               "fcgikit stack, static upstream vs uWSGI stack"),
    Comparison("stack-php-fcgikit-hello", "stack-php-fpm-hello", 0.95,
               "PHP stack: fcgikit.spawn + php-cgi vs php-fpm static"),
    Comparison("stack-php-fcgikit-children-hello", "stack-php-fpm-hello", None,
               "PHP stack: php-cgi's own PHP_FCGI_CHILDREN under one slot vs php-fpm static"),
    Comparison("stack-php-fcgikit-children-hello", "stack-php-fcgikit-hello", None,
               "PHP stack: php-cgi's own PHP_FCGI_CHILDREN (shared memory) vs one php-cgi per slot"),
]

# The memory target: one fcgikit.serve child with the hello app stays under this RSS.
CHILD_RSS_TARGET = ("serve-hello", 25 * 1024 * 1024)


def baseline(src_dir: Path) -> tuple[list[Scenario], list[Comparison]]:
    """fcgikit.serve's hello scenarios run from another checkout's `src/` (the code before a
    change), measured in the same run as the working tree's: an A/B that the machine's
    run-to-run swings do not blur."""
    src = str(Path(src_dir).resolve())
    server = dataclasses.replace(
        SERVE, name="fcgikit.serve (baseline)",
        argv=lambda port, p: ["env", f"PYTHONPATH={src}{os.pathsep}{p.apps_dir}", *SERVE.command(port, p)])
    scenarios = [Scenario("baseline-serve-hello", f"fcgikit.serve from {src}, WSGI hello", server, HELLO)]
    comparisons = [Comparison("serve-hello", "baseline-serve-hello", None, "fcgikit.serve: working tree vs baseline"),
                   Comparison("baseline-serve-hello", "uwsgi-hello", None, "baseline fcgikit.serve vs uWSGI")]
    return scenarios, comparisons


STACK_BASELINE_PREFIX = "baseline-"


def stack_baseline() -> tuple[list[Scenario], list[Comparison]]:
    """--containers-baseline URL: the stack scenarios against a second stack (e.g. one deployed
    from the code before a change), measured in the same rounds as the first: stack-hello vs
    baseline-stack-hello is the cost of the change through the whole stack (issue 18: the Lua
    edge may cost at most 5% against a static upstream)."""
    scenarios = [dataclasses.replace(s, name=STACK_BASELINE_PREFIX + s.name, title=f"baseline {s.title}")
                 for s in STACK_SCENARIOS]
    comparisons = [Comparison(s.name, STACK_BASELINE_PREFIX + s.name, 0.95 if s.name == "stack-hello" else None,
                              f"{s.name}: the stack vs the baseline stack") for s in STACK_SCENARIOS]
    return scenarios, comparisons


def select(scenarios: list[Scenario], only: list[str] | None) -> list[Scenario]:
    """The scenarios named in `only` (exact names or prefixes such as "serve"), in list order."""
    if not only:
        return list(scenarios)
    chosen = [s for s in scenarios if any(s.name == o or s.name.startswith(o) for o in only)]
    unknown = [o for o in only if not any(s.name == o or s.name.startswith(o) for s in scenarios)]
    if unknown:
        raise ValueError(f"no scenario named {', '.join(unknown)}; known: {', '.join(s.name for s in scenarios)}")
    return chosen
