"""A user's PHP app on the stack: `fcgikit up` with `program: [/usr/bin/php-cgi]`, the app's
directory as document root (`workers.root`) and php-cgi installed into the worker image
(`workers.packages`, apt from the base's own source). Through the real nginx, keep-alive clients.

Before: nginx sent a program no SCRIPT_FILENAME (php-cgi: 404 "No input file specified") and
the worker image had no php-cgi at all.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import requests
import yaml

from fcgikit.deploy.model import LABEL_PROJECT
from tests.integration.stack_support import fcgikit, logs_on_failure, status

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

INDEX_PHP = """<?php
header("Content-Type: text/plain");
echo "hello from php ", PHP_MAJOR_VERSION, "\\n";
echo "script: ", $_SERVER["SCRIPT_NAME"], "\\n";
echo "path_info: ", $_SERVER["PATH_INFO"] ?? "", "\\n";
echo "query: ", $_SERVER["QUERY_STRING"], "\\n";
echo "body: ", strlen(file_get_contents("php://input")), " bytes\\n";
"""
FATAL_PHP = """<?php
echo "before the error\\n";
no_such_function();
"""


def php_spec(tmp_path: Path, root: str = ".") -> Path:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "index.php").write_text(INDEX_PHP)
    (site / "fatal.php").write_text(FATAL_PHP)
    data = {"services": {
        "nginx": {"port": 0},
        "workers": {"program": ["/usr/bin/php-cgi"], "path": str(site), "root": root, "packages": ["php-cgi"],
                    "processes": 2, "replicas": 1, "timeout": 10},
    }}
    path = tmp_path / "fcgikit.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_up_serves_a_php_app_with_php_cgi_through_nginx_to_keep_alive_clients(engine, cli_env, project, tmp_path):
    spec = php_spec(tmp_path)
    with logs_on_failure(engine, project):
        fcgikit(cli_env, "up", "-p", project, "-f", str(spec))
        url = status(cli_env, project, spec)["url"].rstrip("/")
        with requests.Session() as client:
            index = client.get(url + "/?x=1", timeout=10)
            assert index.status_code == 200, index.text
            assert index.text.startswith("hello from php 8\n") and "script: /index.php\n" in index.text
            assert "query: x=1\n" in index.text
            extra = client.post(url + "/index.php/extra/part", data=b"abc", timeout=10)
            assert extra.status_code == 200 and "path_info: /extra/part\n" in extra.text, extra.text
            assert "body: 3 bytes" in extra.text
            # A fatal error is the script's 500 (Debian's production php.ini shows no details),
            # and the same client's next request is served.
            fatal = client.get(url + "/fatal.php", timeout=10)
            assert fatal.status_code == 500, fatal.text
            assert "no_such_function" not in fatal.text
            assert client.get(url + "/", timeout=10).status_code == 200
            missing = client.get(url + "/missing.php", timeout=10)
            assert missing.status_code == 404 and "No input file specified" in missing.text

        # 6 keep-alive clients on 2 php-cgi processes: nginx keeps no idle connection to them
        # (one would hold a process while other requests wait), so none waits or fails.
        failures: list[str] = []
        answered = [0]
        lock = threading.Lock()

        def load(number: int) -> None:
            with requests.Session() as client:
                for index in range(60):
                    path = "/fatal.php" if index % 10 == 9 else f"/?client={number}&n={index}"
                    try:
                        answer = client.get(url + path, timeout=10)
                        expected = 500 if path == "/fatal.php" else 200
                        ok = answer.status_code == expected and (expected == 500 or "hello from php" in answer.text)
                        if not ok:
                            raise AssertionError(f"{path}: {answer.status_code} {answer.text[:80]!r}")
                    except Exception as exc:  # every error counts, whatever it is
                        with lock:
                            failures.append(f"client {number}: {exc}")
                    else:
                        with lock:
                            answered[0] += 1

        threads = [threading.Thread(target=load, args=(number,)) for number in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert failures == [] and answered[0] == 360, failures[:5]


def test_a_document_root_the_app_directory_lacks_is_refused_before_anything_starts(engine, cli_env, project,
                                                                                    tmp_path):
    spec = php_spec(tmp_path, root="public")
    result = fcgikit(cli_env, "up", "-p", project, "-f", str(spec), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(
        f'error: {spec}: services/workers/root: "public" is not a directory of the app directory '
        f"{tmp_path / 'site'} (workers/path; it is /srv/app in the image)"), result.stderr
    assert engine.containers.list(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}) == []
