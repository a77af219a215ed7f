"""Double of kubeadm: ``init``, ``join``, ``token create`` and ``init phase upload-certs``.

It reads the same v1beta4 files and flags as kubeadm, runs the preflight checks that matter
here (files already there, container runtime running, IP forwarding on), writes what kubeadm
writes (real certificates under /etc/kubernetes/pki, admin.conf, super-admin.conf,
kubelet.conf, static pod manifests, the kubelet's flags) and prints what kubeadm prints. It
goes through the API server double for everything kubeadm does through the API, at the
control-plane endpoint the config names, so a load balancer in front of the API is used as it
would be. A join checks the token (signed cluster-info), the CA pin and, for control planes,
decrypts the uploaded certificates with the certificate key; anything wrong fails like
kubeadm does. Every run is recorded with its argv, times and (hashes of) what it was given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import string
import time
from pathlib import Path
from typing import Any

import common
import yaml
from common import KUBE, KUBELET_DIR, MANIFESTS, PKI, Fail, out

API_V = "kubeadm.k8s.io/v1beta4"
CP_LABELS = {
    "node-role.kubernetes.io/control-plane": "",
    "node.kubernetes.io/exclude-from-external-load-balancers": "",
}
CP_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
SHARED_CERTS = (
    "ca.crt",
    "ca.key",
    "sa.key",
    "sa.pub",
    "front-proxy-ca.crt",
    "front-proxy-ca.key",
    "etcd/ca.crt",
    "etcd/ca.key",
)
CERTS_TTL = 2 * 3600
TOKEN_CHARS = string.ascii_lowercase + string.digits


# config --------------------------------------------------------------------------------------
def load_config(path: str, rec: common.Recorder) -> dict[str, dict[str, Any]]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise Fail(f"unable to read config from {path!r}: {exc}") from exc
    rec.note(config_sha256=hashlib.sha256(raw).hexdigest())
    docs: dict[str, dict[str, Any]] = {}
    for doc in yaml.safe_load_all(raw):
        if not doc:
            continue
        kind, version = doc.get("kind"), doc.get("apiVersion")
        expected = "kubelet.config.k8s.io/v1beta1" if kind == "KubeletConfiguration" else API_V
        if version != expected:
            raise Fail(f'no kind "{kind}" is registered for version "{version}" in scheme')
        docs[kind] = doc
    return docs


def _flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _extra_args(reg: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["value"] for a in reg.get("kubeletExtraArgs") or []}


def preflight(*, join: bool) -> None:
    out("[preflight] Running pre-flight checks")
    errors = []
    files = (
        [KUBE / "kubelet.conf"]
        if join
        else [MANIFESTS / "kube-apiserver.yaml", MANIFESTS / "etcd.yaml", KUBE / "admin.conf"]
    )
    for path in files:
        if path.exists():
            errors.append(
                f"[ERROR FileAvailable-{str(path).replace('/', '-')}]: {path} already exists"
            )
    if not common.service_active("containerd"):
        errors.append(
            "[ERROR CRI]: container runtime is not running: containerd.service is not active"
        )
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    if forward != "1":
        errors.append(
            "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: "
            "/proc/sys/net/ipv4/ip_forward contents are not set to 1"
        )
    if errors:
        raise Fail(
            "error execution phase preflight: [preflight] Some fatal errors occurred:\n\t"
            + "\n\t".join(errors)
        )


# writing a control plane -------------------------------------------------------------------
def _kubeconfigs(cluster: str, server: str, name: str) -> None:
    ca = (PKI / "ca.crt").read_bytes()
    tmp = PKI / ".clients"
    specs = {
        "admin.conf": ("kubernetes-admin", ("kubeadm:cluster-admins",)),
        "super-admin.conf": ("kubernetes-super-admin", ("system:masters",)),
        "kubelet.conf": (f"system:node:{name}", ("system:nodes",)),
        "controller-manager.conf": ("system:kube-controller-manager", ()),
        "scheduler.conf": ("system:kube-scheduler", ()),
    }
    for file, (user, orgs) in specs.items():
        key, cert = tmp / f"{file}.key", tmp / f"{file}.crt"
        common.issue(PKI / "ca.crt", PKI / "ca.key", key, cert, user, orgs=orgs)
        config = common.kubeconfig(
            cluster, server, ca, user, cert=cert.read_bytes(), key=key.read_bytes()
        )
        common.write_file(KUBE / file, yaml.safe_dump(config, sort_keys=False))
        out(f'[kubeconfig] Writing "{file}" kubeconfig file')
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()


def _serving_cert(name: str, advertise: str, cert_sans: list[str]) -> None:
    sans = [
        *cert_sans,
        advertise,
        name,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.96.0.1",
    ]
    sans = list(dict.fromkeys(s for s in sans if s))
    common.issue(
        PKI / "ca.crt",
        PKI / "ca.key",
        PKI / "apiserver.key",
        PKI / "apiserver.crt",
        "kube-apiserver",
        sans=sans,
    )
    out(f"[certs] apiserver serving cert is signed for DNS names and IPs [{' '.join(sans)}]")


def _manifests(advertise: str, endpoint: str) -> None:
    def pod(name: str, command: list[str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "kube-system",
                "labels": {"component": name, "tier": "control-plane"},
            },
            "spec": {
                "hostNetwork": True,
                "containers": [
                    {
                        "name": name,
                        "image": f"registry.k8s.io/{name}:{common.VERSION}",
                        "command": command,
                    }
                ],
            },
        }

    manifests = {
        "etcd": pod("etcd", ["etcd", f"--advertise-client-urls=https://{advertise}:2379"]),
        "kube-apiserver": pod(
            "kube-apiserver",
            [
                "kube-apiserver",
                f"--advertise-address={advertise}",
                "--secure-port=6443",
                f"--tls-cert-file={PKI}/apiserver.crt",
                f"--tls-private-key-file={PKI}/apiserver.key",
                f"--client-ca-file={PKI}/ca.crt",
            ],
        ),
        "kube-controller-manager": pod(
            "kube-controller-manager",
            ["kube-controller-manager", f"--kubeconfig={KUBE}/controller-manager.conf"],
        ),
        "kube-scheduler": pod(
            "kube-scheduler", ["kube-scheduler", f"--kubeconfig={KUBE}/scheduler.conf"]
        ),
    }
    for name, manifest in manifests.items():
        common.write_file(MANIFESTS / f"{name}.yaml", yaml.safe_dump(manifest), 0o600)
        out(f'[control-plane] Creating static Pod manifest for "{name}" (endpoint {endpoint})')


def _kubelet_start(reg: dict[str, Any], name: str, kubelet_config: dict[str, Any] | None) -> None:
    flags = ["--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock"]
    if name != socket.gethostname():
        flags.append(f"--hostname-override={name}")
    extra = _extra_args(reg)
    flags += [f"--{k}={v}" for k, v in extra.items()]
    taints = reg.get("taints")
    if taints:
        flags.append(
            "--register-with-taints="
            + ",".join(
                f"{t['key']}{'=' + t['value'] if t.get('value') else ''}:{t['effect']}"
                for t in taints
            )
        )
    common.write_file(
        KUBELET_DIR / "kubeadm-flags.env", f'KUBELET_KUBEADM_ARGS="{" ".join(flags)}"\n', 0o644
    )
    config = kubelet_config or {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
    }
    common.write_file(KUBELET_DIR / "config.yaml", yaml.safe_dump(config), 0o644)
    out(
        "[kubelet-start] Writing kubelet environment file with flags to file "
        '"/var/lib/kubelet/kubeadm-flags.env"'
    )
    out("[kubelet-start] Starting the kubelet")
    common.systemctl("restart", "kubelet")


def _wait_node(api: common.Api, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = api.request("GET", f"/api/v1/nodes/{name}")
        if status == 200:
            return dict(body)
        if time.monotonic() > deadline:
            raise Fail(f"timed out waiting for the kubelet to register node {name!r}: {body}")
        time.sleep(0.5)


def _mark_control_plane(api: common.Api, name: str, reg: dict[str, Any]) -> None:
    out(f"[mark-control-plane] Marking the node {name} as control-plane by adding the labels")
    node = _wait_node(api, name)
    taints = list((node.get("spec") or {}).get("taints") or [])
    wanted = CP_TAINT if "taints" not in reg or reg["taints"] is None else None
    for taint in [wanted] if wanted else reg["taints"]:
        if not any(t["key"] == taint["key"] and t["effect"] == taint["effect"] for t in taints):
            taints.append(taint)
    status, body = api.request(
        "PATCH",
        f"/api/v1/nodes/{name}",
        {"metadata": {"labels": CP_LABELS}, "spec": {"taints": taints}},
        content_type="application/merge-patch+json",
    )
    if status != 200:
        raise Fail(f"error marking the control plane: {status} {body}")


def _put(api: common.Api, path: str, obj: dict[str, Any]) -> None:
    status, body = api.request("PUT", path, obj)
    if status not in (200, 201):
        raise Fail(f"error writing {path}: {status} {body}")


def _secret(name: str, data: dict[str, str], type_: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "namespace": "kube-system"},
        "data": {k: common.b64(v.encode()) for k, v in data.items()},
    }


def _admin() -> common.Api:
    return common.Api.from_kubeconfig(KUBE / "admin.conf")


# init ----------------------------------------------------------------------------------------
def init(args: list[str], rec: common.Recorder) -> int:
    path = _flag(args, "--config")
    if path is None:
        raise Fail("the kubeadm double only supports kubeadm init --config FILE")
    docs = load_config(path, rec)
    init_cfg = docs.get("InitConfiguration", {})
    cluster = docs.get("ClusterConfiguration", {})
    reg = init_cfg.get("nodeRegistration") or {}
    name = reg.get("name") or socket.gethostname()
    advertise = (init_cfg.get("localAPIEndpoint") or {}).get(
        "advertiseAddress"
    ) or socket.gethostbyname(socket.gethostname())
    endpoint = cluster.get("controlPlaneEndpoint") or f"{advertise}:6443"
    version = cluster.get("kubernetesVersion", common.VERSION)
    rec.note(
        node=name,
        endpoint=endpoint,
        kubernetes_version=version,
        upload_certs="--upload-certs" in args,
        taints=reg.get("taints"),
    )
    out(f"[init] Using Kubernetes version: {version}")
    if version.split(".")[:2] != common.VERSION.split(".")[:2]:
        raise Fail(
            f"this version of kubeadm ({common.VERSION}) does not deploy control plane "
            f"version {version}"
        )
    preflight(join=False)
    out('[certs] Using certificateDir folder "/etc/kubernetes/pki"')
    common.new_ca(PKI / "ca.key", PKI / "ca.crt", "kubernetes")
    common.new_ca(PKI / "front-proxy-ca.key", PKI / "front-proxy-ca.crt", "front-proxy-ca")
    common.new_ca(PKI / "etcd" / "ca.key", PKI / "etcd" / "ca.crt", "etcd-ca")
    common.new_key(PKI / "sa.key")
    common.write_file(
        PKI / "sa.pub", common.openssl("pkey", "-in", str(PKI / "sa.key"), "-pubout"), 0o644
    )
    sans = ((cluster.get("apiServer") or {}).get("certSANs")) or []
    _serving_cert(name, advertise, sans)
    cluster_name = cluster.get("clusterName", "kubernetes")
    _kubeconfigs(cluster_name, common.endpoint_url(endpoint), name)
    with common.store(write=True) as data:  # etcd's initial cluster: this member alone
        data["members"] = {
            name: {"peer": f"https://{advertise}:2380", "started": False, "added": time.time()}
        }
    _manifests(advertise, endpoint)
    _kubelet_start(reg, name, docs.get("KubeletConfiguration"))
    out(
        "[wait-control-plane] Waiting for the kubelet to boot up the control plane as static "
        'Pods from directory "/etc/kubernetes/manifests"'
    )
    common.Api(f"https://{advertise}:6443", (PKI / "ca.crt").read_bytes()).wait_ready(120)
    out("[api-check] The API server is healthy")
    admin = _admin()
    admin.wait_ready(120)  # through the control-plane endpoint (a load balancer, if any)
    out(
        '[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the '
        '"kube-system" Namespace'
    )
    _put(
        admin,
        "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
            "data": {"ClusterConfiguration": yaml.safe_dump(cluster)},
        },
    )
    _mark_control_plane(admin, name, reg)
    out("[bootstrap-token] Configured RBAC rules to allow Node Bootstrap tokens to get nodes")
    token = _create_token(admin, 24 * 3600)
    ca = (PKI / "ca.crt").read_bytes()
    info = common.kubeconfig("", common.endpoint_url(endpoint), ca, "")
    info = {"apiVersion": "v1", "kind": "Config", "clusters": info["clusters"]}
    _put(
        admin,
        "/api/v1/namespaces/kube-public/configmaps/cluster-info",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cluster-info", "namespace": "kube-public"},
            "data": {"kubeconfig": yaml.safe_dump(info)},
        },
    )
    out('[bootstrap-token] Creating the "cluster-info" ConfigMap in the "kube-public" namespace')
    key = None
    if "--upload-certs" in args:
        key = _upload_certs(admin)
    out("[addons] Applied essential addon: CoreDNS")
    out("[addons] Applied essential addon: kube-proxy")
    out("")
    out("Your Kubernetes control-plane has initialized successfully!")
    if key is not None and "--skip-certificate-key-print" not in args:
        out(f"Certificate key: {key}")
    if "--skip-token-print" not in args:
        out(f"kubeadm join {endpoint} --token {token} \\")
        out(f"\t--discovery-token-ca-cert-hash {common.ca_hash(ca)}")
    return 0


def _create_token(admin: common.Api, ttl: float) -> str:
    token_id = "".join(secrets.choice(TOKEN_CHARS) for _ in range(6))
    secret = "".join(secrets.choice(TOKEN_CHARS) for _ in range(16))
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))
    obj = _secret(
        f"bootstrap-token-{token_id}",
        {
            "token-id": token_id,
            "token-secret": secret,
            "expiration": expires,
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
        },
        "bootstrap.kubernetes.io/token",
    )
    status, body = admin.request("POST", "/api/v1/namespaces/kube-system/secrets", obj)
    if status != 201:
        raise Fail(f"failed to create bootstrap token: {status} {body}")
    return f"{token_id}.{secret}"


def _seal(key_hex: str, plain: bytes) -> str:
    iv = secrets.token_hex(16)
    cipher = common.openssl("enc", "-aes-256-ctr", "-K", key_hex, "-iv", iv, stdin=plain)
    tag = hmac.new(bytes.fromhex(key_hex), cipher, hashlib.sha256).hexdigest()
    return json.dumps({"iv": iv, "data": common.b64(cipher), "tag": tag})


def _open(key_hex: str, sealed: str) -> bytes:
    box = json.loads(sealed)
    cipher = base64.b64decode(box["data"])
    tag = hmac.new(bytes.fromhex(key_hex), cipher, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(tag, box["tag"]):
        raise Fail(
            "error execution phase control-plane-prepare/download-certs: error "
            "downloading certs: error decoding certificate key: cipher: message "
            "authentication failed"
        )
    return common.openssl(
        "enc", "-d", "-aes-256-ctr", "-K", key_hex, "-iv", box["iv"], stdin=cipher
    )


def _upload_certs(admin: common.Api) -> str:
    out(
        '[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the '
        '"kube-system" Namespace'
    )
    key = secrets.token_hex(32)
    files = {name.replace("/", "-"): _seal(key, (PKI / name).read_bytes()) for name in SHARED_CERTS}
    files["expires"] = str(time.time() + CERTS_TTL)
    _put(
        admin,
        "/api/v1/namespaces/kube-system/secrets/kubeadm-certs",
        _secret("kubeadm-certs", files),
    )
    out("[upload-certs] Using certificate key:")
    out(key)
    return key


# token create, upload-certs ------------------------------------------------------------------
def _duration(text: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"([0-9.]+)(h|m|s)", text):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def token_create(args: list[str], rec: common.Recorder) -> int:
    if not (KUBE / "admin.conf").exists():
        raise Fail(
            "failed to load admin kubeconfig: open /etc/kubernetes/admin.conf: no such "
            "file or directory"
        )
    admin = _admin()
    ttl = _duration(_flag(args, "--ttl") or "24h0m0s")
    token = _create_token(admin, ttl)
    rec.note(token_id=token.split(".")[0], ttl=ttl)
    if "--print-join-command" in args:
        server = admin.server.removeprefix("https://")
        ca_hash = common.ca_hash((PKI / "ca.crt").read_bytes())
        out(f"kubeadm join {server} --token {token} --discovery-token-ca-cert-hash {ca_hash} ")
    else:
        out(token)
    return 0


def upload_certs(args: list[str], rec: common.Recorder) -> int:
    if "--upload-certs" not in args:
        raise Fail("the kubeadm double only supports init phase upload-certs --upload-certs")
    key = _upload_certs(_admin())
    rec.note(certificate_key_sha256=hashlib.sha256(key.encode()).hexdigest())
    return 0


# join ----------------------------------------------------------------------------------------
def join(args: list[str], rec: common.Recorder) -> int:
    path = _flag(args, "--config")
    if path is None:
        raise Fail("the kubeadm double only supports kubeadm join --config FILE")
    doc = load_config(path, rec).get("JoinConfiguration")
    if doc is None:
        raise Fail(f"{path} has no JoinConfiguration")
    reg = doc.get("nodeRegistration") or {}
    name = reg.get("name") or socket.gethostname()
    disc = (doc.get("discovery") or {}).get("bootstrapToken") or {}
    control = doc.get("controlPlane")
    token = disc.get("token") or ""
    key = (control or {}).get("certificateKey")
    rec.note(
        node=name,
        control_plane=control is not None,
        endpoint=disc.get("apiServerEndpoint"),
        token_id=token.split(".")[0],
        taints=reg.get("taints"),
        certificate_key_sha256=hashlib.sha256(key.encode()).hexdigest() if key else None,
    )
    preflight(join=True)
    ca, server = _discover(disc, token)
    if control is not None:
        _join_control_plane(reg, name, control, key, ca, server, token)
    else:
        _join_worker(reg, name, ca, server, token)
    out("")
    out("This node has joined the cluster")
    return 0


def _discover(disc: dict[str, Any], token: str) -> tuple[bytes, str]:
    endpoint = disc.get("apiServerEndpoint") or ""
    out(f"[discovery] Trying to connect to API Server {endpoint!r}")
    anon = common.Api(common.endpoint_url(endpoint), None)
    path = "/api/v1/namespaces/kube-public/configmaps/cluster-info"
    deadline = time.monotonic() + 60
    while True:
        try:
            status, body = anon.request("GET", path, timeout=5)
            if status == 200:
                break
            last = f"{status} {body}"
        except OSError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise Fail(f"couldn't validate the identity of the API Server: {last}")
        time.sleep(1)
    token_id, _, secret = token.partition(".")
    config = body["data"]["kubeconfig"]
    signature = body["data"].get(f"jws-kubeconfig-{token_id}")
    expected = hmac.new(secret.encode(), config.encode(), hashlib.sha256).hexdigest()
    if signature is None or not hmac.compare_digest(signature, expected):
        raise Fail(
            f"error execution phase preflight: couldn't validate the identity of the "
            f'API Server: token id "{token_id}" is invalid for this cluster or it has '
            'expired. Use "kubeadm token create" on the control-plane node to create a '
            "new valid token"
        )
    cluster = yaml.safe_load(config)["clusters"][0]["cluster"]
    ca = base64.b64decode(cluster["certificate-authority-data"])
    pin = common.ca_hash(ca)
    if pin not in (disc.get("caCertHashes") or []) and not disc.get("unsafeSkipCAVerification"):
        raise Fail(
            "error execution phase preflight: couldn't validate the identity of the API "
            f"Server: cluster CA found in cluster-info ConfigMap is invalid: none of "
            f'the public keys "{pin}" are pinned'
        )
    out(
        f"[discovery] Cluster info signature and contents are valid and TLS certificate "
        f"validates against pinned roots, will use API Server {endpoint!r}"
    )
    return ca, cluster["server"]


def _join_control_plane(
    reg: dict[str, Any],
    name: str,
    control: dict[str, Any],
    key: str | None,
    ca: bytes,
    server: str,
    token: str,
) -> None:
    api = common.Api(server, ca, token=token)
    status, certs = api.request("GET", "/api/v1/namespaces/kube-system/secrets/kubeadm-certs")
    if status != 200 or not key:
        raise Fail(
            "error execution phase control-plane-prepare/download-certs: error "
            f"downloading certs: the Secret does not include the required certificate "
            f"or key ({status})"
        )
    files = {k: base64.b64decode(v).decode() for k, v in certs["data"].items()}
    if float(files.pop("expires")) < time.time():
        raise Fail("error downloading certs: the kubeadm-certs Secret has expired")
    out('[download-certs] Downloading the certificates in Secret "kubeadm-certs"')
    for file in SHARED_CERTS:
        common.write_file(
            PKI / file,
            _open(key, files[file.replace("/", "-")]),
            0o600 if file.endswith(".key") else 0o644,
        )
    status, cfg = api.request("GET", "/api/v1/namespaces/kube-system/configmaps/kubeadm-config")
    if status != 200:
        raise Fail(f"unable to fetch the kubeadm-config ConfigMap: {status} {cfg}")
    cluster = yaml.safe_load(cfg["data"]["ClusterConfiguration"])
    advertise = (control.get("localAPIEndpoint") or {}).get(
        "advertiseAddress"
    ) or socket.gethostbyname(socket.gethostname())
    _serving_cert(name, advertise, ((cluster.get("apiServer") or {}).get("certSANs")) or [])
    _kubeconfigs(
        cluster.get("clusterName", "kubernetes"),
        common.endpoint_url(cluster["controlPlaneEndpoint"]),
        name,
    )
    admin = _admin()
    out("[etcd] Announced new etcd member joining to the existing etcd cluster")
    deadline = time.monotonic() + 10
    while True:
        status, body = admin.request(
            "POST",
            "/clusterdeck-double/etcd/members",
            {"name": name, "peer": f"https://{advertise}:2380"},
        )
        if status in (200, 201):
            break
        if time.monotonic() > deadline:
            raise Fail(
                f"error execution phase control-plane-join/etcd: error creating local "
                f"etcd static pod manifest file: {body.get('message', body)}"
            )
        time.sleep(1)
    _manifests(advertise, cluster["controlPlaneEndpoint"])
    _kubelet_start(reg, name, None)
    common.Api(f"https://{advertise}:6443", ca).wait_ready(120)
    deadline = time.monotonic() + 60
    while not admin.request("GET", "/clusterdeck-double/etcd/members")[1][name].get("started"):
        if time.monotonic() > deadline:
            raise Fail(f"etcd member {name} did not start")
        time.sleep(0.5)
    out("[etcd] Waiting for the new etcd member to join the cluster")
    _mark_control_plane(admin, name, reg)


def _join_worker(reg: dict[str, Any], name: str, ca: bytes, server: str, token: str) -> None:
    api = common.Api(server, ca, token=token)
    out(
        '[kubelet-start] Downloading configuration for the kubelet from the "kubelet-config" '
        "ConfigMap in the kube-system namespace"
    )
    status, body = api.request("POST", "/clusterdeck-double/bootstrap", {"node": name})
    if status != 201:
        raise Fail(f"error execution phase kubelet-start: TLS bootstrap failed: {status} {body}")
    common.write_file(PKI / "ca.crt", ca, 0o644)
    config = common.kubeconfig(
        "default-cluster", server, ca, f"system:node:{name}", token=body["token"]
    )
    common.write_file(KUBE / "kubelet.conf", yaml.safe_dump(config, sort_keys=False))
    _kubelet_start(reg, name, None)
    out("[kubelet-check] Waiting for a healthy kubelet")
    _wait_node(common.Api(server, ca, token=body["token"]), name, timeout=120)
    out("[kubelet-start] The Kubelet was informed of the new secure connection details.")


# entry ---------------------------------------------------------------------------------------
def run(argv: list[str], rec: common.Recorder) -> int:
    words = [a for a in argv if not a.startswith("-")]
    if words[:1] == ["version"]:
        out(common.VERSION)
        return 0
    if words[:1] == ["init"] and words[1:3] == ["phase", "upload-certs"]:
        return upload_certs(argv, rec)
    if words[:1] == ["init"]:
        return init(argv, rec)
    if words[:1] == ["join"]:
        return join(argv, rec)
    if words[:2] == ["token", "create"]:
        return token_create(argv, rec)
    raise Fail(f"the kubeadm double does not implement: kubeadm {' '.join(argv)}")


if __name__ == "__main__":
    common.main("kubeadm", run)
