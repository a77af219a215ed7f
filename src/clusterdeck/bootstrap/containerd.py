"""containerd's config.toml from a typed model: systemd cgroups, and the NVIDIA runtime when asked.

kubelet (cgroupDriver: systemd, see :mod:`clusterdeck.bootstrap.kubeadm`) and containerd must
agree on the cgroup driver, or pods restart forever; this module is where containerd's side
is set. The file is produced by a TOML serializer (tomli-w) from plain data built here, never
by pasting strings. Config schema version 2 is what containerd 1.7 (Ubuntu 22.04 and 24.04)
reads.
"""

from __future__ import annotations

from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict

CRI = "io.containerd.grpc.v1.cri"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"  # what kubeadm v1.35-v1.37 name
NVIDIA_RUNTIME_BINARY = "/usr/bin/nvidia-container-runtime"


class ContainerdConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    systemd_cgroup: bool = True
    sandbox_image: str = PAUSE_IMAGE
    nvidia_runtime: bool = False
    enable_cdi: bool = False
    # clamp containers' OOM score adjustments to containerd's own: needed where no process may
    # lower one (no CAP_SYS_RESOURCE: a machine that is itself a container), else runc fails
    # every pod with "can't get final child's PID from pipe"
    restrict_oom_score_adj: bool = False
    cni_bin_dir: str = "/opt/cni/bin"
    cni_conf_dir: str = "/etc/cni/net.d"

    def as_data(self) -> dict[str, Any]:
        runtimes: dict[str, Any] = {
            "runc": {
                "runtime_type": "io.containerd.runc.v2",
                "options": {"SystemdCgroup": self.systemd_cgroup},
            },
        }
        if self.nvidia_runtime:
            runtimes["nvidia"] = {
                "runtime_type": "io.containerd.runc.v2",
                "options": {
                    "BinaryName": NVIDIA_RUNTIME_BINARY,
                    "SystemdCgroup": self.systemd_cgroup,
                },
            }
        cri: dict[str, Any] = {
            "sandbox_image": self.sandbox_image,
            "enable_cdi": self.enable_cdi,
            "restrict_oom_score_adj": self.restrict_oom_score_adj,
            "containerd": {"default_runtime_name": "runc", "runtimes": runtimes},
            "cni": {"bin_dir": self.cni_bin_dir, "conf_dir": self.cni_conf_dir},
        }
        if self.enable_cdi:
            cri["cdi_spec_dirs"] = ["/etc/cdi", "/var/run/cdi"]
        return {"version": 2, "plugins": {CRI: cri}}

    def to_toml(self) -> str:
        return tomli_w.dumps(self.as_data())
