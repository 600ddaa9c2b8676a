"""The `fcgikit` command: build, up, scale, status, logs, down, test.

Failures the user can act on print one red `error: ...` line (a bad config file:
one line per problem) and exit 1; the traceback only with --verbose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_hosts import host_lines, hosts_group, hosts_options, stack_for
from .cli_hosts import lock as lock_commands
from .deploy.appcheck import AppSource, check_stack_app
from .deploy.errors import ConfigError, FcgikitError
from .deploy.images import DEFAULT_BASE, DEFAULT_PREFIX, ImageNames, source_root
from .deploy.logs import LogRequest, parse_since, parse_tail
from .deploy.operations import Stack
from .deploy.plan import Plan
from .deploy.secrets import redactor_for
from .deploy.services import SCALABLE, SHOWN
from .deploy.spec import PROJECT_NAME, load_stack_spec, with_app, with_self_signed_tls
from .deploy.tls import default_directory

if TYPE_CHECKING:
    from rich.status import Status

    from .deploy.swarm import SwarmPlan, SwarmStack

# Off a terminal (CI logs, pipes) rich would assume 80 columns and squeeze the status table.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)
DEFAULT_PROJECT = "fcgikit"


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="fcgikit")


class FcgikitGroup(click.Group):
    """Turns failures into one red error line and exit status 1 (130 when interrupted)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except ConfigError as exc:
            for problem in exc.problems:
                err.print(f"[red]error:[/] {escape(exc.source)}: {escape(problem)}")
            _traceback_if_verbose()
        except FcgikitError as exc:
            _print_error(str(exc))
        except KeyboardInterrupt:
            err.print("[red]error:[/] interrupted")
            ctx.exit(130)
        except Exception as exc:  # unexpected: still one line, the traceback only with --verbose
            hint = "" if _verbose() else " (--verbose shows the traceback)"
            _print_error(f"{exc.__class__.__name__}: {exc}{hint}")
        ctx.exit(1)


def _print_error(message: str) -> None:
    first, _, rest = _redact(message).partition("\n")  # attached logs may show a secret
    err.print(f"[red]error:[/] {escape(first)}")
    if rest:  # attached logs, after the one error line
        err.print(escape(rest), style="dim")
    _traceback_if_verbose()


def _verbose() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and context.meta.get("fcgikit.verbose"))


def _redact(text: str) -> str:
    """Secret values of the loaded stack file -> [secret NAME] (nothing loaded: the text as is)."""
    context = click.get_current_context(silent=True)
    redact = context.meta.get("fcgikit.redact") if context else None
    return redact(text) if redact else text


def _traceback_if_verbose() -> None:
    if _verbose():
        err.print(escape(traceback.format_exc()), style="dim")


# --- shared options ------------------------------------------------------------------------


def stack_options(command):
    options = [
        click.option("-f", "--file", "spec_file", type=click.Path(dir_okay=False, path_type=Path),
                     envvar="FCGIKIT_FILE", help="stack file (default: ./fcgikit.yaml, else deploy/fcgikit.yaml)"),
        click.option("-p", "--project", envvar="FCGIKIT_PROJECT",
                     help="project name: labels and names of everything started (default: the file's, else fcgikit)"),
        click.option("--image-prefix", envvar="FCGIKIT_IMAGE_PREFIX", default=DEFAULT_PREFIX, show_default=True,
                     help="images are PREFIX/fcgi-worker:HASH and PREFIX/nginx:HASH"),
        click.option("--base", "base_image", envvar="FCGIKIT_BASE_IMAGE", default=DEFAULT_BASE, show_default=True,
                     help="base image; made with debootstrap when it is missing and cannot be pulled"),
    ]
    for option in reversed(options):
        command = option(command)
    return hosts_options(command)  # --hosts FILE: the same commands across hosts over SSH


def _remember_engine(ctx: click.Context, param: click.Parameter, value):
    if value:  # kept in the context of this invocation (not in a module global)
        ctx.meta[f"fcgikit.{param.name}"] = value
    return value


def engine_options(command):
    """--engine swarm (and --init-swarm): the stack as Docker Swarm services (deploy/swarm.py)."""
    command = click.option(
        "--init-swarm", is_flag=True, expose_value=False, callback=_remember_engine,
        help="with --engine swarm: make the local engine a single-node swarm if it is not in one")(command)
    return click.option(
        "--engine", type=click.Choice(["docker", "swarm"]), envvar="FCGIKIT_ENGINE", expose_value=False,
        callback=_remember_engine,
        help="docker: containers fcgikit places itself (default); swarm: Docker Swarm services "
             "(default: the file's `engine`)")(command)


def app_option(command):
    return click.option("--app", metavar="PATH[:MODULE:APP]", envvar="FCGIKIT_APP",
                        help="serve your own WSGI app: a directory (with the file's MODULE:APP "
                             "or the one given) or a .py file (callable `app` unless given); "
                             "scale keeps the app that runs")(command)


def dry_run_option(command):
    dry_run = click.option("--dry-run", is_flag=True, help="print the plan and the Docker operations; change nothing")
    return dry_run(command)


def tls_option(command):
    return click.option("--tls", type=click.Choice(["self-signed"]), envvar="FCGIKIT_TLS",
                        help="HTTPS with a development certificate (see docs/tls.md); "
                             "scale keeps the HTTPS that runs")(command)


def load_stack(spec_file, project, image_prefix, base_image, app=None, tls=None, *, check_app: bool = False,
               **extra) -> Stack | SwarmStack:
    spec_file = spec_file or default_spec_file()
    spec = load_stack_spec(spec_file)
    if tls == "self-signed":
        spec = with_self_signed_tls(spec)
    if app:
        try:
            spec = with_app(spec, app)
        except ValueError as exc:
            raise FcgikitError(str(exc)) from None
    if check_app:  # before anything is built, started or planned (--dry-run too)
        check_stack_app(spec, AppSource(str(spec_file), app))
    name = project or spec.project or DEFAULT_PROJECT
    _check_project(name)
    click.get_current_context().meta["fcgikit.redact"] = redactor_for(spec)
    progress = Progress()

    def say(text: str) -> None:
        progress.stop()  # the live build line ends where the steps begin
        say_step(text)

    meta = click.get_current_context().meta
    if (meta.get("fcgikit.engine") or spec.engine) == "swarm":
        from .cli_hosts import chosen_hosts
        from .deploy.swarm import SwarmStack, unsupported_on_swarm

        problems = unsupported_on_swarm(spec)
        if problems:
            raise ConfigError(str(spec_file), [f"{problem}; nothing changed" for problem in problems])
        remote = None
        if chosen_hosts() is not None:  # built here, shipped to the nodes, deployed through the primary edge host
            remote = stack_for(dict(spec=spec, project=name, names=ImageNames(image_prefix, base_image), say=say,
                                    progress=progress, app=app, **extra))
        return SwarmStack(spec=spec, project=name, names=ImageNames(image_prefix, base_image), say=say,
                          progress=progress, init_swarm=bool(meta.get("fcgikit.init_swarm")), remote=remote,
                          app=app, keep_releases=extra.get("keep_releases"))
    return stack_for(dict(spec=spec, project=name, names=ImageNames(image_prefix, base_image), say=say,
                          progress=progress, app=app, **extra))


def default_spec_file() -> Path:
    here = Path("fcgikit.yaml")
    return here if here.is_file() else source_root() / "deploy" / "fcgikit.yaml"


def _check_project(name: str) -> None:
    if not PROJECT_NAME.match(name):
        raise FcgikitError(f'project name "{name}": use lowercase letters, digits, "-" and "_" (at most 40)') from None


def say_step(text: str) -> None:
    err.print(f"[cyan]•[/] {escape(text)}")


class Progress:
    """Progress of long work (base image, builds): a live line on a terminal, else
    plain lines, at most one every few seconds per kind of work so CI logs stay short."""

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self.last: dict[str, float] = {}
        self.status: Status | None = None

    def __call__(self, text: str) -> None:
        if err.is_terminal:
            if self.status is None:
                self.status = err.status(escape(_shorten(text)))
                self.status.start()
            self.status.update(escape(_shorten(text)))
            return
        kind = text.split(":", 1)[0]
        now = time.monotonic()
        if "Step" in text or now - self.last.get(kind, 0.0) >= self.interval or text.endswith("ready"):
            self.last[kind] = now
            err.print(f"  {escape(_shorten(text))}", style="dim")

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None


def _shorten(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def finishing_progress(stack: Stack | SwarmStack) -> None:
    """Stop the live progress line before printing results."""
    if isinstance(stack.progress, Progress):
        stack.progress.stop()


# --- commands ---------------------------------------------------------------------------------


@click.group(cls=FcgikitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="tracebacks on errors")
@click.version_option(package_name="fcgikit")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Run FastCGI and CGI programs behind nginx, in containers."""
    ctx.meta["fcgikit.verbose"] = verbose or bool(os.environ.get("FCGIKIT_VERBOSE"))


@cli.command()
@stack_options
@app_option
@click.option("--prune", is_flag=True,
              help="then remove this prefix's older images that no container and no kept release uses")
@click.option("--keep-releases", type=click.IntRange(min=1), envvar="FCGIKIT_KEEP_RELEASES", metavar="N",
              help="with --prune: keep the last N releases (and their images) [default: 5]")
@engine_options
def build(spec_file, project, image_prefix, base_image, app, prune, keep_releases) -> None:
    """Build the images (and the base, when missing); tags HASH and latest."""
    stack = load_stack(spec_file, project, image_prefix, base_image, app, check_app=True, keep_releases=keep_releases)
    try:
        built = stack.build(tag_latest=True)
    finally:
        finishing_progress(stack)
    for image in built.values():
        state = "built" if image.built else "already there"
        out.print(f"{image.tag} ({state}; also {image.tag.split(':')[0]}:latest)")
    if prune:
        forgotten, removed = stack.prune({image.tag for image in built.values()})
        for release in forgotten:
            out.print(f"forgot release {release.number} of project {stack.project}")
        kept = stack.releases()
        note = f" (kept: the images of release{'s' if len(kept) != 1 else ''} " \
               f"{', '.join(str(r.number) for r in kept)})" if kept else ""
        out.print(f"pruned {len(removed)} older image tag(s){note}" + "".join(f"\n  {tag}" for tag in removed))


@cli.command()
@stack_options
@app_option
@tls_option
@dry_run_option
@engine_options
def up(spec_file, project, image_prefix, base_image, app, tls, dry_run) -> None:
    """Build what is missing, start the stack, check it, print its URL."""
    stack = load_stack(spec_file, project, image_prefix, base_image, app, tls, check_app=True)
    if dry_run:
        plan = stack.plan_up(build=False)
        print_plan(plan, image_notes(stack) if not plan.changes_nothing else [])
        return
    try:
        result = stack.up()
    finally:
        finishing_progress(stack)
    if not result.changed:
        out.print(f"no change: {len(result.plan.wanted)} containers of project {stack.project} are current")
    if result.release is not None:
        out.print(f"recorded release {result.release.number} (`fcgikit releases` lists them, "
                  f"`fcgikit rollback` returns to the one before)")
    out.print(f"{stack.project} is up: [bold]{result.url}[/]")
    print_tls_hint(stack)


def print_tls_hint(stack: Stack | SwarmStack) -> None:
    tls = stack.spec.services.nginx.tls
    if tls is not None and tls.self_signed:
        ca = default_directory(stack.project) / "ca.pem"
        out.print(f"development certificate: trust {ca} (e.g. curl --cacert {ca} URL)")


@cli.command()
@stack_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@engine_options
def releases(spec_file, project, image_prefix, base_image, as_json) -> None:
    """The releases recorded by `up` and `rollback`, oldest first; the current one marked."""
    stack = load_stack(spec_file, project, image_prefix, base_image)
    found = stack.releases()
    rows = [release.row(current=i == len(found) - 1) for i, release in enumerate(found)]
    if as_json:
        click.echo(json.dumps({"project": stack.project, "host": stack.release_host(), "releases": rows}, indent=2))
        return
    if not rows:
        out.print(f"project {stack.project}: no release recorded yet (`fcgikit up` records one)")
        return
    table = Table(title=f"releases of project {stack.project} (on {stack.release_host()})")
    for column in ("release", "time (UTC)", "who", "images", "app", "note"):
        table.add_column(column)
    for row in rows:
        images = ", ".join(sorted({tag.rsplit("/", 1)[-1] for tag in row["images"].values()}))
        note = ("current" if row["current"] else "") + (
            f"{', ' if row['current'] else ''}rollback to {row['rollback_of']}" if row["rollback_of"] else "")
        table.add_row(str(row["release"]), row["time"].replace("T", " ").rstrip("Z"), row["who"], images,
                      _short_app(row["app"]), note)
    out.print(table)


@cli.command()
@click.argument("release", type=click.IntRange(min=1), required=False)
@stack_options
@dry_run_option
@engine_options
def rollback(release, spec_file, project, image_prefix, base_image, dry_run) -> None:
    """Return to RELEASE (default: the one before the current) without building and without
    failing a request: its images and its stack file, the same steps as `up`."""
    stack = load_stack(spec_file, project, image_prefix, base_image)
    if dry_run:
        target, plan = stack.plan_rollback(release, dry_run=True)
        out.print(f"rollback to release {target.number} ({_release_summary(target)})")
        print_plan(plan)
        return
    result = stack.rollback(release)
    if not result.changed:
        out.print(f"no change: release {result.target.number} is what runs")
    out.print(f"rolled back to release {result.target.number} ({_release_summary(result.target)})"
              + (f", recorded as release {result.release.number}" if result.release else ""))
    out.print(f"{stack.project} is up: [bold]{result.url}[/]")
    print_tls_hint(stack)


def _short_app(app: str | None) -> str:
    """--app as given, its directory's name only (the table stays narrow; --json has all)."""
    if not app:
        return "(the stack file's)"
    where, sep, rest = app.partition(":")
    return Path(where).name + sep + rest


def _release_summary(release) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(release.time))
    return f"{when} by {release.who}"


@cli.command()
@click.argument("assignments", metavar="SERVICE=N...", nargs=-1, required=True)
@stack_options
@app_option
@tls_option
@dry_run_option
@engine_options
def scale(assignments, spec_file, project, image_prefix, base_image, app, tls, dry_run) -> None:
    """Run N containers of each SERVICE (workers, cgi) without failing a request:
    `fcgikit scale workers=4 cgi=2`.

    It keeps the app the workers serve (an --app that is not that one is refused: `up`
    changes the app), and holds until the next `up`, which goes back to the file's replicas.
    """
    replicas = parse_assignments(assignments)
    # An --app that cannot serve is refused before anything is looked at; a kept app is checked too.
    stack = load_stack(spec_file, project, image_prefix, base_image, app, tls, check_app=bool(app))
    kept = stack.keep_deployed_app()
    if kept or not app:
        check_stack_app(stack.spec, AppSource(str(spec_file or default_spec_file()), app or kept))
    if dry_run:
        plan = stack.plan_scale(replicas, build=False)
        release = getattr(stack, "deployed_release", lambda: None)()  # scaled as it runs: its images
        print_plan(plan, image_notes(stack) if not plan.changes_nothing and release is None else [])
        return
    try:
        result = stack.scale(replicas)
    finally:
        finishing_progress(stack)
    counts = ", ".join(f"{service}: {count}" for service, count in replicas.items())
    if not result.changed:
        out.print(f"no change: {counts} current containers")
    else:
        out.print(f"{counts} containers; {result.url}")


def parse_assignments(assignments) -> dict[str, int]:
    replicas: dict[str, int] = {}
    for assignment in assignments:
        service, count = parse_assignment(assignment)
        if service in replicas:
            raise click.BadParameter(f'{service} is given twice', param_hint="SERVICE=N")
        replicas[service] = count
    return replicas


def parse_assignment(assignment: str) -> tuple[str, int]:
    service, sep, count = assignment.partition("=")
    if not sep or not count.strip().isdigit():
        raise click.BadParameter(f'expected SERVICE=N (e.g. workers=4), got "{assignment}"', param_hint="SERVICE=N")
    if service not in SCALABLE:
        raise click.BadParameter(f'"{service}" cannot be scaled; scale {" or ".join(SCALABLE)}', param_hint="SERVICE=N")
    return service, int(count)


@cli.command()
@stack_options
@dry_run_option
@engine_options
def down(spec_file, project, image_prefix, base_image, dry_run) -> None:
    """Remove every container and network carrying this project's label, nothing else."""
    stack = load_stack(spec_file, project, image_prefix, base_image)
    if dry_run:
        print_plan(stack.plan_down())
        return
    plan = stack.down()
    out.print(f"{stack.project} is down" + ("" if plan.steps else " (nothing was running)"))
    kept = stack.releases() if isinstance(stack, Stack) else []
    if kept:
        out.print(f"its {len(kept)} release(s) stay (`fcgikit releases`): `fcgikit rollback {kept[-1].number}` "
                  "brings the last one back")


@cli.command()
@stack_options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@engine_options
def status(spec_file, project, image_prefix, base_image, as_json) -> None:
    """Each container, its health and its pool figures."""
    stack = load_stack(spec_file, project, image_prefix, base_image)
    report = stack.status()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_status(report)


@cli.command()
@click.argument("services", metavar="[SERVICE]...", nargs=-1, type=click.Choice(SHOWN))
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines, of every container on every host")
@click.option("-n", "--tail", default="all", metavar="N", help="only the last N lines of each container")
@click.option("--since", metavar="DURATION|TIME", help="only lines since 10m, 1h30m... ago, or since a time "
                                                       "(2026-12-05T20:00:00Z)")
@click.option("-t", "--timestamps", is_flag=True, help="show Docker's timestamp of each line")
@click.option("--file", "spec_file", type=click.Path(dir_okay=False, path_type=Path), envvar="FCGIKIT_FILE",
              help="stack file (default: ./fcgikit.yaml, else deploy/fcgikit.yaml)")
@click.option("-p", "--project", envvar="FCGIKIT_PROJECT", help="project name")
@hosts_options
@engine_options
def logs(services, follow, tail, since, timestamps, spec_file, project) -> None:
    """The log lines of every container of the SERVICEs (all services when none is given),
    each prefixed by its container; merged by time, or as they come with -f."""
    request = LogRequest(tail=parse_tail(tail), since=parse_since(since) if since else None, follow=follow,
                         timestamps=timestamps)
    stack = load_stack(spec_file, project, DEFAULT_PREFIX, DEFAULT_BASE)
    try:
        for line in stack.logs(services, request):
            click.echo(_redact(line))
    except KeyboardInterrupt:  # how one stops following: not an error
        pass


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@app_option
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def test(app, pytest_args) -> None:
    """Run the stack's Docker integration suite (pytest + testcontainers) against real containers.

    With --app, the stack tests serve your app instead of the example (it must answer GET /).
    Extra arguments go to pytest.
    """
    root = source_root()
    env = dict(os.environ)
    if app:
        # Checked once here, as `up` would check it: not once per test.
        load_stack(root / "deploy" / "fcgikit.yaml", None, DEFAULT_PREFIX, DEFAULT_BASE, app, check_app=True)
        env["FCGIKIT_TEST_APP"] = str(Path(app.partition(":")[0]).resolve()) + (
            ":" + app.partition(":")[2] if ":" in app else "")
    # The stack suite (not the multi-host bed or the runtime's own tests): what a user's CI needs.
    suite = sorted(str(path) for path in (root / "tests" / "integration").glob("test_stack*.py"))
    argv = [sys.executable, "-m", "pytest", "-m", "docker", *suite, *pytest_args]
    err.print(f"[cyan]•[/] {escape(' '.join(argv[1:]))}")
    sys.exit(subprocess.call(argv, cwd=root, env=env))


# --- printing ----------------------------------------------------------------------------------


def image_notes(stack) -> list[str]:
    """What a dry run builds and ships before its steps (engines placing containers themselves)."""
    notes = getattr(stack, "image_notes", None)
    return notes() if notes is not None else []


def print_plan(plan: Plan | SwarmPlan, notes: Sequence[str] = ()) -> None:
    out.print(f"[bold]plan for project {plan.project}[/] (dry run, nothing changed)")
    for service, names in plan.placements().items():
        out.print(f"  {service}: {', '.join(names)}")
    if plan.changes_nothing:
        out.print("no change")
        return
    if notes:
        out.print("images first:")
        for note in notes:
            out.print(f"  {escape(note)}")
    for number, step in enumerate(plan.steps, 1):
        out.print(f"{number:3}. {escape(step.describe())}")
        out.print(f"     $ {escape(step.docker_command())}", style="dim")


def print_status(report: dict) -> None:
    for line in host_lines(report):  # multi-host: every inventory host, reachable or not
        out.print(line)
    if report.get("engine") == "swarm":
        print_swarm_status(report)
        return
    table = Table(title=f"project {report['project']}: {report['url'] or 'no nginx running'}")
    for column in ("container", "service", "host", "state", "health", "processes", "busy/idle", "requests", "image"):
        table.add_column(column)
    for row in report["containers"]:
        pool = row.get("pool") or {}
        busy_idle = f"{_dash(pool.get('busy'))}/{_dash(pool.get('idle'))}" if pool else "-"
        state_style = "green" if row["state"] == "running" else "red"
        state = f"[{state_style}]{row['state']}[/]"
        if row.get("stale"):
            state = f"[yellow]{row['state']}, STALE[/]"
        health_style = {"healthy": "green", "unhealthy": "red"}.get(row["health"], "")
        table.add_row(
            row["name"], row["service"], row["host"], state,
            f"[{health_style}]{row['health']}[/]" if health_style else row["health"],
            _dash(pool.get("processes")), busy_idle, _dash(pool.get("accepted_conn")), row["image"].rsplit("/", 1)[-1],
        )
    if not report["containers"]:
        out.print(f"project {report['project']}: nothing is running")
        return
    out.print(table)
    stale = [row["name"] + "@" + row["host"] for row in report["containers"] if row.get("stale")]
    if stale:
        out.print(f"[yellow]STALE[/]: {', '.join(stale)}: not among nginx's backends (left on a host that was lost "
                  "while `up` replaced them, or by an interrupted `up`); the next `fcgikit up` or `scale` "
                  "reuses or removes them")


def print_swarm_status(report: dict) -> None:
    """Tasks per node, desired versus running per service, and why a task is not running."""
    if report.get("problem"):
        out.print(f"project {report['project']}: {report['problem']}")
        return
    if not report["services"]:
        out.print(f"project {report['project']}: no service of this stack on the swarm")
        return
    out.print(f"project {report['project']} (swarm): {report['url'] or 'no nginx published'}")
    for service in report["services"]:
        style = "green" if service["running"] == service["desired"] else "red"
        update = f", update {service['update']}" if service["update"] else ""
        out.print(f"  {service['service']}: [{style}]{service['running']}/{service['desired']} running[/]"
                  f" ({escape(service['image'].rsplit('/', 1)[-1])}{escape(update)})")
    table = Table()
    for column in ("task", "node", "state", "error"):
        table.add_column(column)
    for row in report["containers"]:
        style = "green" if row["state"] == "running" else "red"
        table.add_row(row["name"], row["host"], f"[{style}]{row['state']}[/]", escape(row["error"] or ""))
    out.print(table)


def _dash(value) -> str:
    return "-" if value is None else str(value)


cli.add_command(lock_commands)
cli.add_command(hosts_group)

if __name__ == "__main__":
    main()
