"""The stack file: eager, strict validation with path-qualified errors; paths resolved."""

from pathlib import Path

import pytest

from fcgikit.deploy.errors import ConfigError
from fcgikit.deploy.spec import load_stack_spec, with_app, with_replicas

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "fcgikit.yaml"


def write(tmp_path, text):
    path = tmp_path / "fcgikit.yaml"
    path.write_text(text)
    return path


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        load_stack_spec(write(tmp_path, text))
    return caught.value.problems


def test_the_example_file_is_valid_and_its_paths_resolve():
    spec = load_stack_spec(EXAMPLE)
    assert spec.project == "fcgikit"
    assert spec.services.workers.app == "hello_wsgi:app"
    assert spec.services.workers.path == EXAMPLE.parent.parent / "apps"
    assert spec.services.cgi.scripts == EXAMPLE.parent.parent / "apps" / "cgi-bin"


def test_minimal_file_gets_defaults(tmp_path):
    spec = load_stack_spec(write(tmp_path, "services:\n  workers: {app: 'm:app'}\n"))
    assert spec.services.nginx.port == 8080
    assert spec.services.workers.replicas == 2
    assert spec.services.cgi is None
    assert spec.replicas("cgi") == 0


def test_the_issue_example_error(tmp_path):
    assert problems(tmp_path, "services:\n  workers: {app: 'm:app', replicas: eight}\n") == [
        'services/workers/replicas: expected an integer >= 0, got "eight"'
    ]


def test_every_problem_is_reported_with_its_path(tmp_path):
    text = """
project: Bad Name
services:
  nginx: {port: 70000, client_max_body_size: lots, keepalive: 0}
  workers: {app: 'no-colon', processes: 0, timeout: 0, env: {A: [1]}}
  cgi: {replicas: -1, scripts: 3, colour: red}
"""
    assert problems(tmp_path, text) == [
        'project: expected lowercase letters, digits, "-" and "_" (at most 40), got "Bad Name"',
        "services/nginx/port: expected an integer >= 0 and <= 65535, got 70000",
        'services/nginx/client_max_body_size: expected a size such as "1m", "512k" or "0", got "lots"',
        "services/nginx/keepalive: expected an integer >= 1 and <= 10000, got 0",
        'services/workers/app: expected MODULE:APP, e.g. hello_wsgi:app, got "no-colon"',
        "services/workers/processes: expected an integer >= 1 and <= 256, got 0",
        "services/workers/timeout: expected an integer >= 1 and <= 3600, got 0",
        "services/workers/env/A: expected a string, got a list",
        "services/cgi/scripts: expected a path, got 3",
        "services/cgi/replicas: expected an integer >= 0, got -1",
        'services/cgi/colour: unknown key (expected one of: scripts, processes, replicas, timeout, env, secrets, container)',
    ]


def test_app_or_program_exactly_one(tmp_path):
    assert problems(tmp_path, "services:\n  workers: {replicas: 1}\n") == [
        'services/workers: set exactly one of "app" (a WSGI MODULE:APP) or "program" (a FastCGI program)'
    ]
    assert problems(tmp_path, "services:\n  workers: {app: 'a:b', program: [x]}\n")[0].startswith("services/workers: set exactly one")


def test_missing_workers_and_typos_at_top(tmp_path):
    assert problems(tmp_path, "servics: {}\n") == [
        "services: required, expected a mapping",
        'servics: unknown key (did you mean "services"?)',
    ]


def test_not_a_mapping(tmp_path):
    assert problems(tmp_path, "- a\n- b\n") == ["(top level): expected a mapping, got a list"]


def test_with_replicas_changes_only_that_service():
    spec = load_stack_spec(EXAMPLE)
    scaled = with_replicas(spec, "workers", 6)
    assert scaled.services.workers.replicas == 6
    assert scaled.services.cgi == spec.services.cgi
    with pytest.raises(ValueError, match="nginx"):
        with_replicas(spec, "nginx", 2)


def test_with_app_file_directory_and_errors(tmp_path):
    spec = load_stack_spec(EXAMPLE)
    module = tmp_path / "mysite.py"
    module.write_text("def application(e, s): pass\n")
    assert with_app(spec, str(module)).services.workers.app == "mysite:app"
    served = with_app(spec, f"{module}:application").services.workers
    assert (served.app, served.path) == ("mysite:application", tmp_path)
    assert with_app(spec, str(tmp_path)).services.workers.app == "hello_wsgi:app"
    assert with_app(spec, f"{tmp_path}:pkg.wsgi:application").services.workers.app == "pkg.wsgi:application"
    with pytest.raises(ValueError, match=r"missing does not exist \(expected a directory of modules or a .py file\)"):
        with_app(spec, str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="notes.txt is neither a directory nor a .py file"):
        with_app(spec, str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="expected MODULE:APP"):
        with_app(spec, f"{tmp_path}:nocolon")


def test_every_service_is_confined_by_default_with_its_own_limits(tmp_path):
    spec = load_stack_spec(write(tmp_path, "services:\n  workers: {app: 'm:app'}\n  cgi: {}\n"))
    nginx, workers, cgi = spec.services.nginx.container, spec.services.workers.container, spec.services.cgi.container
    assert (nginx.memory, nginx.pids) == ("256m", 256)
    assert (workers.memory, workers.pids) == ("512m", 256)
    assert (cgi.memory, cgi.pids) == ("256m", 128)
    assert all(c.read_only and c.cap_add == [] for c in (nginx, workers, cgi))


def test_limits_are_set_and_relaxed_per_service(tmp_path):
    text = """
services:
  workers: {app: 'm:app', container: {memory: 2G, pids: 0, read_only: false, cap_add: [cap_net_bind_service]}}
  cgi: {container: {pids: 64}}
"""
    spec = load_stack_spec(write(tmp_path, text))
    workers = spec.services.workers.container
    assert (workers.memory, workers.pids, workers.read_only, workers.cap_add) == ("2g", 0, False, ["NET_BIND_SERVICE"])
    assert spec.services.cgi.container.pids == 64 and spec.services.cgi.container.memory == "256m"


def test_bad_limits_are_reported_with_their_paths(tmp_path):
    text = """
services:
  nginx: {container: {memory: lots}}
  workers: {app: 'm:app', container: {memory: 1m, cap_add: [net-admin], swap: 1}}
  cgi: {container: {pids: -1}}
"""
    assert problems(tmp_path, text) == [
        'services/nginx/container/memory: expected a size such as "256m" or "1g" (at least 16m), or "0" for no limit, '
        'got "lots"',
        'services/workers/container/memory: expected at least 16m (or "0" for no limit), got "1m"',
        'services/workers/container/cap_add: expected capability names such as NET_BIND_SERVICE, got "net-admin"',
        'services/workers/container/swap: unknown key (expected one of: memory, pids, read_only, cap_add)',
        "services/cgi/container/pids: expected an integer >= 0 and <= 1000000, got -1",
    ]


def test_a_pids_limit_must_leave_room_for_the_pool(tmp_path):
    text = "services:\n  workers: {app: 'm:app', processes: 64, container: {pids: 40}}\n  cgi: {processes: 30}\n"
    assert problems(tmp_path, text) == [
        "services/workers: container/pids: 40 is too few for 64 processes: expected at least 80 (or 0 for no limit)",
        "services/cgi: container/pids: 128 is too few for 30 gateway processes: expected at least 136 "
        "(or 0 for no limit)",
    ]
    load_stack_spec(write(tmp_path, "services:\n  workers: {app: 'm:app', processes: 256, container: {pids: 0}}\n"))


def test_a_php_program_gets_a_document_root_and_packages(tmp_path):
    (tmp_path / "site" / "public").mkdir(parents=True)
    text = ("services:\n  workers:\n    program: [/usr/bin/php-cgi]\n    path: site\n"
            "    root: public\n    packages: [php-cgi]\n")
    workers = load_stack_spec(write(tmp_path, text)).services.workers
    assert workers.path == tmp_path / "site"
    assert workers.document_root() == "/srv/app/public" and workers.index_file() == "index.php"
    assert workers.packages == ["php-cgi"]
    for root, inside in ((".", "/srv/app"), ("./public/", "/srv/app/public"), ("/var/www/", "/var/www")):
        assert load_stack_spec(write(tmp_path, text.replace("public", root, 1).replace(
            "root: public", f"root: {root}"))).services.workers.document_root() == inside


def test_bad_document_roots_index_files_and_packages_are_reported_with_their_paths(tmp_path):
    (tmp_path / "site").mkdir()
    assert problems(tmp_path, "services:\n  workers: {app: 'm:app', root: public}\n") == [
        'services/workers: "root" is the document root of a FastCGI program that runs script files '
        "(program: [/usr/bin/php-cgi]); a WSGI app has none: remove it"]
    assert problems(tmp_path, "services:\n  workers: {program: [php-cgi], index: index.php}\n") == [
        'services/workers: "index" needs "root" (the document root the index file is in)']
    text = "services:\n  workers: {program: [php-cgi], root: '../etc', index: 'a/b.php', packages: [php-cgi, 'PHP CGI']}\n"
    assert problems(tmp_path, text) == [
        'services/workers/root: expected a directory such as "." or "public" (under the app directory) or an '
        'absolute path in the container, without "..", spaces or ";", got "../etc"',
        'services/workers/index: expected a file name such as index.php, got "a/b.php"',
        'services/workers/packages: expected Debian package names such as php-cgi, got "PHP CGI"',
    ]
    assert problems(tmp_path, "services:\n  workers: {program: [php-cgi], path: site, root: public}\n") == [
        f'services/workers/root: "public" is not a directory of the app directory {tmp_path / "site"} '
        "(workers/path; it is /srv/app in the image)"]


def test_with_app_drops_a_programs_document_root(tmp_path):
    (tmp_path / "web.py").write_text("app = None\n")
    text = "services:\n  workers: {program: [php-cgi], root: ., packages: [php-cgi]}\n"
    workers = with_app(load_stack_spec(write(tmp_path, text)), str(tmp_path / "web.py")).services.workers
    assert (workers.app, workers.program, workers.root, workers.document_root()) == ("web:app", None, None, None)
