import subprocess
import threading
from pathlib import Path

import paramiko
import pytest

from fcgikit.deploy.inventory import SshTarget
from fcgikit.deploy.lock import (
    LockHeld,
    LockHolder,
    acquire_command,
    release_command,
)
from fcgikit.deploy.ssh import (
    AcceptNewHostKey,
    HostOutcome,
    HostsFailed,
    HostUnreachable,
    connect_kwargs,
    format_outcomes,
    host_key_policy,
    on_each_host,
    require_all,
)


def target(**extra):
    values = dict(name="h1", address="10.0.0.1", user="root", port=22, key=None, known_hosts=Path("/kh"))
    return SshTarget(**{**values, **extra})


def test_strict_host_key_checking_unless_opted_in():
    assert isinstance(host_key_policy(target(), accept_new=False), paramiko.RejectPolicy)
    assert isinstance(host_key_policy(target(), accept_new=True), AcceptNewHostKey)


def test_a_key_in_the_inventory_is_the_only_key_tried():
    assert connect_kwargs(target()) == {}
    assert connect_kwargs(target(key=Path("/k/id"))) == {"key_filename": "/k/id", "look_for_keys": False, "allow_agent": False}


def test_accepting_a_new_host_key_appends_it_for_every_host(tmp_path):
    known_hosts = tmp_path / "ssh" / "known_hosts"
    policy = AcceptNewHostKey(known_hosts)
    client = paramiko.SSHClient()
    keys = [paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path, f"k{i}"))) for i in range(2)]
    threads = [threading.Thread(target=policy.missing_host_key, args=(client, f"10.0.0.{i}", key)) for i, key in enumerate(keys)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    lines = sorted(known_hosts.read_text().splitlines())
    assert [line.split()[0] for line in lines] == ["10.0.0.0", "10.0.0.1"]
    assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"
    # What we wrote, paramiko reads back: the next connection checks strictly against it.
    loaded = paramiko.HostKeys(str(known_hosts))
    assert loaded.lookup("10.0.0.1")["ssh-ed25519"] == keys[1]


def _keygen(directory: Path, name: str) -> Path:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_every_host_outcome_is_reported_not_only_the_first_error():
    def work(name):
        if name != "h2":
            raise HostUnreachable(f"{name}: cannot connect: No route to host\nmore detail")
        return 42

    outcomes = on_each_host(["h1", "h2", "h3"], work)
    assert [o.host for o in outcomes] == ["h1", "h2", "h3"]
    assert [o.ok for o in outcomes] == [False, True, False]
    with pytest.raises(HostsFailed) as caught:
        require_all("ship images", outcomes)
    assert str(caught.value) == (
        "ship images: 2 of 3 host(s) failed\n"
        "  h1: h1: cannot connect: No route to host\n"
        "  h2: ok\n"
        "  h3: h3: cannot connect: No route to host"
    )


def test_hosts_run_in_parallel():
    barrier = threading.Barrier(3, timeout=5)
    outcomes = on_each_host(["a", "b", "c"], lambda name: barrier.wait() is not None)
    assert all(o.ok for o in outcomes)  # a serial run would time out at the barrier


def test_require_all_gives_values_by_host():
    assert require_all("x", [HostOutcome("a", 1), HostOutcome("b", 2)]) == {"a": 1, "b": 2}
    assert format_outcomes("x", [HostOutcome("a", error=ValueError("bad\n value"))]) == "x: 1 of 1 host(s) failed\n  a: bad value"


def test_lock_commands_take_it_atomically_and_record_the_holder(tmp_path):
    holder = LockHolder("ci@runner", 4242, "up", "2026-01-01T00:00:00+00:00")
    command = acquire_command("demo", holder)
    assert "mkdir .fcgikit/locks/demo" in command  # no -p: it must fail when held

    def run(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", "-c", cmd], cwd=tmp_path, capture_output=True, text=True)

    assert run(command).returncode == 0
    assert run(acquire_command("demo", holder)).returncode != 0
    assert LockHolder.from_text((tmp_path / ".fcgikit/locks/demo/holder").read_text()) == holder
    assert run(release_command("demo")).returncode == 0
    assert run(command).returncode == 0


def test_holder_text_survives_the_shell(tmp_path):
    holder = LockHolder("o'brien@box; rm -rf /", 1, "scale workers=8", "2026-01-01T00:00:00+00:00")
    subprocess.run(["sh", "-c", acquire_command("p", holder)], cwd=tmp_path, check=True)
    assert LockHolder.from_text((tmp_path / ".fcgikit/locks/p/holder").read_text()) == holder
    assert LockHolder.from_text("garbage") is None


def test_lock_held_names_the_holder():
    holder = LockHolder("ci@runner", 4242, "up", "2026-01-01T00:00:00+00:00")
    message = str(LockHeld("demo", "edge1", holder))
    assert "held by ci@runner (pid 4242, `fcgikit up`) since 2026-01-01T00:00:00+00:00" in message
    assert "fcgikit lock release" in message


def test_me_describes_this_process():
    me = LockHolder.me("up", now=0)
    assert me.since == "1970-01-01T00:00:00+00:00" and me.command == "up" and "@" in me.who


# --- what a failed connect means: an outage, or a host that cannot be verified ---------------


def test_a_changed_or_unknown_host_key_is_a_rejected_key_not_an_outage(tmp_path):
    from fcgikit.deploy.ssh import HostKeyRejected, connection_failure

    got, expected = (paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path, name))) for name in ("a", "b"))
    changed = connection_failure(target(), paramiko.BadHostKeyException("10.0.0.1", got, expected))
    assert isinstance(changed, HostKeyRejected)
    assert str(changed).startswith("h1 (root@10.0.0.1): HOST KEY CHANGED (not the one in /kh)")
    unknown = connection_failure(target(), paramiko.SSHException("Server '10.0.0.1' not found in known_hosts"))
    assert isinstance(unknown, HostKeyRejected) and "unknown host key" in str(unknown)

    for outage in (OSError(113, "No route to host"), paramiko.SSHException("Error reading SSH protocol banner"),
                   paramiko.AuthenticationException("Authentication failed.")):
        failure = connection_failure(target(), outage)
        assert type(failure) is HostUnreachable, outage
    assert str(connection_failure(target(), OSError(113, "No route to host"))) == "h1 (root@10.0.0.1): cannot connect: No route to host"


def _remote_stack_with(unreachable: dict):
    from fcgikit.deploy.inventory import HostEntry, Inventory
    from fcgikit.deploy.multihost import SshHosts
    from fcgikit.deploy.operations import Stack
    from fcgikit.deploy.spec import NginxService, Services, StackSpec, WorkersService
    from fcgikit.deploy.ssh import Fleet

    fleet = Fleet([target(name="h1"), target(name="h2", address="10.0.0.2")])
    fleet.unreachable.update(unreachable)
    inventory = Inventory(hosts=[HostEntry(name="h1", address="10.0.0.1", roles=["edge"]),
                                 HostEntry(name="h2", address="10.0.0.2", roles=["workers"])])
    spec = StackSpec(services=Services(nginx=NginxService(port=8080), workers=WorkersService(app="a:app")))
    return Stack(spec=spec, project="demo", engines=SshHosts(hosts=[], inventory=inventory, fleet=fleet))


def test_a_worker_host_whose_key_is_rejected_refuses_up_scale_and_down_before_anything_is_looked_at():
    from fcgikit.deploy.errors import FcgikitError
    from fcgikit.deploy.ssh import HostKeyRejected

    stack = _remote_stack_with({"h2": HostKeyRejected("h2 (root@10.0.0.2): HOST KEY CHANGED (not the one in /kh); hint")})
    for command, plan in (("up", lambda: stack.plan_up(build=True)), ("scale", lambda: stack.plan_scale({"workers": 3})),
                          ("down", stack.plan_down), ("up", lambda: stack.deploy_lock("up"))):
        with pytest.raises(FcgikitError) as refused:
            plan()  # no host engine exists in this stack: reaching one would fail differently
        assert str(refused.value) == (f"{command} refused, nothing changed: "
                                      "h2 (root@10.0.0.2): HOST KEY CHANGED (not the one in /kh); hint")


def test_a_host_that_is_only_unreachable_is_left_out_not_refused():
    stack = _remote_stack_with({"h2": HostUnreachable("h2 (root@10.0.0.2): cannot connect: No route to host")})
    stack.require_verified_hosts("up")  # no error: up goes on without h2
