"""The AWS regions and EC2 instance types known without a network: botocore's own data files.

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
