"""The pure parts of executing a plan: which steps may run at once."""

from fcgikit.deploy.model import RunningContainer
from fcgikit.deploy.operations import _batches
from fcgikit.deploy.plan import ReloadNginx, RemoveContainer, RemoveNetwork


def removal(name: str, service: str) -> RemoveContainer:
    return RemoveContainer(RunningContainer(name, name, service, "local", 1, "img", "hash"), 10)


def test_consecutive_backend_removals_drain_together_everything_else_alone():
    steps = [
        removal("n", "nginx"), removal("w1", "workers"), removal("w2", "workers"), removal("c1", "cgi"),
        RemoveNetwork("local", "fcgikit-demo"),
    ]
    assert [[s.describe().split()[3] if isinstance(s, RemoveContainer) else "network" for s in batch]
            for batch in _batches(steps)] == [["n"], ["w1", "w2", "c1"], ["network"]]


def test_a_reload_separates_removals():
    reload = ReloadNginx("n", "local", "conf")
    steps = [removal("w1", "workers"), reload, removal("w2", "workers")]
    assert [len(batch) for batch in _batches(steps)] == [1, 1, 1]


def test_nginx_workers_are_the_masters_children():
    from fcgikit.deploy.docker_backend import nginx_worker_pids

    text = "\n".join([
        "7",
        "1 (sh) S 0 1 1 0 -1",
        "7 (nginx) S 1 7 7 0 -1",
        "8 (nginx) S 7 7 7 0 -1",
        "9 (nginx) S 7 7 7 0 -1",
        "12 (odd ) name) S 7 7 7 0 -1",
        "20 (sh) S 0 20 20 0 -1",
    ])
    assert nginx_worker_pids(text) == {8, 9}
    assert nginx_worker_pids("") == set()
    assert nginx_worker_pids("cat: /run/nginx.pid: No such file") == set()


# --- the edge's port is checked before anything changes -------------------------------------


def _stack_with_busy_ports(busy: set[int]):
    from fcgikit.deploy.operations import Stack
    from fcgikit.deploy.spec import NginxService, Services, StackSpec, WorkersService

    class Checked(Stack):
        asked: list

        def port_free(self, host_name, port):
            self.asked.append((host_name, port))
            return port not in busy

    spec = StackSpec(services=Services(nginx=NginxService(port=8080), workers=WorkersService(app="a:app")))
    stack = Checked(spec=spec, project="demo")
    stack.asked = []
    return stack


def _edge_plans(old_port: int, new_port: int):
    import dataclasses

    from fcgikit.deploy.hosts import local_host
    from fcgikit.deploy.plan import Observed, plan_up
    from fcgikit.deploy.spec import NginxService, Services, StackSpec, WorkersService

    def spec(port):
        return StackSpec(services=Services(nginx=NginxService(port=port), workers=WorkersService(app="a:app")))

    images = {"workers": "w:1", "cgi": "w:1", "nginx": "n:1"}
    first = plan_up(spec(old_port), "demo", [local_host()], images, Observed())
    found = tuple(
        RunningContainer(c.name, c.name, c.service, c.host, c.slot, c.image, c.config_hash,
                         published={p: h for p, h in c.ports}, addresses={"fcgikit-demo": f"ip-of-{c.name}"})
        for c in first.wanted
    )
    observed = Observed(found, frozenset({"local"}), first.nginx_conf, _listed(first))
    return first, plan_up(spec(new_port), "demo", [local_host()], images, dataclasses.replace(observed))


def test_a_new_nginx_port_held_by_another_program_refuses_before_any_step():
    import pytest

    from fcgikit.deploy.errors import FcgikitError

    _, plan = _edge_plans(8080, 9090)
    stack = _stack_with_busy_ports({9090})
    with pytest.raises(FcgikitError) as refused:
        stack.check_edge_ports(plan)
    assert str(refused.value).startswith("port 9090 on host local (127.0.0.1) is in use by another program; "
                                          "nothing changed")
    assert stack.asked == [("local", 9090)]


def test_the_port_the_replaced_nginx_holds_is_not_asked_about():
    first, plan = _edge_plans(8080, 8080)
    assert plan.changes_nothing
    stack = _stack_with_busy_ports(set())
    stack.check_edge_ports(first)  # the first up: no nginx of ours holds 8080, so it is asked about
    assert stack.asked == [("local", 8080)]
    # Same port, new nginx image: the old nginx holds 8080 and frees it, so nothing is asked.
    import dataclasses

    from fcgikit.deploy.plan import StartContainer, StopContainer

    old = next(c for c in first.wanted if c.service == "nginx")
    running_old = RunningContainer(old.name, old.name, "nginx", "local", old.slot, old.image, "old-hash",
                                   published={80: 8080})
    new = dataclasses.replace(old, slot=2, image="n:2")
    replace = dataclasses.replace(first, steps=(StopContainer(running_old), StartContainer(new, "net", "conf")))
    busy = _stack_with_busy_ports({8080})
    busy.check_edge_ports(replace)
    assert busy.asked == []


def test_port_zero_is_never_checked():
    first, _ = _edge_plans(0, 0)
    stack = _stack_with_busy_ports(set())
    stack.check_edge_ports(first)
    assert stack.asked == []


def test_a_port_another_socket_listens_on_is_not_free():
    import socket

    from fcgikit.deploy.operations import local_port_free

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not local_port_free(port)
    assert local_port_free(port)


# --- status: containers of a lost host that came back are marked stale ----------------------


def _remote_hosts():
    from fcgikit.deploy.hosts import Host

    return [Host("edge", "10.0.0.1", frozenset({"edge"}), remote=True),
            Host("a", "10.0.0.2", frozenset({"workers"}), remote=True),
            Host("b", "10.0.0.3", frozenset({"workers"}), remote=True)]


def _found(plan, created: float, only_host: str | None = None):
    return [
        RunningContainer(f"{c.host}-{c.name}", c.name, c.service, c.host, c.slot, c.image, c.config_hash,
                         published={p: h for p, h in c.ports}, created=created)
        for c in plan.wanted if only_host in (None, c.host)
    ]


def _listed(plan) -> str:
    """The backends list `plan` hands the running nginx (names by container on the edge host)."""
    from fcgikit.deploy.nginxconf import render_backends

    pools = {}
    for pool, address, name in plan.backends:
        host, _, port = address.rpartition(":")
        pools.setdefault(pool, []).append((f"ip-of-{name}:{port}" if host == name else address, name))
    return render_backends(pools)


def test_the_lost_hosts_containers_are_stale_beside_their_replacements_of_the_same_name():
    from fcgikit.deploy.operations import find_stale
    from fcgikit.deploy.plan import Observed, plan_up
    from fcgikit.deploy.spec import NginxService, Services, StackSpec, WorkersService

    spec = StackSpec(services=Services(nginx=NginxService(port=8080), workers=WorkersService(app="a:app", replicas=2)))
    images = {"workers": "w:1", "cgi": "w:1", "nginx": "n:1"}
    edge, a, b = _remote_hosts()
    first = plan_up(spec, "demo", [edge, a, b], images, Observed())
    assert sorted((c.name, c.host) for c in first.wanted if c.service == "workers") == [
        ("demo-workers-1", "a"), ("demo-workers-2", "b")]
    before = _found(first, created=100.0)
    # Host a is lost: up sees edge and b only, and starts a replacement on b under a's name.
    seen = [c for c in before if c.host != "a"]
    second = plan_up(spec, "demo", [edge, b], images,
                     Observed(tuple(seen), frozenset({"edge", "b"}), first.nginx_conf, _listed(first)))
    replacement = [c for c in _found(second, created=200.0) if c.host == "b" and c.slot == 1]
    assert [c.name for c in replacement] == ["demo-workers-1"]
    # a is back: status sees all of it. The list was written by the second up, at 250.
    back = before + replacement
    hosts = {host.name: host for host in (edge, a, b)}
    assert find_stale(back, hosts, _listed(second), written=250.0) == {("a", "demo-workers-1")}
    # A container started after the list was written is not in rotation yet, not stale.
    starting = RunningContainer("new", "demo-workers-3", "workers", "a", 3, "w:1", "h", published={9000: 9103},
                                created=300.0)
    assert find_stale(back + [starting], hosts, _listed(second), written=250.0) == {("a", "demo-workers-1")}
    # Before the loss, nothing was stale; no list, or an empty one, marks nothing.
    assert find_stale(before, hosts, _listed(first), written=150.0) == set()
    assert find_stale(back, hosts, None, written=250.0) == set()
    assert find_stale(back, hosts, "version 0\n", written=250.0) == set()


def test_on_one_host_the_list_names_the_containers():
    from fcgikit.deploy.hosts import local_host
    from fcgikit.deploy.nginxconf import render_backends
    from fcgikit.deploy.operations import find_stale
    from fcgikit.deploy.plan import Observed, plan_up
    from fcgikit.deploy.spec import CgiService, NginxService, Services, StackSpec, WorkersService

    spec = StackSpec(services=Services(nginx=NginxService(port=8080), workers=WorkersService(app="a:app", replicas=2),
                                       cgi=CgiService(replicas=1)))
    plan = plan_up(spec, "demo", [local_host()], {"workers": "w:1", "cgi": "w:1", "nginx": "n:1"}, Observed())
    # As the running nginx holds it: addresses resolved to the containers' IPs.
    text = render_backends({"workers": [("172.18.0.2:9000", "demo-workers-1"), ("172.18.0.3:9000", "demo-workers-2")],
                            "cgi": [("172.18.0.4:9000", "demo-cgi-1")]})
    left = RunningContainer("x", "demo-workers-7", "workers", "local", 7, "w:1", "h", created=1.0)
    found = _found(plan, created=1.0) + [left]
    assert find_stale(found, {"local": local_host()}, text, written=2.0) == {("local", "demo-workers-7")}


def test_status_shows_stale_containers_and_what_cleans_them_up(monkeypatch):
    import io

    from rich.console import Console

    from fcgikit import cli

    buffer = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buffer, width=200, color_system=None))
    row = {"name": "demo-workers-1", "service": "workers", "host": "a", "state": "running", "health": "-",
           "image": "p/fcgi-worker:1", "published": {}, "stale": True}
    cli.print_status({"project": "demo", "url": "http://e/", "containers": [row, dict(row, host="b", stale=False)]})
    lines = buffer.getvalue().splitlines()
    assert any("demo-workers-1" in line and "│ a " in line and "running, STALE" in line for line in lines), lines
    assert any("│ b " in line and "STALE" not in line for line in lines if "demo-workers-1" in line), lines
    assert lines[-1].startswith("STALE: demo-workers-1@a: not among nginx's backends")
    assert "the next `fcgikit up` or `scale` reuses or removes them" in buffer.getvalue().replace("\n", " ")


def test_the_remote_port_check_counts_listeners_from_the_kernels_tables():
    import socket
    import subprocess

    from fcgikit.deploy.multihost import listening_command

    def listeners(port):
        return subprocess.run(["sh", "-c", listening_command(port)], capture_output=True, text=True, check=True).stdout

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert listeners(port) == "0\n"  # bound, not listening: Docker could still not have it, but nothing serves
        holder.listen()
        assert listeners(port) == "1\n"
    with socket.socket(socket.AF_INET6) as holder:
        holder.bind(("::", port))
        holder.listen()
        assert listeners(port) == "1\n"
def test_the_docker_sdk_gets_the_confinement_of_the_spec():
    from fcgikit.deploy import commands
    from fcgikit.deploy.docker_args import confinement_arguments as confinement_options
    from fcgikit.deploy.spec import NginxService

    options = confinement_options(commands.nginx_container("p", "local", 1, "img", NginxService()))
    assert options["read_only"] is True and options["cap_drop"] == ["ALL"] and options["cap_add"] is None
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["mem_limit"] == "256m" and options["pids_limit"] == 256
    assert set(options["tmpfs"]) == {"/run/nginx", "/run/fcgikit", "/var/lib/nginx"}
    assert [m["Target"] for m in options["mounts"]] == ["/etc/nginx"]


# --- scale keeps the app the workers serve ----------------------------------------------------


def _stack_running(apps: list[str], app_option: str | None, tmp_path):
    from fcgikit.deploy.operations import Stack
    from fcgikit.deploy.spec import Services, StackSpec, WorkersService

    class Running(Stack):
        def _every_container(self):
            return [RunningContainer(f"w{i}", f"demo-workers-{i}", "workers", "local", i, "img", "h", app=app)
                    for i, app in enumerate(apps, 1)]

    spec = StackSpec(services=Services(workers=WorkersService(app="hello_wsgi:app")))
    said = []
    return Running(spec=spec, project="demo", app=app_option, say=said.append), said


def test_scale_without_app_keeps_the_app_that_runs(tmp_path):
    running = f"{tmp_path}:wsgi:application"
    stack, said = _stack_running([running, running], None, tmp_path)
    assert stack.keep_deployed_app() == running
    assert (stack.spec.services.workers.path, stack.spec.services.workers.app) == (tmp_path, "wsgi:application")
    assert said == [f"keeping the app the workers serve, {running} (the stack file names hello_wsgi:app; "
                    "`fcgikit up` changes the app)"]


def test_scale_with_the_app_that_runs_or_nothing_running_changes_nothing(tmp_path):
    for apps in ([], ["hello_wsgi:app"]):
        stack, said = _stack_running(apps, None, tmp_path)
        assert stack.keep_deployed_app() is None and said == []
        assert stack.spec.services.workers.app == "hello_wsgi:app"


def test_scale_with_another_app_is_refused(tmp_path):
    import pytest

    from fcgikit.deploy.errors import FcgikitError

    stack, _ = _stack_running([f"{tmp_path}:wsgi:application"], "other.py", tmp_path)
    with pytest.raises(FcgikitError, match=r"scale changes replica counts, not the app: the workers of demo serve "
                                           rf"{tmp_path}:wsgi:application, not hello_wsgi:app \(--app other.py\); "
                                           r"to serve it, run `fcgikit up --app other.py`"):
        stack.keep_deployed_app()
    gone, _ = _stack_running(["/no/such/dir:wsgi:application"], None, tmp_path)
    with pytest.raises(FcgikitError, match="the directory of the deployed app /no/such/dir:wsgi:application "
                                           "is not on this machine; run `fcgikit up`"):
        gone.keep_deployed_app()


def test_the_app_most_workers_serve_while_an_up_changes_it():
    from fcgikit.deploy.operations import deployed_app

    def worker(slot, app, state="running"):
        return RunningContainer(f"w{slot}", f"w{slot}", "workers", "local", slot, "i", "h", state=state, app=app)

    assert deployed_app([worker(1, "a:app"), worker(2, "b:app"), worker(3, "b:app"), worker(4, "a:app", "exited")]) == "b:app"
    assert deployed_app([worker(1, "")]) is None


def test_one_stack_over_the_local_engine_or_the_ssh_hosts():
    """One Stack does observe / status / url / up / scale / down / rollback for every engine;
    the SSH hosts (multihost.SshHosts) only supply how hosts are reached, shipped to and locked:
    the same methods as the local engine, and no Stack of their own."""
    import ast
    import inspect

    from fcgikit.deploy import multihost
    from fcgikit.deploy.operations import Engines, LocalEngine, Stack

    wanted = {name for name in vars(Engines) if not name.startswith("_")} - {"hosts"}
    for engines in (LocalEngine, multihost.SshHosts):
        assert wanted <= set(vars(engines)), engines
        assert not issubclass(engines, Stack)
    assert not [value for value in vars(multihost).values() if isinstance(value, type) and issubclass(value, Stack)
                and value is not Stack]
    tree = ast.parse(inspect.getsource(multihost))
    borrowed = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "operations"
                for alias in node.names if alias.name.startswith("_")]
    assert borrowed == []


def test_the_swarm_engine_uses_only_what_the_stack_it_holds_has():
    """SwarmStack.remote is a Stack (over SshHosts with an inventory): every `self.remote.X`
    in swarm.py must be something a Stack has (the inventory and fleet are `remote.engines.X`)."""
    import ast
    import inspect

    from fcgikit.deploy import swarm
    from fcgikit.deploy.multihost import SshHosts
    from fcgikit.deploy.operations import Stack

    used = {node.attr for node in ast.walk(ast.parse(inspect.getsource(swarm)))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "remote" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert used and used <= set(dir(Stack)) | set(Stack.__dataclass_fields__)
    engines_used = {node.attr for node in ast.walk(ast.parse(inspect.getsource(swarm)))
                    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "engines"}
    assert engines_used <= set(dir(SshHosts)) | set(SshHosts.__dataclass_fields__)
