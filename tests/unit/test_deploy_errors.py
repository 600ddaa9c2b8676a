"""Validation errors become one path-qualified line each, saying what was expected."""

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from fcgikit.deploy.errors import ConfigError, load_config_file, validate_config


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Workers(Strict):
    app: str = Field("hello:app", json_schema_extra={"expected": "MODULE:APP, e.g. hello_wsgi:app"})
    replicas: int = Field(2, ge=0)
    env: dict[str, str] = {}
    program: list[str] | None = None
    mode: Literal["tcp", "unix"] = "tcp"


class Services(Strict):
    workers: Workers


class Stack(Strict):
    services: Services


def problems(data):
    with pytest.raises(ConfigError) as caught:
        validate_config(Stack, data, source="fcgikit.yaml")
    return caught.value.problems


def test_type_error_names_path_bound_and_value():
    assert problems({"services": {"workers": {"replicas": "eight"}}}) == [
        'services/workers/replicas: expected an integer >= 0, got "eight"'
    ]


def test_bound_violation():
    assert problems({"services": {"workers": {"replicas": -1}}}) == [
        "services/workers/replicas: expected an integer >= 0, got -1"
    ]


def test_unknown_key_suggests_the_close_one():
    assert problems({"services": {"workers": {"replica": 3}}}) == [
        'services/workers/replica: unknown key (did you mean "replicas"?)'
    ]


def test_unknown_key_lists_known_ones_when_nothing_is_close():
    assert problems({"services": {"workers": {}}, "zzz": 1}) == [
        "zzz: unknown key (expected one of: services)"
    ]


def test_missing_section_and_nested_types():
    assert problems({}) == ["services: required, expected a mapping"]
    assert problems({"services": {"workers": {"env": {"A": 1}, "program": "x"}}}) == [
        "services/workers/env/A: expected a string, got 1",
        'services/workers/program: expected a list of strings, got "x"',
    ]


def test_field_own_words_and_literals():
    assert problems({"services": {"workers": {"app": 5, "mode": "udp"}}}) == [
        "services/workers/app: expected MODULE:APP, e.g. hello_wsgi:app, got 5",
        "services/workers/mode: expected one of 'tcp' or 'unix', got \"udp\"",
    ]


def test_several_problems_render_as_one_message_per_line():
    error = ConfigError("f.yaml", ["a: x", "b: y"])
    assert str(error) == "f.yaml: 2 problems:\n  a: x\n  b: y"
    assert str(ConfigError("f.yaml", ["a: x"])) == "f.yaml: a: x"


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  workers: [1,\n")
    with pytest.raises(ConfigError) as caught:
        load_config_file(bad, Stack)
    assert caught.value.problems[0].startswith("line 3, column 1: not valid YAML")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "nope.yaml", Stack)


def test_empty_file_is_validated_as_empty_mapping(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="services: required"):
        load_config_file(empty, Stack)
