"""Kubernetes naming rules (DNS-1123 names, label keys and values, taints), as pure checks.

They return an error message or ``None`` so the spec models and the semantic rules can attach
the message to the right field path. No I/O and no pydantic here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def dns1123_label_problem(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if len(name) > 63:
        return f"{name!r} is {len(name)} characters; a DNS-1123 label has at most 63"
    if not _DNS1123_LABEL.match(name):
        return (
            f"{name!r} is not a DNS-1123 label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return f"label key {key!r} has an empty prefix before '/'"
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return (
            f"label key prefix {prefix!r} must be a DNS subdomain "
            "(lowercase, dot-separated, at most 253 characters)"
        )
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            f"label key {key!r}: the name part must be 1-63 characters of letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63 or not _QUALIFIED_NAME.match(value):
        return (
            f"label value {value!r} must be empty or 1-63 characters of letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


@dataclass(frozen=True)
class Taint:
    """A parsed ``key[=value]:Effect`` taint."""

    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        middle = f"={self.value}" if self.value else ""
        return f"{self.key}{middle}:{self.effect}"


def parse_taint(text: str) -> Taint:
    """Parse ``key[=value]:Effect``; raise ValueError with a teaching message."""
    head, sep, effect = text.rpartition(":")
    if not sep:
        raise ValueError(
            f"taint {text!r} needs an effect: write key[=value]:NoSchedule "
            f"(effects: {', '.join(TAINT_EFFECTS)})"
        )
    if effect not in TAINT_EFFECTS:
        raise ValueError(
            f"taint {text!r} has effect {effect!r}; use one of {', '.join(TAINT_EFFECTS)}"
        )
    key, _, value = head.partition("=")
    problem = label_key_problem(key)
    if problem:
        raise ValueError(f"taint {text!r}: {problem}")
    problem = label_value_problem(value)
    if problem:
        raise ValueError(f"taint {text!r}: {problem}")
    return Taint(key=key, value=value, effect=effect)
