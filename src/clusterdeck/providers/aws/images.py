"""Which AMI each node boots: Canonical's Ubuntu for ``spec.aws.os``, unless ``aws.ami`` says.

Why it exists: an image ID differs per region and changes with every Ubuntu refresh, so it is
looked up at create time. SSM public parameters come first (Canonical publishes the current
image ID there); when that fails (no permission, a partition or endpoint without them), the
newest image owned by Canonical (099720109477) whose name matches the release is taken from
DescribeImages. Both lookups are batched: one call each for every architecture in use.
"""

from __future__ import annotations

from dataclasses import dataclass

from clusterdeck.errors import ClusterdeckError, PermanentError
from clusterdeck.providers.aws.errors import call
from clusterdeck.providers.aws.session import AwsSession
from clusterdeck.spec.models import OsImage

CANONICAL = "099720109477"
ARCH_NAMES = {"x86_64": "amd64", "arm64": "arm64"}
SSM_ROOT = "/aws/service/canonical/ubuntu/server"
SSM_PATHS = {
    OsImage.UBUNTU_2204: SSM_ROOT + "/22.04/stable/current/{arch}/hvm/ebs-gp2/ami-id",
    OsImage.UBUNTU_2404: SSM_ROOT + "/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id",
}
NAME_PATTERNS = {
    OsImage.UBUNTU_2204: "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-{arch}-server-*",
    OsImage.UBUNTU_2404: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*",
}


@dataclass(frozen=True)
class Image:
    id: str
    architecture: str
    root_device: str
    name: str
    source: str  # how it was found: spec.aws.ami | ssm | describe-images


def resolve(
    session: AwsSession, os_image: OsImage, explicit: str | None, architectures: set[str]
) -> dict[str, Image]:
    """An image per architecture (``x86_64``/``arm64``) needed by the instance types."""
    if explicit:
        return _explicit(session, explicit, architectures)
    images = _from_ssm(session, os_image, architectures)
    missing = architectures - set(images)
    if missing:
        images.update(_from_describe(session, os_image, missing))
    return images


def _explicit(session: AwsSession, ami: str, architectures: set[str]) -> dict[str, Image]:
    what = f"spec.aws.ami {ami}"
    try:
        found = call(session.ec2.describe_images, what, ImageIds=[ami])["Images"]
    except ClusterdeckError as exc:
        raise PermanentError(
            f"spec.aws.ami: image {ami} cannot be used in {session.region} ({exc})"
        ) from exc
    if not found:
        raise PermanentError(f"spec.aws.ami: image {ami} does not exist in {session.region}")
    raw = found[0]
    image = Image(
        ami,
        str(raw.get("Architecture")),
        str(raw.get("RootDeviceName", "/dev/sda1")),
        str(raw.get("Name", "")),
        "spec.aws.ami",
    )
    wrong = architectures - {image.architecture}
    if wrong:
        raise PermanentError(
            f"spec.aws.ami: image {ami} is {image.architecture}, but instance "
            f"types of this environment need {', '.join(sorted(wrong))}"
        )
    return dict.fromkeys(architectures, image)


def _from_ssm(session: AwsSession, os_image: OsImage, architectures: set[str]) -> dict[str, Image]:
    names = {
        SSM_PATHS[os_image].format(arch=ARCH_NAMES[a]): a for a in architectures if a in ARCH_NAMES
    }
    if not names:
        return {}
    try:
        out = call(
            session.ssm.get_parameters,
            f"SSM public parameters for {os_image.value}",
            Names=sorted(names),
        )
    except ClusterdeckError:
        return {}  # fall back to DescribeImages
    ids = {
        names[p["Name"]]: str(p["Value"])
        for p in out.get("Parameters", [])
        if p.get("Name") in names
    }
    if not ids:
        return {}
    described = call(
        session.ec2.describe_images, f"{os_image.value} images", ImageIds=sorted(set(ids.values()))
    )["Images"]
    by_id = {i["ImageId"]: i for i in described}
    return {
        arch: Image(
            ami,
            arch,
            str(by_id[ami].get("RootDeviceName", "/dev/sda1")),
            str(by_id[ami].get("Name", "")),
            "ssm",
        )
        for arch, ami in ids.items()
        if ami in by_id
    }


def _from_describe(
    session: AwsSession, os_image: OsImage, architectures: set[str]
) -> dict[str, Image]:
    patterns = [
        NAME_PATTERNS[os_image].format(arch=ARCH_NAMES[a]) for a in architectures if a in ARCH_NAMES
    ]
    out = call(
        session.ec2.describe_images,
        f"Canonical {os_image.value} images",
        Owners=[CANONICAL],
        Filters=[
            {"Name": "name", "Values": patterns},
            {"Name": "state", "Values": ["available"]},
            {"Name": "architecture", "Values": sorted(architectures)},
        ],
    )
    newest: dict[str, dict[str, object]] = {}
    for raw in out.get("Images", []):
        arch = str(raw.get("Architecture"))
        if arch in architectures and (
            arch not in newest
            or str(raw.get("CreationDate", "")) > str(newest[arch].get("CreationDate", ""))
        ):
            newest[arch] = dict(raw)
    missing = architectures - set(newest)
    if missing:
        raise PermanentError(
            f"spec.aws.os: no {os_image.value} image for {', '.join(sorted(missing))} found in "
            f"{session.region} (neither in SSM public parameters nor owned by Canonical "
            f"{CANONICAL}); set spec.aws.ami to an image ID"
        )
    return {
        arch: Image(
            str(raw["ImageId"]),
            arch,
            str(raw.get("RootDeviceName", "/dev/sda1")),
            str(raw.get("Name", "")),
            "describe-images",
        )
        for arch, raw in newest.items()
    }
