"""Reading spec files (YAML) with errors that name the file, the line, the path inside it and the problem."""

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

SpecT = TypeVar("SpecT", bound=BaseModel)


class SpecError(ValueError):
    """An invalid spec file; ``problems`` lists each ``(path inside the file, line, message)``."""

    def __init__(self, file: Path | str, problems: list[tuple[str, int | None, str]]):
        self.file = str(file)
        self.problems = problems
        lines = [
            f"{self.file}{f':{line}' if line else ''}: {where or '<top>'}: {message}"
            for where, line, message in problems
        ]
        super().__init__("\n".join(lines))


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """The parsed document and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(path, [("", None, "file not found")]) from exc
    # One pass of libyaml (when PyYAML has it) gives the tree and the data built from it: the pure-Python
    # parser twice cost ≈ 0.1 s per portfolio file, and every step of a daily run loads the portfolio.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), node
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise SpecError(path, [("", line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    finally:
        loader.dispose()


def validate_file(path: Path, spec: type[SpecT], context: dict | None = None) -> SpecT:
    """Validate a YAML file against ``spec``; every problem is reported with its place in the file."""
    data, node = read_yaml(path)
    if data is None:
        raise SpecError(path, [("", None, "the file is empty")])
    return validate_part(path, node, data, spec, context=context)


def validate_part(
    path: Path,
    node: yaml.Node | None,
    data: Any,
    spec: type[SpecT],
    at: tuple[str, ...] = (),
    context: dict | None = None,
) -> SpecT:
    """Validate ``data``, the part at ``at`` of a file already read (``node`` its YAML tree), against ``spec``.

    A file read once is handed section by section to each room's validator; problems keep their full
    path and line in the file."""
    try:
        return spec.model_validate(data, context=context)
    except ValidationError as exc:
        raise SpecError(path, describe(exc, node, at)) from exc


def describe(
    exc: ValidationError, node: yaml.Node | None, at: tuple[str, ...] = ()
) -> list[tuple[str, int | None, str]]:
    problems = []
    for error in exc.errors():
        loc = [*at, *(part for part in error["loc"] if not _is_union_tag(part))]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}" if loc else message
        problems.append((_dotted(loc), line_of(node, loc), message))
    return problems


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"str", "float", "int", "bool", "list"})


def _dotted(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """The line of the deepest node along ``loc`` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
            if child is None:
                key = next((k for k, _ in node.value if k.value == str(part)), None)
                child = key
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node, line = child, child.start_mark.line + 1
    return line
