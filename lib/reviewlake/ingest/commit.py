"""Committing a run's output into the lake so that readers never see a partial lake.

A run writes everything under ``LAKE/_staging/<run_id>/``. Nothing in ``LAKE/reviews`` or
``LAKE/_quarantine`` changes until the run has written and verified all of it. Then:

1. ``LAKE/_commit.json`` (the marker) records the run id, the mode, the moves to make and the
   reports to write;
2. the moves are made: in ``overwrite`` mode each target directory is swapped for its staged
   twin (the old one is parked under ``_previous/<run_id>/`` until the end); in ``append``
   mode each staged file is moved into the existing directories;
3. the reports and the manifest of ingested files are written, then the marker, the parked
   directories and the staging area are removed.

A run killed before step 1 leaves the previous lake untouched (its staging area is removed by
the next run). A run killed during steps 2-3 is rolled forward by the next run, or by anything
that calls :func:`recover`, from the marker alone: every step can be repeated.
"""
from __future__ import annotations

import logging
from typing import Any

from ..fs import HadoopFS, join

log = logging.getLogger(__name__)

MARKER = "_commit.json"
STAGING = "_staging"
PREVIOUS = "_previous"
REPORTS = "_reports"


def staging_dir(lake: str, run_id: str) -> str:
    return join(lake, STAGING, run_id)


def clean_stale_staging(fs: HadoopFS, lake: str, keep: str | None = None) -> list[str]:
    """Remove staging areas of runs that died before committing."""
    removed = []
    for path in fs.list_subdirs(join(lake, STAGING)):
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


def apply_marker(fs: HadoopFS, lake: str, marker: dict[str, Any]) -> None:
    """Make (or finish making) the moves a marker describes, then write its reports."""
    run_id = marker["run_id"]
    for move in marker["moves"]:
        src, dst = move["from"], move["to"]
        if marker["mode"] == "overwrite":
            if fs.exists(src):
                if fs.exists(dst):
                    parked = join(lake, PREVIOUS, run_id, dst.rstrip("/").rsplit("/", 1)[-1])
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
    fs.delete(join(lake, MARKER), recursive=False)
    fs.delete(join(lake, PREVIOUS, run_id))
    fs.delete(staging_dir(lake, run_id))
    for parent in (join(lake, PREVIOUS), join(lake, STAGING)):
        if fs.exists(parent) and not fs.list_dir(parent):
            fs.delete(parent)


def commit(fs: HadoopFS, lake: str, marker: dict[str, Any]) -> None:
    fs.write_json(join(lake, MARKER), marker)
    apply_marker(fs, lake, marker)


def recover(fs: HadoopFS, lake: str) -> str | None:
    """Roll forward a commit that was interrupted; returns the run id it finished, if any."""
    marker = fs.read_json(join(lake, MARKER))
    if not marker:
        return None
    log.warning("finishing the interrupted commit of ingest run %s", marker.get("run_id"))
    apply_marker(fs, lake, marker)
    return marker.get("run_id")
