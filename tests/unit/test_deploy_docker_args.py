"""What `--dry-run` prints is what runs: each step is executed against a fake Docker SDK
client that records the calls the engine makes, and the step's printed docker command,
parsed back as the docker CLI reads it, must hold every option the engine was given."""

import dataclasses
import io
import shlex
import tarfile

import docker.errors
import pytest

from fcgikit.deploy.docker_args import docker_run_line
from fcgikit.deploy.docker_backend import Engine
from fcgikit.deploy.hosts import Host
from fcgikit.deploy.operations import LocalEngine, Stack
from fcgikit.deploy.plan import (
    CheckEndToEnd,
    CreateNetwork,
    Observed,
    ReloadNginx,
    RemoveContainer,
    RemoveNetwork,
    RenewSecrets,
    StartContainer,
    Step,
    StopContainer,
    UpdateBackends,
    WaitAnswering,
    plan_down,
    plan_up,
)
from fcgikit.deploy.spec import CgiService, NginxService, Services, StackSpec, WorkersService

HOSTS = [Host("edge1", "10.0.0.10", frozenset({"edge"})), Host("app1", "10.0.0.11", frozenset({"workers", "cgi"}))]
IMAGES = {"workers": "fk/fcgi-worker:aaa", "cgi": "fk/fcgi-worker:aaa", "nginx": "fk/nginx:bbb"}


class FakeContainer:
    def __init__(self, client, name, status="running"):
        self.client, self.name, self.status = client, name, status
        self.labels = {}
        self.attrs = {"State": {}, "NetworkSettings": {"Networks": {}, "Ports": {}}}

    def __getattr__(self, method):  # start, stop, remove, put_archive, exec_run, ...
        def record(*args, **kwargs):
            self.client.calls.append((f"container.{method}", self.name, args, kwargs))
            if method == "exec_run":
                return type("Result", (), {"exit_code": 0, "output": b""})()
            if method == "get_archive":
                raise docker.errors.NotFound("no such file")
            return None

        return record


class FakeCollection:
    def __init__(self, client, kind):
        self.client, self.kind = client, kind

    def create(self, *args, **kwargs):
        self.client.calls.append((f"{self.kind}.create", None, args, kwargs))
        return FakeContainer(self.client, kwargs.get("name"))

    def get(self, name):
        return FakeContainer(self.client, name)

    def list(self, **kwargs):
        return [FakeContainer(self.client, "fcgikit-demo")] if self.kind == "networks" else []


class FakeClient:
    def __init__(self):
        self.calls = []
        self.containers = FakeCollection(self, "containers")
        self.networks = FakeCollection(self, "networks")


def spec_with_everything() -> StackSpec:
    """Options of every kind set: env, limits, cap_add, a fixed port, a second pool."""
    return StackSpec(services=Services(
        nginx=NginxService(port=8080),
        workers=WorkersService(app="hello_wsgi:app", replicas=2, env={"GREETING": "hello from $HOME; x"},
                               container={"cap_add": ["NET_BIND_SERVICE"], "memory": "300m", "pids": 99}),
        cgi=CgiService(replicas=1),
    ))


def steps_of_every_kind() -> list[Step]:
    """Steps of one fresh `up` on two hosts, a reload, a removal, a stopped nginx, a renewal, a `down`."""
    first = plan_up(spec_with_everything(), "demo", HOSTS, IMAGES, Observed())
    nginx = next(c for c in first.wanted if c.service == "nginx")
    from fcgikit.deploy.model import RunningContainer

    running = RunningContainer("id", nginx.name, "nginx", nginx.host, 1, nginx.image, "old", published={8080: 8080})
    worker = next(c for c in first.wanted if c.service == "workers")
    gone = RunningContainer("id2", worker.name, "workers", worker.host, 1, worker.image, "old", stop_timeout=35)
    extra = [ReloadNginx(nginx.name, nginx.host, "events {}"), StopContainer(running, 12), RemoveContainer(gone, 35),
             RenewSecrets(nginx.name, nginx.host, (("tls_cert", ""),))]
    down = plan_down("demo", Observed((gone,), frozenset({"app1"})))
    return list(first.steps) + extra + list(down.steps)


def run_recorded(step) -> list:
    client = FakeClient()
    stack = Stack(spec=spec_with_everything(), project="demo", engines=LocalEngine(HOSTS), reload_timeout=0.01)
    for host in HOSTS:
        stack._engines[host.name] = Engine(host, client)
    stack._secret_values = {"tls_cert": b"pem"}
    if isinstance(step, (UpdateBackends, CheckEndToEnd)):
        return []  # their arguments are known when they run (addresses, the published port): see below
    step.run(stack)
    return client.calls


def commands_of(line: str) -> list[list[str]]:
    """The command lines of `a && b | c`, as the shell splits them."""
    found, current = [], []
    for token in shlex.split(line):
        if token in ("&&", "|"):
            found.append(current)
            current = []
        else:
            current.append(token)
    return found + [current]


def parse_docker_run(argv: list[str]) -> dict:
    """`docker run|create OPTIONS IMAGE COMMAND...` read back into the Docker SDK's create() arguments."""
    assert argv[:2] in (["docker", "run"], ["docker", "create"]), argv
    parsed: dict = {"detach": True} if argv[1] == "create" else {}  # created, started later: never attached
    valued = {"--name": "name", "--network": "network", "--memory": "mem_limit"}
    listed = {"--cap-drop": "cap_drop", "--cap-add": "cap_add", "--security-opt": "security_opt"}
    paired = {"--label": "labels", "-e": "environment"}
    rest = iter(argv[2:])
    for token in rest:
        if not token.startswith("-"):
            parsed["image"], parsed["command"] = token, list(rest)
            break
        if token == "-d":
            parsed["detach"] = True
        elif token == "--read-only":
            parsed["read_only"] = True
        elif token in valued:
            parsed[valued[token]] = next(rest)
        elif token in listed:
            parsed.setdefault(listed[token], []).append(next(rest))
        elif token in paired:
            key, _, value = next(rest).partition("=")
            parsed.setdefault(paired[token], {})[key] = value
        elif token == "--restart":
            parsed["restart_policy"] = {"Name": next(rest)}
        elif token == "--pids-limit":
            parsed["pids_limit"] = int(next(rest))
        elif token == "--tmpfs":
            path, _, options = next(rest).partition(":")
            parsed.setdefault("tmpfs", {})[path] = options
        elif token == "-v":
            parsed.setdefault("mounts", []).append({"Target": next(rest), "Source": None, "Type": "volume",
                                                   "ReadOnly": False})
        elif token == "-p":
            *published, port = next(rest).split(":")
            address, host_port = (published if len(published) == 2 else ["", *published]) if published else ("", "")
            binding = int(host_port) if host_port else None
            parsed.setdefault("ports", {})[f"{port}/tcp"] = (address, binding) if address else binding
        else:
            raise AssertionError(f"an option the test does not know: {token}")
    return parsed


def given(arguments: dict) -> dict:
    """What the SDK call says, without the arguments that say "nothing" (None, False, empty)."""
    return {key: value for key, value in arguments.items() if value not in (None, False, [], {})}


def test_every_kind_of_step_is_among_those_checked():
    kinds = {type(step) for step in steps_of_every_kind()}
    assert kinds == set(Step.__args__)


@pytest.mark.parametrize("step", steps_of_every_kind(), ids=lambda step: type(step).__name__)
def test_the_printed_command_holds_every_option_the_engine_call_receives(step):
    line = step.docker_command()
    argvs = commands_of(line)
    calls = run_recorded(step)
    if isinstance(step, StartContainer):
        (create,) = [kwargs for call, _, _, kwargs in calls if call == "containers.create"]
        assert given(parse_docker_run(argvs[0])) == given(create)
        written = [path for call, _, args, _ in calls if call == "container.put_archive" for path in _paths(*args)]
        copied = [argv[-1].partition(":")[2] for argv in argvs if argv[:2] == ["docker", "cp"]]
        assert copied == written
        assert (argvs[-1] == ["docker", "start", create["name"]]) == bool(written)
    elif isinstance(step, CreateNetwork):
        (create,) = [kwargs for call, _, _, kwargs in calls if call == "networks.create"]
        argv = argvs[0]
        labels = dict(argv[i + 1].split("=", 1) for i, token in enumerate(argv) if token == "--label")
        assert argv[-1] == create["name"] and labels == create["labels"]
        assert argv[argv.index("--driver") + 1] == create["driver"]
    elif isinstance(step, (StopContainer, RemoveContainer)):
        stops = [kwargs for call, _, _, kwargs in calls if call == "container.stop"]
        assert stops and all(["docker", "stop", "-t", str(stop["timeout"]), step.container.name] in argvs
                             for stop in stops)
        removes = [kwargs for call, _, _, kwargs in calls if call == "container.remove"]
        assert bool(removes) == isinstance(step, RemoveContainer)
        assert all(argvs[-1] == ["docker", "rm", *(["-f"] if remove.get("force") else []),
                                 *(["-v"] if remove.get("v") else []), step.container.name] for remove in removes)
    elif isinstance(step, (WaitAnswering, ReloadNginx, RenewSecrets)):
        container = step.container.name if isinstance(step, WaitAnswering) else step.container
        ran = [args[0] for call, name, args, _ in calls if call == "container.exec_run" and name == container
               and args[0][0] in ("python3", "nginx")]  # not the engine's own looks (pids, files)
        assert ran and all(["docker", "exec", container, *argv] in argvs for argv in ran)
    elif isinstance(step, RemoveNetwork):
        assert argvs == [["docker", "network", "rm", step.name]]
    elif isinstance(step, UpdateBackends):
        # The addresses come from the engine as the step runs (IP_OF_NAME in the printed line).
        assert argvs[-1][:4] == ["docker", "exec", "-i", step.container]
        assert all(f"{pool} " in line and name in line for pool, _, name in step.backends)
    else:
        assert isinstance(step, CheckEndToEnd) and argvs == [["curl", "-fsS", step.url]]


def _paths(directory: str, archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [f"{directory.rstrip('/')}/{member.name}" for member in tar.getmembers()]


def test_an_argument_without_a_printed_option_is_refused():
    step = next(s for s in steps_of_every_kind() if isinstance(s, StartContainer))
    with pytest.raises(ValueError, match="oom_score_adj"):
        docker_run_line({**step.arguments(), "oom_score_adj": 500})


def test_the_printed_command_quotes_what_the_shell_would_split():
    step = next(s for s in steps_of_every_kind() if isinstance(s, StartContainer) and s.container.service == "workers")
    argv = commands_of(step.docker_command())[0]
    assert argv[argv.index("-e") + 1] == "GREETING=hello from $HOME; x"
    assert argv[-len(step.container.command):] == list(step.container.command)
    assert dataclasses.replace(step, nginx_conf="x").docker_command().startswith("docker create ")
