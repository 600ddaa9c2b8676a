"""Placement across hosts: the planner with remote hosts (pure, no Docker)."""

import dataclasses
import io

from rich.console import Console

from fcgikit.deploy.errors import validate_config
from fcgikit.deploy.hosts import Host
from fcgikit.deploy.inventory import Inventory
from fcgikit.deploy.model import RunningContainer
from fcgikit.deploy.multihost import images_for_host, inventory_hosts
from fcgikit.deploy.nginxconf import render_backends
from fcgikit.deploy.placement import allowed_addresses, published_port, with_allow_list
from fcgikit.deploy.plan import Observed, StartContainer, UpdateBackends, plan_up
from fcgikit.deploy.spec import StackSpec

IMAGES = {"workers": "fcgikit/fcgi-worker:abc", "cgi": "fcgikit/fcgi-worker:abc", "nginx": "fcgikit/nginx:def"}
SPEC = StackSpec.model_validate(
    {"project": "p", "services": {"nginx": {"port": 8080}, "workers": {"app": "hello_wsgi:app", "replicas": 8},
                                  "cgi": {"replicas": 1}}}
)
HOSTS = [
    Host("edge1", "10.0.0.10", frozenset({"edge"}), remote=True),
    Host("app1", "10.0.0.11", frozenset({"workers"}), remote=True),
    Host("app2", "10.0.0.12", frozenset({"workers", "cgi"}), remote=True),
]


def started(plan):
    return [step.container for step in plan.steps if isinstance(step, StartContainer)]


def test_workers_spread_evenly_over_the_worker_hosts():
    plan = plan_up(SPEC, "p", HOSTS, IMAGES, Observed())
    workers = [c for c in plan.wanted if c.service == "workers"]
    assert sorted(c.host for c in workers) == ["app1"] * 4 + ["app2"] * 4
    assert [c.host for c in plan.wanted if c.service == "nginx"] == ["edge1"]
    assert [c.host for c in plan.wanted if c.service == "cgi"] == ["app2"]


def test_remote_workers_publish_on_their_private_address_only():
    plan = plan_up(SPEC, "p", HOSTS, IMAGES, Observed())
    for container in plan.wanted:
        if container.service == "nginx":
            assert container.bind_address == ""  # the edge answers clients on every address
            continue
        host = next(h for h in HOSTS if h.name == container.host)
        assert container.bind_address == host.address
        assert container.ports == ((9000, published_port(container.service, container.slot)),)
    step = next(s for s in plan.steps if isinstance(s, StartContainer) and s.container.host == "app1")
    assert f"-p 10.0.0.11:{step.container.ports[0][1]}:9000" in step.docker_command()


def test_nginx_lists_every_worker_as_address_and_port():
    plan = plan_up(SPEC, "p", HOSTS, IMAGES, Observed())
    addresses = {name: address for _, address, name in plan.backends}
    for container in plan.wanted:
        if container.service == "workers":
            assert addresses[container.name] == f"{container.bind_address}:{container.ports[0][1]}"
    cgi = next(c for c in plan.wanted if c.service == "cgi")
    assert addresses[cgi.name] == f"10.0.0.12:{published_port('cgi', cgi.slot)}"
    assert "p-workers-" not in plan.nginx_conf


def test_only_the_edge_hosts_may_connect():
    plan = plan_up(SPEC, "p", HOSTS, IMAGES, Observed())
    for container in plan.wanted:
        if container.service != "nginx":
            command = container.command
            assert command[command.index("--allow") + 1] == "10.0.0.10,127.0.0.1"
    assert allowed_addresses(HOSTS + [Host("edge2", "10.0.0.20", frozenset({"edge"}), remote=True)]) == [
        "10.0.0.10", "10.0.0.20", "127.0.0.1"
    ]


def test_a_local_stack_is_planned_as_before():
    local = [Host("local", "127.0.0.1")]
    plan = plan_up(SPEC, "p", local, IMAGES, Observed())
    assert all(c.bind_address == "" and "--allow" not in c.command for c in plan.wanted)
    assert ("workers", "p-workers-1:9000", "p-workers-1") in plan.backends


def test_allow_list_goes_right_after_the_manager_module():
    assert with_allow_list(("python3", "-m", "fcgikit.spawn", "-F", "2", "--", "/usr/bin/php-cgi"), ["a"]) == (
        "python3", "-m", "fcgikit.spawn", "--allow", "a", "-F", "2", "--", "/usr/bin/php-cgi"
    )


def test_published_ports_of_workers_and_cgi_never_collide():
    assert {published_port("workers", s) for s in range(1, 300)}.isdisjoint(
        {published_port("cgi", s) for s in range(1, 300)}
    )


def test_a_host_left_out_gets_no_containers():
    inventory = validate_config(
        Inventory,
        {"hosts": [{"name": n, "address": a, "roles": list(r)} for n, a, r in
                   (("edge1", "10.0.0.10", ["edge"]), ("app1", "10.0.0.11", ["workers"]), ("app2", "10.0.0.12", ["workers"]))]},
        source="x",
    )
    hosts = inventory_hosts(inventory, reachable=lambda name: name != "app1", connect=lambda name: None)
    assert [h.name for h in hosts] == ["edge1", "app2"] and all(h.remote for h in hosts)
    plan = plan_up(SPEC, "p", hosts, IMAGES, Observed())
    assert {c.host for c in plan.wanted if c.service == "workers"} == {"app2"}
    assert "10.0.0.11" not in plan.nginx_conf


def test_each_host_gets_the_images_of_its_roles():
    tags = {"workers": "w:1", "cgi": "w:1", "nginx": "n:1"}
    assert images_for_host(frozenset({"edge"}), tags) == ["n:1"]
    assert images_for_host(frozenset({"workers", "cgi"}), tags) == ["w:1"]
    assert images_for_host(frozenset({"edge", "workers"}), tags) == ["n:1", "w:1"]


def test_status_names_every_host_and_says_why_one_is_unreachable():
    from fcgikit.cli_hosts import host_lines

    report = {"hosts": [
        {"name": "edge1", "address": "10.0.0.10", "roles": ["edge"], "reachable": True, "problem": ""},
        {"name": "app1", "address": "10.0.0.11", "roles": ["workers", "cgi"], "reachable": False,
         "problem": "app1: [bold] is not markup here, [Errno 113] No route to host"},
    ]}
    printed = io.StringIO()
    console = Console(file=printed, color_system=None, width=200)
    for line in host_lines(report):
        console.print(line)
    # The reason prints as it was said: brackets in it are text, not rich markup.
    assert printed.getvalue().splitlines() == [
        "host edge1 10.0.0.10 (edge): reachable",
        "host app1 10.0.0.11 (workers,cgi): UNREACHABLE (app1: [bold] is not markup here, [Errno 113] No route to host)",
    ]
    assert host_lines({"containers": []}) == []  # a local stack has no host lines


def test_workers_beside_the_edge_are_reached_by_name_and_never_published():
    hosts = [Host("one", "10.0.0.10", frozenset({"edge", "workers"}), remote=True),
             Host("app1", "10.0.0.11", frozenset({"workers"}), remote=True)]
    plan = plan_up(SPEC, "p", hosts, IMAGES, Observed())
    beside = [c for c in plan.wanted if c.service == "workers" and c.host == "one"]
    assert beside and all(c.ports == () and c.bind_address == "" and "--allow" not in c.command for c in beside)
    addresses = [address for _, address, _ in plan.backends]
    for c in beside:
        assert f"{c.name}:9000" in addresses
    assert any(address.startswith("10.0.0.11:91") for address in addresses)


def test_a_lost_hosts_worker_started_again_elsewhere_under_its_name_gets_nginx_its_new_address():
    """app1 lost: its worker p-workers-1 starts on app2 under the same name, at app2's address.
    nginx's list names the same containers as before, but must be written again: otherwise it
    keeps sending to app1's address (caught by tests/integration/test_multihost_deploy.py)."""
    small = SPEC.model_copy(update={"services": SPEC.services.model_copy(update={
        "workers": SPEC.services.workers.model_copy(update={"replicas": 2})})})
    first = plan_up(small, "p", HOSTS, IMAGES, Observed())
    running = Observed(
        tuple(RunningContainer(f"id-{c.name}", c.name, c.service, c.host, c.slot, c.image, c.config_hash)
              for c in first.wanted if c.host != "app1"),
        frozenset({"edge1", "app2"}), first.nginx_conf,
        render_backends({pool: [(address, name) for p, address, name in first.backends if p == pool]
                         for pool in {"workers", "cgi"}}))
    again = plan_up(small, "p", [h for h in HOSTS if h.name != "app1"], IMAGES, running)
    [moved] = started(again)
    assert (moved.name, moved.host) == ("p-workers-1", "app2")
    [update] = [s for s in again.steps if isinstance(s, UpdateBackends)]
    assert ("workers", f"10.0.0.12:{published_port('workers', moved.slot)}", "p-workers-1") in update.backends
    assert not any(address.startswith("10.0.0.11:") for _, address, _ in update.backends)
    # Nothing lost, nothing moved: the same list is not written again.
    settled = dataclasses.replace(running, backends=render_backends(
        {pool: [(address, name) for p, address, name in again.backends if p == pool] for pool in {"workers", "cgi"}}),
        containers=running.containers + (RunningContainer(f"id-{moved.name}", moved.name, moved.service, moved.host,
                                                          moved.slot, moved.image, moved.config_hash),))
    assert not any(isinstance(s, UpdateBackends) for s in plan_up(small, "p", [h for h in HOSTS if h.name != "app1"],
                                                                  IMAGES, settled).steps)
