"""Read an Environment file: YAML with line numbers in, a typed model or a SpecError out.

Any bytes at all give one of those two outcomes, never a traceback: YAML errors, wrong
types, unknown keys (with "did you mean"), and the semantic rules all become
:class:`SpecIssue` records that name the field path, line and column. This is the only
module that reads YAML; it does no other I/O than reading the file it is given.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from clusterdeck.errors import SpecError, SpecIssue
from clusterdeck.spec import rules
from clusterdeck.spec.models import Environment

MAX_BYTES = 1 << 20
# Aliases let a small file stand for a huge tree (a "billion laughs" alias bomb): a file whose
# tree has more values than this is refused before anything walks it all.
MAX_VALUES = 100_000
MAX_DEPTH = 64
Loc = tuple[str | int, ...]

# Sections users may reach for that clusterdeck does not have (yet), with a plain answer.
NOT_YET: dict[Loc, str] = {
    ("spec", "instance"): "there is no separate single-instance form: a single node is "
    "cluster.controlPlane.count: 1 with no workers",
    ("spec", "cluster", "region"): "region lives in spec.aws.region",
}


@dataclass
class Positions:
    """Line and column (1-based) of every key and value in the file, by path."""

    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def of(self, loc: Loc, *, key: bool = False) -> tuple[int | None, int | None]:
        table = self.keys if key else self.values
        probe = loc
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (None, None))


@dataclass
class ValidationReport:
    environment: Environment | None
    errors: list[SpecIssue]
    warnings: list[SpecIssue]

    @property
    def valid(self) -> bool:
        return self.environment is not None and not self.errors

    def as_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "errors": [e.as_dict() for e in self.errors],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_file(path: str | Path) -> Environment:
    """Load and fully validate a file; raise SpecError on any problem."""
    report = check_file(path)
    if report.environment is None or report.errors:
        raise SpecError(report.errors, source=str(path))
    return report.environment


def check_file(path: str | Path) -> ValidationReport:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        issue = SpecIssue("", f"cannot read {path}: {exc.strerror or exc}")
        return ValidationReport(None, [issue], [])
    return check_bytes(data, base=Path(path).parent)


def load_text(text: str | bytes, source: str | None = None) -> Environment:
    report = check_bytes(text.encode() if isinstance(text, str) else text)
    if report.environment is None or report.errors:
        raise SpecError(report.errors, source=source)
    return report.environment


def from_recorded(data: dict[str, Any]) -> Environment:
    """The Environment recorded in the state store (already validated once); ValueError if a
    newer or older clusterdeck recorded something this one no longer loads."""
    return Environment.model_validate_json(json.dumps(data))


def check_bytes(data: bytes, base: Path | None = None) -> ValidationReport:
    """Validate raw file content (hook ``file`` paths are relative to ``base``, default the
    working directory). Never raises for any input."""
    if len(data) > MAX_BYTES:
        return _fail(
            SpecIssue("", f"file is {len(data)} bytes; an Environment is at most {MAX_BYTES} bytes")
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _fail(SpecIssue("", f"file is not UTF-8 text (byte {exc.start})"))
    try:
        tree = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        return _fail(SpecIssue("", f"not valid YAML: {problem}", line, col))
    except Exception as exc:  # the YAML library can raise many kinds on hostile input
        return _fail(SpecIssue("", f"not valid YAML: {type(exc).__name__}: {exc}"[:300]))
    positions = Positions()
    issues: list[SpecIssue] = []
    try:
        _count_values(tree)
        plain = _plain(tree, (), positions, issues, 0)
    except RecursionError:
        return _fail(SpecIssue("", "YAML nests too deeply"))
    except _TooLarge:
        return _fail(
            SpecIssue(
                "",
                f"the YAML expands to more than {MAX_VALUES} values (aliases that repeat "
                "aliases?): an Environment is far smaller",
            )
        )
    if issues:
        return ValidationReport(None, issues, [])
    if not isinstance(plain, dict):
        return _fail(
            SpecIssue(
                "",
                "the file must be a mapping with apiVersion, kind, metadata and spec",
                *positions.of(()),
            )
        )
    issues.extend(_not_yet(plain, positions))
    try:
        env = Environment.model_validate_json(json.dumps(plain, default=str))
    except ValidationError as exc:
        issues.extend(_translate(err, positions) for err in exc.errors())
        return ValidationReport(None, _sorted(issues), [])
    env, unread = _read_hook_files(env, base or Path.cwd())
    issues.extend(_issue(loc, msg, positions) for loc, msg in unread)
    issues.extend(_issue(loc, msg, positions) for loc, msg in rules.errors(env))
    found_warnings = [_issue(loc, msg, positions) for loc, msg in rules.warnings(env)]
    return ValidationReport(env, _sorted(issues), found_warnings)


def _read_hook_files(env: Environment, base: Path) -> tuple[Environment, list[tuple[Loc, str]]]:
    """Hooks given as a ``file``: read now, so what runs (and what the store records) is
    the script as it was when the file was loaded."""
    if not any(h.file for h in env.spec.hooks):
        return env, []
    problems: list[tuple[Loc, str]] = []
    hooks = []
    for i, hook in enumerate(env.spec.hooks):
        if hook.file is None:
            hooks.append(hook)
            continue
        path = (base / Path(hook.file).expanduser()).resolve()
        try:
            raw = path.read_bytes()
            if len(raw) > MAX_BYTES:
                raise ValueError(f"{len(raw)} bytes; a hook script is at most {MAX_BYTES}")
            text = raw.decode("utf-8")
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append((("spec", "hooks", i, "file"), f"cannot read {path}: {why}"))
            hooks.append(hook)
            continue
        hooks.append(hook.model_copy(update={"inline": text, "file": None}))
    spec = env.spec.model_copy(update={"hooks": hooks})
    return env.model_copy(update={"spec": spec}), problems


class _TooLarge(Exception):
    pass


def _count_values(tree: Any) -> None:
    """Count the values the tree expands to, each alias counted every time it is used, and
    stop at MAX_VALUES: shared subtrees are counted once (memoised), so this is fast on a
    bomb, where walking it would take minutes."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise RecursionError
        if not isinstance(node, dict | list):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            return known
        children = node.values() if isinstance(node, dict) else node
        total = 1 + sum(size(child, depth + 1) for child in children)
        if total > MAX_VALUES:
            raise _TooLarge
        sizes[id(node)] = total
        return total

    size(tree, 0)


def _fail(issue: SpecIssue) -> ValidationReport:
    return ValidationReport(None, [issue], [])


def _sorted(issues: list[SpecIssue]) -> list[SpecIssue]:
    return sorted(issues, key=lambda i: (i.line or 0, i.column or 0, i.path))


def _issue(loc: Loc, message: str, positions: Positions, *, key: bool = False) -> SpecIssue:
    line, col = positions.of(loc, key=key)
    return SpecIssue(dotted(loc), message, line, col)


def _plain(node: Any, loc: Loc, pos: Positions, issues: list[SpecIssue], depth: int) -> Any:
    """Turn ruamel's round-trip tree into plain Python, recording where each item sits."""
    if depth > MAX_DEPTH:
        raise RecursionError
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key in node:
            kline, kcol = node.lc.key(key)
            vline, vcol = node.lc.value(key)
            if not isinstance(key, str):
                issues.append(
                    SpecIssue(dotted(loc), f"keys must be text; got {key!r}", kline + 1, kcol + 1)
                )
                continue
            child = (*loc, key)
            pos.keys[child] = (kline + 1, kcol + 1)
            pos.values[child] = (vline + 1, vcol + 1)
            out[key] = _plain(node[key], child, pos, issues, depth + 1)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, item in enumerate(node):
            line, col = node.lc.item(i)
            pos.values[(*loc, i)] = (line + 1, col + 1)
            items.append(_plain(item, (*loc, i), pos, issues, depth + 1))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _not_yet(plain: dict[str, Any], positions: Positions) -> list[SpecIssue]:
    found = []
    for loc, message in NOT_YET.items():
        parent: Any = plain
        for part in loc[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and loc[-1] in parent:
            del parent[loc[-1]]
            found.append(_issue(loc, message, positions, key=True))
    return found


def _translate(err: Any, positions: Positions) -> SpecIssue:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    given = err.get("input")
    if kind == "extra_forbidden":
        name = str(loc[-1])
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else f"; allowed here: {', '.join(allowed)}"
            if allowed
            else ""
        )
        return _issue(loc, f"unknown field {name!r}{hint}", positions, key=True)
    if kind == "missing":
        return _issue(loc, f"required field {str(loc[-1])!r} is missing", positions)
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("int_type", "bool_type", "float_type") and isinstance(given, str):
        message += f", got the text {given!r}; remove the quotes"
    elif kind == "string_type" and not isinstance(given, (dict, list)):
        message += f", got {given!r}; quote it to use it as text"
    elif kind in ("literal_error", "enum") and not isinstance(given, (dict, list)):
        message += f", got {given!r}"
    elif kind in ("model_type", "dict_type"):
        message = f"expected a mapping of fields, got {type(given).__name__} {given!r}"[:200]
    return _issue(loc, message, positions)


def _allowed_keys(loc: Loc) -> list[str]:
    """The keys the model at ``loc`` accepts, for "did you mean"."""
    annotation: Any = Environment
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[-1] if args else Any
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            by_alias = {f.alias or n: f for n, f in annotation.model_fields.items()}
            info = by_alias.get(part)
            annotation = info.annotation if info is not None else Any
        else:
            args = typing.get_args(annotation)
            annotation = args[-1] if args else Any
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or n for n, f in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Optional and Annotated so the model or container type shows."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = options[0] if len(options) == 1 else annotation
            if len(options) != 1:
                return annotation
        else:
            return annotation
