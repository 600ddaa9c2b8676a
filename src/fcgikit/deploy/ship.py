"""Images to hosts without a registry: `docker save` here, streamed into `docker load` there.

A host gets an image only when it lacks that exact image ID (a tag alone proves nothing).
The stream goes over an SSH channel of its own, written in large chunks (fabric's stdin
forwarding reads one byte at a time), and it leaves out the layers the host already
holds: `docker load` skips a layer whose chain it has without opening its tar, so a
new worker image built on the same base sends only its top layers.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

from .errors import FcgikitError
from .ssh import HostSession

LOAD_COMMAND = "docker load"
CHUNK = 1 << 20
SPOOL_IN_MEMORY = 8 << 20


class ShipError(FcgikitError):
    pass


# -- planning (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class LocalImage:
    ref: str                 # the tag containers are created from, e.g. fcgikit/worker:3f2a...
    id: str                  # sha256:... of the image config, kept by save/load
    diff_ids: tuple[str, ...]  # the layers, bottom first
    size: int = 0


@dataclass(frozen=True)
class HostImages:
    """What a host's engine holds: image IDs with their tags, and the layer chains it has."""

    tags_by_id: dict[str, frozenset[str]] = field(default_factory=dict)
    chain_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Shipment:
    host: str
    send: tuple[LocalImage, ...] = ()               # images the host lacks
    tag: tuple[tuple[str, str], ...] = ()           # (image id, ref): present, but not under this tag
    skip_layers: frozenset[str] = frozenset()       # diff IDs not to send: the host has their chain

    @property
    def nothing_to_do(self) -> bool:
        return not self.send and not self.tag


def chain_ids(diff_ids: Iterable[str]) -> list[str]:
    """The layer chain IDs of an image (OCI image spec: ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n)))."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


def plan_shipment(host: str, images: Iterable[LocalImage], present: HostImages) -> Shipment:
    send, tag = [], []
    for image in images:
        if image.id not in present.tags_by_id:
            send.append(image)
        elif image.ref not in present.tags_by_id[image.id]:
            tag.append((image.id, image.ref))
    return Shipment(host, tuple(send), tuple(tag), layers_to_skip(send, present.chain_ids))


def layers_to_skip(images: Iterable[LocalImage], host_chains: frozenset[str]) -> frozenset[str]:
    """Diff IDs whose whole chain is on the host, in every image sent (else they must travel)."""
    needed: set[str] = set()
    present: set[str] = set()
    for image in images:
        for diff_id, chain in zip(image.diff_ids, chain_ids(image.diff_ids), strict=True):
            (present if chain in host_chains else needed).add(diff_id)
    return frozenset(present - needed)


def describe_shipment(shipment: Shipment) -> str:
    if shipment.nothing_to_do:
        return f"{shipment.host}: has every image, nothing to send"
    parts = [f"send {image.ref} ({image.id[7:19]})" for image in shipment.send]
    parts += [f"tag {image_id[7:19]} as {ref}" for image_id, ref in shipment.tag]
    if shipment.skip_layers:
        parts.append(f"{len(shipment.skip_layers)} layer(s) already there")
    return f"{shipment.host}: " + ", ".join(parts)


# -- observing engines -----------------------------------------------------------------


def local_images(client: docker.DockerClient, refs: Iterable[str]) -> list[LocalImage]:
    images = []
    for ref in refs:
        attrs = client.images.get(ref).attrs
        images.append(LocalImage(ref, attrs["Id"], tuple(attrs["RootFS"].get("Layers", [])), attrs.get("Size", 0)))
    return images


def host_images(client: docker.DockerClient) -> HostImages:
    tags_by_id: dict[str, frozenset[str]] = {}
    chains: set[str] = set()
    for summary in client.api.images(all=False):
        tags_by_id[summary["Id"]] = frozenset(tag for tag in summary.get("RepoTags") or () if tag != "<none>:<none>")
        layers = client.api.inspect_image(summary["Id"])["RootFS"].get("Layers", [])
        chains.update(chain_ids(layers))
    return HostImages(tags_by_id, frozenset(chains))


# -- the stream ------------------------------------------------------------------------


Progress = Callable[[str, int, int], None]  # host, bytes sent so far, bytes expected (estimate)


def save_stream(client: docker.DockerClient, refs: list[str]) -> Iterator[bytes]:
    """`docker save REF...` as chunks: one tar holds every image, shared layers once."""
    response = client.api._get(client.api._url("/images/get"), params={"names": refs}, stream=True)
    client.api._raise_for_status(response)
    return response.iter_content(CHUNK)


class _ChunkReader:
    """A file-like view of a chunk iterator, for tarfile's stream mode."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.chunk = b""
        self.offset = 0  # into self.chunk: no copying of what is left at every read

    def read(self, size: int = -1) -> bytes:
        parts = []
        wanted = size
        while wanted != 0:
            if self.offset >= len(self.chunk):
                chunk = next(self.chunks, None)
                if chunk is None:
                    break
                self.chunk, self.offset = chunk, 0
                continue
            end = len(self.chunk) if wanted < 0 else min(len(self.chunk), self.offset + wanted)
            parts.append(self.chunk[self.offset:end])
            wanted -= (end - self.offset) if wanted > 0 else 0
            self.offset = end
        return b"".join(parts)


class _ChannelWriter:
    """A file-like sink that sends to an SSH channel in whole chunks and counts bytes."""

    def __init__(self, send: Callable[[bytes], None], on_sent: Callable[[int], None]):
        self.send = send
        self.on_sent = on_sent
        self.pending = bytearray()
        self.sent = 0

    def write(self, data: bytes) -> int:
        self.pending += data
        if len(self.pending) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.pending:
            self.send(bytes(self.pending))
            self.sent += len(self.pending)
            self.pending.clear()
            self.on_sent(self.sent)


class LayerDigests:
    """Diff IDs of the layer.tar files in `docker save` output, by their place in the tar.

    A layer's diff ID is the sha256 of its tar, known only once it has been read. The
    directory `docker save` puts a layer in is named from the layer's content and its
    parents, so the same name and size mean the same layer: remembered here (and in
    `path`, across runs), a layer is hashed once, not at every deploy.
    """

    def __init__(self, path: Path | None = None):
        self.path = path
        self.known: dict[str, str] = {}
        self.lock = threading.Lock()
        if path is not None and path.is_file():
            try:
                self.known = json.loads(path.read_text())
            except ValueError:
                self.known = {}

    @staticmethod
    def key(member: tarfile.TarInfo) -> str:
        return f"{member.name}:{member.size}"

    def get(self, member: tarfile.TarInfo) -> str | None:
        return self.known.get(self.key(member))

    def remember(self, member: tarfile.TarInfo, diff_id: str) -> None:
        with self.lock:
            self.known[self.key(member)] = diff_id
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
                temporary.write_text(json.dumps(self.known))
                temporary.replace(self.path)


def default_layer_digests() -> LayerDigests:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fcgikit" / "layer-digests.json"
    return LayerDigests(cache)


def copy_without_layers(
    chunks: Iterator[bytes], sink, skip_diff_ids: frozenset[str], digests: LayerDigests | None = None
) -> int:
    """Copy a `docker save` tar, leaving out the layer.tar files whose diff ID is in skip_diff_ids.

    A layer whose diff ID is not known yet is spooled (memory, then disk) while it is
    hashed, then sent or left out. Returns how many layers were left out.
    """
    digests = digests or LayerDigests()
    # typeshed's tarfile wants a file object with write, seek and tell too; stream mode "r|" only reads.
    source = tarfile.open(fileobj=_ChunkReader(chunks), mode="r|")  # type: ignore[call-overload]
    target = tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT)
    skipped = 0
    for member in source:
        if not member.isfile():
            target.addfile(member)
        elif not member.name.endswith("/layer.tar"):
            target.addfile(member, source.extractfile(member))
        elif _copy_layer(source, target, member, skip_diff_ids, digests):
            skipped += 1
    target.close()
    return skipped


def _copy_layer(source, target, member, skip_diff_ids, digests: LayerDigests) -> bool:
    """Send one layer unless the host has it; True when it was left out."""
    diff_id = digests.get(member)
    if diff_id is not None:
        if diff_id in skip_diff_ids:
            return True  # tarfile's stream mode skips the unread data itself
        target.addfile(member, source.extractfile(member))
        return False
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
        diff_id = "sha256:" + _spool(source.extractfile(member), spool)
        digests.remember(member, diff_id)
        if diff_id in skip_diff_ids:
            return True
        spool.seek(0)
        target.addfile(member, spool)
        return False


def _copy(chunks: Iterator[bytes], sink) -> int:
    for chunk in chunks:
        sink.write(chunk)
    return 0


def _spool(source, spool) -> str:
    digest = hashlib.sha256()
    while block := source.read(CHUNK):
        digest.update(block)
        spool.write(block)
    return digest.hexdigest()


@dataclass
class ShipReport:
    host: str
    sent: list[str] = field(default_factory=list)     # refs sent
    tagged: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    layers_skipped: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        if not self.sent and not self.tagged:
            return f"{self.host}: images up to date, nothing sent"
        moved = f"sent {', '.join(self.sent)} ({self.bytes_sent / 1e6:.1f} MB in {self.seconds:.1f}s"
        moved += f", {self.layers_skipped} layer(s) already there)" if self.layers_skipped else ")"
        tagged = f"; tagged {', '.join(self.tagged)}" if self.tagged else ""
        return f"{self.host}: {moved if self.sent else 'nothing sent'}{tagged}"


def ship(
    session: HostSession,
    local: docker.DockerClient,
    shipment: Shipment,
    progress: Progress | None = None,
    digests: LayerDigests | None = None,
) -> ShipReport:
    """Carry out one host's shipment: stream what it lacks into its `docker load`, tag the rest."""
    report = ShipReport(shipment.host)
    began = time.monotonic()
    if shipment.send:
        refs = [image.ref for image in shipment.send]
        # The images' sizes, unless layers are left out (their sizes are not known here).
        expected = 0 if shipment.skip_layers else sum(image.size for image in shipment.send)
        report.bytes_sent, report.layers_skipped = _load_over_ssh(
            session, save_stream(local, refs), shipment.skip_layers,
            lambda sent: progress and progress(shipment.host, sent, expected), digests,
        )
        report.sent = refs
    if shipment.tag:
        remote = session.docker()
        for image_id, ref in shipment.tag:
            repository, _, tag = ref.rpartition(":")
            remote.api.tag(image_id, repository, tag)
            report.tagged.append(ref)
    report.seconds = time.monotonic() - began
    return report


def _load_over_ssh(session: HostSession, chunks, skip: frozenset[str], on_sent, digests) -> tuple[int, int]:
    channel = session.transport.open_session(timeout=30)
    channel.set_combine_stderr(True)
    channel.exec_command(LOAD_COMMAND)
    writer = _ChannelWriter(channel.sendall, on_sent)
    try:
        skipped = copy_without_layers(chunks, writer, skip, digests) if skip else _copy(chunks, writer)
        writer.flush()
        channel.shutdown_write()
        output = _read_all(channel)
        status = channel.recv_exit_status()
    finally:
        channel.close()
    if status != 0:
        raise ShipError(f"{session.target}: `{LOAD_COMMAND}` exited {status}: {output.strip()}")
    return writer.sent, skipped


def _read_all(channel) -> str:
    data = bytearray()
    while block := channel.recv(65536):
        data += block
    return data.decode(errors="replace")
