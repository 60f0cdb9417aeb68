"""Committing a run's output so that readers never see a partial one (ingest, prepare).

A stage owns an output root (ingest: the lake; prepare: the features directory). A run writes
everything under ``ROOT/_staging/<run_id>/``. Nothing else under ROOT changes until the run
has written and verified all of it. Then:

1. ``ROOT/_commit.json`` (the marker) records the run id, the mode, the files to retire, the
   moves to make and the small JSON files (reports, manifests) to write;
2. the files to retire are deleted (prepare retires ``_meta.json`` first, so nobody reads a
   description of files that are being swapped);
3. the moves are made: in ``overwrite`` mode each target directory is swapped for its staged
   twin (the old one is parked under ``_previous/<run_id>/`` until the end); in ``append``
   mode each staged file is moved into the existing directories;
4. the JSON files are written, then the marker, the parked directories and the staging area
   are removed.

A run killed before step 1 leaves the previous output untouched (its staging area is removed
by the next run). A run killed during steps 2-4 is rolled forward by the next run, or by
anything that calls :func:`recover`, from the marker alone: every step can be repeated.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from .fs import HadoopFS, join

log = logging.getLogger(__name__)

MARKER = "_commit.json"
STAGING = "_staging"
PREVIOUS = "_previous"
REPORTS = "_reports"


def new_run_id() -> str:
    """A run's id: its UTC start time and a random suffix (sorts by time, unique per run)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def staging_dir(root: str, run_id: str) -> str:
    return join(root, STAGING, run_id)


def clean_stale_staging(fs: HadoopFS, root: str, keep: str | None = None) -> list[str]:
    """Remove staging areas of runs that died before committing."""
    removed = []
    for path in fs.list_subdirs(join(root, STAGING)):
        if keep and path.rstrip("/").endswith("/" + keep):
            continue
        fs.delete(path)
        removed.append(path)
    return removed


def _move_files(fs: HadoopFS, src: str, dst: str) -> int:
    """Move every file under src into the same relative place under dst (append mode)."""
    moved = 0
    for entry in fs.list_dir(src):
        name = entry.path.rstrip("/").rsplit("/", 1)[-1]
        target = join(dst, name)
        if fs.is_dir(entry.path):
            fs.mkdirs(target)
            moved += _move_files(fs, entry.path, target)
        elif not name.startswith(("_", ".")):
            fs.rename(entry.path, target)
            moved += 1
    return moved


def apply_marker(fs: HadoopFS, root: str, marker: dict[str, Any]) -> None:
    """Make (or finish making) the moves a marker describes, then write its reports."""
    run_id = marker["run_id"]
    for path in marker.get("retire", []):
        fs.delete(path, recursive=False)
    for move in marker["moves"]:
        src, dst = move["from"], move["to"]
        if marker["mode"] == "overwrite":
            if fs.exists(src):
                if fs.exists(dst):
                    parked = join(root, PREVIOUS, run_id, dst.rstrip("/").rsplit("/", 1)[-1])
                    if fs.exists(parked):
                        fs.delete(parked)
                    fs.rename(dst, parked)
                fs.rename(src, dst)
        else:  # append
            if fs.exists(src):
                fs.mkdirs(dst)
                _move_files(fs, src, dst)
                fs.delete(src)
    for path, content in marker.get("files", {}).items():
        fs.write_json(path, content)
    fs.delete(join(root, MARKER), recursive=False)
    fs.delete(join(root, PREVIOUS, run_id))
    fs.delete(staging_dir(root, run_id))
    for parent in (join(root, PREVIOUS), join(root, STAGING)):
        if fs.exists(parent) and not fs.list_dir(parent):
            fs.delete(parent)


def commit(fs: HadoopFS, root: str, marker: dict[str, Any]) -> None:
    fs.write_json(join(root, MARKER), marker)
    apply_marker(fs, root, marker)


def recover(fs: HadoopFS, root: str) -> str | None:
    """Roll forward a commit that was interrupted; returns the run id it finished, if any."""
    marker = fs.read_json(join(root, MARKER))
    if not marker:
        return None
    log.warning("finishing the interrupted commit of %s run %s in %s",
                marker.get("stage", "ingest"), marker.get("run_id"), root)
    apply_marker(fs, root, marker)
    return marker.get("run_id")
