import hashlib
import io
import tarfile

from fcgikit.deploy.ship import (
    HostImages,
    LocalImage,
    ShipReport,
    _ChannelWriter,
    chain_ids,
    copy_without_layers,
    describe_shipment,
    layers_to_skip,
    plan_shipment,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_chain_ids_follow_the_oci_definition():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    expected_second = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    assert chain_ids([a, b]) == [a, expected_second]
    assert chain_ids([]) == []


BASE = "sha256:" + "1" * 64
TOP = "sha256:" + "2" * 64
WORKER = LocalImage("fcgikit/worker:abc", "sha256:" + "w" * 64, (BASE, TOP))


def test_a_host_lacking_the_image_id_gets_it_without_the_layers_it_has():
    present = HostImages({"sha256:" + "x" * 64: frozenset({"fcgikit/base:bookworm"})}, frozenset(chain_ids([BASE])))
    shipment = plan_shipment("app1", [WORKER], present)
    assert shipment.send == (WORKER,)
    assert shipment.skip_layers == {BASE}
    assert describe_shipment(shipment) == f"app1: send fcgikit/worker:abc ({WORKER.id[7:19]}), 1 layer(s) already there"


def test_the_same_image_id_is_not_sent_again_and_a_missing_tag_is_added():
    assert plan_shipment("h", [WORKER], HostImages({WORKER.id: frozenset({WORKER.ref})})).nothing_to_do
    shipment = plan_shipment("h", [WORKER], HostImages({WORKER.id: frozenset({"other:tag"})}))
    assert shipment.send == () and shipment.tag == ((WORKER.id, WORKER.ref),)


def test_a_tag_alone_proves_nothing():
    present = HostImages({"sha256:" + "o" * 64: frozenset({WORKER.ref})})  # same tag, another image
    assert plan_shipment("h", [WORKER], present).send == (WORKER,)


def test_a_layer_only_skips_when_its_whole_chain_is_there():
    # TOP exists on the host, but over another base: its chain differs, so it must travel.
    other_base = "sha256:" + "9" * 64
    assert layers_to_skip([WORKER], frozenset(chain_ids([other_base, TOP]))) == frozenset()
    # A layer needed by one image sent is not skipped for the sake of another.
    other = LocalImage("x:1", "sha256:" + "z" * 64, (other_base, BASE))
    assert layers_to_skip([WORKER, other], frozenset(chain_ids([BASE]))) == frozenset()


def save_tar(layers: dict[str, bytes]) -> bytes:
    """A small tar shaped like `docker save`'s output."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for directory, data in layers.items():
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
            for name, content in (("VERSION", b"1.0"), ("layer.tar", data)):
                info = tarfile.TarInfo(f"{directory}/{name}")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        info = tarfile.TarInfo("manifest.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    return out.getvalue()


def test_copy_leaves_out_only_the_layers_to_skip():
    base, top = b"base layer" * 1000, b"top layer"
    source = save_tar({"d1": base, "d2": top})
    out = io.BytesIO()
    chunks = iter([source[i : i + 777] for i in range(0, len(source), 777)])
    skipped = copy_without_layers(chunks, out, frozenset({sha(base)}))
    assert skipped == 1
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as copy:
        names = copy.getnames()
        assert "d1/layer.tar" not in names and "d1/VERSION" in names
        assert copy.extractfile("d2/layer.tar").read() == top
        assert copy.extractfile("manifest.json").read() == b"[]"


def test_channel_writer_sends_whole_chunks_and_counts():
    sent, seen = [], []
    writer = _ChannelWriter(sent.append, seen.append)
    writer.write(b"x" * 10)
    assert sent == []  # small writes are gathered, never sent byte by byte
    writer.write(b"y" * (1 << 20))
    writer.write(b"z")
    writer.flush()
    assert [len(chunk) for chunk in sent] == [10 + (1 << 20), 1]
    assert seen == [10 + (1 << 20), 11 + (1 << 20)]


def test_ship_report_says_what_travelled():
    assert str(ShipReport("h1")) == "h1: images up to date, nothing sent"
    report = ShipReport("h2", sent=["w:1"], bytes_sent=3_500_000, layers_skipped=1, seconds=2.0)
    assert str(report) == "h2: sent w:1 (3.5 MB in 2.0s, 1 layer(s) already there)"


def test_known_layer_digests_spare_the_hashing_and_are_remembered(tmp_path):
    from fcgikit.deploy.ship import LayerDigests

    base, top = b"base layer" * 1000, b"top layer"
    source = save_tar({"d1": base, "d2": top})
    digests = LayerDigests(tmp_path / "digests.json")
    copy_without_layers(iter([source]), io.BytesIO(), frozenset({sha(base)}), digests)
    again = LayerDigests(tmp_path / "digests.json")  # a later run reads what this one learnt
    assert sorted(again.known.values()) == sorted([sha(base), sha(top)])
    # A remembered digest is trusted without hashing: lie about d2 and it is left out.
    again.known = {key: sha(base) for key in again.known}
    out = io.BytesIO()
    assert copy_without_layers(iter([source]), out, frozenset({sha(base)}), again) == 2
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as copy:
        assert not [name for name in copy.getnames() if name.endswith("layer.tar")]


def test_chunk_reader_reads_across_chunks_and_to_the_end():
    from fcgikit.deploy.ship import _ChunkReader

    reader = _ChunkReader(iter([b"abc", b"", b"defgh", b"ij"]))
    assert reader.read(2) == b"ab"
    assert reader.read(4) == b"cdef"
    assert reader.read(0) == b""
    assert reader.read(-1) == b"ghij"
    assert reader.read(5) == b""


def test_a_dry_run_says_what_each_host_would_be_sent():
    from fcgikit.deploy.hosts import Host
    from fcgikit.deploy.multihost import shipment_note

    host = Host("app1", "10.0.0.2")
    sized = LocalImage(WORKER.ref, WORKER.id, WORKER.diff_ids, 175_000_000)
    present = HostImages({}, frozenset(chain_ids([BASE])))
    assert shipment_note(host, plan_shipment("app1", [sized], present), []) == (
        "app1 (10.0.0.2): send fcgikit/worker:abc (175 MB with every layer); "
        "1 layer(s) of it are there already and are not sent")
    assert shipment_note(host, plan_shipment("app1", [], present), ["fcgikit/nginx:def"]) == (
        "app1 (10.0.0.2): send fcgikit/nginx:def once built, unless it has the same image")
    there = HostImages({WORKER.id: frozenset({WORKER.ref})})
    assert shipment_note(host, plan_shipment("app1", [sized], there), []) == (
        "app1 (10.0.0.2): has every image, nothing to send")
