"""Package the doubles as kubeadm, kubelet and kubectl .debs at the version a spec pins.

Runs in the tests. Installed with ``dpkg -i`` on a full lab host, the doubles sit where the
real programs do (``/usr/bin/kubeadm``, ``kubelet.service`` with kubeadm's drop-in) and dpkg
reports the pinned ``<version>-1.1``, so the ``kube-packages`` phase finds them installed, as
it would on a machine where they were installed before, and downloads nothing. The package
contents are small wrappers around the double's code, which is bind-mounted read-only at
``CODE`` from this folder.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODE = "/usr/lib/clusterdeck-doubles"
SHARED = "/var/lib/clusterdeck-doubles"
PROGRAMS = ("kubeadm", "kubelet", "kubectl")

KUBELET_UNIT = """\
[Unit]
Description=kubelet: The Kubernetes Node Agent (clusterdeck test double)
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""
KUBEADM_DROPIN = (
    "# As shipped by kubeadm: the flags kubeadm writes reach the kubelet through these files.\n"
    "[Service]\n"
    'Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/'
    'bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"\n'
    'Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"\n'
    "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\n"
    "EnvironmentFile=-/etc/default/kubelet\n"
    "ExecStart=\n"
    "ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS "
    "$KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n"
)


def _wrapper(program: str, version: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# clusterdeck test double of {program} (tests/doubles): records its arguments in\n"
        f"# {SHARED}/records.jsonl; it is not Kubernetes.\n"
        f"CLUSTERDECK_DOUBLE_VERSION='{version}' exec /usr/bin/python3 {CODE}/{program}.py "
        '"$@"\n'
    )


def build(version: str, package_version: str, out: Path) -> list[Path]:
    """``<program>_<package_version>_all.deb`` for each program, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    debs = []
    for program in PROGRAMS:
        root = out / f"{program}-root"
        (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
        (root / "DEBIAN" / "control").write_text(
            f"Package: {program}\nVersion: {package_version}\nArchitecture: all\n"
            "Maintainer: clusterdeck tests <tests@clusterdeck.invalid>\n"
            "Depends: python3, python3-yaml, openssl\nSection: admin\nPriority: optional\n"
            f"Description: clusterdeck test double of {program}\n"
            " Records its arguments and writes what the real program would. Not Kubernetes.\n"
        )
        binary = root / "usr" / "bin" / program
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text(_wrapper(program, version))
        binary.chmod(0o755)
        if program == "kubelet":
            unit = root / "lib" / "systemd" / "system" / "kubelet.service"
            unit.parent.mkdir(parents=True, exist_ok=True)
            unit.write_text(KUBELET_UNIT)
            dropin = root / "usr" / "lib" / "systemd" / "system" / "kubelet.service.d"
            dropin.mkdir(parents=True, exist_ok=True)
            (dropin / "10-kubeadm.conf").write_text(KUBEADM_DROPIN)
        deb = out / f"{program}_{package_version}_all.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
            check=True,
            capture_output=True,
        )
        debs.append(deb)
    return debs
