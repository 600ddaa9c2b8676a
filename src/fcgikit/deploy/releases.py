"""Releases: what each successful `up` deployed, kept on the deployment's host, for rollback.

A release is a container that is never started, `PROJECT-release-N`, on the host that
holds the deployment's state (the local engine; the primary edge host with --hosts). Its
labels carry the image tags, the resolved stack file (as JSON), the app given with --app,
who ran it and when. Being a container made from the nginx image, it keeps that image from
being removed by `docker rmi`; `fcgikit build --prune` keeps the worker image its labels
name too. It carries no `fcgikit.project` label: `down` and the planner never see it, and a
stack taken down can be brought back with `fcgikit rollback`.

Secrets never reach a release: the stack file names where each secret is read from (a
file, an environment variable), not its value.

The choices (which release to go back to, which ones to forget) are pure functions.
"""

from __future__ import annotations

import builtins
import getpass
import hashlib
import json
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import docker.errors
from pydantic import ValidationError

from .errors import FcgikitError
from .spec import StackSpec

LABEL_OF = "fcgikit.release.project"
LABEL_NUMBER = "fcgikit.release.number"
LABEL_IMAGES = "fcgikit.release.images"  # JSON: service -> image tag
LABEL_SPEC = "fcgikit.release.spec"  # JSON: the resolved stack file
LABEL_APP = "fcgikit.release.app"  # --app as given ("" = the stack file's app)
LABEL_WHO = "fcgikit.release.who"
LABEL_TIME = "fcgikit.release.time"  # epoch seconds
LABEL_ROLLBACK_OF = "fcgikit.release.rollback-of"  # the release a rollback returned to

DEFAULT_KEEP = 5
KEEP_ENV = "FCGIKIT_KEEP_RELEASES"


def keep_releases(value: int | str | None = None) -> int:
    """How many releases to keep: the value given, else FCGIKIT_KEEP_RELEASES, else 5."""
    raw = value if value is not None else os.environ.get(KEEP_ENV, DEFAULT_KEEP)
    try:
        number = int(raw)
    except (TypeError, ValueError):
        raise FcgikitError(f'{KEEP_ENV}="{raw}": expected a whole number of releases to keep (at least 1)') from None
    if number < 1:
        raise FcgikitError(f"keep {number} releases: expected at least 1 (the current one)")
    return number


def release_name(project: str, number: int) -> str:
    return f"{project}-release-{number}"


def who_runs() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Release:
    project: str
    number: int
    time: float
    who: str
    images: dict[str, str]  # service -> tag
    spec: dict  # the resolved stack file, as JSON data
    app: str = ""
    rollback_of: int | None = None

    @property
    def name(self) -> str:
        return release_name(self.project, self.number)

    @property
    def returns_to(self) -> int:
        """The release whose content this one deployed (itself unless it is a rollback)."""
        return self.rollback_of if self.rollback_of is not None else self.number

    @property
    def identity(self) -> str:
        """Same identity, same deployment: images and stack file."""
        return content_identity(self.images, self.spec)

    def stack_spec(self) -> StackSpec:
        try:
            return StackSpec.model_validate(self.spec)
        except ValidationError as exc:
            raise FcgikitError(f"release {self.number} holds a stack file this fcgikit cannot read: "
                               f"{exc.errors()[0].get('msg', exc)}") from None

    def labels(self) -> dict[str, str]:
        labels = {
            LABEL_OF: self.project,
            LABEL_NUMBER: str(self.number),
            LABEL_IMAGES: json.dumps(self.images, sort_keys=True),
            LABEL_SPEC: json.dumps(self.spec, sort_keys=True),
            LABEL_APP: self.app,
            LABEL_WHO: self.who,
            LABEL_TIME: f"{self.time:.3f}",
        }
        if self.rollback_of is not None:
            labels[LABEL_ROLLBACK_OF] = str(self.rollback_of)
        return labels

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> Release | None:
        """None for a container that is not a readable release record."""
        try:
            rollback = labels.get(LABEL_ROLLBACK_OF)
            return cls(
                project=labels[LABEL_OF],
                number=int(labels[LABEL_NUMBER]),
                time=float(labels.get(LABEL_TIME, "0")),
                who=labels.get(LABEL_WHO, ""),
                images=json.loads(labels[LABEL_IMAGES]),
                spec=json.loads(labels[LABEL_SPEC]),
                app=labels.get(LABEL_APP, ""),
                rollback_of=int(rollback) if rollback else None,
            )
        except (KeyError, ValueError):
            return None

    def row(self, current: bool = False) -> dict:
        """For `fcgikit releases --json`."""
        return {
            "release": self.number, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time)),
            "who": self.who, "images": dict(self.images), "app": self.app or None,
            "rollback_of": self.rollback_of, "current": current,
        }


def spec_data(spec: StackSpec) -> dict:
    return spec.model_dump(mode="json")


def content_identity(images: dict[str, str], spec: dict) -> str:
    return hashlib.sha256(json.dumps([images, spec], sort_keys=True).encode()).hexdigest()[:16]


# --- the choices (pure) ---------------------------------------------------------------------


def rollback_target(releases: Sequence[Release], number: int | None) -> Release:
    """The release `fcgikit rollback [N]` returns to.

    N given: that one. None: the release deployed before the current one (the newest
    record), counting a rollback as the release it returned to, so rolling back twice goes
    back two deployments, not forth and back."""
    ordered = sorted(releases, key=lambda r: r.number)
    if not ordered:
        raise FcgikitError("no release is recorded for this project yet: run `fcgikit up` first")
    if number is not None:
        chosen = next((r for r in ordered if r.number == number), None)
        if chosen is None:
            known = ", ".join(str(r.number) for r in ordered)
            raise FcgikitError(f"no release {number}; the recorded releases are {known} (see `fcgikit releases`)")
        return chosen
    current = ordered[-1]
    earlier = [r for r in ordered if r.rollback_of is None and r.number < current.returns_to
               and r.identity != current.identity]
    if not earlier:
        raise FcgikitError(f"release {current.number} is the oldest one recorded: there is nothing before it to "
                           f"roll back to (see `fcgikit releases`)")
    return earlier[-1]


def releases_to_forget(releases: Sequence[Release], keep: int) -> list[Release]:
    """All but the newest `keep` releases."""
    ordered = sorted(releases, key=lambda r: r.number)
    return ordered[:-keep] if len(ordered) > keep else []


def images_of(releases: Sequence[Release]) -> set[str]:
    return {tag for release in releases for tag in release.images.values()}


# --- the records on an engine --------------------------------------------------------------


class ReleaseStore:
    """The release records of one project on one Docker engine."""

    def __init__(self, client: docker.DockerClient, project: str):
        self.client = client
        self.project = project

    def list(self) -> list[Release]:
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL_OF}={self.project}"})
        releases = [Release.from_labels(c.labels) for c in found]
        return sorted((r for r in releases if r is not None and r.project == self.project), key=lambda r: r.number)

    def record(self, images: dict[str, str], spec: StackSpec, app: str = "", rollback_of: int | None = None,
               *, anchor_image: str | None = None) -> Release | None:
        """A new release, unless the newest one already is this deployment (returns None then)."""
        existing = self.list()
        data = spec_data(spec)
        if existing and existing[-1].identity == content_identity(images, data) and rollback_of is None:
            return None
        number = (existing[-1].number if existing else 0) + 1
        image = anchor_image or images.get("nginx") or next(iter(images.values()))
        for _ in range(5):  # another `up` may have taken the number meanwhile (no lock on one host)
            release = Release(self.project, number, time.time(), who_runs(), dict(images), data, app or "",
                              rollback_of)
            try:
                self.client.containers.create(image, command=["true"], name=release.name, labels=release.labels(),
                                              network_mode="none", detach=True)
                return release
            except docker.errors.APIError as exc:
                if getattr(exc, "status_code", None) != 409:
                    raise FcgikitError(f"cannot record release {number}: {exc.explanation or exc}") from exc
                number += 1
        raise FcgikitError("cannot record the release: its name is taken again and again")

    def forget(self, releases: Sequence[Release]) -> None:
        for release in releases:
            try:
                self.client.containers.get(release.name).remove(force=True, v=True)
            except docker.errors.NotFound:
                pass

    def trim(self, keep: int) -> builtins.list[Release]:  # `list` here is the method above
        gone = releases_to_forget(self.list(), keep)
        self.forget(gone)
        return gone
