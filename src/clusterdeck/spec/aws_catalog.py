"""The AWS regions and EC2 instance types known without a network: botocore's own data files,
and the architecture of each instance family (a table here: botocore's data does not say).

``validate`` runs offline; a mistyped region or instance type should still be caught early.
botocore ships its partitions' region lists (``partitions.json``) and EC2's service model,
whose ``InstanceType`` enum lists every type EC2 had when that botocore was released. Both are
read as plain JSON, without importing botocore (start-up stays fast), and only for files with
aws pools. A name missing from them gets a warning, not an error: a newer region or type may
exist that this botocore predates. Without botocore installed there is nothing to check.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from functools import cache
from pathlib import Path


def _data_dir() -> Path | None:
    spec = importlib.util.find_spec("botocore")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data"
    return path if path.is_dir() else None


@cache
def known_regions() -> frozenset[str] | None:
    data = _data_dir()
    if data is None or not (data / "partitions.json").is_file():
        return None
    doc = json.loads((data / "partitions.json").read_text())
    return frozenset(r for p in doc.get("partitions", []) for r in p.get("regions", {}))


@cache
def known_instance_types() -> frozenset[str] | None:
    data = _data_dir()
    if data is None:
        return None
    models = sorted((data / "ec2").glob("*/service-2.json*"))
    if not models:
        return None
    latest = models[-1]
    # the enum alone, kept beside the other caches: parsing the 2.5 MB model costs 40 ms
    stamp = latest.stat()
    cached = _cache_dir() / f"ec2-instance-types-{stamp.st_size}-{int(stamp.st_mtime)}.json"
    try:
        return frozenset(json.loads(cached.read_text()))
    except (OSError, ValueError):
        pass
    opener = gzip.open if latest.suffix == ".gz" else open
    with opener(latest, "rt") as fh:
        model = json.load(fh)
    types = sorted(model.get("shapes", {}).get("InstanceType", {}).get("enum", []))
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(types))
    except OSError:
        pass  # a read-only home: parse again next time
    return frozenset(types)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clusterdeck"


# EC2 instance families whose processors are arm64 (AWS Graviton), as DescribeInstanceTypes
# reports them (ProcessorInfo.SupportedArchitectures); every other Linux family is x86_64.
# validate and plan read this offline; create confirms it with AWS's own answer, and
# tests/spec/test_arm64.py checks it against the instance-type data moto ships.
ARM64_FAMILIES = frozenset(
    {
        "a1",
        *("c6g", "c6gd", "c6gn", "c7g", "c7gd", "c7gn"),
        *("c8g", "c8gb", "c8gd", "c8gn", "c9g", "c9gd"),
        "g5g",
        "hpc7g",
        *("i4g", "i8g", "i8ge", "im4gn", "is4gen"),
        *("m6g", "m6gd", "m7g", "m7gd", "m8g", "m8gb", "m8gd", "m8gn", "m9g", "m9gd"),
        *("r6g", "r6gd", "r7g", "r7gd", "r8g", "r8gb", "r8gd", "r8gn", "r9g", "r9gd"),
        "t4g",
        *("x2gd", "x8g"),
    }
)
# macOS instances (mac1, mac2, mac-m4, ...): not Linux nodes
MAC_PREFIX = "mac"


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def architecture(instance_type: str) -> str:
    """``arm64`` or ``amd64`` (the names Kubernetes and Go use) for an EC2 instance type."""
    return "arm64" if family(instance_type) in ARM64_FAMILIES else "amd64"


# EC2's names for the architectures (DescribeInstanceTypes, DescribeImages)
EC2_ARCH = {"amd64": "x86_64", "arm64": "arm64"}
