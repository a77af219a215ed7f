"""What the file's hooks need before a run: shellcheck's word at validate, and their
secretEnv variables at create and apply.

Each hook is checked by the real shellcheck as bash (errors fail validate; warnings are
shown); a machine without shellcheck gets a warning, not a silent pass. A hook's secretEnv
names variables of clusterdeck's own environment: a run that lacks one is refused before
it changes anything. Light on purpose: nothing here reaches a node.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

from clusterdeck.errors import UsageError
from clusterdeck.spec.models import Environment

TIMEOUT = 60


@dataclass(frozen=True)
class ShellcheckFinding:
    hook: int  # index in spec.hooks
    level: str  # error, warning
    line: int
    code: str
    message: str

    def text(self) -> str:
        return f"line {self.line} of the script: SC{self.code}: {self.message}"


def shellcheck(env: Environment) -> list[ShellcheckFinding] | None:
    """shellcheck's errors and warnings on every hook, or None without shellcheck."""
    binary = shutil.which("shellcheck")
    if binary is None:
        return None
    found: list[ShellcheckFinding] = []
    for i, hook in enumerate(env.spec.hooks):
        res = subprocess.run(
            [binary, "--shell=bash", "--severity=warning", "--format=json", "-"],
            input=hook.inline or "",
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        try:
            items = json.loads(res.stdout or "[]")
        except json.JSONDecodeError:
            items = [{"level": "error", "line": 0, "code": 0, "message": res.stderr.strip()}]
        found += [
            ShellcheckFinding(i, str(x["level"]), int(x["line"]), str(x["code"]), str(x["message"]))
            for x in items
        ]
    return found


def require_hook_secrets(env: Environment) -> None:
    """Refuse a run before it changes anything when a hook's secretEnv variable is not in
    clusterdeck's environment."""
    missing = [
        f"spec.hooks[{i}].secretEnv: {name} (hook {hook.name})"
        for i, hook in enumerate(env.spec.hooks)
        for name in hook.secret_env
        if name not in os.environ
    ]
    if missing:
        raise UsageError(
            "set these variables in clusterdeck's environment (hooks get them as secrets): "
            + "; ".join(missing)
        )
