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


def test_the_docker_sdk_gets_the_confinement_of_the_spec():
    from fcgikit.deploy import commands
    from fcgikit.deploy.docker_backend import confinement_options
    from fcgikit.deploy.spec import NginxService

    options = confinement_options(commands.nginx_container("p", "local", 1, "img", NginxService()))
    assert options["read_only"] is True and options["cap_drop"] == ["ALL"] and options["cap_add"] is None
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["mem_limit"] == "256m" and options["pids_limit"] == 256
    assert set(options["tmpfs"]) == {"/run/nginx", "/run/fcgikit", "/var/lib/nginx"}
    assert [m["Target"] for m in options["mounts"]] == ["/etc/nginx"]
