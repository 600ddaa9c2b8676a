"""The images: build contexts, content-hash tags, the base, and building with the Docker SDK.

A tag is the hash of everything that went into the image (every file of the
context with its mode, the Dockerfile, the base image's ID), so equal tags mean
equal images and `up` can tell whether a running container is current.

No registry may answer, so the base is made here when it cannot be had:
debootstrap of Debian bookworm (minbase, python3 and nginx-light), imported
with `docker import`, kept and reused while present.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from .errors import FcgikitError
from .services import IMAGE_KINDS

Progress = Callable[[str], None]

DEFAULT_PREFIX = "fcgikit"
DEFAULT_BASE = "fcgikit/base:bookworm"
PULLABLE_BASE = "debian:bookworm-slim"
DEBIAN_MIRROR = os.environ.get("FCGIKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Runtime pieces that never go into an image: the orchestration side and test helpers.
NOT_RUNTIME = {"deploy", "cli.py", "testing"}


class BuildError(FcgikitError):
    pass


def source_root() -> Path:
    """The checkout fcgikit runs from (images/, apps/ and src/ live there)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "images" / "fcgi-worker" / "Dockerfile").is_file():
        raise BuildError(f"cannot find images/ next to the fcgikit sources (looked in {root}); "
                         "run fcgikit from a checkout installed with `pip install -e .`")
    return root


@dataclass(frozen=True)
class ImageNames:
    """Where the images go: `PREFIX/fcgi-worker:HASH`, `PREFIX/nginx:HASH`, and the base."""

    prefix: str = DEFAULT_PREFIX
    base: str = DEFAULT_BASE

    def repository(self, kind: str) -> str:
        return f"{self.prefix}/{kind}"


@dataclass(frozen=True)
class BuildContext:
    """Files of a build context: path in the context -> (mode, content)."""

    kind: str  # "fcgi-worker" or "nginx"
    files: dict[str, tuple[int, bytes]]

    def content_hash(self, base_id: str) -> str:
        digest = hashlib.sha256(base_id.encode())
        for path in sorted(self.files):
            mode, content = self.files[path]
            digest.update(f"\0{path}\0{mode:o}\0{len(content)}\0".encode())
            digest.update(content)
        return digest.hexdigest()[:12]

    def tar(self) -> io.BytesIO:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path in sorted(self.files):
                mode, content = self.files[path]
                info = tarfile.TarInfo(path)
                info.size, info.mode, info.mtime = len(content), mode, 0
                archive.addfile(info, io.BytesIO(content))
        buffer.seek(0)
        return buffer


# The WSGI app the worker image's default command serves (its Dockerfile's last line).
EXAMPLE_APP = "hello_wsgi:app"


def worker_context(root: Path, app_dir: Path | None = None, cgi_dir: Path | None = None,
                   app: str | None = None, packages: tuple[str, ...] | list[str] = ()) -> BuildContext:
    """The runtime package (stdlib-only parts), the app's modules and the CGI scripts; the
    image's default command serves `app` (MODULE:APP), so `docker run IMAGE` serves the app
    that was built in, not the example. `packages` (workers.packages, e.g. php-cgi): Debian
    packages the Dockerfile installs with apt from the base's own source (the file `packages`,
    so they are part of the content hash)."""
    app_dir = app_dir or root / "apps"
    cgi_dir = cgi_dir or root / "apps" / "cgi-bin"
    for what, directory in (("app directory", app_dir), ("CGI scripts directory", cgi_dir)):
        if not directory.is_dir():
            raise BuildError(f"{what} {directory} does not exist")
    files = {"Dockerfile": _with_default_app(_read(root / "images" / "fcgi-worker" / "Dockerfile"), app)}
    files.update(_tree(root / "src" / "fcgikit", "runtime/fcgikit", skip_top=NOT_RUNTIME))
    files.update(_tree(app_dir, "app", skip_top={"cgi-bin"}))
    files.update(_tree(cgi_dir, "cgi-bin"))
    files["packages"] = (0o644, "".join(f"{name}\n" for name in packages).encode())
    return BuildContext("fcgi-worker", files)


def _with_default_app(dockerfile: tuple[int, bytes], app: str | None) -> tuple[int, bytes]:
    mode, text = dockerfile
    if not app or app == EXAMPLE_APP:
        return mode, text
    example = f'"{EXAMPLE_APP}"]'.encode()
    if not text.rstrip().endswith(example):
        raise BuildError(f'images/fcgi-worker/Dockerfile must end with the example app, {example.decode()}, '
                         "which fcgikit replaces with the app it builds in")
    return mode, text.rstrip()[: -len(example)] + json.dumps(app).encode() + b"]\n"


def nginx_context(root: Path) -> BuildContext:
    directory = root / "images" / "nginx"
    return BuildContext("nginx", {name: _read(directory / name)
                                  for name in ("Dockerfile", "nginx.conf", "fcgikit_edge.lua")})


def _read(path: Path) -> tuple[int, bytes]:
    executable = os.access(path, os.X_OK)
    return (0o755 if executable else 0o644), path.read_bytes()


def _tree(directory: Path, prefix: str, skip_top: AbstractSet[str] = frozenset()) -> dict[str, tuple[int, bytes]]:
    """Every file under `directory` (caches left out), except top-level entries named in skip_top."""
    files = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if relative.parts[0] in skip_top or "__pycache__" in relative.parts or path.suffix == ".pyc":
            continue
        if path.is_file():
            files[f"{prefix}/{relative.as_posix()}"] = _read(path)
    return files


# --- Docker side -------------------------------------------------------------------------


def image_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def image_id(client: docker.DockerClient, name: str) -> str:
    return client.images.get(name).id


def present_base(client: docker.DockerClient, names: ImageNames) -> str | None:
    """The base already on the engine: the one asked for, else (by default) a pulled bookworm-slim."""
    if image_exists(client, names.base):
        return names.base
    if names.base == DEFAULT_BASE and image_exists(client, PULLABLE_BASE):
        return PULLABLE_BASE
    return None


def ensure_base(client: docker.DockerClient, names: ImageNames, progress: Progress) -> str:
    """The base image to build from: present, else pulled, else made with debootstrap."""
    present = present_base(client, names)
    if present is not None:
        return present
    pullable = PULLABLE_BASE if names.base == DEFAULT_BASE else names.base
    if not pullable.startswith(f"{DEFAULT_PREFIX}/"):
        progress(f"base: pulling {pullable}")
        try:
            client.images.pull(pullable)
            return pullable
        except docker.errors.APIError as exc:
            progress(f"base: cannot pull {pullable} ({_first_line(exc)}); making {names.base} with debootstrap")
    make_base(client, names.base, progress)
    return names.base


def make_base(client: docker.DockerClient, tag: str, progress: Progress) -> None:
    """debootstrap bookworm (minbase + python3 + nginx-light) and `docker import` it as `tag`."""
    if shutil.which("debootstrap") is None:
        raise BuildError("no base image can be pulled and debootstrap is missing: "
                         "run ./setup.sh (apt install debootstrap)")
    if os.geteuid() != 0:
        raise BuildError(f"no base image can be pulled, and making {tag} with debootstrap needs root: "
                         f"run `sudo fcgikit build --base {tag}` once (it is kept and reused)")
    workdir = Path(tempfile.mkdtemp(prefix="fcgikit-base-", dir="/var/tmp"))
    try:
        rootfs = workdir / "rootfs"
        _run_debootstrap(rootfs, progress)
        _trim_rootfs(rootfs)
        progress(f"base: importing into Docker as {tag}")
        _import_rootfs(client, rootfs, tag)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    progress(f"base: {tag} ready")


def _run_debootstrap(rootfs: Path, progress: Progress) -> None:
    argv = ["debootstrap", "--variant=minbase", "--include=python3,nginx-light", "bookworm", str(rootfs), DEBIAN_MIRROR]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None  # stdout=PIPE
    tail: list[str] = []
    done = 0
    for line in process.stdout:
        line = line.strip()
        tail = (tail + [line])[-20:]
        if line.startswith(("I: Retrieving", "I: Extracting", "I: Unpacking", "I: Configuring")):
            done += 1
            # minbase with python3 and nginx-light is about 450 such steps
            progress(f"base: debootstrap [{min(99, done * 100 // 450)}%] {line[3:]}")
    if process.wait() != 0:
        raise BuildError("debootstrap failed:\n" + "\n".join(tail))


def _trim_rootfs(rootfs: Path) -> None:
    # The package cache and lists are not needed to run, and the Dockerfiles run
    # `apt-get update` themselves in the rare case they install something.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / junk).glob("*"):
            if path.is_file():
                path.unlink()
    for path in (rootfs / "var/cache/apt").glob("*.bin"):
        path.unlink()


def _import_rootfs(client: docker.DockerClient, rootfs: Path, tag: str) -> None:
    repository, _, version = tag.rpartition(":")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None  # stdout=PIPE
    try:
        client.api.import_image_from_stream(tar.stdout, repository=repository, tag=version)
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise BuildError("tar of the debootstrap root failed")
    if not image_exists(client, tag):
        raise BuildError(f"docker import did not produce {tag}")


@dataclass(frozen=True)
class BuiltImage:
    kind: str
    tag: str
    built: bool  # False: an image with this content hash was already there


def build_image(
    client: docker.DockerClient, context: BuildContext, names: ImageNames, base: str, progress: Progress,
    *, extra_tags: tuple[str, ...] = (),
) -> BuiltImage:
    """Build unless an image with the same content hash exists; returns its tag."""
    tag = f"{names.repository(context.kind)}:{context.content_hash(image_id(client, base))}"
    built = False
    if not image_exists(client, tag):
        progress(f"{context.kind}: building {tag}")
        _stream_build(client, context, tag, base, progress)
        built = True
    for extra in extra_tags:
        client.images.get(tag).tag(names.repository(context.kind), extra)
    return BuiltImage(context.kind, tag, built)


def _stream_build(client: docker.DockerClient, context: BuildContext, tag: str, base: str, progress: Progress) -> None:
    output: list[str] = []
    stream = client.api.build(
        fileobj=context.tar(), custom_context=True, tag=tag, buildargs={"BASE": base},
        rm=True, forcerm=True, decode=True, labels={"fcgikit.image": context.kind},
    )
    for chunk in _chunks(stream):
        if "error" in chunk:
            raise BuildError(build_failure(tag, chunk["error"], output))
        text = chunk.get("stream", "")
        output.append(text)
        if text.startswith("Step "):
            progress(f"{context.kind}: {text.strip()}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build_failure(tag: str, error: str, output: list[str]) -> str:
    """What a failed build says: apt's own errors when the extra packages (workers.packages)
    could not be installed, else Docker's error and the build's last lines."""
    tail = _ANSI.sub("", "".join(output[-15:]))
    if "/etc/fcgikit/packages" in error:
        apt = [line.strip() for line in _ANSI.sub("", "".join(output)).splitlines() if line.startswith(("E: ", "W: "))]
        return (f"building {tag} failed: apt-get could not install services/workers/packages: "
                + ("; ".join(apt) or "see its output below") + "\n" + tail)
    return f"building {tag} failed: {_ANSI.sub('', error).strip()}\n" + tail


def _chunks(stream) -> Iterator[dict]:
    try:
        yield from stream
    except docker.errors.APIError as exc:
        raise BuildError(f"docker build failed: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def prune_images(client: docker.DockerClient, names: ImageNames, keep: set[str]) -> list[str]:
    """Remove this prefix's older fcgi-worker and nginx images that no container uses.

    `keep`: the tags just built (and `latest` is kept too); an image any container was
    created from, running or not, stays. Returns the tags removed.
    """
    # The image ID each container was created from, as the engine's list gives it (sparse: no
    # inspect per container, which fails for a container another client removed meanwhile),
    # without looking the image up (a container whose image was force-removed must not fail the prune).
    in_use = {c.attrs.get("ImageID") for c in client.containers.list(all=True, sparse=True)} - {None, ""}
    removed = []
    for kind in IMAGE_KINDS:
        for image in client.images.list(name=names.repository(kind)):
            if image.id in in_use:
                continue
            stale = [tag for tag in image.tags if tag not in keep and not tag.endswith(":latest")]
            if stale and len(stale) == len(image.tags):
                for tag in stale:
                    try:
                        client.images.remove(tag)
                        removed.append(tag)
                    except docker.errors.APIError:
                        pass  # in use after all (a container created meanwhile): it stays
    return removed
