"""The test bed itself: hosts reachable over real SSH, each with an engine of its own."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tests.hosts.bed import BASE_IMAGE, TestBed

# Generous: on a clean engine the first test also makes the base (debootstrap), the host
# image (apt-get) and the stack images before anything is shipped.
pytestmark = [pytest.mark.multihost, pytest.mark.docker, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    with TestBed(hosts=2, workdir=tmp_path_factory.mktemp("bed")) as bed:
        yield bed


def ssh(bed, host, command, *, known_hosts=None, key=None, timeout=30):
    return subprocess.run(
        [
            "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5",
            "-o", f"UserKnownHostsFile={known_hosts or bed.known_hosts_path}",
            "-i", str(key or bed.key_path), f"root@{host.address}", command,
        ],
        capture_output=True, text=True, timeout=timeout,
    )


def test_every_host_has_its_own_address_and_host_key(bed):
    # How long the bed took is reported, not asserted: on a clean engine it includes
    # making the base and the host image, which depends on the Debian mirror's speed.
    print(f"test bed up in {bed.startup_seconds:.1f}s")
    assert len({host.address for host in bed.hosts}) == 2
    host_keys = [line.split()[2] for line in bed.known_hosts_path.read_text().splitlines()]
    assert len(set(host_keys)) == 2, "every host must have its own host key"


def test_hosts_accept_the_bed_key_and_check_host_keys(bed):
    host = bed.hosts[0]
    done = ssh(bed, host, "hostname")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == host.name


def test_hosts_refuse_other_keys(bed, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    done = ssh(bed, bed.hosts[0], "true", key=other)
    assert done.returncode == 255 and "Permission denied" in done.stderr


def test_unknown_host_key_is_refused_by_strict_checking(bed, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    done = ssh(bed, bed.hosts[0], "true", known_hosts=empty)
    assert done.returncode == 255 and "Host key verification failed" in done.stderr


def test_each_host_runs_its_own_engine_and_published_ports_cross_hosts(bed):
    worker, edge = bed.hosts
    save = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
    load = subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={bed.known_hosts_path}",
         "-i", str(bed.key_path), f"root@{worker.address}", "docker load"],
        stdin=save.stdout, capture_output=True, text=True, timeout=120,
    )
    save.wait()
    assert load.returncode == 0, load.stderr
    assert BASE_IMAGE not in bed.exec(edge, "docker images --format '{{.Repository}}:{{.Tag}}'")

    # Published on the worker host's private address, reached from the edge host:
    # the connection must arrive from the edge's own address (the allow-list relies on it).
    run = ssh(bed, worker, (
        f"docker run -d --name echo-peer -p {worker.address}:9000:9000 {BASE_IMAGE} python3 -c "
        "'import socket; s=socket.create_server((\"0.0.0.0\", 9000)); c,a=s.accept(); c.sendall(a[0].encode()); c.close()'"
    ))
    assert run.returncode == 0, run.stderr
    seen = ""
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        probe = bed.exec(edge, f"python3 -c 'import socket; print(socket.create_connection((\"{worker.address}\", 9000)).recv(64).decode())' || true")
        seen = probe.strip()
        time.sleep(0.3)
    assert seen == edge.address, bed.exec(worker, "docker logs echo-peer 2>&1; tail -20 /var/log/dockerd.log")


def test_cut_off_host_is_unreachable_until_reconnected(bed):
    host = bed.hosts[1]
    bed.cut_off(host)
    try:
        with pytest.raises(OSError):
            socket.create_connection((host.address, 22), timeout=2).close()
    finally:
        bed.reconnect(host)
    assert ssh(bed, host, "true").returncode == 0


def test_fcgikit_checks_host_keys_strictly_and_accepts_new_ones_only_when_asked(bed, tmp_path):
    import dataclasses

    from fcgikit.deploy.inventory import SshTarget
    from fcgikit.deploy.ssh import Fleet

    host = bed.hosts[0]
    known_hosts = tmp_path / "known_hosts"
    target = SshTarget(host.name, host.address, "root", host.port, bed.key_path, known_hosts, connect_timeout=5)

    with Fleet([target]) as fleet:  # nothing known about the host: refused
        assert "unknown host key" in str(fleet.unreachable[host.name])
    with Fleet([target], accept_new_host_keys=True) as fleet:  # recorded, then used
        assert fleet.session(host.name).run("hostname").stdout.strip() == host.name
    assert known_hosts.read_text().split()[:2] == [host.address, "ssh-ed25519"]
    with Fleet([target]) as fleet:  # strict again, now with the recorded key
        assert fleet.session(host.name).docker().info()["Name"] == host.name  # its own engine, over SSH

    # Another host's key under this address: a changed key is refused even with accept-new.
    other = bed.hosts[1]
    other_key = bed.exec(other, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()
    known_hosts.write_text(f"{host.address} {other_key[0]} {other_key[1]}\n")
    with Fleet([dataclasses.replace(target)], accept_new_host_keys=True) as fleet:
        assert "HOST KEY CHANGED" in str(fleet.unreachable[host.name])


def test_shipping_sends_an_image_once_and_then_only_the_layers_a_host_lacks(bed):
    import io

    import docker

    from fcgikit.deploy.inventory import SshTarget
    from fcgikit.deploy.ship import host_images, local_images, plan_shipment, ship
    from fcgikit.deploy.ssh import Fleet

    host = bed.hosts[1]
    local = docker.from_env()
    derived = f"fcgikit-test/derived:{bed.bed_id}"
    local.images.build(fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nRUN echo layered > /layered\n".encode()), tag=derived, rm=True)
    target = SshTarget(host.name, host.address, "root", host.port, bed.key_path, bed.known_hosts_path)
    try:
        with Fleet([target]) as fleet:
            session = fleet.session(host.name)

            def send(ref):
                shipment = plan_shipment(host.name, local_images(local, [ref]), host_images(session.docker()))
                return shipment, ship(session, local, shipment)

            bed.exec(host, f"docker rmi -f {BASE_IMAGE} >/dev/null 2>&1 || true")
            _, first = send(BASE_IMAGE)
            assert first.bytes_sent > 100_000_000 and first.layers_skipped == 0, first
            shipment, second = send(derived)
            assert second.layers_skipped == 1 and second.bytes_sent < 1_000_000, second  # the base stayed home
            again, third = send(derived)
            assert again.nothing_to_do and third.bytes_sent == 0
        assert bed.exec(host, f"docker run --rm {derived} cat /layered").strip() == "layered"
    finally:
        local.images.remove(derived, force=True)
