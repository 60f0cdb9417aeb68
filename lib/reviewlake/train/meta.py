"""Reading the features contract written by prepare: FEATURES/_meta.json and the TFRecords."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from ..errors import UserError

SPLITS = ("train", "validation", "test")
FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "label_ids")


@dataclass
class Features:
    root: str
    meta: dict[str, Any]

    @property
    def max_seq_length(self) -> int:
        return int(self.meta["max_seq_length"])

    @property
    def num_labels(self) -> int:
        return int(self.meta.get("num_labels", 5))

    @property
    def label_offset(self) -> int:
        return int(self.meta.get("label_offset", 1))

    @property
    def compression(self) -> str | None:
        return "GZIP" if self.meta.get("compression") == "gzip" else None

    def count(self, split: str) -> int:
        return int(self.meta["splits"][split]["count"])

    def files(self, split: str) -> list[str]:
        return [os.path.join(self.root, f) for f in self.meta["splits"][split]["files"]]

    def lineage(self, features: str | None = None) -> dict[str, Any]:
        """Where these features came from, for metrics.json: the features run and the lake
        it read (an Iceberg table at one snapshot, or a Parquet directory)."""
        lake = self.meta.get("lake") or {"format": "parquet", "path": self.meta.get("source_lake")}
        return {"features": features or os.path.abspath(self.root),
                "features_run": self.meta.get("run_id"),
                "features_created_at": self.meta.get("created_at"),
                "lake": lake}

    @property
    def tokenizer_dir(self) -> str:
        path = self.meta.get("tokenizer", {}).get("path", "tokenizer")
        return path if os.path.isabs(path) else os.path.join(self.root, path)


def check_sizes(features: Features, path: str) -> None:
    """The files train reads (the splits' and the tokenizer's) against the sizes
    ``_meta.json`` lists (``files``, ``tokenizer.files``; older features have none): a file
    of another size is a one-line error. Files ``_meta.json`` does not list are never read."""
    sizes = features.meta.get("files") or {}
    wanted = [(os.path.join(features.root, rel), sizes[rel]) for split in SPLITS
              for rel in features.meta["splits"][split]["files"] if rel in sizes]
    tok = features.meta.get("tokenizer") or {}
    wanted += [(os.path.join(features.tokenizer_dir, rel), size)
               for rel, size in (tok.get("files") or {}).items()]
    for file, size in wanted:
        actual = os.path.getsize(file) if os.path.isfile(file) else None
        if actual != size:
            found = "it is missing" if actual is None else f"it has {actual}"
            raise UserError(f"{file} is listed in {path} with {size} bytes but {found}: the "
                            f"features are damaged or from another run; re-run reviewlake "
                            f"prepare")


def load_features(root: str) -> Features:
    """The features directory, checked against the contract with one-line errors."""
    path = os.path.join(root, "_meta.json")
    if not os.path.isdir(root):
        raise UserError(f"features directory not found: {root} (run reviewlake prepare first)")
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: {root} is not the output of reviewlake prepare")
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.load(fh)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg}); re-run reviewlake prepare") from None
    missing = [k for k in ("max_seq_length", "splits") if k not in meta]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; re-run reviewlake prepare")
    features = Features(root=root, meta=meta)
    for split in SPLITS:
        if split not in meta["splits"]:
            raise UserError(f"{path} has no {split} split; re-run reviewlake prepare")
        absent = [f for f in features.files(split) if not os.path.exists(f)]
        if absent:
            raise UserError(f"{len(absent)} {split} file(s) listed in {path} are missing, "
                            f"e.g. {absent[0]}")
    check_sizes(features, path)
    if features.count("train") == 0:
        raise UserError(f"the train split in {root} is empty; prepare needs more data")
    return features
