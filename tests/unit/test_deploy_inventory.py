from pathlib import Path

import pytest

from fcgikit.deploy.errors import ConfigError, validate_config
from fcgikit.deploy.inventory import Inventory, load_inventory

REPO = Path(__file__).resolve().parents[2]


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate_config(Inventory, data, source="hosts.yaml")
    return caught.value.problems


def host(name, address, *roles, **extra):
    return {"name": name, "address": address, "roles": list(roles), **extra}


def test_the_example_inventory_is_valid():
    inventory = validate_config(
        Inventory, __import__("yaml").safe_load((REPO / "deploy/hosts.yaml").read_text()), source="x"
    )
    assert inventory.primary.name == "edge1"
    assert [h.name for h in inventory.with_role("workers")] == ["app1", "app2"]


def test_per_host_settings_override_the_defaults():
    inventory = validate_config(
        Inventory,
        {"ssh": {"user": "deploy", "port": 22}, "hosts": [host("e", "10.0.0.1", "edge", "workers", port=2222, user="ops")]},
        source="x",
    )
    target = inventory.target("e")
    assert (target.user, target.port, target.address) == ("ops", 2222, "10.0.0.1")
    assert str(target) == "e (ops@10.0.0.1:2222)"


def test_errors_name_their_path():
    found = problems(
        {
            "ssh": {"prot": 22},
            "hosts": [host("edge1", "10.0.0.1", "edge"), host("Bad", "not an address", "web"), {"name": "x", "address": "10.0.0.3", "roles": [], "port": "x"}],
        }
    )
    assert 'ssh/prot: unknown key (did you mean "port"?)' in found
    assert 'hosts/1/name: expected lowercase letters, digits, "-" and "_" (at most 40), got "Bad"' in found
    assert 'hosts/1/address: expected an IP address or a DNS name, got "not an address"' in found
    assert "hosts/1/roles/0: expected one of 'edge', 'workers' or 'cgi', got \"web\"" in found
    assert any(p.startswith("hosts/2/roles: expected a list") for p in found)
    assert 'hosts/2/port: expected an integer >= 1 and <= 65535, got "x"' in found


def test_duplicate_names_and_addresses_are_refused():
    found = problems({"hosts": [host("a", "10.0.0.1", "edge"), host("a", "10.0.0.1", "workers")]})
    assert found == ['hosts: name "a" is used twice (hosts/0 and hosts/1); address "10.0.0.1" is used twice (hosts/0 and hosts/1)']


def test_same_address_on_another_port_is_another_host():
    validate_config(
        Inventory, {"hosts": [host("a", "127.0.0.1", "edge", port=2201), host("b", "127.0.0.1", "workers", port=2202)]}, source="x"
    )


def test_an_edge_and_a_workers_host_are_required():
    assert problems({"hosts": [host("a", "10.0.0.1", "cgi")]}) == [
        'hosts: no host has the role "edge"; at least one must; no host has the role "workers"; at least one must'
    ]


def test_a_role_listed_twice_is_refused():
    assert problems({"hosts": [host("a", "10.0.0.1", "edge", "edge", "workers")]}) == [
        "hosts/0/roles: role edge listed more than once"
    ]


def test_no_hosts_at_all():
    assert problems({"hosts": []}) == ["hosts: expected a list of values with at least 1 item(s), got a list"]
    assert problems({}) == ["hosts: required, expected a list of values with at least 1 item(s)"]


def test_load_resolves_paths_and_requires_the_key_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "id").write_text("key")
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "ssh: {key: keys/id, known_hosts: ~/kh}\n"
        "hosts:\n  - {name: a, address: 10.0.0.1, roles: [edge, workers], key: missing}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_inventory(path)
    assert caught.value.problems == [f"hosts/0/key: no such file: {tmp_path / 'missing'}"]

    path.write_text("ssh: {key: keys/id, known_hosts: ~/kh}\nhosts:\n  - {name: a, address: 10.0.0.1, roles: [edge, workers]}\n")
    target = load_inventory(path).target("a")
    assert target.key == tmp_path / "keys" / "id"
    assert target.known_hosts == tmp_path / "kh"


def test_workers_beside_an_edge_only_with_a_single_edge():
    validate_config(Inventory, {"hosts": [host("one", "10.0.0.1", "edge", "workers", "cgi")]}, source="x")
    assert problems({"hosts": [host("e1", "10.0.0.1", "edge", "workers"), host("e2", "10.0.0.2", "edge")]}) == [
        "hosts: hosts/0 runs workers or cgi beside an edge, which works only with a single edge host "
        "(other edges could not reach them); give the edges hosts of their own"
    ]
