"""Phase scripts: one self-contained bash script per phase, rendered from jinja2 templates.

Every value that reaches a script goes through the ``q`` filter (``shlex.quote``) or the
``comment`` filter (one line, for comments and log text), and undefined variables are an
error (StrictUndefined), so a script never carries an unquoted or missing value. The
templates live in ``templates/``; each includes a header with ``set -euo pipefail`` and
small check-before-change helpers, so a script needs nothing else on the node.
"""

from __future__ import annotations

import re
from typing import Any

import jinja2

from clusterdeck.bootstrap import gpu, overlay_paths
from clusterdeck.bootstrap.kubeadm import CRI_SOCKET
from clusterdeck.bootstrap.nodeconfig import (
    INIT_FILE,
    JOIN_FILE,
    LOCAL_API,
    OFFLINE_ON_NODE,
    NodeConfig,
)
from clusterdeck.model.phases import PHASE_PURPOSE, Phase

_SAFE_COMMENT = re.compile(r"[\x00-\x1f\x7f]")


def _quote(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"refusing to shell-quote {value!r}: pass a string")
    text = str(value)
    # always quoted (shlex.quote leaves "safe" words bare, which shellcheck then misreads,
    # e.g. a-b-c as arithmetic); same escaping rule as shlex.quote
    return "'" + text.replace("'", "'\"'\"'") + "'"


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(value: Any) -> str:
    """A variable name for ``export NAME=...`` (names are checked in the spec; again here)."""
    text = str(value)
    if not _ENV_NAME.fullmatch(text):
        raise ValueError(f"refusing {text!r} as an environment variable name")
    return text


def _comment(value: Any) -> str:
    """Text for a comment or a log message: one line, no control characters."""
    return _SAFE_COMMENT.sub(" ", str(value))


def environment() -> jinja2.Environment:
    # autoescape is for HTML; these are bash scripts, where the q filter does the quoting
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("clusterdeck.bootstrap", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701
        keep_trailing_newline=True,
        trim_blocks=False,
        # bash uses "{#" (${#array[@]}), so jinja comments get a marker bash never has
        comment_start_string="{#-jinja",
        comment_end_string="jinja-#}",
    )
    env.filters["q"] = _quote
    env.filters["comment"] = _comment
    env.filters["envname"] = _env_name
    return env


_ENV: jinja2.Environment | None = None

OVERLAY_PATHS = {
    "private_key": overlay_paths.PRIVATE_KEY,
    "peers": overlay_paths.PEERS_FILE,
    "env": overlay_paths.ENV_FILE,
    "up": overlay_paths.UP_SCRIPT,
    "unit": overlay_paths.UNIT_FILE,
    "unit_name": overlay_paths.UNIT,
    "kubelet_dropin": overlay_paths.KUBELET_DROPIN,
}


# Primary-key fingerprints of the package signing keys fetched over HTTPS; a key that does not
# match is refused, so a compromised or redirected download cannot plant its own key.
SIGNING_KEYS = {
    # pkgs.k8s.io (OBS isv:kubernetes), the same key for every minor's repository
    "kubernetes": "DE15B14486CD377B9E876E1A234654DA9A296436",
    # nvidia.github.io/libnvidia-container (NVIDIA CORPORATION (Open Source Projects))
    "nvidia": "C95B321B61E88C1809C4F759DDCAE044F796ECB0",
}


def render_file(template: str, **values: Any) -> str:
    """A script clusterdeck installs on the node (not a phase), from ``templates/``."""
    global _ENV
    if _ENV is None:
        _ENV = environment()
    return _ENV.get_template(template).render(**values)


def render_phase(
    cfg: NodeConfig, phase: str, *, upload_certs: bool = False, upgrade_mode: str = "node"
) -> str:
    """The bash script for one phase of one node (``upgrade_mode``: ``apply`` on the first
    control plane's kubeadm-upgrade, ``node`` elsewhere)."""
    global _ENV
    if _ENV is None:
        _ENV = environment()
    hook = cfg.hook(phase)
    if hook is not None:
        template = _ENV.get_template("hook.sh.j2")
        purpose = f"the file's hook {hook.name} ({hook.at})"
    else:
        template = _ENV.get_template(f"{phase}.sh.j2")
        purpose = PHASE_PURPOSE[Phase(phase)]
    return template.render(
        cfg=cfg,
        phase=phase,
        hook=hook,
        purpose=purpose,
        local_api=LOCAL_API,
        join_file=JOIN_FILE,
        upload_certs=upload_certs,
        upgrade_mode=upgrade_mode,
        keys=SIGNING_KEYS,
        offline_dir=OFFLINE_ON_NODE,
        init_file=INIT_FILE,
        cri_socket=CRI_SOCKET,
        paths=OVERLAY_PATHS,
        gpu={
            "label": gpu.GPU_LABEL,
            "plugin": gpu.DEVICE_PLUGIN,
            "runtime_class": gpu.RUNTIME_CLASS,
        },
    )
