"""The configuration reference, generated from the models so it cannot drift from them.

README.md embeds the output between markers; a test fails when the two differ, and
``python -m clusterdeck.spec.reference --write README.md`` rewrites the block.
"""

from __future__ import annotations

import sys
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from clusterdeck.spec.models import Environment

START = "<!-- configuration-reference:start -->"
END = "<!-- configuration-reference:end -->"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "map"
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(str(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__
    return getattr(annotation, "__name__", str(annotation))


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            seen.append(annotation)
            for info in annotation.model_fields.values():
                visit(info.annotation)
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return seen


def _default(info: Any) -> str:
    if info.default is not PydanticUndefined:
        value = info.default
        if value is None:
            return "-"
        if isinstance(value, Enum):
            return f"`{value.value}`"
        return f"`{str(value).lower() if isinstance(value, bool) else value}`"
    if info.default_factory is not None:
        made = info.default_factory()
        return "`[]`" if made == [] else "`{}`" if made == {} else "(see below)"
    return "**required**"


def render_markdown() -> str:
    lines = [START, ""]
    for model in _models(Environment):
        lines += [f"#### {model.__name__}", ""]
        doc = (model.__doc__ or "").strip().splitlines()
        if doc and model.__module__ == "clusterdeck.spec.models" and "Fields shared" not in doc[0]:
            lines += [doc[0], ""]
        lines += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
        for name, info in model.model_fields.items():
            lines.append(
                f"| `{info.alias or name}` | {_type_name(info.annotation)} | "
                f"{_default(info)} | {info.description or ''} |"
            )
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def splice(text: str) -> str:
    """Replace the reference block in ``text`` with a freshly generated one."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return head + render_markdown() + tail


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        target = Path(sys.argv[2])
        target.write_text(splice(target.read_text()))
    else:
        sys.stdout.write(render_markdown() + "\n")
