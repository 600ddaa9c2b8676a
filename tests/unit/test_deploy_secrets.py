"""Secrets (pure parts): the stack file's section, reading values, what each exec carries,
what a container's definition and labels hold (names, never values), redaction."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from fcgikit.deploy import secrets as sec
from fcgikit.deploy.errors import ConfigError, FcgikitError
from fcgikit.deploy.hosts import local_host
from fcgikit.deploy.plan import Observed, plan_up
from fcgikit.deploy.spec import StackSpec, load_stack_spec

IMAGES = {"workers": "p/fcgi-worker:1", "cgi": "p/fcgi-worker:1", "nginx": "p/nginx:1"}


def stack(tmp_path, secrets: dict, uses: list[str]) -> StackSpec:
    import yaml
    path = tmp_path / "fcgikit.yaml"
    path.write_text(yaml.safe_dump({
        "secrets": secrets,
        "services": {"workers": {"app": "a:app", "replicas": 1, "secrets": uses}},
    }))
    return load_stack_spec(path)


def test_a_file_source_is_relative_to_the_stack_file_and_an_env_one_is_read_here(tmp_path):
    (tmp_path / "pw").write_bytes(b"hunter2-secret")
    spec = stack(tmp_path, {"pw": {"from_file": "pw"}, "tok": {"from_env": "TOK", "deliver": "env"}}, ["pw", "tok"])
    assert spec.secrets["pw"].from_file == tmp_path / "pw"
    assert sec.read_values(spec, environ={"TOK": "t0ken-value"}) == {"pw": b"hunter2-secret", "tok": b"t0ken-value"}
    assert sec.mounts_for(spec, ["pw", "tok"]) == (("pw", ""), ("tok", "TOK"))


def test_unreadable_sources_name_the_key_and_change_nothing(tmp_path):
    spec = stack(tmp_path, {"pw": {"from_file": "nope"}, "tok": {"from_env": "TOK"}}, ["pw", "tok"])
    with pytest.raises(FcgikitError, match=r"secrets/pw/from_file: cannot read .*nope: No such file"):
        sec.read_values(spec, ["pw"], environ={})
    with pytest.raises(FcgikitError, match="secrets/tok/from_env: TOK is not set in the environment of this machine"):
        sec.read_values(spec, ["tok"], environ={})


def test_bad_secret_sections_are_refused_with_their_paths(tmp_path):
    with pytest.raises(ConfigError) as both:
        stack(tmp_path, {"pw": {"from_file": "x", "from_env": "X"}}, [])
    assert 'set exactly one of "from_file"' in str(both.value)
    with pytest.raises(ConfigError) as unknown:
        stack(tmp_path, {"pw": {"from_env": "X"}}, ["pw", "other"])
    assert unknown.value.problems == ['services/workers/secrets/1: no secret "other" under secrets: (pw defined)']
    with pytest.raises(ConfigError) as variable:
        stack(tmp_path, {"pw": {"from_env": "X", "variable": "PW"}}, [])
    assert "add deliver: env" in str(variable.value)
    with pytest.raises(ConfigError):
        stack(tmp_path, {"../pw": {"from_env": "X"}}, [])


def test_the_value_travels_in_the_exec_environment_never_in_its_argv():
    execs = sec.delivery_execs((("pw", ""), ("tok", "API_TOKEN")), {"pw": b"s3cret-pw", "tok": b"s3cret-tok"})
    argvs = [" ".join(argv) for argv, _ in execs]
    assert [argv.split()[-1] for argv in argvs] == ["/run/secrets/pw", "/run/secrets/tok", "/run/secrets/.env",
                                                    "/run/secrets/.ready"]
    assert not any("s3cret" in argv for argv in argvs)
    assert base64.b64decode(execs[0][1]["FCGIKIT_SECRET"]) == b"s3cret-pw"
    assert base64.b64decode(execs[2][1]["FCGIKIT_SECRET"]) == b"API_TOKEN tok\n"


def test_a_delivery_matches_only_the_values_read_now():
    mounts = (("pw", ""),)
    output = f"{hashlib.sha256(b'one').hexdigest()}  /run/secrets/pw\n"
    assert sec.delivered_match(output, mounts, {"pw": b"one"})
    assert not sec.delivered_match(output, mounts, {"pw": b"two"})
    assert not sec.delivered_match("", mounts, {"pw": b"one"})


def test_the_container_holds_names_and_waits_for_them_but_no_value_is_in_its_definition(tmp_path):
    (tmp_path / "pw").write_text("v1-value")
    spec = stack(tmp_path, {"pw": {"from_file": "pw"}}, ["pw"])
    plan = plan_up(spec, "demo", [local_host()], IMAGES, Observed())
    worker = next(c for c in plan.wanted if c.service == "workers")
    assert worker.command[:2] == ("sh", "-c") and worker.command[4:7] == ("python3", "-m", "fcgikit.serve")
    assert ("/run/secrets", "uid=10001,gid=10001,mode=0700,size=1m") in worker.confinement.tmpfs
    assert worker.labels["fcgikit.secrets"] == "pw"
    text = json.dumps([worker.labels, worker.command, worker.env]) + "".join(s.docker_command() for s in plan.steps)
    assert "v1-value" not in text
    (tmp_path / "pw").write_text("v2-value")  # the value is not part of the definition
    again = plan_up(spec, "demo", [local_host()], IMAGES, Observed())
    assert next(c for c in again.wanted if c.service == "workers").config_hash == worker.config_hash


def test_values_are_redacted_from_printed_text_longest_first():
    redact = sec.Redactor({"pw": b"hunter2-long\n", "short": b"ab", "part": b"hunter2"})
    assert redact("login hunter2-long and hunter2, ab") == "login [secret pw] and [secret part], ab"


def test_on_swarm_secrets_are_docker_secrets_and_a_new_value_updates_the_service(tmp_path):
    from fcgikit.deploy.swarm import secret_version_name, stack_file, unsupported_on_swarm

    (tmp_path / "pw").write_text("v1-value")
    spec = stack(tmp_path, {"pw": {"from_file": "pw"}, "tok": {"from_env": "TOK", "deliver": "env"}}, ["pw", "tok"])
    assert unsupported_on_swarm(spec) == []
    names = {"pw": secret_version_name("demo", "pw", b"v1-value", b"k" * 32), "tok": "demo_tok_1"}
    files = stack_file(spec, "demo", IMAGES, port=8080, secret_names=names)
    workers = files.stack["services"]["workers"]
    assert workers["secrets"] == [{"source": "pw", "target": "pw", "uid": "10001", "gid": "10001", "mode": 0o400},
                                  {"source": "tok", "target": "tok", "uid": "10001", "gid": "10001", "mode": 0o400}]
    assert workers["command"][:2] == ["sh", "-c"] and "$$" in workers["command"][2] and "TOK=tok" in workers["command"]
    assert files.stack["secrets"] == {"pw": {"external": True, "name": names["pw"]},
                                      "tok": {"external": True, "name": "demo_tok_1"}}
    assert "v1-value" not in json.dumps(files.stack) and hashlib.sha256(b"v1-value").hexdigest()[:12] not in names["pw"]
    renewed = stack_file(spec, "demo", IMAGES, port=8080, secret_names={**names, "pw": "demo_pw_2"})
    assert renewed.hashes["workers"] != files.hashes["workers"] and renewed.hashes["nginx"] == files.hashes["nginx"]
