"""Test doubles for the programs that cannot exist on the lab machine, and nothing else.

kubeadm, kubelet, kubectl's view of a live cluster, and kube-apiserver (which kubelet runs as a
static pod) are not available here: no registry this machine can reach ships them. Each double
in this folder stands in for exactly one of those programs on a full lab host (systemd-nspawn),
installed as a Debian package at the version the spec pins, at the path the real one uses.
Every invocation is recorded (argv, host, start and end time, exit status) in the cluster's
shared ``records.jsonl``, and each writes what the real program would: kubeadm init writes
``/etc/kubernetes/{admin,super-admin,kubelet}.conf``, real X.509 certificates under
``/etc/kubernetes/pki`` (made with openssl), static pod manifests, and prints what kubeadm
prints; ``token create --print-join-command`` prints a join command with the real CA hash;
``init phase upload-certs --upload-certs`` prints a certificate key; ``join`` checks the token,
the CA pin and (control planes) the certificate key against the cluster, as kubeadm would,
and writes ``kubelet.conf``.

The cluster itself is a directory shared by the hosts of one test cluster (the part etcd
plays): the kube-apiserver double, started by the kubelet double from the static pod manifest,
serves it over HTTPS on port 6443 with the cluster's certificates, so everything around the
doubles is real: bash phase scripts, systemd units, sshd, keepalived and HAProxy in front of
the API servers, TLS with the certificates kubeadm made.

Files here are of two kinds: the doubles themselves (``common.py``, ``kubeadm.py``,
``kubelet.py``, ``kubectl.py``, ``apiserver.py``) run on lab hosts with Debian's python3 and
PyYAML only and import nothing from clusterdeck; ``packages.py`` and ``records.py`` run in the
tests (build the packages, read the records).
"""
