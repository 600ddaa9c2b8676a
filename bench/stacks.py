"""`python3 -m bench --containers` without a URL: the container stacks, built and started here.

Five stacks on this host, each nginx in a container in front of one app container on a
Docker network of its own, all from the same base image (fcgikit/base:bookworm):

- fcgikit: started by `fcgikit up` from a stack file written here (bench/apps/hello_wsgi.py,
  PROCESSES worker processes in one container, no recycling, no CGI service), exactly as a
  user gets it: fcgikit's nginx config (upstream keepalive, fastcgi_keep_conn) and images.
- gunicorn: `gunicorn --workers PROCESSES` (sync workers) behind `proxy_pass`;
- uwsgi: `uwsgi --socket --processes PROCESSES` behind `uwsgi_pass` (its own protocol);
- php-fcgikit: `python3 -m fcgikit.spawn -F PROCESSES -- php-cgi`, and php-fpm: `php-fpm -F` with
  `pm = static`, PROCESSES children (and php-fcgikit-children: `PHP_FCGI_CHILDREN=PROCESSES
  fcgikit.spawn -F 1 -- php-cgi`, php-cgi forking its own children): the same script
  (bench/apps/www/php/hello.php) behind
  fcgikit's nginx config with the PHP params (SCRIPT_FILENAME, REDIRECT_STATUS), without
  keep_conn (a PHP process serves one connection at a time).
  (`fcgikit up` itself cannot run php-cgi yet: its nginx config sends a `program` no
  SCRIPT_FILENAME, and php-cgi answers 404 "No input file specified".)

The peers' app image is bench/containers/peers.Dockerfile: the same base with Debian's
gunicorn, uWSGI, php-cgi and php-fpm, and fcgikit's runtime from the stack's worker image. Their nginx is
fcgikit's own nginx image, run as fcgikit runs it, with fcgikit's rendered config whose
`location /` is translated to the peer's protocol (same timeouts, retries, keepalive, access
log). Every container is confined alike (read-only root, no capabilities, the same memory and
pids limits). Names: `fcgikit-bench-*`; everything this module starts, it removes at the end.

The processes of a container are this host's processes, so the harness reads their CPU time
and memory from /proc as for the bare-process scenarios: the app container's tree is "the
server", the nginx container's tree "nginx".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .scenarios import APPS_DIR, BENCH_DIR, PROCESSES

PREFIX = "fcgikit-bench"  # compose project, container, network and image names
FCGIKIT_PROJECT = f"{PREFIX}-fcgikit"
PEER_IMAGE = f"{PREFIX}/peers:latest"
PHP_ROOT = "/srv/www"  # in the PHP image: the script is /srv/www/php/hello.php, served at /php/hello.php
BASE_IMAGE = "fcgikit/base:bookworm"  # fcgikit up's default base; the peers' image is built on its worker image
LABEL = "fcgikit.bench"  # on the peers' containers and network: which stack
APP_PORT = 9000
WORKERS_UPSTREAM = "fcgikit_workers"  # the upstream name in fcgikit's rendered config

# As `fcgikit up` confines its containers (fcgikit.deploy.model): the peers get the same.
CONFINE = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
           "--memory", "512m", "--pids-limit", "256"]
NGINX_TMPFS = ["/run/nginx:uid=33,gid=33", "/run/fcgikit:uid=33,gid=33", "/var/lib/nginx:uid=33,gid=33"]

PEER_COMMANDS = {
    "gunicorn": ["python3", "-m", "gunicorn", "--workers", str(PROCESSES), "--worker-class", "sync",
                 "--bind", f"0.0.0.0:{APP_PORT}", "hello_wsgi:app"],
    "uwsgi": ["uwsgi", "--plugin", "python3", "--socket", f"0.0.0.0:{APP_PORT}", "--wsgi-file",
              "/srv/app/hello_wsgi.py", "--callable", "app", "--master", "--processes", str(PROCESSES),
              "--disable-logging", "--die-on-term"],
}
PEER_COMMANDS.update({
    "php-fcgikit": ["python3", "-m", "fcgikit.spawn", "-n", "-a", "0.0.0.0", "-p", str(APP_PORT),
                    "-F", str(PROCESSES), "--", "php-cgi"],
    "php-fpm": ["php-fpm", "-F", "-O", "-y", "/etc/bench-php-fpm.conf"],
    # One php-cgi under one slot, forking PROCESSES children of its own (PHP_FCGI_CHILDREN, as
    # spawn-fcgi -C sets it): the children share the memory php-cgi set up before forking (its
    # opcache, its tables), as php-fpm's children share the master's; one php-cgi per slot
    # shares none. Informative: what that sharing is worth (docs/bench.md, issue 16, session 9).
    "php-fcgikit-children": ["env", f"PHP_FCGI_CHILDREN={PROCESSES}", "python3", "-m", "fcgikit.spawn", "-n", "-a",
                             "0.0.0.0", "-p", str(APP_PORT), "-F", "1", "--", "php-cgi"],
})
PEER_PROTOCOLS = {"gunicorn": "http", "uwsgi": "uwsgi", "php-fcgikit": "php", "php-fpm": "php",
                  "php-fcgikit-children": "php"}
# Second edges in front of the fcgikit stack's worker container: a static upstream (the edge
# before issue 18's Lua balancer) with the stack's own keepalive (64 since 2026-12-05), and the
# same with keepalive 16 (the old default: what too few idle connections per nginx worker cost
# at 64 concurrent requests).
STATIC_EDGES = {"fcgikit-static": None, "fcgikit-static-ka16": 16}
STACK_ORDER = ["fcgikit", *STATIC_EDGES, *PEER_COMMANDS]  # the fcgikit stack comes up first: the others use its images


class StackError(RuntimeError):
    pass


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    try:
        done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise StackError("docker is not installed") from None
    except subprocess.TimeoutExpired:
        raise StackError(f"docker {' '.join(args[:3])} ... took over {timeout:.0f} s") from None
    if check and done.returncode != 0:
        raise StackError(f"docker {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def docker_missing() -> str | None:
    """Why the stacks cannot run here, or None."""
    if not shutil.which("docker"):
        return "docker is not installed"
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except StackError as exc:
        return f"the Docker engine does not answer: {exc}"
    return None


def container_pid(container: str) -> int:
    return int(docker("inspect", "-f", "{{.State.Pid}}", container).strip())


@dataclass
class Stack:
    """One running stack: its URL and the containers that make it."""

    name: str
    url: str
    app_containers: list[str]
    edge_container: str
    app_pids: set[int] = field(default_factory=set)
    edge_pids: set[int] = field(default_factory=set)

    def refresh_pids(self) -> None:
        self.app_pids = {container_pid(c) for c in self.app_containers}
        self.edge_pids = {container_pid(self.edge_container)}

    def edge_log(self) -> str:
        """nginx's error log (its stderr; the access log is stdout)."""
        done = subprocess.run(["docker", "logs", self.edge_container], capture_output=True, text=True, timeout=60)
        return done.stderr

    def app_log(self) -> str:
        done = subprocess.run(["docker", "logs", "--tail", "50", self.app_containers[0]], capture_output=True,
                              text=True, timeout=60)
        return done.stdout + done.stderr


def fcgikit_stack_file(port: int) -> str:
    """The stack file for `fcgikit up`: the bench's app, PROCESSES processes in one container."""
    return json.dumps({
        "project": FCGIKIT_PROJECT,
        "services": {
            "nginx": {"port": port},
            "workers": {"app": "hello_wsgi:app", "path": str(APPS_DIR), "processes": PROCESSES, "replicas": 1,
                        "max_requests": 0},
        },
    }, indent=2) + "\n"


def fcgikit_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fcgikit.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def peer_location(fastcgi_location: str, protocol: str) -> str:
    """fcgikit's rendered `location / { fastcgi_... }` translated to proxy_pass or uwsgi_pass:
    the same timeouts, retries and params (uwsgi), nothing else changed."""
    lines = []
    if protocol == "php":  # FastCGI still, the script's file named as PHP wants it
        for line in fastcgi_location.splitlines():
            pad = line[:len(line) - len(line.lstrip())]
            if line.strip() == "fastcgi_keep_conn on;":
                # A PHP process serves one connection at a time: a connection nginx keeps idle
                # holds a process (p99 in the hundreds of ms). PHP users' nginx (Debian's
                # snippets/fastcgi-php.conf) does not keep them; neither side does here.
                continue
            if line.strip() == 'fastcgi_param SCRIPT_NAME "";':
                lines.append(f"{pad}fastcgi_param SCRIPT_NAME $fastcgi_script_name;")
            elif line.strip() == "fastcgi_param PATH_INFO $uri;":
                lines += [f"{pad}fastcgi_param SCRIPT_FILENAME {PHP_ROOT}$fastcgi_script_name;",
                          f"{pad}fastcgi_param DOCUMENT_ROOT {PHP_ROOT};",
                          f"{pad}fastcgi_param REDIRECT_STATUS 200;"]
            else:
                lines.append(line)
        if len(lines) != len(fastcgi_location.splitlines()) + 1:
            raise StackError("fcgikit's `location /` no longer sets SCRIPT_NAME \"\" and PATH_INFO $uri")
        return "\n".join(lines)
    for line in fastcgi_location.splitlines():
        text = line.strip()
        pad = line[:len(line) - len(line.lstrip())]
        if protocol == "uwsgi":
            if text == "fastcgi_keep_conn on;":
                continue  # the uwsgi protocol has no keep-alive
            lines.append(line.replace("fastcgi_", "uwsgi_"))
        else:
            if text.startswith("fastcgi_param "):
                continue  # HTTP carries the request itself
            if text == "fastcgi_keep_conn on;":
                # upstream keepalive over HTTP, as nginx documents it
                lines += [f"{pad}proxy_http_version 1.1;", f'{pad}proxy_set_header Connection "";',
                          f"{pad}proxy_set_header Host $host;",
                          f"{pad}proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                          f"{pad}proxy_set_header X-Forwarded-Proto $scheme;"]
            elif text.startswith("fastcgi_pass "):
                lines.append(f"{pad}proxy_pass http://{text.split()[1]}")
            else:
                lines.append(line.replace("fastcgi_", "proxy_"))
    return "\n".join(lines)


LOCATION_ROOT = re.compile(r"^( *)location / \{\n.*?^\1\}", re.S | re.M)


UPSTREAM_BLOCK = re.compile(rf"^( *)upstream {WORKERS_UPSTREAM} \{{\n(.*?)^\1\}}", re.S | re.M)
# The Lua edge (issue 18): its module, its http-level lines, its balancer.
LUA_LINES = re.compile(r"^ *(load_module modules/(ndk_http|ngx_http_lua)_module\.so;|lua_[a-z_]+ |"
                       r"init_worker_by_lua_block )[^\n]*\n", re.M)


def static_edge_conf(fcgikit_conf: str, app_address: str, keepalive_connections: int | None = None) -> str:
    """fcgikit's nginx.conf with a plain upstream: one static `server app_address`, the same
    keepalive, no Lua balancer (what a gunicorn or php-fpm user's nginx has; and fcgikit's
    own edge as it was before it followed the workers without reloads)."""
    match = UPSTREAM_BLOCK.search(fcgikit_conf)
    keepalive = re.search(r"^ *keepalive \d+;", match.group(2), re.M) if match else None
    if not match or not keepalive:
        raise StackError(f"the fcgikit stack's nginx.conf has no upstream {WORKERS_UPSTREAM} with keepalive")
    pad = match.group(1) + "    "
    keepalive_line = f"keepalive {keepalive_connections};" if keepalive_connections else keepalive.group(0).strip()
    upstream = (f"{match.group(1)}upstream {WORKERS_UPSTREAM} {{\n"
                f"{pad}server {app_address} max_fails=1 fail_timeout=2s;\n{pad}{keepalive_line}\n"
                f"{match.group(1)}}}")
    conf = fcgikit_conf[:match.start()] + upstream + fcgikit_conf[match.end():]
    conf = LUA_LINES.sub("", conf)
    if "lua" in conf:
        raise StackError("the fcgikit stack's nginx.conf uses Lua where bench/stacks.py does not expect it")
    return conf


def peer_nginx_conf(fcgikit_conf: str, protocol: str, app_address: str) -> str:
    """The fcgikit stack's nginx.conf with a static upstream to `app_address` and `location /`
    speaking the peer's protocol ("fastcgi": unchanged)."""
    conf = static_edge_conf(fcgikit_conf, app_address)
    if protocol == "fastcgi":
        return conf
    match = LOCATION_ROOT.search(conf)
    if not match or "fastcgi_pass" not in match.group(0):
        raise StackError("the fcgikit stack's nginx.conf has no `location /` with fastcgi_pass")
    return conf[:match.start()] + peer_location(match.group(0), protocol) + conf[match.end():]


class Stacks:
    """Brings the stacks up (`up`) and removes all it started (`down`)."""

    def __init__(self, names: list[str], work_dir: Path, log=print) -> None:
        self.names, self.work_dir, self.log = names, work_dir, log
        self.running: dict[str, Stack] = {}
        self.started_containers: list[str] = []
        self.started_networks: list[str] = []
        self.fcgikit_file: Path | None = None

    def up(self) -> dict[str, Stack]:
        """Every stack named, up and answering; the fcgikit stack first (its nginx image and
        config are the peers' too). Raises StackError, having removed what it started."""
        from fcgikit.testing import free_port

        try:
            port = free_port()
            self.fcgikit_file = self.work_dir / "fcgikit-bench.yaml"
            self.fcgikit_file.write_text(fcgikit_stack_file(port))
            self.log(f"bench: fcgikit up -p {FCGIKIT_PROJECT} (builds the images when missing) ...")
            done = fcgikit_cli("up", "-f", str(self.fcgikit_file), "--image-prefix", PREFIX, "--base", BASE_IMAGE)
            if done.returncode != 0:
                raise StackError(f"fcgikit up failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            edge, workers = self.project_containers(FCGIKIT_PROJECT)
            fcgikit = Stack("fcgikit", f"http://127.0.0.1:{port}", workers, edge)
            fcgikit.refresh_pids()
            self.running["fcgikit"] = fcgikit
            nginx_image = docker("inspect", "-f", "{{.Config.Image}}", edge).strip()
            conf = docker("exec", edge, "cat", "/etc/nginx/nginx.conf")
            for name in STATIC_EDGES:
                if name in self.names:
                    self.running[name] = self.start_static_edge(name, fcgikit, nginx_image, conf)
            peers = [name for name in self.names if name in PEER_COMMANDS]
            if peers:
                image = self.build_peer_image(docker("inspect", "-f", "{{.Config.Image}}", workers[0]).strip())
                for name in peers:
                    self.running[name] = self.start_peer(name, image, nginx_image, conf)
        except BaseException:
            self.down()
            raise
        return self.running

    @staticmethod
    def project_containers(project: str) -> tuple[str, list[str]]:
        rows = docker("ps", "--filter", f"label=fcgikit.project={project}", "--format",
                      '{{.Names}} {{.Label "fcgikit.service"}}').split("\n")
        by_service: dict[str, list[str]] = {}
        for row in filter(None, rows):
            name, _, service = row.partition(" ")
            by_service.setdefault(service, []).append(name)
        if len(by_service.get("nginx", [])) != 1 or not by_service.get("workers"):
            raise StackError(f"project {project}: expected one nginx and the workers running, found {by_service}")
        return by_service["nginx"][0], sorted(by_service["workers"])

    def build_peer_image(self, worker_image: str) -> str:
        """bench/containers/peers.Dockerfile: the base, the peers from Debian, fcgikit's runtime
        from the stack's worker image."""
        from .scenarios import WWW_DIR, php_fpm_config

        context = self.work_dir / "peers-context"
        context.mkdir(exist_ok=True)
        shutil.copy(BENCH_DIR / "containers" / "peers.Dockerfile", context / "Dockerfile")
        shutil.copy(APPS_DIR / "hello_wsgi.py", context / "hello_wsgi.py")
        shutil.copy(WWW_DIR / "php" / "hello.php", context / "hello.php")
        (context / "php-fpm.conf").write_text(php_fpm_config(APP_PORT).replace("127.0.0.1:", "0.0.0.0:"))
        self.log(f"bench: docker build {PEER_IMAGE} (gunicorn, uWSGI, php-cgi and php-fpm from Debian on "
                 f"{BASE_IMAGE}, fcgikit from {worker_image}) ...")
        docker("build", "-q", "--build-arg", f"WORKER_IMAGE={worker_image}", "--build-arg", f"BASE={BASE_IMAGE}",
               "--label", f"{LABEL}=peers",
               "-t", PEER_IMAGE, str(context), timeout=900)
        return PEER_IMAGE

    @staticmethod
    def remove_leftovers(name: str, containers: list[str], network: str | None) -> None:
        """What a killed run left: ours by name and label."""
        for container in containers:
            if docker("ps", "-aq", "--filter", f"name=^{container}$", "--filter", f"label={LABEL}={name}").strip():
                docker("rm", "-f", container)
        if network and docker("network", "ls", "-q", "--filter", f"name=^{network}$", "--filter",
                              f"label={LABEL}={name}").strip():
            docker("network", "rm", network)

    def start_edge(self, name: str, network: str, nginx_image: str, conf: str) -> tuple[str, str]:
        """An nginx container (fcgikit's image, confined as fcgikit runs it) with `conf`; its URL."""
        from fcgikit.testing import free_port

        edge = f"{PREFIX}-{name}-nginx"
        conf_path = self.work_dir / f"nginx-{name}.conf"
        conf_path.write_text(conf)
        conf_path.chmod(0o644)
        port = free_port()
        tmpfs = [arg for path in NGINX_TMPFS for arg in ("--tmpfs", path)]
        docker("run", "-d", "--name", edge, "--label", f"{LABEL}={name}", "--network", network,
               "-p", f"127.0.0.1:{port}:8080", "--read-only", *tmpfs, "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", "--memory", "256m", "--pids-limit", "256",
               "-v", f"{conf_path}:/etc/nginx/nginx.conf:ro", nginx_image)
        self.started_containers.append(edge)
        return edge, f"http://127.0.0.1:{port}"

    def start_peer(self, name: str, image: str, nginx_image: str, fcgikit_conf: str) -> Stack:
        network, app = f"{PREFIX}-{name}", f"{PREFIX}-{name}-app"
        self.remove_leftovers(name, [app, f"{PREFIX}-{name}-nginx"], network)
        docker("network", "create", "--label", f"{LABEL}={name}", network)
        self.started_networks.append(network)
        docker("run", "-d", "--name", app, "--label", f"{LABEL}={name}", "--network", network,
               "--network-alias", "app", *CONFINE, image, *PEER_COMMANDS[name])
        self.started_containers.append(app)
        conf = peer_nginx_conf(fcgikit_conf, PEER_PROTOCOLS[name], f"app:{APP_PORT}")
        edge, url = self.start_edge(name, network, nginx_image, conf)
        stack = Stack(name, url, [app], edge)
        stack.refresh_pids()
        return stack

    def start_static_edge(self, name: str, fcgikit: Stack, nginx_image: str, fcgikit_conf: str) -> Stack:
        """A second nginx in front of the fcgikit stack's own worker container, on its network,
        with a static upstream instead of the Lua balancer (STATIC_EDGES)."""
        self.remove_leftovers(name, [f"{PREFIX}-{name}-nginx"], None)
        worker = fcgikit.app_containers[0]
        network, _, address = docker("inspect", "-f",
                                     "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{$v.IPAddress}}\n{{end}}",
                                     worker).strip().splitlines()[0].partition(" ")
        edge_conf = static_edge_conf(fcgikit_conf, f"{address}:{APP_PORT}", STATIC_EDGES[name])
        edge, url = self.start_edge(name, network, nginx_image, edge_conf)
        stack = Stack(name, url, list(fcgikit.app_containers), edge)
        stack.refresh_pids()
        return stack

    def down(self) -> None:
        """Removes what this run started: the peers' containers and networks, the fcgikit stack."""
        for container in reversed(self.started_containers):
            docker("rm", "-f", container, check=False)
        for network in self.started_networks:
            docker("network", "rm", network, check=False)
        self.started_containers, self.started_networks = [], []
        if self.fcgikit_file is not None:
            done = fcgikit_cli("down", "-f", str(self.fcgikit_file), timeout=300)
            if done.returncode != 0:
                self.log(f"bench: fcgikit down failed: {done.stderr.strip()[-1000:]}")
            self.fcgikit_file = None
            # `fcgikit up` records each deployment as a never-started release container (for
            # `fcgikit rollback`), which `down` keeps; the bench's project needs none.
            releases = docker("ps", "-aq", "--filter", f"label=fcgikit.release.project={FCGIKIT_PROJECT}",
                              check=False).split()
            if releases:
                docker("rm", *releases, check=False)
        self.running = {}


def temp_work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fcgikit-bench-stacks-"))
