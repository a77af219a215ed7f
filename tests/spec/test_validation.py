"""Validation that teaches: each mistake names its field path, YAML line and column."""

from __future__ import annotations

import json
import textwrap

import pytest

from clusterdeck.errors import SpecError
from clusterdeck.spec import check_bytes, load_text
from tests.helpers import run_cli

BASE = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata:
  name: lab
spec:
  auth: {keyName: k}
  aws:
    region: us-west-2
  cluster:
    controlPlane:
      count: 1
    workers:
      count: 2
"""


def issues(text: str) -> list[tuple[str, int | None, str]]:
    report = check_bytes(textwrap.dedent(text).encode())
    return [(i.path, i.line, i.message) for i in report.errors]


def one(text: str) -> tuple[str, int | None, str]:
    found = issues(text)
    assert len(found) == 1, found
    return found[0]


def test_base_file_is_valid() -> None:
    assert issues(BASE) == []


# (name, text, expected path, expected line, a phrase the message must contain)
CASES = [
    (
        "typo",
        BASE.replace("count: 2", "cuont: 2"),
        "spec.cluster.workers.cuont",
        13,
        "did you mean 'count'",
    ),
    (
        "wrong type",
        BASE.replace("count: 2", "count: two"),
        "spec.cluster.workers.count",
        13,
        "valid integer",
    ),
    (
        "quoted number",
        BASE.replace("count: 2", 'count: "2"'),
        "spec.cluster.workers.count",
        13,
        "remove the quotes",
    ),
    (
        "even control planes",
        BASE.replace("count: 1", "count: 2"),
        "spec.cluster.controlPlane.count",
        11,
        "odd and between 1 and 7",
    ),
    (
        "nine control planes",
        BASE.replace("count: 1", "count: 9"),
        "spec.cluster.controlPlane.count",
        11,
        "odd and between 1 and 7",
    ),
    (
        "bad taint effect",
        BASE + "      taints: ['gpu=yes:NoRun']\n",
        "spec.cluster.workers.taints",
        14,
        "NoSchedule",
    ),
    (
        "taint without effect",
        BASE + "      taints: ['gpu=yes']\n",
        "spec.cluster.workers.taints",
        14,
        "needs an effect",
    ),
    (
        "bad label key",
        BASE + "      labels: {'-bad': x}\n",
        "spec.cluster.workers.labels",
        14,
        "label key",
    ),
    (
        "bad label value",
        BASE + "      labels: {ok: 'white space'}\n",
        "spec.cluster.workers.labels",
        14,
        "label value",
    ),
    (
        "unquoted boolean label",
        BASE + "      labels: {gpu: true}\n",
        "spec.cluster.workers.labels.gpu",
        14,
        "quote it",
    ),
    ("environment name", BASE.replace("name: lab", "name: Lab_1"), "metadata.name", 4, "DNS-1123"),
    (
        "pod overlaps service",
        BASE + "  kubernetes: {podCidr: 10.96.0.0/16}\n",
        "spec.kubernetes.podCidr",
        14,
        "overlaps the service range",
    ),
    (
        "vpc overlaps pods",
        BASE.replace("region: us-west-2", "region: us-west-2\n    vpcCidr: 192.168.0.0/16"),
        "spec.aws.vpcCidr",
        9,
        "overlaps the pod range",
    ),
    (
        "cidr with host bits",
        BASE + "  kubernetes: {podCidr: 192.168.1.1/16}\n",
        "spec.kubernetes.podCidr",
        14,
        "not a CIDR",
    ),
    (
        "HA with two control planes",
        BASE.replace(
            "      count: 1\n    workers:\n      count: 2\n",
            "      count: 2\n    workers:\n      count: 2\n    highAvailability: {enabled: true}\n",
        ),
        "spec.cluster.controlPlane.count",
        11,
        "must be odd",
    ),
    (
        "dedicated without workers",
        BASE.replace(
            "      count: 1\n    workers:\n      count: 2\n",
            "      count: 1\n      dedicated: true\n",
        ),
        "spec.cluster.controlPlane.dedicated",
        12,
        "nowhere to run workloads",
    ),
    (
        "spot percent too high",
        BASE + "    nodePools:\n      - {name: s, spot: {maxPricePercent: 150}}\n",
        "spec.cluster.nodePools[0].spot.maxPricePercent",
        15,
        "between 1 and 100",
    ),
    (
        "duplicate pool",
        BASE + "    nodePools:\n      - {name: workers, count: 1}\n",
        "spec.cluster.nodePools[0].name",
        15,
        "duplicate pool name 'workers'",
    ),
    (
        "ssh pool without hosts",
        BASE + "    nodePools:\n      - {name: lab, provider: ssh}\n",
        "spec.cluster.nodePools[0].hosts",
        15,
        "needs hosts",
    ),
    (
        "ssh pool count mismatch",
        BASE + "    nodePools:\n      - name: lab\n        provider: ssh\n        count: 2\n"
        "        hosts: [{address: 192.0.2.1}]\n",
        "spec.cluster.nodePools[0].count",
        17,
        "must match",
    ),
    (
        "unknown apiVersion",
        BASE.replace("v1alpha1", "v1"),
        "apiVersion",
        1,
        "clusterdeck.dev/v1alpha1",
    ),
    (
        "cilium not yet",
        BASE + "  kubernetes: {cni: cilium}\n",
        "spec.kubernetes.cni",
        14,
        "not supported yet",
    ),
    (
        "overlay inside the service range",
        BASE + "  overlay: {cidr: 10.100.0.0/16}\n",
        "spec.overlay.cidr",
        14,
        "overlaps the service range 10.96.0.0/12",
    ),
    (
        "region in the wrong place",
        BASE.replace("  cluster:\n", "  cluster:\n    region: us-west-2\n"),
        "spec.cluster.region",
        10,
        "spec.aws.region",
    ),
    (
        "zone outside region",
        BASE.replace("region: us-west-2", "region: us-west-2\n    availabilityZones: [eu-west-1a]"),
        "spec.aws.availabilityZones[0]",
        9,
        "not in region",
    ),
    (
        "keepalived without vip",
        "apiVersion: clusterdeck.dev/v1alpha1\nkind: Environment\nmetadata: {name: x}\nspec:\n"
        "  provider: ssh\n  cluster:\n    controlPlane:\n      hosts: [{address: a}, {address: b},"
        " {address: c}]\n    highAvailability: {enabled: true, loadBalancer: keepalived}\n",
        "spec.cluster.highAvailability.vip",
        9,
        "needs a vip",
    ),
    (
        "nlb for ssh machines",
        "apiVersion: clusterdeck.dev/v1alpha1\nkind: Environment\nmetadata: {name: x}\nspec:\n"
        "  provider: ssh\n  cluster:\n    controlPlane:\n      hosts: [{address: a}, {address: b},"
        " {address: c}]\n    highAvailability: {enabled: true}\n",
        "spec.cluster.highAvailability.loadBalancer",
        9,
        "keepalived",
    ),
    (
        "old kubernetes",
        BASE + "  kubernetes: {version: v1.29.3}\n",
        "spec.kubernetes.version",
        14,
        "v1.31 or newer",
    ),
    (
        "aws without key pair",
        BASE.replace("  auth: {keyName: k}\n", ""),
        "spec.auth.keyName",
        None,
        "key pair",
    ),
    (
        "aws provider without its aws block",
        BASE.replace("  aws:\n    region: us-west-2\n", ""),
        "spec.aws",
        None,
        "an aws block with a region is needed",
    ),
    (
        "a pool named as the control plane's pool",
        BASE + "    nodePools:\n      - {name: control-plane, count: 1}\n",
        "spec.cluster.nodePools[0].name",
        None,
        "pool name 'control-plane' is reserved",
    ),
    (
        "pod range too small for the nodes",
        BASE + "  kubernetes: {podCidr: 10.244.0.0/23}\n",
        "spec.kubernetes.podCidr",
        14,
        "holds 2 per-node /24 pod range(s), but the cluster has 3 nodes",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "line", "phrase"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_mistake_is_named_with_path_and_line(text, path, line, phrase) -> None:
    found = issues(text)
    matching = [f for f in found if f[0] == path]
    assert matching, f"expected an error at {path}, got {found}"
    _, got_line, message = matching[0]
    if line is not None:
        assert got_line == line, (found, line)
    assert phrase in message


def test_missing_required_field_points_at_its_parent() -> None:
    path, line, message = one(BASE.replace("  name: lab\n", "  labels: {}\n"))
    assert path == "metadata.name"
    assert line == 4
    assert "required" in message


def test_yaml_syntax_error_has_line_and_column() -> None:
    report = check_bytes(b"apiVersion: x\nkind: [unclosed\n")
    assert report.errors[0].line == 3 or report.errors[0].line == 2
    assert "not valid YAML" in report.errors[0].message


def test_load_text_raises_spec_error_with_all_issues() -> None:
    with pytest.raises(SpecError) as info:
        load_text(BASE.replace("count: 1", "count: 4").replace("count: 2", "cnt: 2"))
    assert {i.path for i in info.value.issues} >= {"spec.cluster.workers.cnt"}


def test_ssh_host_count_defaults_to_the_hosts_listed() -> None:
    env = load_text(
        BASE + "    nodePools:\n      - name: lab\n        provider: ssh\n"
        "        hosts: [{address: 192.0.2.1}, {address: 192.0.2.2}]\n"
    )
    assert env.spec.cluster.node_pools[0].count is None


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_cli_bad_file_exits_2_with_path_and_line(fmt, tmp_path, capsys, monkeypatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("count: 1", "count: 2") + "  kubernetes: {podCidr: 10.96.0.0/16}\n")
    result = run_cli(["validate", "-f", str(bad), "-o", fmt], capsys, monkeypatch)
    assert result.code == 2
    if fmt == "json":
        data = json.loads(result.out)
        assert data["valid"] is False
        first = data["errors"][0]
        assert set(first) >= {"path", "line", "column", "message"}
        paths = {(e["path"], e["line"]) for e in data["errors"]}
        assert ("spec.cluster.controlPlane.count", 11) in paths
        assert ("spec.kubernetes.podCidr", 14) in paths
    else:
        assert "spec.cluster.controlPlane.count (line 11, column 14)" in result.err
        assert "Traceback" not in result.err


def test_plan_of_a_bad_file_exits_2_without_traceback(tmp_path, capsys, monkeypatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("count: 2", "count: 2\n      taints: [nope]"))
    result = run_cli(["plan", "-f", str(bad)], capsys, monkeypatch)
    assert result.code == 2
    assert "spec.cluster.workers.taints (line 14" in result.err
    assert "Traceback" not in result.err


def test_missing_file_is_bad_input(tmp_path, capsys, monkeypatch) -> None:
    result = run_cli(["validate", "-f", str(tmp_path / "nope.yaml")], capsys, monkeypatch)
    assert result.code == 2
    assert "cannot read" in result.err


def test_zone_capacity_is_checked_at_validate_time() -> None:
    # a pod range large enough for 301 nodes (the default /16 holds 256 per-node /24s)
    crowded = BASE.replace("count: 2", "count: 300") + "  kubernetes: {podCidr: 172.16.0.0/12}\n"
    path, line, message = one(crowded)
    assert (path, line) == ("spec.cluster.workers.count", 13)
    assert "more than its public /24 subnet holds (250)" in message
    assert "network.mode: private" in message
    spread = crowded.replace(
        "region: us-west-2", "region: us-west-2\n    availabilityZones: [us-west-2a, us-west-2b]"
    )
    assert issues(spread) == []
    private = crowded.replace(
        "region: us-west-2", "region: us-west-2\n    network: {mode: private}"
    )
    assert issues(private) == []


def test_an_alias_bomb_is_refused_quickly() -> None:
    """Eight levels of nine-fold aliases (43 million values) are refused in well under a
    second, without walking them."""
    import time

    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    previous = "a"
    for name in "bcdefgh":
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
        previous = name
    started = time.monotonic()
    report = check_bytes(("\n".join(lines) + "\n").encode())
    assert time.monotonic() - started < 2.0
    (issue,) = report.errors
    assert "expands to more than" in issue.message


def test_an_oversized_file_is_refused() -> None:
    report = check_bytes(b"# " + b"x" * (2 << 20))
    (issue,) = report.errors
    assert "at most" in issue.message


TYPO = """\
apiVersion: clusterdeck.dev/v1alpha1
kind: Environment
metadata: {name: typo}
spec:
  auth: {keyName: k}
  aws: {region: REGION}
  cluster:
    controlPlane: {count: 1, instanceType: m5.xlarge}
    workers: {count: 2, instanceType: WORKER}
    nodePools: [{name: odd, count: 1, instanceType: POOL}]
"""


def _typo(region: str, worker: str, pool: str) -> list[tuple[str, str]]:
    text = TYPO.replace("REGION", region).replace("WORKER", worker).replace("POOL", pool)
    report = check_bytes(text.encode())
    assert report.valid, report.errors
    return [(w.path, w.message) for w in report.warnings]


def test_unknown_region_and_instance_types_are_warned_about_offline() -> None:
    assert _typo("us-west-2", "g5.xlarge", "p4d.24xlarge") == []
    warned = dict(_typo("us-wets-2", "g5.xlargee", "zz9.large"))
    assert warned["spec.aws.region"].endswith("did you mean us-west-2?")
    assert warned["spec.cluster.workers.instanceType"] == (
        "'g5.xlargee': unknown EC2 instance type; did you mean g5.xlarge?"
    )
    assert "unknown EC2 instance family" in warned["spec.cluster.nodePools[0].instanceType"]
