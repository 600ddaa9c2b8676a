"""The planner is a pure function: (spec, hosts, what runs) -> placements and ordered steps."""

import dataclasses
import shlex
from collections import Counter

from fcgikit.deploy.hosts import Host
from fcgikit.deploy.model import RunningContainer, network_name
from fcgikit.deploy.nginxconf import render_backends
from fcgikit.deploy.plan import (
    CheckEndToEnd,
    CreateNetwork,
    Observed,
    ReloadNginx,
    RemoveContainer,
    RemoveNetwork,
    StartContainer,
    UpdateBackends,
    WaitAnswering,
    plan_down,
    plan_up,
)
from fcgikit.deploy.spec import CgiService, NginxService, Services, StackSpec, WorkersService, with_replicas

HOSTS = [Host("local", "127.0.0.1")]
IMAGES = {"workers": "fk/fcgi-worker:aaa", "cgi": "fk/fcgi-worker:aaa", "nginx": "fk/nginx:bbb"}


def stack(workers=2, cgi=1, port=8080) -> StackSpec:
    return StackSpec(services=Services(
        nginx=NginxService(port=port),
        workers=WorkersService(app="hello_wsgi:app", replicas=workers, timeout=30),
        cgi=CgiService(replicas=cgi) if cgi is not None else None,
    ))


def running(plan, **changes) -> Observed:
    """What the hosts hold after `plan` ran (every wanted container running, at its IP)."""
    ips = backend_ips(plan)
    containers = tuple(
        RunningContainer(f"id-{c.name}", c.name, c.service, c.host, c.slot, c.image, c.config_hash,
                         **{"addresses": {network_name(plan.project): ips.get(c.name, "172.18.0.99")}, **changes})
        for c in plan.wanted
    )
    return Observed(containers, frozenset(c.host for c in containers), plan.nginx_conf, backends_text(plan))


def backend_ips(plan) -> dict[str, str]:
    return {name: f"172.18.0.{n + 2}" for n, (_, _, name) in enumerate(plan.backends)}


def backends_text(plan) -> str:
    """The list the running nginx holds once `plan` ran (addresses resolved to IPs)."""
    pools, ips = {}, backend_ips(plan)
    for pool, _, name in plan.backends:
        pools.setdefault(pool, []).append((f"{ips[name]}:9000", name))
    return render_backends(pools)


def listed(step: UpdateBackends) -> list[str]:
    return [name for _, _, name in step.backends]


def kinds(plan):
    return [type(step).__name__ for step in plan.steps]


def names(steps, kind):
    return [s.container.name for s in steps if isinstance(s, kind)]


def test_from_nothing_everything_starts_in_order():
    plan = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    assert kinds(plan) == ["CreateNetwork"] + ["StartContainer"] * 3 + ["WaitAnswering"] * 3 + [
        "StartContainer", "UpdateBackends", "CheckEndToEnd"]
    assert names(plan.steps, StartContainer) == ["demo-workers-1", "demo-workers-2", "demo-cgi-1", "demo-nginx-1"]
    nginx_start = plan.steps[-3]
    assert nginx_start.container.ports == ((8080, 8080),)  # nginx listens on 8080 inside (unprivileged)
    assert "demo-workers-1" not in nginx_start.nginx_conf  # the backends are not in nginx.conf ...
    update = plan.steps[-2]  # ... they are handed to the running nginx
    assert update.container == "demo-nginx-1"
    assert update.backends == (("workers", "demo-workers-1:9000", "demo-workers-1"),
                               ("workers", "demo-workers-2:9000", "demo-workers-2"),
                               ("cgi", "demo-cgi-1:9000", "demo-cgi-1"))
    assert plan.placements() == {
        "workers": ["demo-workers-1@local", "demo-workers-2@local"], "cgi": ["demo-cgi-1@local"],
        "nginx": ["demo-nginx-1@local"],
    }


def test_running_it_again_changes_nothing():
    first = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    again = plan_up(stack(), "demo", HOSTS, IMAGES, running(first))
    assert again.changes_nothing
    assert [c.name for c in again.wanted] == [c.name for c in first.wanted]


def test_scale_up_starts_and_waits_before_updating_the_backends_without_a_reload():
    first = plan_up(stack(workers=2), "demo", HOSTS, IMAGES, Observed())
    plan = plan_up(stack(workers=6), "demo", HOSTS, IMAGES, running(first))
    assert names(plan.steps, StartContainer) == [f"demo-workers-{n}" for n in range(3, 7)]
    assert kinds(plan) == ["StartContainer"] * 4 + ["WaitAnswering"] * 4 + ["UpdateBackends", "CheckEndToEnd"]
    assert listed(plan.steps[8]) == [f"demo-workers-{n}" for n in range(1, 7)] + ["demo-cgi-1"]
    assert plan.steps[8].describe() == ("update backends of nginx in demo-nginx-1 on local (no reload): "
                                        "cgi: demo-cgi-1; workers: " + ", ".join(
                                            f"demo-workers-{n}" for n in range(1, 7)))


def test_scale_down_takes_the_surplus_out_of_the_backends_before_draining_it():
    six = plan_up(stack(workers=6), "demo", HOSTS, IMAGES, Observed())
    plan = plan_up(with_replicas(stack(workers=6), "workers", 1), "demo", HOSTS, IMAGES, running(six))
    assert kinds(plan) == ["UpdateBackends", "CheckEndToEnd"] + ["RemoveContainer"] * 5
    assert [s.container.name for s in plan.steps[2:]] == [f"demo-workers-{n}" for n in range(2, 7)]
    assert all(s.stop_timeout == 35 for s in plan.steps[2:])  # the request timeout and a margin
    assert listed(plan.steps[0]) == ["demo-workers-1", "demo-cgi-1"]


def test_only_a_real_config_change_reloads_nginx():
    first = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    bigger = stack().model_copy(update={"services": stack().services.model_copy(update={
        "nginx": NginxService(client_max_body_size="50m")})})
    plan = plan_up(bigger, "demo", HOSTS, IMAGES, running(first))
    assert kinds(plan) == ["ReloadNginx", "CheckEndToEnd"]
    assert "client_max_body_size 50m;" in plan.steps[0].nginx_conf
    assert plan.steps[0].describe().endswith("and reload nginx (no restart)")


def test_an_nginx_that_lost_its_list_gets_it_again():
    first = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    restarted = dataclasses.replace(running(first), backends=None)  # e.g. restarted: its tmpfs is empty
    assert kinds(plan_up(stack(), "demo", HOSTS, IMAGES, restarted)) == ["UpdateBackends", "CheckEndToEnd"]


def test_a_new_image_replaces_containers_under_new_names_then_retires_the_old():
    first = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    newer = dict(IMAGES, workers="fk/fcgi-worker:ccc", cgi="fk/fcgi-worker:ccc")
    plan = plan_up(stack(), "demo", HOSTS, newer, running(first))
    assert names(plan.steps, StartContainer) == ["demo-workers-3", "demo-workers-4", "demo-cgi-2"]
    assert names(plan.steps, RemoveContainer) == ["demo-workers-1", "demo-workers-2", "demo-cgi-1"]
    order = kinds(plan)
    assert "ReloadNginx" not in order
    assert order.index("UpdateBackends") > order.index("WaitAnswering")
    assert order.index("RemoveContainer") > order.index("UpdateBackends")
    update = plan.steps[order.index("UpdateBackends")]
    assert listed(update) == ["demo-workers-3", "demo-workers-4", "demo-cgi-2"]


def test_dead_and_unhealthy_containers_are_replaced():
    first = plan_up(stack(workers=2, cgi=None), "demo", HOSTS, IMAGES, Observed())
    observed = running(first)
    broken = tuple(
        dataclasses.replace(c, state="exited") if c.name == "demo-workers-1"
        else dataclasses.replace(c, health="unhealthy") if c.name == "demo-workers-2" else c
        for c in observed.containers
    )
    plan = plan_up(stack(workers=2, cgi=None), "demo", HOSTS, IMAGES, dataclasses.replace(observed, containers=broken))
    assert names(plan.steps, StartContainer) == ["demo-workers-3", "demo-workers-4"]
    assert names(plan.steps, RemoveContainer) == ["demo-workers-1", "demo-workers-2"]


def test_changed_port_recreates_nginx_after_freeing_the_port_and_removes_the_old_once_the_new_serves():
    first = plan_up(stack(port=8080), "demo", HOSTS, IMAGES, Observed())
    plan = plan_up(stack(port=9090), "demo", HOSTS, IMAGES, running(first))
    # Stopped (not removed) first: if the new one cannot start, the old one is started again
    # (with the backends list it had: see Stack._restore_edges).
    assert kinds(plan) == ["StopContainer", "StartContainer", "UpdateBackends", "CheckEndToEnd", "RemoveContainer"]
    assert plan.steps[0].container.name == "demo-nginx-1"
    assert plan.steps[1].container.name == "demo-nginx-2"
    assert plan.steps[4].container.name == "demo-nginx-1"
    assert plan.steps[0].docker_command() == "docker stop -t 10 demo-nginx-1"


def test_a_service_dropped_from_the_spec_is_removed():
    first = plan_up(stack(cgi=1), "demo", HOSTS, IMAGES, Observed())
    plan = plan_up(stack(cgi=None), "demo", HOSTS, IMAGES, running(first))
    assert names(plan.steps, RemoveContainer) == ["demo-cgi-1"]
    assert "/cgi-bin/" not in plan.nginx_conf


def test_nginx_config_drift_is_reloaded_only():
    first = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    observed = dataclasses.replace(running(first), nginx_conf="edited by hand")
    assert kinds(plan_up(stack(), "demo", HOSTS, IMAGES, observed)) == ["ReloadNginx", "CheckEndToEnd"]


def test_containers_are_spread_evenly_over_hosts_with_the_role():
    hosts = [Host("edge", "10.0.0.1", frozenset({"edge"})), Host("a", "10.0.0.2", frozenset({"workers", "cgi"})),
             Host("b", "10.0.0.3", frozenset({"workers"}))]
    plan = plan_up(stack(workers=5, cgi=1), "demo", hosts, IMAGES, Observed())
    per_host = Counter((c.service, c.host) for c in plan.wanted)
    assert per_host == {("workers", "a"): 3, ("workers", "b"): 2, ("cgi", "a"): 1, ("nginx", "edge"): 1}
    assert {s.host for s in plan.steps if isinstance(s, CreateNetwork)} == {"edge", "a", "b"}


def test_down_removes_nginx_first_and_networks_last():
    first = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    plan = plan_down("demo", running(first))
    assert names(plan.steps, RemoveContainer)[0] == "demo-nginx-1"
    assert isinstance(plan.steps[-1], RemoveNetwork) and plan.steps[-1].name == "fcgikit-demo"
    assert plan_down("demo", Observed()).changes_nothing


def test_steps_print_the_docker_commands_they_stand_for():
    plan = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    commands = [step.docker_command() for step in plan.steps]
    assert commands[0] == ("docker network create --driver bridge --label fcgikit.project=demo "
                           "--label fcgikit.host=local fcgikit-demo")
    assert commands[1].startswith("docker run -d --name demo-workers-1 --network fcgikit-demo --restart unless-stopped "
                                  "--label fcgikit.project=demo")
    assert "python3 -m fcgikit.serve -n -a 0.0.0.0 -p 9000 -F 4" in commands[1]
    assert "hello_wsgi:app" in commands[1]
    assert commands[4] == ("docker exec demo-workers-1 python3 -m fcgikit.probe 127.0.0.1:9000 "
                           "--uri / --timeout 3")
    assert "-p 8080:8080" in commands[7]
    assert commands[8].startswith("printf '%s\\n' 'version V' 'workers IP_OF_demo-workers-1:9000 demo-workers-1' ")
    assert commands[8].endswith("| docker exec -i demo-nginx-1 sh -c 'cat > /run/fcgikit/backends.new && "
                                "mv -f /run/fcgikit/backends.new /run/fcgikit/backends'")
    assert all(step.describe() for step in plan.steps)
    wait = next(s for s in plan.steps if isinstance(s, WaitAnswering))
    assert wait.describe() == "wait until demo-workers-1 answers a FastCGI request"
    assert isinstance(plan.steps[-1], CheckEndToEnd)


def test_printed_docker_commands_quote_what_the_shell_would_split():
    spec = stack()
    spec = spec.model_copy(update={"services": spec.services.model_copy(update={
        "workers": spec.services.workers.model_copy(update={"env": {"GREETING": "hello from $HOME; x"}})})})
    plan = plan_up(spec, "demo", HOSTS, IMAGES, Observed())
    run = next(s for s in plan.steps if isinstance(s, StartContainer) and s.container.service == "workers")
    argv = shlex.split(run.docker_command())
    assert argv[argv.index("-e") + 1] == "GREETING=hello from $HOME; x"


def test_reload_command_tests_the_config_first():
    first = plan_up(stack(workers=1), "demo", HOSTS, IMAGES, Observed())
    plan = plan_up(stack(workers=1), "demo", HOSTS, IMAGES,
                   dataclasses.replace(running(first), nginx_conf="edited by hand"))
    reload = next(s for s in plan.steps if isinstance(s, ReloadNginx))
    assert reload.docker_command().split(" && ")[1:] == [
        "docker exec demo-nginx-1 nginx -t -q", "docker exec demo-nginx-1 nginx -s reload"]


def test_every_container_is_confined_and_the_printed_command_says_how():
    plan = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    starts = {s.container.service: s for s in plan.steps if isinstance(s, StartContainer)}
    for service, memory, pids in (("workers", "512m", 256), ("cgi", "256m", 128), ("nginx", "256m", 256)):
        command = starts[service].docker_command()
        for option in ("--read-only", "--cap-drop ALL", "--security-opt no-new-privileges", f"--memory {memory}",
                       f"--pids-limit {pids}"):
            assert option in command, (service, option, command)
        assert "--cap-add" not in command
    assert "--tmpfs /tmp" in starts["workers"].docker_command()
    nginx = starts["nginx"].docker_command()
    for path in ("/run/nginx", "/run/fcgikit", "/var/lib/nginx"):
        assert f"--tmpfs {path}:uid=33,gid=33" in nginx
    assert "-v /etc/nginx" in nginx  # nginx.conf is written in with docker cp


def test_a_changed_limit_replaces_the_container():
    before = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    spec = stack()
    limited = spec.services.workers.model_copy(update={"container": spec.services.workers.container.model_copy(
        update={"pids": 100})})
    spec = spec.model_copy(update={"services": spec.services.model_copy(update={"workers": limited})})
    after = plan_up(spec, "demo", HOSTS, IMAGES, running(before))
    started = [s.container.service for s in after.steps if isinstance(s, StartContainer)]
    assert started == ["workers", "workers"]


def test_the_cgi_gateway_runs_the_workers_app_as_the_fallback_unless_turned_off():
    plan = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    cgi = next(c for c in plan.wanted if c.service == "cgi")
    assert cgi.command[-4:] == ("--wsgi-fallback", "hello_wsgi:app", "--wsgi-fallback-dir", "/srv/app")
    spec = stack()
    off = spec.model_copy(update={"services": spec.services.model_copy(update={
        "workers": spec.services.workers.model_copy(update={"fallback": "none"})})})
    plan = plan_up(off, "demo", HOSTS, IMAGES, Observed())
    assert "--wsgi-fallback" not in next(c for c in plan.wanted if c.service == "cgi").command
    assert "@fcgikit_fallback" not in plan.nginx_conf


def test_the_end_to_end_check_prints_the_edges_url():
    first = plan_up(stack(port=8080), "demo", [Host("edge", "10.0.0.5")], IMAGES, Observed())
    assert first.steps[-1].docker_command() == "curl -fsS http://10.0.0.5:8080/"
    picked = plan_up(stack(port=0), "demo", HOSTS, IMAGES, Observed())
    assert picked.steps[-1].docker_command() == "curl -fsS http://127.0.0.1:PORT/"  # Docker picks it at the start
    published = dataclasses.replace(running(picked), containers=tuple(
        dataclasses.replace(c, published={8080: 32769}) if c.service == "nginx" else c
        for c in running(picked).containers))
    scaled = plan_up(with_replicas(stack(port=0), "workers", 3), "demo", HOSTS, IMAGES, published)
    assert scaled.steps[-1].docker_command() == "curl -fsS http://127.0.0.1:32769/"


def test_a_worker_back_at_another_ip_after_an_engine_restart_is_handed_to_nginx_and_nothing_else_changes():
    import dataclasses

    plan = plan_up(stack(), "demo", HOSTS, IMAGES, Observed())
    observed = running(plan)
    assert plan_up(stack(), "demo", HOSTS, IMAGES, observed).changes_nothing
    moved = tuple(dataclasses.replace(c, addresses={network_name("demo"): "172.18.0.77"})
                  if c.name == "demo-workers-2" else c for c in observed.containers)
    again = plan_up(stack(), "demo", HOSTS, IMAGES, dataclasses.replace(observed, containers=moved))
    assert kinds(again) == ["UpdateBackends", "CheckEndToEnd"]
