"""Double of kube-apiserver: HTTPS on :6443 with the cluster's certificates, objects in the
shared cluster store. Started by the kubelet double from /etc/kubernetes/manifests/
kube-apiserver.yaml, like the real static pod; several control planes serve the same store.

What it does, in the small: REST for any ``/api/v1`` or ``/apis/G/V`` path (get, list, create,
replace, merge patch, server-side apply, delete); authentication by client certificate (CA
checked), bootstrap token or node credential, with a coarse version of kubeadm's RBAC; the
``cluster-info`` ConfigMap signed for each bootstrap token; a node whose kubelet stopped
reporting for 40 s turns Ready=Unknown. Two endpoints stand for what kubeadm does outside the
API: ``/clusterdeck-double/bootstrap`` (the kubelet's TLS bootstrap) and
``/clusterdeck-double/etcd/members`` (etcd member add, refused while a member has not
started, as etcd refuses it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import common
import yaml

HEARTBEAT_GRACE = 40.0
OPEN_PATHS = {"/readyz", "/livez", "/healthz", "/version"}
CLUSTER_INFO = "api/v1/namespaces/kube-public/configmaps/cluster-info"


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _split(path: str) -> tuple[str, str, str | None]:
    """(collection key, name or "", subresource) of a REST path."""
    parts = [p for p in path.strip("/").split("/") if p]
    if parts[:1] == ["api"]:
        head, rest = parts[:2], parts[2:]
    else:
        head, rest = parts[:3], parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        coll, rest = [*rest[:3]], rest[3:]
    else:
        coll, rest = rest[:1], rest[1:]
    name = rest[0] if rest else ""
    sub = rest[1] if len(rest) > 1 else None
    return "/".join(head + coll), name, sub


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-double"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # helpers -------------------------------------------------------------------------------
    def _send(self, status: int, body: Any) -> None:
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
            },
        )

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if "yaml" in (self.headers.get("Content-Type") or ""):
            return yaml.safe_load(raw)
        return json.loads(raw) if raw else None

    def _user(self) -> tuple[str, set[str]]:
        cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if cert:
            fields = [f for rdn in cert.get("subject", ()) for f in rdn]
            cn = next((v for k, v in fields if k == "commonName"), "")
            return cn, {v for k, v in fields if k == "organizationName"}
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
            with common.store() as data:
                node = data["credentials"].get(token)
                if node:
                    return f"system:node:{node}", {"system:nodes"}
                token_id = _valid_bootstrap(data, token)
            if token_id:
                return f"system:bootstrap:{token_id}", {"system:bootstrappers"}
            return "", {"invalid"}
        return "system:anonymous", set()

    def _allowed(self, method: str, path: str, user: str, groups: set[str]) -> bool:
        if groups & common.ADMIN_GROUPS:
            return True
        if method == "GET" and (path in OPEN_PATHS or path.strip("/") == CLUSTER_INFO):
            return True
        if "system:bootstrappers" in groups:
            return (
                method == "GET"
                and path.strip("/")
                in {
                    "api/v1/namespaces/kube-system/secrets/kubeadm-certs",
                    "api/v1/namespaces/kube-system/configmaps/kubeadm-config",
                }
            ) or (method == "POST" and path == "/clusterdeck-double/bootstrap")
        if "system:nodes" in groups:
            node = user.removeprefix("system:node:")
            if method == "GET":
                return True
            return path.strip("/") in {
                "api/v1/nodes",
                f"api/v1/nodes/{node}",
                f"api/v1/nodes/{node}/status",
            }
        return False

    # verbs ---------------------------------------------------------------------------------
    def _handle(self, method: str) -> None:
        path = urlsplit(self.path).path
        user, groups = self._user()
        if "invalid" in groups:
            self._status(401, "Unauthorized", "Unauthorized")
            return
        if not self._allowed(method, path, user, groups):
            self._status(403, "Forbidden", f'User "{user}" cannot {method.lower()} {path}')
            return
        if path in OPEN_PATHS:
            self._send(200, {"gitVersion": common.VERSION} if path == "/version" else "ok")
            return
        if path.startswith("/clusterdeck-double/"):
            self._double(method, path, user)
            return
        coll, name, sub = _split(path)
        body = self._body() if method in {"POST", "PUT", "PATCH"} else None
        with common.store(write=method != "GET") as data:
            objects = data["objects"]
            key = f"{coll}/{name}"
            if method == "GET" and not name:
                items = [
                    _view(o) for k, o in sorted(objects.items()) if k.rsplit("/", 1)[0] == coll
                ]
                self._send(200, {"kind": "List", "apiVersion": "v1", "items": items})
                return
            if method == "GET":
                if key not in objects:
                    self._not_found(coll, name)
                    return
                obj = _view(objects[key])
                if key == CLUSTER_INFO:
                    obj = _signed_cluster_info(data, obj)
                self._send(200, obj)
                return
            if method == "POST":
                name = (body.get("metadata") or {}).get("name", "")
                key = f"{coll}/{name}"
                if key in objects:
                    self._status(
                        409, "AlreadyExists", f'{coll.rsplit("/", 1)[-1]} "{name}" already exists'
                    )
                    return
                objects[key] = _stamp(body)
                self._send(201, objects[key])
                return
            if method == "DELETE":
                if objects.pop(key, None) is None:
                    self._not_found(coll, name)
                    return
                self._send(200, {"kind": "Status", "status": "Success"})
                return
            if method == "PUT":
                objects[key] = _stamp(body)
                self._send(200, objects[key])
                return
            # PATCH: merge patch (a status subresource patches .status) or server-side apply
            kind = self.headers.get("Content-Type", "")
            if key not in objects and "apply-patch" not in kind:
                self._not_found(coll, name)
                return
            patch = {"status": body.get("status")} if sub == "status" else body
            objects[key] = _stamp(_merge(objects.get(key, {}), patch))
            self._send(200, objects[key])

    def _not_found(self, coll: str, name: str) -> None:
        resource = coll.rsplit("/", 1)[-1]
        self._status(404, "NotFound", f'{resource} "{name}" not found')

    def _double(self, method: str, path: str, user: str) -> None:
        body = self._body() if method == "POST" else None
        with common.store(write=method == "POST") as data:
            if path == "/clusterdeck-double/bootstrap" and method == "POST":
                credential = secrets.token_hex(16)
                data["credentials"][credential] = body["node"]
                self._send(201, {"token": credential, "issuedTo": body["node"], "by": user})
                return
            if path == "/clusterdeck-double/etcd/members":
                members = data["members"]
                if method == "GET":
                    self._send(200, members)
                    return
                name = body["name"]
                if name in members:
                    self._send(200, members[name])
                    return
                unstarted = [n for n, m in members.items() if not m.get("started")]
                if unstarted:
                    self._status(
                        409,
                        "Conflict",
                        "etcdserver: re-configuration failed due to "
                        f"not enough started members ({', '.join(unstarted)} not "
                        "started)",
                    )
                    return
                members[name] = {"peer": body["peer"], "started": False, "added": time.time()}
                self._send(201, members[name])
                return
        self._status(404, "NotFound", path)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


def _stamp(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    meta.setdefault("uid", secrets.token_hex(8))
    return obj


def _view(obj: dict[str, Any]) -> dict[str, Any]:
    """A node whose kubelet stopped reporting is Ready=Unknown (the node lifecycle controller)."""
    if obj.get("kind") != "Node":
        return obj
    obj = json.loads(json.dumps(obj))
    beat = obj.get("status", {}).get("heartbeat", 0)
    for cond in obj.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready" and time.time() - beat > HEARTBEAT_GRACE:
            cond.update(
                status="Unknown",
                reason="NodeStatusUnknown",
                message="Kubelet stopped posting node status.",
            )
    return obj


def _valid_bootstrap(data: dict[str, Any], token: str) -> str | None:
    token_id, _, secret = token.partition(".")
    obj = data["objects"].get(f"api/v1/namespaces/kube-system/secrets/bootstrap-token-{token_id}")
    if not obj:
        return None
    fields = {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
    if not hmac.compare_digest(fields.get("token-secret", ""), secret):
        return None
    expires = fields.get("expiration")
    if expires and time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ") < time.gmtime():
        return None
    return token_id


def _signed_cluster_info(data: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """The bootstrap signer's part: one signature of the kubeconfig per valid token."""
    obj = json.loads(json.dumps(obj))
    config = obj["data"]["kubeconfig"].encode()
    prefix = "api/v1/namespaces/kube-system/secrets/bootstrap-token-"
    for key, secret in data["objects"].items():
        if not key.startswith(prefix):
            continue
        fields = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        token = f"{fields.get('token-id')}.{fields.get('token-secret')}"
        if _valid_bootstrap(data, token):
            sig = hmac.new(fields["token-secret"].encode(), config, hashlib.sha256).hexdigest()
            obj["data"][f"jws-kubeconfig-{fields['token-id']}"] = sig
    return obj


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(address, Handler)
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS per connection in its own thread: a health check that connects and closes
        # (HAProxy's tcp-check) never holds up other clients
        try:
            request.settimeout(30)
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()


def main(argv: list[str]) -> None:
    args = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args["tls-cert-file"], args["tls-private-key-file"])
    ctx.load_verify_locations(args["client-ca-file"])
    ctx.verify_mode = ssl.CERT_OPTIONAL
    server = Server(
        (args.get("bind-address", "0.0.0.0"), int(args.get("secure-port", "6443"))), ctx
    )
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
