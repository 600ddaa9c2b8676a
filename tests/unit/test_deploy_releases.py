"""Releases: which one rollback returns to, which ones are forgotten, what a record holds (pure)."""

from __future__ import annotations

import json

import pytest

from fcgikit.deploy.errors import FcgikitError
from fcgikit.deploy.releases import (
    LABEL_SPEC,
    Release,
    content_identity,
    images_of,
    keep_releases,
    releases_to_forget,
    rollback_target,
    spec_data,
)
from fcgikit.deploy.spec import StackSpec


def spec(app: str = "hello_wsgi:app", replicas: int = 2) -> StackSpec:
    return StackSpec.model_validate({"services": {"workers": {"app": app, "replicas": replicas, "path": "/srv/x"}}})


def release(number: int, image: str = "a", rollback_of: int | None = None, app: str = "hello_wsgi:app") -> Release:
    images = {"workers": f"p/fcgi-worker:{image}", "cgi": f"p/fcgi-worker:{image}", "nginx": "p/nginx:n"}
    return Release("demo", number, 1000.0 + number, "ann@box", images, spec_data(spec(app)), "", rollback_of)


def test_a_release_survives_its_labels_and_gives_back_the_same_stack_file():
    original = release(3, rollback_of=1)
    labels = original.labels()
    again = Release.from_labels(labels)
    assert again == original
    assert again.stack_spec() == spec()
    assert json.loads(labels[LABEL_SPEC])["services"]["workers"]["path"] == "/srv/x"
    assert original.name == "demo-release-3"


def test_a_container_that_is_no_readable_release_is_skipped():
    assert Release.from_labels({"fcgikit.release.project": "demo"}) is None
    assert Release.from_labels({**release(1).labels(), "fcgikit.release.number": "x"}) is None


def test_rollback_without_a_number_returns_to_the_release_before_the_current_one():
    assert rollback_target([release(1, "a"), release(2, "b"), release(3, "c")], None).number == 2


def test_rolling_back_twice_goes_back_two_deployments_not_forth_and_back():
    history = [release(1, "a"), release(2, "b"), release(3, "c"), release(4, "b", rollback_of=2)]
    assert rollback_target(history, None).number == 1


def test_an_up_that_redeployed_the_same_content_is_skipped_as_a_target():
    history = [release(1, "a"), release(2, "b"), release(3, "b", app="other:app"), release(4, "b", app="other:app")]
    assert rollback_target(history, None).number == 2


def test_rollback_names_the_releases_when_the_one_asked_for_is_not_recorded():
    with pytest.raises(FcgikitError, match=r"no release 9; the recorded releases are 1, 2"):
        rollback_target([release(1), release(2, "b")], 9)
    with pytest.raises(FcgikitError, match="no release is recorded"):
        rollback_target([], None)
    with pytest.raises(FcgikitError, match="release 1 is the oldest one recorded"):
        rollback_target([release(1)], None)


def test_only_the_newest_releases_are_kept_and_their_images_protected():
    history = [release(n, f"i{n}") for n in range(1, 8)]
    gone = releases_to_forget(history, 5)
    assert [r.number for r in gone] == [1, 2]
    kept = [r for r in history if r not in gone]
    assert images_of(kept) == {f"p/fcgi-worker:i{n}" for n in range(3, 8)} | {"p/nginx:n"}
    assert releases_to_forget(history[:3], 5) == []


def test_keep_releases_comes_from_the_option_else_the_environment(monkeypatch):
    monkeypatch.delenv("FCGIKIT_KEEP_RELEASES", raising=False)
    assert keep_releases() == 5
    monkeypatch.setenv("FCGIKIT_KEEP_RELEASES", "3")
    assert keep_releases() == 3 and keep_releases(7) == 7
    monkeypatch.setenv("FCGIKIT_KEEP_RELEASES", "many")
    with pytest.raises(FcgikitError, match='FCGIKIT_KEEP_RELEASES="many"'):
        keep_releases()
    with pytest.raises(FcgikitError, match="at least 1"):
        keep_releases(0)


def test_the_identity_changes_with_images_or_stack_file_only():
    a = release(1, "a")
    assert a.identity == release(2, "a").identity == content_identity(a.images, a.spec)
    assert a.identity != release(1, "b").identity != release(1, "a", app="x:app").identity
