"""Put the offline bundle's files on a node: once, resumable, each checked by sha256.

A node gets only the files its role needs (workers do not get the control-plane images).
The login user streams each missing file into a staging directory in its own home
(``~/.clusterdeck/offline-staging``, mode 0700), appending to a partial file left by an
interrupted run instead of starting over. Then, with root rights, every staged file is
checked against the manifest's sha256 and moved into ``/var/lib/clusterdeck/offline``
(root's only), and its checksum is recorded there; a file already recorded with the right
checksum is never sent again. A file whose checksum differs after the upload is removed and
the step fails naming it, so a retry starts that file afresh.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable

from clusterdeck.bootstrap.nodeconfig import OFFLINE_ON_NODE, OfflineSettings
from clusterdeck.bundle.manifest import Bundle, FileKind
from clusterdeck.errors import PermanentError
from clusterdeck.transport import Command, Connections, Endpoint, FileSource

STAGING = ".clusterdeck/offline-staging"  # relative: the login's home directory
VERIFIED = f"{OFFLINE_ON_NODE}/.verified"  # "<sha256>  <path>" per installed file
UPLOAD_TIMEOUT = 900.0
Log = Callable[[str], None]

_APPEND = 'umask 077; mkdir -p "$(dirname "$1")" && exec cat >>"$1"'
# $1 staging dir, $2 target dir, then (sha256, path, mode) triples: check, move, record
_INSTALL = r"""
set -eu
staging=$1; target=$2; shift 2
install -d -m 0700 "$target"
while [ "$#" -ge 3 ]; do
  sum=$1; rel=$2; mode=$3; shift 3
  got=$(sha256sum "$staging/$rel.part" | cut -d' ' -f1)
  if [ "$got" != "$sum" ]; then
    rm -f "$staging/$rel.part"
    echo "$rel: sha256 $got after upload, not $sum; removed, it is sent again on retry" >&2
    exit 3
  fi
  install -D -m "$mode" -o root -g root "$staging/$rel.part" "$target/$rel"
  rm -f "$staging/$rel.part"
  echo "$sum  $rel" >>"$target/.verified"
done
"""


def _mode(kind: FileKind) -> str:
    return "0755" if kind in (FileKind.BINARY, FileKind.CNI_PLUGIN) else "0644"


async def upload_offline(
    conns: Connections, endpoint: Endpoint, bundle: Bundle, offline: OfflineSettings, log: Log
) -> list[str]:
    """Send what the node lacks of its bundle files; return the paths that were sent."""
    manifest = bundle.manifest
    wanted = [manifest.file(path) for path in offline.files]
    res = await conns.run(
        endpoint,
        Command(["cat", VERIFIED], name="verified bundle files", root=True),
        timeout=30,
        check=False,
    )
    have = {}
    for line in res.stdout.splitlines():
        digest, _, rel = line.partition("  ")
        have[rel] = digest
    missing = [f for f in wanted if have.get(f.path) != f.sha256]
    if not missing:
        log(f"all {len(wanted)} bundle files already on the node, checked by sha256")
        return []
    sizes = await conns.run(
        endpoint,
        Command(
            [
                "sh",
                "-c",
                'cd "$1" 2>/dev/null || exit 0; shift; for f; do '
                '[ -f "$f.part" ] && echo "$(wc -c <"$f.part") $f"; done; exit 0',
                "clusterdeck-sizes",
                STAGING,
                *(f.path for f in missing),
            ],
            name="staged bundle files",
        ),
        timeout=30,
    )
    staged = {}
    for line in sizes.stdout.splitlines():
        size, _, rel = line.strip().partition(" ")
        if size.isdigit():
            staged[rel] = int(size)
    total = sum(f.size for f in missing)
    log(f"sending {len(missing)} of {len(wanted)} bundle files ({total / 1e6:.0f} MB)")
    for item in missing:
        offset = staged.get(item.path, 0)
        if offset > item.size:  # not a prefix of this file: start over
            offset = 0
            await conns.run(
                endpoint, Command(["rm", "-f", f"{STAGING}/{item.path}.part"]), timeout=30
            )
        if offset == item.size:
            continue
        if offset:
            log(f"{item.path}: resuming at {offset / 1e6:.0f} of {item.size / 1e6:.0f} MB")

        await conns.run(
            endpoint,
            Command(
                ["sh", "-c", _APPEND, "clusterdeck-append", f"{STAGING}/{item.path}.part"],
                stdin_file=FileSource(functools.partial(bundle.open, item.path), item.size, offset),
                name=f"upload {item.path}",
            ),
            timeout=UPLOAD_TIMEOUT,
        )
    home = await conns.run(endpoint, Command(["sh", "-c", "cd && pwd"]), timeout=30)
    staging = f"{home.stdout.strip()}/{STAGING}"
    triples = [word for f in missing for word in (f.sha256, f.path, _mode(f.kind))]
    res = await conns.run(
        endpoint,
        Command(
            ["sh", "-c", _INSTALL, "clusterdeck-install", staging, OFFLINE_ON_NODE, *triples],
            name="check and install bundle files",
            root=True,
        ),
        timeout=UPLOAD_TIMEOUT,
        check=False,
    )
    if res.exit_status != 0:
        lines = res.stderr.strip().splitlines() or [shlex.quote(res.stdout)]
        raise PermanentError(f"{endpoint.label}: the bundle upload failed: {lines[-1]}")
    log(f"{len(missing)} bundle files checked by sha256 and installed in {OFFLINE_ON_NODE}")
    return [f.path for f in missing]
