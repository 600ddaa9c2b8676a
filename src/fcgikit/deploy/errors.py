"""Errors the CLI reports as one line, and pydantic errors turned into path-qualified problems.

Every problem in a configuration file names where it is and what was expected, in the
style of Kamal's validator::

    services/workers/replicas: expected an integer >= 0, got "eight"
    services/workers/replica: unknown key (did you mean "replicas"?)

Fields can say what they expect in their own words with
``Field(json_schema_extra={"expected": "MODULE:APP, e.g. hello_wsgi:app"})``.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import annotated_types
import pydantic
import yaml
from pydantic_core import ErrorDetails


class FcgikitError(Exception):
    """A failure the user can act on: the CLI prints it as one ``error:`` line, no traceback."""


class ConfigError(FcgikitError):
    """A configuration file (stack spec, inventory) that cannot be used; nothing was started."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"{self.source}: {self.problems[0]}"
        listed = "".join(f"\n  {problem}" for problem in self.problems)
        return f"{self.source}: {len(self.problems)} problems:{listed}"


def load_config_file(path: str | Path, model: type[pydantic.BaseModel]) -> Any:
    """Read a YAML file and validate it against ``model``; raise ConfigError naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [_describe_yaml_error(exc)]) from exc
    return validate_config(model, {} if data is None else data, source=str(path))


def validate_config(model: type[pydantic.BaseModel], data: Any, *, source: str) -> Any:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(source, format_validation_errors(exc, model)) from exc


def format_validation_errors(exc: pydantic.ValidationError, model: type[pydantic.BaseModel]) -> list[str]:
    """One ``path: what is wrong`` line per pydantic error, in document order."""
    return [format_validation_error(error, model) for error in exc.errors()]


def format_validation_error(error: ErrorDetails, model: type[pydantic.BaseModel]) -> str:
    loc = tuple(error["loc"])
    path = "/".join(str(part) for part in loc) or "(top level)"
    return f"{path}: {_describe_problem(error, model, loc)}"


def _describe_problem(error: ErrorDetails, model: type[pydantic.BaseModel], loc: tuple) -> str:
    kind = error["type"]
    got = _show_value(error.get("input"))
    if kind == "missing":
        return f"required, expected {_expected(model, loc)}"
    if kind == "extra_forbidden":
        return _describe_unknown_key(model, loc)
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        return f"expected one of {error['ctx']['expected']}, got {got}"
    return f"expected {_expected(model, loc)}, got {got}"


def _describe_unknown_key(model: type[pydantic.BaseModel], loc: tuple) -> str:
    parent = _resolve(model, loc[:-1])[0]
    known = list(parent.model_fields) if _is_model(parent) else []
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f'unknown key (did you mean "{close[0]}"?)'
    if known:
        return f"unknown key (expected one of: {', '.join(known)})"
    return "unknown key"


def _expected(model: type[pydantic.BaseModel], loc: tuple) -> str:
    annotation, field = _resolve(model, loc)
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict) and "expected" in extra:
        return str(extra["expected"])
    return _describe_type(annotation) + _describe_bounds(field.metadata if field else [])


def _resolve(model: type[pydantic.BaseModel], loc: tuple) -> tuple[Any, pydantic.fields.FieldInfo | None]:
    """Follow ``loc`` through the model's annotations to the type (and field) it points at."""
    annotation: Any = model
    field = None
    for part in loc:
        annotation = _unwrap_optional(annotation)
        if _is_model(annotation) and part in annotation.model_fields:
            field = annotation.model_fields[part]
            annotation = field.annotation
        elif typing.get_origin(annotation) in (dict, list) and typing.get_args(annotation):
            annotation = typing.get_args(annotation)[-1]
            field = None
        else:
            return annotation, field
    return _unwrap_optional(annotation), field


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path"}


def _describe_type(annotation: Any) -> str:
    if annotation in _TYPE_WORDS:
        return _TYPE_WORDS[annotation]
    if _is_model(annotation) or typing.get_origin(annotation) is dict or annotation is dict:
        return "a mapping"
    if typing.get_origin(annotation) is list or annotation is list:
        args = typing.get_args(annotation)
        return f"a list of {_plural(args[0])}" if args else "a list"
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(json.dumps(arg) for arg in typing.get_args(annotation))
    return "a valid value"


def _plural(annotation: Any) -> str:
    return {int: "integers", str: "strings", float: "numbers"}.get(annotation, "values")


def _describe_bounds(metadata: list) -> str:
    words = []
    for item in metadata:
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attribute.capitalize())):
                words.append(f"{symbol} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            words.append(f"with at least {item.min_length} item(s)")
    return (" " + " and ".join(words)) if words else ""


def _show_value(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    shown = json.dumps(value) if isinstance(value, (str, int, float, bool)) else repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({problem})"
    return f"not valid YAML ({problem})"
