"""Images to hosts without a registry: `docker save` here, streamed into `docker load` there.

A host gets an image only when it lacks that exact image ID (a tag alone proves nothing).
The stream goes over an SSH channel of its own, written in large chunks (fabric's stdin
forwarding reads one byte at a time), and it leaves out the layers the host already
holds: `docker load` skips a layer whose chain it has without opening its tar, so a
new worker image built on the same base sends only its top layers.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

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
        for diff_id, chain in zip(image.diff_ids, chain_ids(image.diff_ids)):
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
        self.buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, b"")
            if not chunk:
                break
            self.buffer += chunk
        size = len(self.buffer) if size < 0 else size
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


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


def copy_without_layers(chunks: Iterator[bytes], sink, skip_diff_ids: frozenset[str]) -> int:
    """Copy a `docker save` tar, leaving out the layer.tar files whose diff ID is in skip_diff_ids.

    The layer's diff ID is the sha256 of its tar, only known once read, so each layer is
    spooled (memory, then disk) while it is hashed. Returns how many layers were left out.
    """
    source = tarfile.open(fileobj=_ChunkReader(chunks), mode="r|")
    target = tarfile.open(fileobj=sink, mode="w|", format=tarfile.GNU_FORMAT)
    skipped = 0
    for member in source:
        if not member.isfile():
            target.addfile(member)
            continue
        with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
            digest = _spool(source.extractfile(member), spool)
            if member.name.endswith("/layer.tar") and f"sha256:{digest}" in skip_diff_ids:
                skipped += 1
                continue
            spool.seek(0)
            target.addfile(member, spool)
    target.close()
    return skipped


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
) -> ShipReport:
    """Carry out one host's shipment: stream what it lacks into its `docker load`, tag the rest."""
    report = ShipReport(shipment.host)
    began = time.monotonic()
    if shipment.send:
        refs = [image.ref for image in shipment.send]
        expected = sum(image.size for image in shipment.send)
        report.bytes_sent, report.layers_skipped = _load_over_ssh(
            session, save_stream(local, refs), shipment.skip_layers,
            lambda sent: progress and progress(shipment.host, sent, expected),
        )
        report.sent = refs
    remote = session.docker() if shipment.tag else None
    for image_id, ref in shipment.tag:
        repository, _, tag = ref.rpartition(":")
        remote.api.tag(image_id, repository, tag)
        report.tagged.append(ref)
    report.seconds = time.monotonic() - began
    return report


def _load_over_ssh(session: HostSession, chunks, skip: frozenset[str], on_sent) -> tuple[int, int]:
    channel = session.transport.open_session(timeout=30)
    channel.set_combine_stderr(True)
    channel.exec_command(LOAD_COMMAND)
    writer = _ChannelWriter(channel.sendall, on_sent)
    try:
        skipped = copy_without_layers(chunks, writer, skip) if skip else _copy(chunks, writer)
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
