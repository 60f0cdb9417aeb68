"""The metrics repository: every run's metrics, keyed by time and tags (local path or s3a://).

Layout (one small JSON file per run, so runs never rewrite each other's history and a
repository on S3 needs no read-modify-write)::

    REPO/runs/<dataset_date, 13 digits>-<run_id>.json
        {"result_key": {"dataset_date": <ms since epoch>, "tags": {"k": "v"}},
         "run_id": ..., "engine": ..., "input": ..., "suite": ...,
         "metrics": [{"entity", "instance", "name", "value"}, ...],
         "status": "passed" | "failed"}

``dataset_date`` and ``tags`` are Deequ's ResultKey. Both engines write this history and the
anomaly checks read it, so runs of either engine make one history. The ``deequ`` engine also
keeps Deequ's own FileSystemMetricsRepository file at ``REPO/deequ/metrics.json`` (readable
with PyDeequ's ``FileSystemMetricsRepository(spark, path).load()``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..errors import UserError
from ..fs import HadoopFS, join

log = logging.getLogger(__name__)

RUNS = "runs"
DEEQU_FILE = "deequ/metrics.json"


@dataclass
class RunRecord:
    dataset_date: int
    tags: dict[str, str]
    run_id: str
    metrics: list[dict[str, Any]]
    status: str = ""
    engine: str = ""
    input: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def value(self, entity: str, instance: str, name: str) -> float | None:
        for m in self.metrics:
            if (m.get("entity"), m.get("instance"), m.get("name")) == (entity, instance, name):
                v = m.get("value")
                return None if v is None else float(v)
        return None

    def to_json(self) -> dict[str, Any]:
        return {"result_key": {"dataset_date": self.dataset_date, "tags": self.tags},
                "run_id": self.run_id, "status": self.status, "engine": self.engine,
                "input": self.input, "metrics": self.metrics, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunRecord":
        key = data.get("result_key") or {}
        known = {"result_key", "run_id", "status", "engine", "input", "metrics"}
        return cls(int(key.get("dataset_date", 0)), {str(k): str(v) for k, v in
                                                     (key.get("tags") or {}).items()},
                   str(data.get("run_id", "")), list(data.get("metrics") or []),
                   str(data.get("status", "")), str(data.get("engine", "")),
                   str(data.get("input", "")),
                   {k: v for k, v in data.items() if k not in known})


def parse_tags(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, str]:
    """``["dataset=reviews", "env=prod"]`` (or a mapping from the profile) -> dict."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out: dict[str, str] = {}
    for item in items:
        if "=" not in str(item) or not str(item).split("=", 1)[0].strip():
            raise UserError(f"--tags expects key=value, got {item!r}")
        k, v = str(item).split("=", 1)
        out[k.strip()] = v.strip()
    return out


class MetricsRepository:
    def __init__(self, fs: HadoopFS, path: str):
        self.fs = fs
        self.path = path.rstrip("/")

    @property
    def deequ_path(self) -> str:
        return join(self.path, DEEQU_FILE)

    def load(self) -> list[RunRecord]:
        """Every run in the repository, oldest first."""
        runs_dir = join(self.path, RUNS)
        try:
            entries = self.fs.list_dir(runs_dir)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise UserError(f"cannot read metrics repository {self.path}: {first[:200]}") from None
        records = []
        for e in entries:
            name = e.path.rstrip("/").rsplit("/", 1)[-1]
            if not name.endswith(".json") or name.startswith((".", "_")):
                continue
            data = self.fs.read_json(e.path)
            if isinstance(data, dict):
                records.append(RunRecord.from_json(data))
        records.sort(key=lambda r: (r.dataset_date, r.run_id))
        return records

    def save(self, record: RunRecord) -> str:
        path = join(self.path, RUNS, f"{record.dataset_date:013d}-{record.run_id}.json")
        try:
            self.fs.write_json(path, record.to_json())
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise UserError(f"cannot write metrics repository {self.path}: {first[:200]}") from None
        return path


def matching(records: Iterable[RunRecord], tags: Mapping[str, str]) -> list[RunRecord]:
    """Runs whose tags include all of ``tags`` (Deequ's ``withTagValues``)."""
    return [r for r in records if all(r.tags.get(k) == v for k, v in tags.items())]
