"""A features directory in prepare's contract, assembled from per-split directories.

SageMaker delivers the features as channels (``train`` sharded by S3 key: a host holds only
its share of the train files; ``meta``, ``tokenizer``, ``validation``, ``test`` complete), and
the EMR path stages the same layout on each host (:mod:`reviewlake.train.remote`).
:func:`features_view` turns such directories into a directory :func:`~reviewlake.train.meta.
load_features` accepts: symlinks to the files, and a ``_meta.json`` that lists the train files
this host has while keeping the global counts (steps per epoch are computed from them). The
processes then train with ``shard="host"``.
"""
from __future__ import annotations

import json
import os
import posixpath
from typing import Any, Mapping

from ..errors import UserError

CHANNELS = ("train", "meta", "tokenizer", "validation", "test")
REPLICATED_SPLITS = ("validation", "test")


def split_dir(meta: Mapping[str, Any], split: str) -> str:
    """The directory (relative to FEATURES) holding a split's files, e.g. ``train``."""
    files = meta["splits"][split]["files"]
    dirs = {posixpath.dirname(f) for f in files}
    if len(dirs) != 1:
        raise UserError(f"the {split} files of _meta.json are not in one directory")
    return dirs.pop()


def tokenizer_dir(meta: Mapping[str, Any]) -> str:
    path = (meta.get("tokenizer") or {}).get("path", "tokenizer")
    if posixpath.isabs(path):
        raise UserError(f"_meta.json names an absolute tokenizer path {path}; on a cluster the "
                        "tokenizer must live inside the features directory")
    return path.strip("/")


def _find(root: str, name: str) -> str | None:
    for folder, _, files in os.walk(root):
        if name in files:
            return os.path.join(folder, name)
    return None


def features_view(channels: Mapping[str, str], dest: str) -> str:
    """A features directory (symlinks into the channels) that load_features accepts."""
    meta_path = _find(channels["meta"], "_meta.json")
    if meta_path is None:
        raise UserError(f"no _meta.json in the meta channel ({channels['meta']})")
    with open(meta_path, encoding="utf-8") as fh:
        meta = json.load(fh)
    os.makedirs(dest, exist_ok=True)
    for split in ("train", *REPLICATED_SPLITS):
        rel_dir = split_dir(meta, split)
        present = []
        for rel in meta["splits"][split]["files"]:
            src = os.path.join(channels[split], posixpath.relpath(rel, rel_dir))
            if os.path.isfile(src):
                os.makedirs(os.path.join(dest, posixpath.dirname(rel)), exist_ok=True)
                link = os.path.join(dest, rel)
                if not os.path.lexists(link):
                    os.symlink(src, link)
                present.append(rel)
            elif split in REPLICATED_SPLITS:
                raise UserError(f"{split} file {rel} missing from its channel ({channels[split]}); "
                                "the channel must be fully replicated")
        if split == "train":
            if not present:
                raise UserError(f"this host received none of the {len(meta['splits'][split]['files'])}"
                                " train files: use at least as many train files as instances")
            # Only this host's share; the count stays global (steps per epoch use it).
            meta["splits"][split]["files_total"] = len(meta["splits"][split]["files"])
            meta["splits"][split]["files"] = present
    meta["tokenizer"] = dict(meta.get("tokenizer") or {}, path=channels["tokenizer"])
    with open(os.path.join(dest, "_meta.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=2)
    return dest
