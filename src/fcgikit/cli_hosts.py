"""The multi-host parts of the `fcgikit` command: `--hosts FILE` and `fcgikit lock`.

`--hosts` (and `--accept-new-host-keys`) are accepted by up, scale, status, logs and down;
with them, the stack runs on the inventory's hosts over SSH instead of the local engine.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from .deploy.inventory import load_inventory
from .deploy.lock import DeployLock
from .deploy.multihost import open_remote_stack
from .deploy.operations import Stack
from .deploy.ssh import Fleet, HostUnreachable


def _remember(ctx: click.Context, param: click.Parameter, value):
    """Kept in this invocation's context (read when the stack is made; keeps the commands'
    signatures): a second invocation in the same process starts from nothing."""
    if value is not None:
        ctx.meta[f"fcgikit.{param.name}"] = value
    return value


def hosts_options(command):
    command = click.option(
        "--accept-new-host-keys", is_flag=True, expose_value=False, callback=_remember,
        help="record the key of a host not yet in known_hosts (a changed key is still refused)",
    )(command)
    return click.option(
        "--hosts", type=click.Path(dir_okay=False, exists=True, path_type=Path), envvar="FCGIKIT_HOSTS",
        expose_value=False, callback=_remember,
        help="inventory file: run on these hosts over SSH (see deploy/hosts.yaml)",
    )(command)


def chosen_hosts() -> Path | None:
    """The --hosts of the command being run (None: the local engine)."""
    return click.get_current_context().meta.get("fcgikit.hosts")


def stack_for(stack_kwargs: dict) -> Stack:
    """The local stack, or the stack on the inventory's hosts when --hosts was given."""
    hosts = chosen_hosts()
    if hosts is None:
        return Stack(**stack_kwargs)
    accept_new = bool(click.get_current_context().meta.get("fcgikit.accept_new_host_keys"))
    return open_remote_stack(stack_kwargs, hosts, accept_new_host_keys=accept_new)


def host_lines(report: dict) -> list[str]:
    """One line per inventory host for `status` (pure)."""
    lines = []
    for host in report.get("hosts", []):
        roles = ",".join(host["roles"])
        state = "[green]reachable[/]" if host["reachable"] else f"[red]UNREACHABLE[/] ({escape(host['problem'])})"
        lines.append(f"host {escape(host['name'])} {escape(host['address'])} ({roles}): {state}")
    return lines


@click.group()
def lock() -> None:
    """The deploy lock on the primary host (multi-host deployments)."""


def _lock_on_primary(hosts_file: Path, project: str, accept_new: bool):
    inventory = load_inventory(hosts_file)
    primary = inventory.primary
    fleet = Fleet([inventory.target(primary.name)], accept_new_host_keys=accept_new)
    fleet.connect()
    if primary.name not in fleet.sessions:
        raise HostUnreachable(str(fleet.unreachable[primary.name]))
    return fleet, DeployLock(fleet.session(primary.name), project, "lock")


def _lock_command(function):
    function = click.option("-p", "--project", envvar="FCGIKIT_PROJECT", default="fcgikit", show_default=True,
                            help="project name")(function)
    function = click.option("--accept-new-host-keys", is_flag=True, help="record an unknown host key")(function)
    return click.option("--hosts", "hosts_file", required=True, envvar="FCGIKIT_HOSTS",
                        type=click.Path(dir_okay=False, exists=True, path_type=Path), help="inventory file")(function)


@lock.command("status")
@_lock_command
def lock_status(hosts_file: Path, project: str, accept_new_host_keys: bool) -> None:
    """Who holds the deploy lock, if anyone."""
    fleet, deploy_lock = _lock_on_primary(hosts_file, project, accept_new_host_keys)
    try:
        if not deploy_lock.exists():
            click.echo(f"deploy lock for {project}: free")
        else:
            holder = deploy_lock.holder()
            click.echo(f"deploy lock for {project}: held by {holder.describe() if holder else 'unknown'}")
    finally:
        fleet.close()


@lock.command("release")
@_lock_command
def lock_release(hosts_file: Path, project: str, accept_new_host_keys: bool) -> None:
    """Release a lock left by a deploy that died (check that none is running first)."""
    fleet, deploy_lock = _lock_on_primary(hosts_file, project, accept_new_host_keys)
    try:
        holder = deploy_lock.holder() if deploy_lock.exists() else None
        deploy_lock.release()
        click.echo(f"deploy lock for {project} released" + (f" (was held by {holder.describe()})" if holder else ""))
    finally:
        fleet.close()


@click.group("hosts")
def hosts_group() -> None:
    """The inventory's hosts themselves (for `--engine swarm`)."""


@hosts_group.command("bootstrap")
@click.option("--hosts", "hosts_file", required=True, envvar="FCGIKIT_HOSTS",
              type=click.Path(dir_okay=False, exists=True, path_type=Path), help="inventory file")
@click.option("--accept-new-host-keys", is_flag=True, help="record an unknown host key")
def hosts_bootstrap(hosts_file: Path, accept_new_host_keys: bool) -> None:
    """Docker on every host (Debian's docker.io where missing), one swarm: init on the
    primary edge host, the others joined, each node labelled with its roles. Rerunnable."""
    from .deploy.swarm_hosts import bootstrap

    inventory = load_inventory(hosts_file)
    fleet = Fleet(inventory.targets(), accept_new_host_keys=accept_new_host_keys)
    fleet.connect()
    try:
        done = bootstrap(inventory, fleet, lambda text: click.echo(f"• {text}", err=True))
    finally:
        fleet.close()
    names = ", ".join(entry.name for entry in inventory.hosts)
    if done:
        click.echo(f"swarm of {inventory.primary.name}: {names} ({'; '.join(done)})")
    else:
        click.echo(f"no change: {names} are one swarm, labelled with their roles")
