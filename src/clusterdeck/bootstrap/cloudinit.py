"""cloud-init user-data for AWS nodes, from a typed model.

Kept small on purpose: the node's hostname (so kubelet's name matches the topology), the
base packages the phases need, and the node config at ``/etc/clusterdeck/node.json`` for a
future node agent. Everything else happens in the phases, where it is idempotent and logged.
No secret ever goes into user-data (EC2 shows it to anyone who can describe the instance).
"""

from __future__ import annotations

import io
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from ruamel.yaml import YAML

NODE_CONFIG_PATH = "/etc/clusterdeck/node.json"
BASE_PACKAGES = ["apt-transport-https", "ca-certificates", "curl", "gpg"]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WriteFile(Model):
    path: str
    content: str
    permissions: str = Field(default="0644", pattern=r"^0[0-7]{3}$")
    owner: str = "root:root"


class UserData(Model):
    hostname: str
    preserve_hostname: bool = False
    manage_etc_hosts: Literal["localhost"] | bool = "localhost"
    package_update: bool = True
    packages: list[str] = Field(default_factory=lambda: list(BASE_PACKAGES))
    write_files: list[WriteFile] = Field(default_factory=list)

    def to_text(self) -> str:
        yaml = YAML()
        yaml.default_flow_style = False
        out = io.StringIO()
        out.write("#cloud-config\n")
        yaml.dump(self.model_dump(mode="json"), out)
        return out.getvalue()


def user_data(node_name: str, node_config_json: str) -> UserData:
    return UserData(
        hostname=node_name, write_files=[WriteFile(path=NODE_CONFIG_PATH, content=node_config_json)]
    )
