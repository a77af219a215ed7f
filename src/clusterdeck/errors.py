"""One error root for the whole library, split by whether a retry can help.

Every layer raises these (translating SDK and SSH errors at its own edge, chained with
``from``), so the CLI can map each family to one clear line and one exit code without knowing
where it came from. This module must not import anything from the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ClusterdeckError(Exception):
    """Root of every error clusterdeck raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class SpecIssue:
    """One mistake in the user's file: where it is and what is wrong."""

    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def location(self) -> str:
        if self.line is None:
            return self.path or "(file)"
        return f"{self.path or '(file)'} (line {self.line}, column {self.column})"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


class SpecError(ClusterdeckError):
    """The user's file is not a valid Environment. Bad input: exit code 2."""

    exit_code = 2

    def __init__(self, issues: list[SpecIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        lines = [f"{i.location()}: {i.message}" for i in issues]
        where = f"{source}: " if source else ""
        super().__init__(where + ("; ".join(lines) if lines else "invalid environment"))


class UsageError(ClusterdeckError):
    """The command was asked for something that cannot be (unknown environment, bad flag)."""

    exit_code = 2


class NotFoundError(UsageError):
    """A named environment, node or resource does not exist."""


class TransientError(ClusterdeckError):
    """A failure that may pass on its own: throttling, a dropped connection, a 5xx."""


class PermanentError(ClusterdeckError):
    """A failure a retry cannot fix: a refused call, a quota, bad credentials."""


@dataclass
class LockedError(ClusterdeckError):
    """Another clusterdeck process holds this environment's lock."""

    environment: str
    holder: str = field(default="another process")

    def __post_init__(self) -> None:
        super().__init__(
            f"environment {self.environment!r} is locked by {self.holder}; "
            "wait for it to finish (status still works meanwhile)"
        )


class ConsentRequired(ClusterdeckError):
    """A change needs the user's consent and none could be asked for (non-interactive): the
    command line lacks ``--yes``, which is bad input (exit 2)."""

    exit_code = 2
