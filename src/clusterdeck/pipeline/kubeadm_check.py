"""The real kubeadm's word on a file's merged configuration, before anything is applied.

A file with ``spec.kubernetes.config`` gets its documents (the first control plane's init
config, a control plane's and a worker's join config, each with the user's settings laid
over it) checked by ``kubeadm config validate`` on this machine, when a kubeadm is at hand:
the file's offline bundle's own (the version the nodes run), else one on the PATH. Files
without patches never pay for this: nothing here runs, nothing heavy is imported for them.
Without a local kubeadm the nodes check the same files with their own kubeadm before
``kubeadm init`` or ``join`` changes anything (the phase scripts), and ``validate`` says so.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clusterdeck.spec.models import Environment

# well-formed join material for the check only: kubeadm wants a token of the right shape
_CHECK_TOKEN = "abcdef.0123456789abcdef"  # noqa: S105 (a shape, not a secret)
_CHECK_HASH = "sha256:" + "0" * 64
_CHECK_KEY = "1" * 64
TIMEOUT = 60
# the bundle whose kubeadm runs here: the one of this machine's architecture
_HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "amd64")
# kubeadm names the document it could not read in Go syntax; the kind is what users know
_UNMARSHAL = re.compile(
    r'error unmarshaling configuration schema\.GroupVersionKind\{[^}]*Kind:"(\w+)"\}: '
)


@dataclass(frozen=True)
class KubeadmVerdict:
    kubeadm: str  # which binary answered ("" when none was found)
    problems: list[str]  # one line per refused document: "<document>: <kubeadm's error>"

    @property
    def checked(self) -> bool:
        return bool(self.kubeadm)


def needs_check(env: Environment) -> bool:
    return env.spec.kubernetes.config is not None


@contextmanager
def located(env: Environment) -> Iterator[Path | None]:
    """The kubeadm to check with: the offline bundle's (from an archive, copied out for the
    check), else the PATH's; None when there is neither."""
    if env.spec.offline is not None:
        from clusterdeck.bundle.manifest import BundleError, load

        try:
            offline = env.spec.offline
            per_arch = {str(a): p for a, p in offline.bundles.items()}
            path = offline.bundle or per_arch.get(_HOST_ARCH) or per_arch.get("amd64")
            bundle = load(path) if path else None
        except BundleError:
            bundle = None
        if bundle is not None and not bundle.is_archive:
            candidate = bundle.path / "bin" / "kubeadm"
            if os.access(candidate, os.X_OK):
                yield candidate
                return
        elif bundle is not None:
            with tempfile.TemporaryDirectory(prefix="clusterdeck-kubeadm-") as tmp:
                target = Path(tmp) / "kubeadm"
                try:
                    with bundle.open("bin/kubeadm") as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
                    target.chmod(0o700)
                except (BundleError, OSError):
                    pass
                else:
                    yield target
                    return
    found = shutil.which("kubeadm")
    yield Path(found) if found else None


def documents(env: Environment) -> dict[str, str]:
    """The merged kubeadm files of this environment's distinct node kinds, as they reach a
    node (join files with join material of the right shape, not anyone's secrets)."""
    from clusterdeck import planner
    from clusterdeck.bootstrap import kubeadm
    from clusterdeck.bootstrap.kubeadm_build import JoinMaterial, init_documents, join_document
    from clusterdeck.bootstrap.render import ClusterFacts, node_config
    from clusterdeck.model.observed import Observed
    from clusterdeck.model.topology import Role

    topology = planner.expand(env)
    plan = planner.build_plan(env, topology, Observed.nothing())
    facts = ClusterFacts()
    out: dict[str, str] = {}
    for node in topology.nodes:
        cfg = node_config(env, topology, plan, node, facts)
        if node.first_control_plane:
            out["InitConfiguration (first control plane)"] = kubeadm.to_yaml(
                *init_documents(cfg, [])
            )
            continue
        cp = node.role is Role.CONTROL_PLANE
        label = f"JoinConfiguration ({'control plane' if cp else 'worker'})"
        if label in out:
            continue
        material = JoinMaterial(_CHECK_TOKEN, _CHECK_HASH, _CHECK_KEY if cp else None)
        out[label] = kubeadm.to_yaml(join_document(cfg, material))
    return out


def check(env: Environment) -> KubeadmVerdict:
    """Run ``kubeadm config validate`` on every merged document (nothing when the file has
    no patches)."""
    if not needs_check(env):
        return KubeadmVerdict("", [])
    with located(env) as binary:
        if binary is None:
            return KubeadmVerdict("", [])
        problems: list[str] = []
        with tempfile.TemporaryDirectory(prefix="clusterdeck-validate-") as tmp:
            for label, text in documents(env).items():
                path = Path(tmp) / "kubeadm.yaml"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
                problem = _validate(binary, path)
                if problem:
                    problems.append(f"{label}: {problem}")
        name = str(binary) if env.spec.offline is None else f"the bundle's kubeadm ({binary.name})"
        return KubeadmVerdict(name, problems)


def _validate(binary: Path, path: Path) -> str | None:
    try:
        res = subprocess.run(
            [str(binary), "config", "validate", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"kubeadm could not run ({exc})"
    if res.returncode == 0:
        return None
    lines = [
        _UNMARSHAL.sub(r"\1: ", line.removeprefix("error: ").strip())
        for line in res.stderr.splitlines()
        if line.strip() and "stack trace" not in line
    ]
    return "; ".join(lines) or f"kubeadm config validate exited {res.returncode}"
