"""The CLI's failure output: one red `error:` line, non-zero exit, traceback only with --verbose."""

import pytest
from click.testing import CliRunner

from fcgikit import cli as cli_module
from fcgikit.cli import cli, parse_assignment, parse_assignments


@pytest.fixture
def run():
    def invoke(*args):
        return CliRunner().invoke(cli, list(args))

    return invoke


def write_spec(tmp_path, text):
    path = tmp_path / "fcgikit.yaml"
    path.write_text(text)
    return str(path)


def test_invalid_spec_one_error_line_per_problem_with_its_path(run, tmp_path):
    spec = write_spec(tmp_path, "services:\n  workers: {app: 'm:app', replicas: eight, replica: 1}\n")
    for command in (["up"], ["up", "--dry-run"], ["scale", "workers=2"], ["down"], ["status"], ["build"]):
        result = run(*command, "-f", spec)
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.splitlines() == [
            f'error: {spec}: services/workers/replicas: expected an integer >= 0, got "eight"',
            f'error: {spec}: services/workers/replica: unknown key (did you mean "replicas"?)',
        ]
        assert "Traceback" not in result.output
        assert result.stdout == ""


def test_missing_spec_file(run, tmp_path):
    result = run("up", "-f", str(tmp_path / "none.yaml"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'none.yaml'}: cannot read")


def test_bad_project_name_is_refused_before_anything(run, tmp_path):
    spec = write_spec(tmp_path, "services:\n  workers: {app: 'm:app'}\n")
    result = run("down", "-f", spec, "-p", "Not OK")
    assert result.exit_code == 1
    assert result.stderr.strip() == 'error: project name "Not OK": use lowercase letters, digits, "-" and "_" (at most 40)'


def test_bad_app_option(run, tmp_path):
    spec = write_spec(tmp_path, "services:\n  workers: {app: 'm:app'}\n")
    result = run("up", "-f", spec, "--app", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "nowhere does not exist (expected a directory of modules or a .py file)" in result.stderr


def test_scale_assignment_is_checked(run):
    result = run("scale", "workers")
    assert result.exit_code == 2 and "expected SERVICE=N" in result.output
    result = run("scale", "nginx=3")
    assert result.exit_code == 2 and "cannot be scaled" in result.output
    assert parse_assignment("cgi=0") == ("cgi", 0)
    assert parse_assignments(("workers=4", "cgi=2")) == {"workers": 4, "cgi": 2}
    result = run("scale", "workers=1", "workers=2")
    assert result.exit_code == 2 and "workers is given twice" in result.output


def test_unexpected_failure_is_one_line_and_traceback_with_verbose(run, tmp_path, monkeypatch):
    spec = write_spec(tmp_path, "services:\n  workers: {app: 'm:app'}\n")

    def explode(*args, **kwargs):
        raise RuntimeError("engine on fire")

    monkeypatch.setattr(cli_module, "load_stack", explode)
    quiet = run("status", "-f", spec)
    assert quiet.exit_code == 1
    assert quiet.stderr.splitlines() == ["error: RuntimeError: engine on fire (--verbose shows the traceback)"]
    loud = run("--verbose", "status", "-f", spec)
    assert loud.exit_code == 1
    assert loud.stderr.startswith("error: RuntimeError: engine on fire\n")
    assert "Traceback (most recent call last)" in loud.stderr


def test_failure_with_attached_logs_keeps_one_error_line(run, tmp_path, monkeypatch):
    from fcgikit.deploy.errors import FcgikitError

    def fail(*args, **kwargs):
        raise FcgikitError("demo-workers-1 on local did not answer\n--- logs ---\nImportError: no module x")

    monkeypatch.setattr(cli_module, "load_stack", fail)
    result = run("up", "-f", write_spec(tmp_path, "services:\n  workers: {app: 'm:app'}\n"))
    lines = result.stderr.splitlines()
    assert result.exit_code == 1
    assert [line for line in lines if line.startswith("error:")] == ["error: demo-workers-1 on local did not answer"]
    assert "ImportError: no module x" in lines


def test_help_lists_every_command(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("build", "up", "scale", "status", "logs", "down", "test"):
        assert f"  {command} " in result.output


def test_progress_off_a_terminal_prints_sparse_lines(capsys):
    progress = cli_module.Progress(interval=60)
    for n in range(100):
        progress(f"base: debootstrap [{n}%] Retrieving package-{n}")
    progress("base: fcgikit/base:bookworm ready")
    progress("fcgi-worker: Step 1/15 : FROM x")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["  base: debootstrap [0%] Retrieving package-0", "  base: fcgikit/base:bookworm ready",
                     "  fcgi-worker: Step 1/15 : FROM x"]


def test_an_app_that_cannot_serve_is_refused_before_anything_runs(run, tmp_path):
    (tmp_path / "site.py").write_text("def app(environ, start_response): pass\n")
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "storefront.py").write_text("def application(environ, start_response): pass\n")
    for command in (["up", "--dry-run"], ["build"], ["scale", "workers=2", "--dry-run"], ["test"]):
        result = run(*command, "--app", str(tmp_path / "site.py"))
        assert result.exit_code == 1, (command, result.output)
        assert result.stderr.startswith(f'error: --app {tmp_path / "site.py"}: "site" is the name of a module of '
                                        "Python's standard library"), (command, result.stderr)
    result = run("test", "--app", str(tmp_path / "shop"))
    assert result.exit_code == 1 and "--app DIR:MODULE:APP, e.g. --app" in result.stderr, result.stderr
    assert "-m pytest" not in result.stderr  # the suite did not start


def test_a_dry_run_lists_images_only_for_stacks_that_build_them():
    from fcgikit.cli import image_notes

    class Swarm:  # places nothing itself: no image_notes
        pass

    class Local:
        def image_notes(self):
            return ["build fk/fcgi-worker:abc here"]

    assert image_notes(Swarm()) == [] and image_notes(Local()) == ["build fk/fcgi-worker:abc here"]


def test_choices_of_one_invocation_do_not_leak_into_the_next(tmp_path, monkeypatch):
    """Two invocations in one process (as a test suite or a long-lived caller does): the
    second, without --hosts, runs on the local engine, not on the first one's inventory."""
    from fcgikit import cli_hosts

    made = []

    class FakeStack:
        def __init__(self, where):
            self.where = where

        def status(self):
            made.append(self.where)
            return {"project": "demo", "url": None, "containers": []}

    monkeypatch.setattr(cli_hosts, "Stack", lambda **kwargs: FakeStack("local"))
    monkeypatch.setattr(cli_hosts, "open_remote_stack",
                        lambda kwargs, hosts, accept_new_host_keys: FakeStack(f"{hosts.name} {accept_new_host_keys}"))
    spec = write_spec(tmp_path, "services:\n  workers: {app: 'm:app'}\n")
    inventory = tmp_path / "inv.yaml"
    inventory.write_text("hosts: {}\n")
    runner = CliRunner(env={"FCGIKIT_HOSTS": None})
    first = runner.invoke(cli, ["status", "-f", spec, "--hosts", str(inventory), "--accept-new-host-keys"])
    second = runner.invoke(cli, ["status", "-f", spec])
    assert (first.exit_code, second.exit_code) == (0, 0), (first.output, second.output)
    assert made == ["inv.yaml True", "local"]


def test_verbose_and_secret_redaction_do_not_leak_into_the_next_invocation(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("engine on fire")

    monkeypatch.setattr(cli_module, "load_stack", explode)
    spec = write_spec(tmp_path, "services:\n  workers: {app: 'm:app'}\n")
    runner = CliRunner(env={"FCGIKIT_VERBOSE": None})
    assert "Traceback" in runner.invoke(cli, ["--verbose", "status", "-f", spec]).stderr
    quiet = runner.invoke(cli, ["status", "-f", spec])
    assert quiet.stderr.splitlines() == ["error: RuntimeError: engine on fire (--verbose shows the traceback)"]
