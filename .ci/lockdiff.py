"""What moved between two lock files (uv's universal output), for the Python running this script: `make test-newest`
prints it before testing the newest releases. Usage: python .ci/lockdiff.py OLD.lock NEW.lock"""
from __future__ import annotations

import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def pins(path: str) -> dict[str, str]:
    """name -> version of the lines that apply to this interpreter and platform."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        req = Requirement(line)
        if req.marker is not None and not Marker(str(req.marker)).evaluate():
            continue
        out[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==").split("+")[0]
    return out


def main(old_path: str, new_path: str) -> int:
    old, new = pins(old_path), pins(new_path)
    moved = [f"  {n}: {old[n]} -> {new[n]}" for n in sorted(old.keys() & new.keys()) if old[n] != new[n]]
    added = [f"  {n}: new, {new[n]}" for n in sorted(new.keys() - old.keys())]
    gone = [f"  {n}: {old[n]}, no longer needed" for n in sorted(old.keys() - new.keys())]
    changes = moved + added + gone
    where = f"Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform}"
    if not changes:
        print(f"newest releases: nothing moved against {old_path} ({where})")
    else:
        print(f"newest releases against {old_path} ({where}): {len(moved)} moved, {len(added)} new, {len(gone)} gone")
        print("\n".join(changes))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
