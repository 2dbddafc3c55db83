"""The append-only manifest of migration files: one `sha256  path` line per file.

A released migration never changes: the test suite compares every file with its line.
`python -m migrations.manifest` appends lines for new files and never rewrites one.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).parent
MANIFEST = HERE / "MANIFEST"


def migration_files(root: Path = HERE) -> list[str]:
    """The files whose content the migrations' behaviour depends on."""
    files = sorted(p.relative_to(root).as_posix() for p in (root / "versions").glob("*.py"))
    return ["additive.py", "env.py", *files]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(manifest: Path = MANIFEST) -> list[tuple[str, str]]:
    entries = []
    for line in manifest.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            sha, name = line.split(maxsplit=1)
            entries.append((sha, name.strip()))
    return entries


def problems(root: Path = HERE, manifest: Path | None = None) -> list[str]:
    manifest = manifest or root / "MANIFEST"
    listed = read(manifest)
    found = []
    names = [name for _, name in listed]
    for sha, name in listed:
        path = root / name
        if not path.exists():
            found.append(f"{name} is in the manifest but was deleted")
        elif digest(path) != sha:
            found.append(f"{name} changed after release; add a new migration instead")
    for name in migration_files(root):
        if name not in names:
            found.append(f"{name} is not in the manifest; run `python -m migrations.manifest`")
    if len(set(names)) != len(names):
        found.append("a file is listed twice")
    return found


def append_new(root: Path = HERE) -> list[str]:
    manifest = root / "MANIFEST"
    listed = {name for _, name in read(manifest)} if manifest.exists() else set()
    new = [name for name in migration_files(root) if name not in listed]
    with manifest.open("a") as out:
        for name in new:
            out.write(f"{digest(root / name)}  {name}\n")
    return new


if __name__ == "__main__":
    added = append_new()
    print("\n".join(f"added {name}" for name in added) or "nothing new")
    sys.exit(0)
