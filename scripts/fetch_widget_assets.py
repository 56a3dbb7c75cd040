#!/usr/bin/env python3
"""Install the npm packages the book's offline widgets and math need, for machines without ``npm``.

``make book`` runs ``npm ci`` when npm is installed. Otherwise this script downloads the exact tarballs pinned
in ``package-lock.json`` from the npm registry (https://registry.npmjs.org), checks each against the lock
file's sha512 ``integrity`` and unpacks it under ``node_modules/<package>/`` (the same place npm would). Only
the packages listed in ``package.json``'s dependencies are fetched (require.js, the ipywidgets html-manager and
MathJax): the html-manager's ``dist/embed-amd.js`` is a self-contained bundle, so its own dependencies are not
needed, and ``mathjax`` has none.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = "https://registry.npmjs.org"


def fetch(name: str, version: str, integrity: str) -> None:
    url = f"{REGISTRY}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
    algo, _, digest = integrity.partition("-")
    if algo != "sha512":
        raise SystemExit(f"{name}: unsupported integrity {integrity!r} in package-lock.json")
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    got = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != digest:
        raise SystemExit(f"{name}@{version}: sha512 of {url} does not match package-lock.json")
    dest = ROOT / "node_modules" / name
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = Path(*Path(member.name).parts[1:])  # strip the tarball's "package/" prefix
            if ".." in rel.parts:
                raise SystemExit(f"{name}: unsafe path {member.name!r} in tarball")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    print(f"fetched {name}@{version} ({len(data) / 1e6:.1f} MB) into {dest.relative_to(ROOT)}")


def main() -> int:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    wanted = json.loads((ROOT / "package.json").read_text())["dependencies"]
    for name in wanted:
        entry = lock["packages"].get(f"node_modules/{name}")
        if entry is None:
            raise SystemExit(f"{name} is not in package-lock.json: run `npm install` to update the lock file")
        fetch(name, entry["version"], entry["integrity"])
    (ROOT / "node_modules" / ".flatcast-fetched").write_text("fetched by scripts/fetch_widget_assets.py\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
