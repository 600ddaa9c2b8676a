"""Releases and rollback on the local engine: every `up` records a release, `rollback`
returns to one without building and without failing a request, `build --prune` keeps the
images of the releases it keeps. Real Docker; the fixtures are tests/conftest.py's."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests

from tests.integration.stack_support import (
    cli_environment,
    fcgikit,
    logs_on_failure,
    new_image_prefix,
    status,
    write_spec,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


# A prefix of this module's own, not the session's (tests/conftest.py): `build --prune` here
# removes every image under the prefix that no container, kept release or `latest` tag
# holds; under the session's prefix it can take the other modules' images too (the example
# worker image once `latest` names this module's app: later modules' `up` builds it again,
# a built_images tag taken before this module is gone after it).
@pytest.fixture(scope="module")
def image_prefix(engine):
    yield from new_image_prefix(engine)


@pytest.fixture(scope="module")
def cli_env(image_prefix):
    return cli_environment(image_prefix)


APP = '''\
def app(environ, start_response):
    body = b"{greeting}\\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def app_dir(tmp_path: Path, greeting: str) -> str:
    directory = tmp_path / greeting
    directory.mkdir()
    (directory / "greet.py").write_text(APP.format(greeting=greeting))
    return f"{directory}:greet:app"


class KeepAliveClient(threading.Thread):
    """GET / on one kept-alive session until stopped; every answer but 200 is a failure."""

    def __init__(self, url: str, expected: set[str]):
        super().__init__(daemon=True)
        self.url, self.expected = url, expected
        self.stop = threading.Event()
        self.seen: list[str] = []
        self.failures: list[str] = []

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    answer = session.get(self.url, timeout=30)
                    text = answer.text.strip()
                    if answer.status_code != 200 or text not in self.expected:
                        self.failures.append(f"HTTP {answer.status_code}: {answer.text[:100]}")
                    elif not self.seen or self.seen[-1] != text:
                        self.seen.append(text)
                    self.ok = getattr(self, "ok", 0) + 1
                except requests.RequestException as exc:
                    self.failures.append(repr(exc))


def releases(cli_env, project, spec) -> list[dict]:
    return json.loads(fcgikit(cli_env, "releases", "--json", "-p", project, "-f", str(spec)).stdout)["releases"]


def test_up_records_releases_and_rollback_returns_without_building_or_failing_a_request(
    engine, cli_env, image_prefix, project, tmp_path
):
    # Its own apps, given with --app: not those of `fcgikit test --app` (FCGIKIT_APP), which a
    # `scale` without --app here would name and be refused for (not the app that runs).
    cli_env = {key: value for key, value in cli_env.items() if key != "FCGIKIT_APP"}
    spec = write_spec(tmp_path, workers=2, cgi=0)
    first, second = app_dir(tmp_path, "one"), app_dir(tmp_path, "two")
    args = ("-p", project, "-f", str(spec))
    try:
        with logs_on_failure(engine, project):
            done = fcgikit(cli_env, "up", "--app", first, *args)
            assert "recorded release 1" in done.stdout, done.stdout
            again = fcgikit(cli_env, "up", "--app", first, *args)  # nothing new: no new release
            assert "recorded release" not in again.stdout, again.stdout
            fcgikit(cli_env, "up", "--app", second, *args)
            url = status(cli_env, project, spec)["url"]
            assert requests.get(url, timeout=10).text == "two\n"

            listed = releases(cli_env, project, spec)
            assert [(r["release"], r["current"], r["app"]) for r in listed] == [(1, False, first), (2, True, second)]
            assert listed[0]["images"]["workers"] != listed[1]["images"]["workers"]
            assert listed[0]["images"]["nginx"] == listed[1]["images"]["nginx"]
            assert "@" in listed[0]["who"] and listed[0]["time"].endswith("Z")
            table = fcgikit(cli_env, "releases", *args).stdout
            assert "current" in table and "greet:app" in table, table

            dry = fcgikit(cli_env, "rollback", "--dry-run", *args)
            assert "rollback to release 1" in dry.stdout and "(dry run, nothing changed)" in dry.stdout, dry.stdout
            assert requests.get(url, timeout=10).text == "two\n"

            client = KeepAliveClient(url, {"one", "two"})
            client.start()
            try:
                back = fcgikit(cli_env, "rollback", *args)  # no --app: the release knows its app
            finally:
                client.stop.set()
                client.join(timeout=60)
            assert "rolled back to release 1" in back.stdout and "recorded as release 3" in back.stdout, back.stdout
            assert "built" not in back.stderr and "build" not in back.stderr, back.stderr
            assert client.failures == [], client.failures[:5]
            assert client.seen[-1] == "one" and getattr(client, "ok", 0) > 20, client.seen
            assert requests.get(url, timeout=10).text == "one\n"
            assert [(r["release"], r["rollback_of"]) for r in releases(cli_env, project, spec)][-1] == (3, 1)

            # scale scales what runs: release 1's image, not the newer app of the last up.
            scaled = fcgikit(cli_env, "scale", "workers=3", *args)
            assert "scaling release 3 as it runs" in scaled.stderr and "built" not in scaled.stderr, scaled.stderr
            assert {requests.get(url, timeout=10).text for _ in range(6)} == {"one\n"}

            # A kept release keeps its image; a forgotten one no longer does.
            second_image = listed[1]["images"]["workers"]
            kept = fcgikit(cli_env, "build", "--prune", "--keep-releases", "2", "--app", first, *args)
            assert second_image not in kept.stdout, kept.stdout
            assert engine.images.get(second_image)
            pruned = fcgikit(cli_env, "build", "--prune", "--keep-releases", "1", "--app", first, *args)
            assert "forgot release 2" in pruned.stdout and second_image in pruned.stdout, pruned.stdout
            assert [r["release"] for r in releases(cli_env, project, spec)] == [3]
            refused = fcgikit(cli_env, "rollback", "2", *args, check=False)
            assert refused.returncode == 1 and "no release 2; the recorded releases are 3" in refused.stderr

            # down keeps the history: the stack comes back from it.
            gone = fcgikit(cli_env, "down", *args)
            assert "`fcgikit rollback 3` brings the last one back" in gone.stdout, gone.stdout
            fcgikit(cli_env, "rollback", "3", *args)
            url = status(cli_env, project, spec)["url"]
            assert requests.get(url, timeout=10).text == "one\n"
    finally:  # (the project fixture removes the release records too)
        pass
