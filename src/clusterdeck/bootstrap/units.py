"""systemd units for what an offline install puts on a node: containerd and the kubelet.

Online, the distribution's containerd package and pkgs.k8s.io's kubelet package bring their
own units. An offline bundle carries bare binaries, so clusterdeck writes the units those
packages would have installed: containerd as its upstream unit runs it, and the kubelet with
the drop-in kubeadm expects (``/var/lib/kubelet/kubeadm-flags.env``, the bootstrap and real
kubeconfigs, ``/var/lib/kubelet/config.yaml``). Files are serialized from ordered sections of
(key, value) pairs; a value with a newline is refused rather than written.
"""

from __future__ import annotations

Section = list[tuple[str, str]]
Unit = list[tuple[str, Section]]

BIN = "/usr/local/bin"
KUBELET_DROPIN = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"


def to_text(unit: Unit) -> str:
    lines: list[str] = []
    for name, section in unit:
        if lines:
            lines.append("")
        lines.append(f"[{name}]")
        for key, value in section:
            if "\n" in value or "\n" in key:
                raise ValueError(f"unit value for {key} spans lines")
            lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def containerd_service() -> str:
    return to_text(
        [
            (
                "Unit",
                [
                    ("Description", "containerd container runtime (clusterdeck offline install)"),
                    ("Documentation", "https://containerd.io"),
                    ("After", "network.target local-fs.target"),
                ],
            ),
            (
                "Service",
                [
                    ("ExecStartPre", "-/sbin/modprobe overlay"),
                    ("ExecStart", f"{BIN}/containerd"),
                    ("Type", "notify"),
                    ("Delegate", "yes"),
                    ("KillMode", "process"),
                    ("Restart", "always"),
                    ("RestartSec", "5"),
                    ("LimitNPROC", "infinity"),
                    ("LimitCORE", "infinity"),
                    ("TasksMax", "infinity"),
                    ("OOMScoreAdjust", "-999"),
                ],
            ),
            ("Install", [("WantedBy", "multi-user.target")]),
        ]
    )


def kubelet_service() -> str:
    return to_text(
        [
            (
                "Unit",
                [
                    ("Description", "kubelet: the Kubernetes node agent"),
                    ("Documentation", "https://kubernetes.io/docs/"),
                    ("Wants", "network-online.target"),
                    ("After", "network-online.target containerd.service"),
                ],
            ),
            (
                "Service",
                [
                    ("ExecStart", f"{BIN}/kubelet"),
                    ("Restart", "always"),
                    ("StartLimitInterval", "0"),
                    ("RestartSec", "2"),
                ],
            ),
            ("Install", [("WantedBy", "multi-user.target")]),
        ]
    )


def kubelet_kubeadm_dropin() -> str:
    """The drop-in through which kubeadm configures the kubelet (as the kubeadm package's)."""
    return to_text(
        [
            (
                "Service",
                [
                    (
                        "Environment",
                        '"KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/'
                        'bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"',
                    ),
                    ("Environment", '"KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"'),
                    ("EnvironmentFile", "-/var/lib/kubelet/kubeadm-flags.env"),
                    ("EnvironmentFile", "-/etc/default/kubelet"),
                    ("ExecStart", ""),
                    (
                        "ExecStart",
                        f"{BIN}/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS "
                        "$KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS",
                    ),
                ],
            )
        ]
    )
