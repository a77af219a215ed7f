"""``clusterdeck bundle``: make and inspect offline bundles (``spec.offline.bundle``).

A bundle holds the node binaries, the container images and the CNI manifest of one Kubernetes
version and architecture, so that no node downloads anything. ``create --from DIR`` builds one
from binaries and image archives you made (or that ``scripts/kubernetes-artifacts.sh``
built); ``create --download`` fetches the official release binaries and images, on a machine
with internet access; ``inspect`` shows what a bundle holds and checks every checksum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clusterdeck.cli import render
from clusterdeck.cli.context import Output, print_json, state, status_line
from clusterdeck.errors import UsageError

bundle_app = typer.Typer(
    help="Offline bundles: Kubernetes, containerd, the CNI and every image, for nodes "
    "without internet access.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")


@bundle_app.command(
    "inspect",
    help="What a bundle holds (version, architecture, files, images, CNI); every file's "
    "sha256 is checked against the manifest.",
    epilog="Example:  clusterdeck bundle inspect ./kubernetes-v1.37.2-linux-amd64 -o json",
)
def inspect(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Bundle directory or tar archive.")],
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.TEXT,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Read the manifest only; skip the checksums.")
    ] = False,
) -> None:
    from clusterdeck.bundle import manifest as bm

    app = state(ctx)
    bundle = bm.load(path)
    if not no_verify:
        bundle.verify()
    m = bundle.manifest
    if output is Output.JSON:
        data = m.model_dump(mode="json", by_alias=True)
        data["path"] = str(bundle.path)
        data["verified"] = not no_verify
        print_json(data)
        return
    app.console.print(
        f"{bundle.path}: Kubernetes {m.kubernetes_version} linux/{m.arch}, "
        f"CNI {m.cni.name} {m.cni.version}, {len(m.files)} files, "
        f"{m.size / 1e6:.0f} MB{'' if no_verify else ', every checksum verified'}"
    )
    table = render.table_(None, "kind", "file", "size", "sha256")
    for f in m.files:
        table.add_row(f.kind.value, f.path, f"{f.size / 1e6:.1f} MB", f.sha256[:16])
    app.console.print(table)
    images = render.table_(None, "image", "archive")
    for image in m.images:
        images.add_row(image.reference, image.file)
    app.console.print(images)


@bundle_app.command(
    "create",
    help="Build a bundle: --from DIR (bin/, cni/, images/*.tar, manifests/cni.yaml) or "
    "--download (the official release binaries and images; needs internet access).",
    epilog="Examples:\n\n"
    "  clusterdeck bundle create --from ./built --kubernetes-version v1.37.2 -O k8s.tar\n\n"
    "  clusterdeck bundle create --download --kubernetes-version v1.37.2 -O k8s-bundle",
)
def create(
    ctx: typer.Context,
    output_path: Annotated[
        Path, typer.Option("--output", "-O", help="New bundle: a directory, or a .tar archive.")
    ],
    kubernetes_version: Annotated[
        str, typer.Option("--kubernetes-version", help="The version the bundle is for.")
    ],
    source: Annotated[
        Path | None, typer.Option("--from", help="Directory of binaries and image archives.")
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Fetch the official release artifacts.")
    ] = False,
    arch: Annotated[str, typer.Option(help="amd64 or arm64.")] = "amd64",
    release_url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the release binaries (default: the official download site).",
            envvar="CLUSTERDECK_RELEASE_URL",
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            help="Pull images from this registry instead of the ones kubeadm names (a mirror).",
            envvar="CLUSTERDECK_REGISTRY_MIRROR",
        ),
    ] = None,
) -> None:
    app = state(ctx)
    if arch not in ("amd64", "arm64"):
        raise UsageError(f"--arch {arch}: amd64 or arm64")
    if (source is None) == (not download):
        raise UsageError("give exactly one of --from DIR and --download")
    if source is not None:
        from clusterdeck.bundle.create import create_from_directory

        with status_line(app, "bundle") as progress:
            m = create_from_directory(
                source,
                output_path,
                kubernetes_version=kubernetes_version,
                arch=arch,
                progress=progress,
            )
    else:
        from clusterdeck.bundle.download import create_by_download

        with status_line(app, "bundle") as progress:
            m = create_by_download(
                output_path,
                kubernetes_version=kubernetes_version,
                arch=arch,
                release_url=release_url,
                registry=registry,
                progress=progress,
            )
    app.console.print(
        f"bundle {output_path}: Kubernetes {m.kubernetes_version} linux/{m.arch}, "
        f"{len(m.files)} files, {len(m.images)} images, {m.size / 1e6:.0f} MB"
    )
