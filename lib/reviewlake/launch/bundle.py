"""The packaged library for ``--py-files``: a zip of ``lib/reviewlake`` (with its profiles)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

from .. import __version__

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def build_zip(dest_dir: str | os.PathLike) -> Path:
    """Write ``reviewlake-<version>.zip`` (importable from ``--py-files``) and return its path.

    Rebuilt only when a source file is newer than the zip.
    """
    dest = Path(dest_dir) / f"reviewlake-{__version__}.zip"
    sources = [p for p in sorted(PACKAGE_DIR.rglob("*"))
               if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc",)]
    conf_dir = PACKAGE_DIR.parent.parent / "conf"
    profiles = sorted([*conf_dir.glob("*.yaml"), *conf_dir.glob("*.properties")]) \
        if conf_dir.is_dir() else []
    newest = max(p.stat().st_mtime for p in sources + profiles)
    if dest.exists() and dest.stat().st_mtime >= newest:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sources:
            zf.write(path, Path("reviewlake") / path.relative_to(PACKAGE_DIR))
        for path in profiles:  # profiles travel inside the package (reviewlake/conf/)
            zf.write(path, Path("reviewlake") / "conf" / path.name)
    os.replace(tmp, dest)
    return dest
