"""Double of kubectl: the commands clusterdeck's phases and pipeline use, against the API
server double over HTTPS with the kubeconfig's credentials (``--kubeconfig`` or KUBECONFIG).

Implemented: ``get nodes|node NAME|configmap NAME`` (table, ``-o json``, ``-o jsonpath``),
``get --raw PATH``, ``label node``, ``taint node`` (add, ``--overwrite``, remove with ``-``),
``apply [--server-side] -f FILE|-``, ``create configmap --dry-run=client -o yaml``,
``config view -o jsonpath`` and ``config set-cluster --server``. Anything else fails loudly,
so a phase that starts using another command shows up here first.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import common
import yaml
from common import Fail, out

CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
    "APIService",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "IPPool",
    "FelixConfiguration",
    "BGPConfiguration",
    "ClusterInformation",
    "IPAMBlock",
    "BlockAffinity",
}
RESOURCES = {
    "node": "nodes",
    "nodes": "nodes",
    "no": "nodes",
    "configmap": "configmaps",
    "configmaps": "configmaps",
    "cm": "configmaps",
    "secret": "secrets",
    "secrets": "secrets",
    "daemonset": "daemonsets",
    "daemonsets": "daemonsets",
    "ds": "daemonsets",
}
GROUPS = {"daemonsets": "/apis/apps/v1"}


# jsonpath (the subset kubectl's users here need) ---------------------------------------------
def _path(expr: str, data: Any) -> list[Any]:
    values = [data]
    for part in re.findall(r"\.([^.\[]+)|\[(\*|\d+)\]", expr):
        key, index = part
        nxt: list[Any] = []
        for value in values:
            if key:
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
            elif index == "*":
                nxt.extend(value if isinstance(value, list) else [])
            elif isinstance(value, list) and int(index) < len(value):
                nxt.append(value[int(index)])
        values = nxt
    return values


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def jsonpath(template: str, data: Any) -> str:
    tokens = re.findall(r"\{([^{}]*)\}|([^{}]+)", template)
    result: list[str] = []

    def render(items: list[tuple[str, str]], scope: Any) -> None:
        i = 0
        while i < len(items):
            expr, literal = items[i]
            if literal:
                result.append(literal)
            elif expr.startswith("range "):
                depth, j = 1, i + 1
                while j < len(items):
                    if items[j][0].startswith("range "):
                        depth += 1
                    elif items[j][0] == "end":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                for element in _path(expr[len("range ") :].strip(), scope):
                    render(items[i + 1 : j], element)
                i = j
            elif expr.startswith('"'):
                result.append(json.loads(expr))
            else:
                result.append(" ".join(_text(v) for v in _path(expr.strip(), scope)))
            i += 1

    render(tokens, data)
    return "".join(result)


# arguments -------------------------------------------------------------------------------
class Args:
    def __init__(self, argv: list[str]) -> None:
        self.words: list[str] = []
        self.flags: dict[str, str] = {}
        self.multi: dict[str, list[str]] = {}
        takes_value = {
            "-n",
            "--namespace",
            "-o",
            "--output",
            "--kubeconfig",
            "-f",
            "--filename",
            "--server",
            "--raw",
            "--from-literal",
            "--dry-run",
            "--field-manager",
        }
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg.startswith("-") and arg != "-":
                name, eq, value = arg.partition("=")
                if not eq and name in takes_value and i + 1 < len(argv):
                    value = argv[i + 1]
                    i += 1
                self.flags[name] = value
                self.multi.setdefault(name, []).append(value)
            else:
                self.words.append(arg)
            i += 1

    def get(self, *names: str, default: str = "") -> str:
        for name in names:
            if name in self.flags:
                return self.flags[name]
        return default

    def has(self, name: str) -> bool:
        return name in self.flags


def _kubeconfig_path(args: Args) -> str:
    path = (
        args.get("--kubeconfig")
        or os.environ.get("KUBECONFIG")
        or str(Path.home() / ".kube" / "config")
    )
    return path.split(":")[0]


def _api(args: Args) -> common.Api:
    return common.Api.from_kubeconfig(_kubeconfig_path(args))


def _call(
    api: common.Api,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
) -> Any:
    try:
        status, data = api.request(method, path, body, content_type)
    except OSError as exc:
        raise Fail(
            f"The connection to the server {api.host}:{api.port} was refused - did you "
            f"specify the right host or port? ({exc})"
        ) from exc
    if status >= 400:
        reason = data.get("reason", "") if isinstance(data, dict) else ""
        message = data.get("message", data) if isinstance(data, dict) else data
        raise Fail(f"Error from server ({reason}): {message}")
    return data


def _collection(resource: str, namespace: str) -> str:
    plural = RESOURCES.get(resource)
    if plural is None:
        raise Fail(f'error: the server doesn\'t have a resource type "{resource}"')
    base = GROUPS.get(plural, "/api/v1")
    if plural == "nodes":
        return f"{base}/nodes"
    return f"{base}/namespaces/{namespace}/{plural}"


# commands --------------------------------------------------------------------------------
def cmd_get(args: Args) -> None:
    if args.has("--raw"):
        out(_text(_call(_api(args), "GET", args.get("--raw"))))
        return
    resource, names = args.words[1], args.words[2:]
    ns = args.get("-n", "--namespace", default="default")
    coll = _collection(resource, ns)
    api = _api(args)
    data = _call(api, "GET", f"{coll}/{names[0]}") if names else _call(api, "GET", coll)
    output = args.get("-o", "--output")
    if output == "json":
        out(json.dumps(data, indent=4))
    elif output.startswith("jsonpath="):
        sys.stdout.write(jsonpath(output[len("jsonpath=") :], data))
    elif output == "yaml":
        out(yaml.safe_dump(data))
    elif output == "name":
        items = data.get("items", [data])
        for item in items:
            out(f"{RESOURCES[resource].rstrip('s')}/{item['metadata']['name']}")
    elif output:
        raise Fail(f"error: unable to match a printer suitable for the output format {output!r}")
    else:
        items = data.get("items", [data])
        if RESOURCES[resource] == "nodes":
            out(f"{'NAME':<24}{'STATUS':<10}{'ROLES':<16}VERSION")
            for item in items:
                out(
                    f"{item['metadata']['name']:<24}{_ready(item):<10}"
                    f"{','.join(_roles(item)) or '<none>':<16}"
                    f"{item.get('status', {}).get('nodeInfo', {}).get('kubeletVersion', '')}"
                )
        else:
            out("NAME")
            for item in items:
                out(item["metadata"]["name"])


def _ready(node: dict[str, Any]) -> str:
    for cond in node.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return {"True": "Ready", "False": "NotReady"}.get(cond.get("status"), "Unknown")
    return "NotReady"


def _roles(node: dict[str, Any]) -> list[str]:
    return sorted(
        k.split("/", 1)[1]
        for k in node["metadata"].get("labels", {})
        if k.startswith("node-role.kubernetes.io/")
    )


def cmd_label(args: Args) -> None:
    resource, name, *pairs = args.words[1:]
    coll = _collection(resource, args.get("-n", "--namespace", default="default"))
    api = _api(args)
    current = _call(api, "GET", f"{coll}/{name}")["metadata"].get("labels", {})
    patch: dict[str, Any] = {}
    for pair in pairs:
        if pair.endswith("-") and "=" not in pair:
            patch[pair[:-1]] = None
            continue
        key, _, value = pair.partition("=")
        if key in current and current[key] != value and not args.has("--overwrite"):
            raise Fail(
                f"error: '{key}' already has a value ({current[key]}), and --overwrite is false"
            )
        patch[key] = value
    _call(
        api,
        "PATCH",
        f"{coll}/{name}",
        {"metadata": {"labels": patch}},
        "application/merge-patch+json",
    )
    out(f"node/{name} labeled")


def _parse_taint(text: str) -> dict[str, str]:
    key_value, sep, effect = text.rpartition(":")
    if not sep:
        key_value, effect = text, ""
    key, _, value = key_value.partition("=")
    taint = {"key": key, "effect": effect}
    if value:
        taint["value"] = value
    return taint


def cmd_taint(args: Args) -> None:
    resource, name, *specs = args.words[1:]
    if RESOURCES.get(resource) != "nodes":
        raise Fail(f"error: taints apply to nodes, not {resource}")
    api = _api(args)
    node = _call(api, "GET", f"/api/v1/nodes/{name}")
    taints = list(node.get("spec", {}).get("taints") or [])
    for spec in specs:
        if spec.endswith("-"):
            gone = _parse_taint(spec[:-1])
            keep = [
                t
                for t in taints
                if not (
                    t["key"] == gone["key"]
                    and (not gone["effect"] or t["effect"] == gone["effect"])
                )
            ]
            if len(keep) == len(taints):
                raise Fail(f"error: taint {spec[:-1]!r} not found")
            taints = keep
            continue
        new = _parse_taint(spec)
        same = [t for t in taints if t["key"] == new["key"] and t["effect"] == new["effect"]]
        if same and not args.has("--overwrite"):
            raise Fail(
                f"error: node {name} already has {new['key']} taint(s) with same "
                "effect(s) and --overwrite is false"
            )
        taints = [t for t in taints if t not in same] + [new]
    _call(
        api,
        "PATCH",
        f"/api/v1/nodes/{name}",
        {"spec": {"taints": taints}},
        "application/merge-patch+json",
    )
    out(f"node/{name} {'untainted' if all(s.endswith('-') for s in specs) else 'tainted'}")


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


def cmd_apply(args: Args) -> None:
    source = args.get("-f", "--filename")
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    api = _api(args)
    default_ns = args.get("-n", "--namespace", default="default")
    server_side = args.has("--server-side")
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        kind, version, meta = doc["kind"], doc["apiVersion"], doc.get("metadata", {})
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        if kind in CLUSTER_SCOPED:
            path = f"{base}/{_plural(kind)}/{meta['name']}"
        else:
            meta.setdefault("namespace", default_ns)
            path = f"{base}/namespaces/{meta['namespace']}/{_plural(kind)}/{meta['name']}"
        _call(api, "PATCH", path, doc, "application/apply-patch+yaml")
        verb = "serverside-applied" if server_side else "configured"
        out(f"{kind.lower()}/{meta['name']} {verb}")


def cmd_create(args: Args) -> None:
    if (
        args.words[1:2] != ["configmap"]
        or args.get("--dry-run") != "client"
        or args.get("-o", "--output") != "yaml"
    ):
        raise Fail("the kubectl double only implements create configmap --dry-run=client -o yaml")
    data = dict(item.split("=", 1) for item in args.multi.get("--from-literal", []))
    out(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "data": data,
                "metadata": {
                    "name": args.words[2],
                    "namespace": args.get("-n", "--namespace", default="default"),
                },
            },
            sort_keys=False,
        )
    )


def cmd_config(args: Args) -> None:
    path = _kubeconfig_path(args)
    data = common.load_kubeconfig(path)
    sub = args.words[1:2]
    if sub == ["view"]:
        output = args.get("-o", "--output")
        if output.startswith("jsonpath="):
            sys.stdout.write(jsonpath(output[len("jsonpath=") :], data))
            return
        out(yaml.safe_dump(data, sort_keys=False))
        return
    if sub == ["set-cluster"] and args.has("--server"):
        name = args.words[2]
        for item in data["clusters"]:
            if item["name"] == name:
                item["cluster"]["server"] = args.get("--server")
                break
        else:
            data["clusters"].append({"name": name, "cluster": {"server": args.get("--server")}})
        common.write_file(Path(path), yaml.safe_dump(data, sort_keys=False), 0o600)
        out(f'Cluster "{name}" set.')
        return
    raise Fail(f"the kubectl double does not implement: config {' '.join(args.words[1:])}")


COMMANDS = {
    "get": cmd_get,
    "label": cmd_label,
    "taint": cmd_taint,
    "apply": cmd_apply,
    "create": cmd_create,
    "config": cmd_config,
}


def run(argv: list[str], rec: common.Recorder) -> int:
    args = Args(argv)
    if not args.words or args.words[0] not in COMMANDS:
        raise Fail(f"the kubectl double does not implement: kubectl {' '.join(argv)}")
    COMMANDS[args.words[0]](args)
    return 0


if __name__ == "__main__":
    common.main("kubectl", run)
