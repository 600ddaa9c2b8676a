"""The multi-host test bed: containers that stand in for deployment hosts.

Each host is a container with its own address on a private Docker network, running
OpenSSH's sshd (key authentication only) and a Docker engine of its own, so images
really travel and containers really live apart (docs/multihost.md says why this
variant and what it needs from the engine).

    with TestBed(hosts=3) as bed:
        bed.hosts[0].address, bed.key_path, bed.known_hosts_path
        bed.cut_off(bed.hosts[1]); bed.reconnect(bed.hosts[1])

From a shell (scripts too):

    python3 -m tests.hosts.bed up 3 --keep   # start 3 hosts, leave them running, print the bed id,
                                             # ssh command lines and an inventory (hosts.yaml)
    python3 -m tests.hosts.bed down ID       # remove that bed (containers, network, its directory)
    python3 -m tests.hosts.bed down --all    # every bed on this engine
    python3 -m tests.hosts.bed up 3          # on a terminal: until Enter; else up, report, down
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import docker.types

HERE = Path(__file__).resolve().parent
BASE_IMAGE = "fcgikit/base:bookworm"
HOST_IMAGE_REPO = "fcgikit-test/host"
BED_LABEL = "fcgikit.test-bed"

# What the nested engine needs instead of --privileged, which this engine refuses
# ("unable to apply caps": CAP_SYS_RESOURCE is outside its bounding set).
HOST_SECURITY = dict(
    cap_add=["ALL"],
    cap_drop=["SYS_RESOURCE"],
    security_opt=["seccomp=unconfined", "apparmor=unconfined"],
)


class BedError(RuntimeError):
    pass


@dataclass
class TestHost:
    __test__ = False  # not a pytest test class
    name: str          # the host's name in an inventory (h1, h2, ...)
    container: str     # the container standing in for it
    address: str = ""  # its address on the bed's private network
    port: int = 22


def ensure_base_image(client: docker.DockerClient) -> str:
    """The host image builds FROM the project's base, made the way `fcgikit build` makes it
    (present, else pulled, else debootstrap + docker import): the same code path users take."""
    from fcgikit.deploy import images as project_images

    return project_images.ensure_base(client, project_images.ImageNames(), progress=lambda line: None)


def host_image_tag() -> str:
    """The tag carries a hash of the files that make the image, so an edit rebuilds it."""
    digest = hashlib.sha256()
    for name in ("Dockerfile", "entrypoint.sh", "sshd_config"):
        digest.update((HERE / name).read_bytes())
    return f"{HOST_IMAGE_REPO}:{digest.hexdigest()[:12]}"


def ensure_host_image(client: docker.DockerClient) -> str:
    """Build the host image (sshd + docker.io from Debian's archive) unless present."""
    tag = host_image_tag()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    base = ensure_base_image(client)
    client.images.build(path=str(HERE), tag=tag, buildargs={"BASE": base}, rm=True)
    return tag


def generate_key_pair(directory: Path) -> Path:
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fcgikit-test-bed", "-f", str(key)],
        check=True,
    )
    return key


class TestBed:
    __test__ = False

    def __init__(self, hosts: int = 3, workdir: Path | None = None, client=None):
        self.bed_id = uuid.uuid4().hex[:8]
        self.client = client or docker.from_env()
        self.own_workdir = workdir is None  # made here: removed with the bed
        self.workdir = Path(workdir) if workdir else bed_directory(self.bed_id)
        self.network_name = f"fcgikit-bed-{self.bed_id}"
        self.hosts = [
            TestHost(name=f"h{i}", container=f"fcgikit-bed-{self.bed_id}-h{i}")
            for i in range(1, hosts + 1)
        ]
        self.key_path = self.workdir / "id_ed25519"
        self.known_hosts_path = self.workdir / "known_hosts"
        self.startup_seconds = 0.0

    # -- lifecycle -----------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> TestBed:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image = ensure_host_image(self.client)
        generate_key_pair(self.workdir)
        self._create_network()
        public_key = self.key_path.with_suffix(".pub").read_text().strip()
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            list(pool.map(lambda h: self._start_host(h, public_key, timeout), self.hosts))
        self._write_known_hosts()
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        remove_bed(self.client, self.bed_id, remove_directory=self.own_workdir)

    def __enter__(self) -> TestBed:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- host loss -----------------------------------------------------------------

    def cut_off(self, host: TestHost) -> None:
        """The host drops off the private network, as a failed switch port would do."""
        self.client.networks.get(self.network_name).disconnect(host.container)

    def reconnect(self, host: TestHost) -> None:
        self.client.networks.get(self.network_name).connect(
            host.container, ipv4_address=host.address
        )

    # -- helpers for tests -----------------------------------------------------------

    def exec(self, host: TestHost, command: str) -> str:
        """Run a command on the host as its console would (not over SSH)."""
        result = self.client.containers.get(host.container).exec_run(["sh", "-c", command])
        if result.exit_code != 0:
            raise BedError(f"{host.name}: `{command}` exited {result.exit_code}: {result.output.decode(errors='replace')}")
        return result.output.decode(errors="replace")

    def engine_log(self, host: TestHost) -> str:
        return self.exec(host, "tail -n 50 /var/log/dockerd.log")

    def inventory_yaml(self, roles: dict[str, list[str]], connect_timeout: int = 10) -> str:
        """An inventory for these hosts; roles maps host name -> its roles."""
        lines = [
            "ssh:",
            "  user: root",
            f"  key: {self.key_path}",
            f"  known_hosts: {self.known_hosts_path}",
            f"  connect_timeout: {connect_timeout}",
            "hosts:",
        ]
        for host in self.hosts:
            host_roles = ", ".join(roles.get(host.name, []))
            lines += [f"  - name: {host.name}", f"    address: {host.address}", f"    roles: [{host_roles}]"]
        return "\n".join(lines) + "\n"

    # -- internals -------------------------------------------------------------------

    def _create_network(self) -> None:
        """A subnet of our own choosing: only then can a cut-off host get its address back."""
        for _ in range(20):
            subnet = f"10.213.{random.randrange(256)}.0/24"
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
            try:
                self.client.networks.create(
                    self.network_name, driver="bridge", ipam=ipam, labels={BED_LABEL: self.bed_id}
                )
                return
            except docker.errors.APIError as error:
                if "overlap" not in str(error).lower():
                    raise
        raise BedError("no free 10.213.x.0/24 subnet for the test bed network")

    def _start_host(self, host: TestHost, public_key: str, timeout: float) -> None:
        container = self.client.containers.run(
            self.image,
            name=host.container,
            hostname=host.name,
            detach=True,
            init=True,
            network=self.network_name,
            environment={"AUTHORIZED_KEY": public_key},
            labels={BED_LABEL: self.bed_id, "fcgikit.test-host": host.name},
            # The inner engine keeps its layers on a volume: overlay2 cannot stack on
            # the outer engine's fuse-overlayfs root, but works on the volume's ext4.
            mounts=[docker.types.Mount("/var/lib/docker", None, type="volume")],
            **HOST_SECURITY,
        )
        container.reload()
        host.address = container.attrs["NetworkSettings"]["Networks"][self.network_name]["IPAddress"]
        deadline = time.monotonic() + timeout
        self._wait(host, deadline, "sshd answering on port 22", lambda: _ssh_banner(host.address, host.port))
        self._wait(host, deadline, "its Docker engine answering", lambda: self._engine_ready(host))

    def _engine_ready(self, host: TestHost) -> bool:
        result = self.client.containers.get(host.container).exec_run(["docker", "info", "--format", "{{.ID}}"])
        return result.exit_code == 0

    def _wait(self, host: TestHost, deadline: float, what: str, ready) -> None:
        while time.monotonic() < deadline:
            if ready():
                return
            container = self.client.containers.get(host.container)
            if container.status == "exited":
                break
            time.sleep(0.3)
        logs = self.client.containers.get(host.container).logs(tail=50).decode(errors="replace")
        try:
            logs += "\n--- dockerd ---\n" + self.engine_log(host)
        except Exception as error:  # the container may be gone; say so and keep the original failure
            logs += f"\n(no dockerd log: {error})"
        raise BedError(f"test host {host.name} ({host.container}): timed out waiting for {what}\n{logs}")

    def _write_known_hosts(self) -> None:
        lines = []
        for host in self.hosts:
            key = self.exec(host, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()
            lines.append(f"{host.address} {key[0]} {key[1]}")
        self.known_hosts_path.write_text("\n".join(lines) + "\n")


def bed_directory(bed_id: str) -> Path:
    return Path(f"/tmp/fcgikit-bed-{bed_id}")


def remove_bed(client: docker.DockerClient, bed_id: str, *, remove_directory: bool = True) -> int:
    """Remove a bed's containers (with their engines' volumes), its network and its directory;
    returns how many hosts were removed."""
    hosts = client.containers.list(all=True, filters={"label": f"{BED_LABEL}={bed_id}"})
    for container in hosts:
        container.remove(force=True, v=True)
    for network in client.networks.list(filters={"label": f"{BED_LABEL}={bed_id}"}):
        network.remove()
    if remove_directory:
        shutil.rmtree(bed_directory(bed_id), ignore_errors=True)
    return len(hosts)


def running_beds(client: docker.DockerClient) -> list[str]:
    """The ids of every bed on this engine (running or not)."""
    found = client.containers.list(all=True, filters={"label": BED_LABEL})
    return sorted({container.labels[BED_LABEL] for container in found})


def _ssh_banner(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def default_roles(bed: TestBed) -> dict[str, list[str]]:
    """h1 the edge, the others worker hosts, the last one cgi too (one host: everything)."""
    if len(bed.hosts) == 1:
        return {bed.hosts[0].name: ["edge", "workers", "cgi"]}
    roles = {bed.hosts[0].name: ["edge"]} | {host.name: ["workers"] for host in bed.hosts[1:]}
    roles[bed.hosts[-1].name].append("cgi")
    return roles


def report(bed: TestBed) -> str:
    inventory = bed.workdir / "hosts.yaml"
    inventory.write_text(bed.inventory_yaml(default_roles(bed)))
    lines = [f"bed {bed.bed_id}: {len(bed.hosts)} hosts up in {bed.startup_seconds:.1f}s (network {bed.network_name})"]
    for host in bed.hosts:
        lines.append(f"  {host.name}: ssh -i {bed.key_path} -o UserKnownHostsFile={bed.known_hosts_path} root@{host.address}")
    lines.append(f"  inventory: {inventory}  (fcgikit up --hosts {inventory})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.hosts.bed", description="SSH test hosts for fcgikit")
    commands = parser.add_subparsers(dest="command")
    up = commands.add_parser("up", help="start N hosts")
    up.add_argument("count", type=int, nargs="?", default=3)
    up.add_argument("--keep", action="store_true", help="leave them running; `down ID` removes them")
    down = commands.add_parser("down", help="remove a bed kept with --keep")
    down.add_argument("bed_id", metavar="ID", nargs="?")
    down.add_argument("--all", action="store_true", help="every bed on this engine")
    if argv and argv[0].isdigit():  # the old form: `bed N`
        argv = ["up", *argv]
    args = parser.parse_args(argv or ["up"])
    client = docker.from_env()
    if args.command == "down":
        if bool(args.bed_id) == args.all:
            parser.error("down: give a bed ID or --all")
        beds = running_beds(client) if args.all else [args.bed_id]
        for bed_id in beds:
            if bed_id not in running_beds(client):
                print(f"bed {bed_id}: no such bed on this engine", file=sys.stderr)
                return 1
            print(f"bed {bed_id}: {remove_bed(client, bed_id)} host(s) removed")
        return 0
    bed = TestBed(hosts=args.count, client=client)
    try:
        bed.start()
    except BaseException:
        bed.stop()
        raise
    print(report(bed), flush=True)
    if args.keep:
        print(f"  kept; remove it with: python3 -m tests.hosts.bed down {bed.bed_id}")
        return 0
    try:
        if sys.stdin.isatty():
            input("Enter tears the bed down. ")
    finally:
        bed.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
