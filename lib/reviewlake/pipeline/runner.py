"""Running the stages in order with step caching.

Each stage records, beside its output (``<output>/_pipeline.json``), a fingerprint of what
it ran on: its settings in the profile and the fingerprint of its input (the raw files'
names, sizes and times for ingest; the upstream stage's fingerprint otherwise). A stage whose
fingerprint is unchanged and whose output is complete is skipped and says so; ``force``
re-runs everything. Changing a setting changes that stage's fingerprint and so every
downstream one. A failing quality gate stops the pipeline (exit 3) before prepare.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import Config
from ..errors import UserError
from ..fs import HadoopFS, join

log = logging.getLogger("reviewlake.pipeline")

RECORD = "_pipeline.json"


@dataclass
class Stage:
    name: str
    module: str                                   # has run(cfg, spark) and summary(result)
    output: Callable[[Config], str]
    done: str                                     # file under output proving completion
    settings: Callable[[Config], Any]
    upstream: str | None
    figures: Callable[[dict], str]
    needs_spark: bool = True
    enabled: Callable[[Config], bool] = lambda cfg: True
    check: Callable[[dict], None] | None = None   # raises to stop the pipeline (the gate)


def _ingest_figures(r: dict) -> str:
    snap = (r.get("snapshots") or {}).get("reviews")
    return (f"rows read {r.get('rows_read', 0)}, written {r.get('rows_written', 0)}, "
            f"quarantined {r.get('rows_quarantined', 0)}"
            + (f", snapshot {snap}" if snap else ""))


def _quality_figures(s: dict) -> str:
    c = s.get("counts", {})
    return (f"{s.get('status', '?')}: checks passed {c.get('passed', 0)}/{c.get('constraints', 0)}, "
            f"failed {c.get('failed_error', 0)} Error, {c.get('failed_warning', 0)} Warning "
            f"({s.get('engine', '?')} engine)")


def _prepare_figures(m: dict) -> str:
    splits = " / ".join(f"{name} {s['count']}" for name, s in m["splits"].items())
    return f"records {splits}, max_seq_length {m['max_seq_length']}"


def _quality_gate(summary: dict) -> None:
    from ..quality.job import gate

    gate(summary)


def _train_figures(m: dict) -> str:
    b = (m.get("baseline") or {}).get("test", {}).get("accuracy")
    vs = "" if b is None else (f", baseline {b:.3f}" +
                               ("" if m.get("beats_baseline", True) else " (NOT BEATEN)"))
    return (f"test accuracy {m['test']['accuracy']:.3f} on {m['test']['count']} reviews{vs}, "
            f"{m['world_size']} processes")


STAGES: list[Stage] = [
    Stage("generate", "reviewlake.generate.cli", lambda c: c.get("data.raw"), "_generated.json",
          lambda c: {"generate": c.section("generate"), "raw": c.get("data.raw")}, None,
          lambda r: f"{r['lines']} lines, {len(r['malformed_lines'])} malformed",
          needs_spark=False, enabled=lambda c: int(c.get("generate.rows") or 0) > 0),
    Stage("ingest", "reviewlake.ingest.cli", lambda c: c.get("data.lake"), "_reports/ingest.json",
          lambda c: {"ingest": c.section("ingest"), "raw": c.get("data.raw"),
                     "lake": c.get("data.lake"), "catalog": c.section("catalog")}, "raw",
          _ingest_figures),
    Stage("quality", "reviewlake.quality.cli", lambda c: c.get("data.quality"), "summary.json",
          lambda c: {"quality": c.section("quality"), "lake": c.get("data.lake"),
                     "quality_dir": c.get("data.quality")}, "ingest", _quality_figures,
          check=_quality_gate),
    Stage("prepare", "reviewlake.features.cli", lambda c: c.get("data.features"), "_meta.json",
          lambda c: {"prepare": c.section("prepare"), "lake": c.get("data.lake"),
                     "features": c.get("data.features")}, "quality", _prepare_figures),
    Stage("train", "reviewlake.train.cli", lambda c: c.get("data.model"), "metrics.json",
          lambda c: {"train": c.section("train"), "features": c.get("data.features"),
                     "model": c.get("data.model")}, "prepare", _train_figures, needs_spark=False),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Outcome:
    stage: str
    status: str                      # ran | skipped | failed | disabled
    seconds: float = 0.0
    figures: str = ""
    output: str = ""
    fingerprint: str = ""
    result: dict = field(default_factory=dict)


class Pipeline:
    def __init__(self, cfg: Config, stages: list[str] | None = None, force: bool = False,
                 spark=None):
        unknown = sorted(set(stages or []) - set(stage_names()))
        if unknown:
            raise UserError(f"unknown stage(s) {', '.join(unknown)}; stages are "
                            f"{', '.join(stage_names())}")
        self.cfg = cfg
        self.selected = stages or stage_names()
        self.force = force
        self._spark = spark
        self.fingerprints: dict[str, str] = {}
        self.outcomes: list[Outcome] = []

    @property
    def spark(self):
        if self._spark is None:
            from ..session import get_spark

            self._spark = get_spark(self.cfg, "pipeline")
        return self._spark

    def _fs(self) -> HadoopFS:
        return HadoopFS(self.spark)

    def _raw_listing(self) -> list:
        from ..ingest.cli import inputs_of
        from ..ingest.job import list_inputs

        try:
            files = list_inputs(self._fs(), inputs_of(self.cfg))
        except UserError:
            return []
        return [(f.path, f.size, f.mtime) for f in files]

    def fingerprint(self, stage: Stage) -> str:
        if stage.upstream == "raw":
            upstream = _digest(self._raw_listing())
        elif stage.upstream:
            upstream = self.fingerprints.get(stage.upstream) or self._recorded_upstream(stage.upstream)
        else:
            upstream = None
        return _digest({"stage": stage.name, "settings": stage.settings(self.cfg),
                        "input": upstream})

    def _recorded_upstream(self, name: str) -> str | None:
        up = next((s for s in STAGES if s.name == name), None)
        if up is None:
            return None
        record = self._fs().read_json(join(str(up.output(self.cfg)), RECORD))
        return record.get("fingerprint") if record else None

    def run(self) -> list[Outcome]:
        for stage in STAGES:
            if stage.name not in self.selected:
                continue
            if not stage.enabled(self.cfg):
                self.outcomes.append(Outcome(stage.name, "disabled"))
                continue
            out = str(stage.output(self.cfg))
            fp = self.fingerprint(stage)
            self.fingerprints[stage.name] = fp
            fs = self._fs()
            record = fs.read_json(join(out, RECORD)) or {}
            if (not self.force and record.get("fingerprint") == fp
                    and record.get("status", "ok") == "ok" and fs.exists(join(out, stage.done))):
                log.info("%s: unchanged since %s, skipped", stage.name, record.get("finished_at"))
                self.outcomes.append(Outcome(stage.name, "skipped", 0.0, record.get("figures", ""),
                                             out, fp))
                continue
            log.info("%s: running", stage.name)
            module = importlib.import_module(stage.module)
            started = time.time()
            try:
                result = module.run(self.cfg, self.spark if stage.needs_spark else None)
            except UserError as exc:
                self.outcomes.append(Outcome(stage.name, "failed", round(time.time() - started, 1),
                                             str(exc), out, fp))
                raise
            seconds = round(time.time() - started, 1)
            figures = stage.figures(result)
            print(module.summary(result), flush=True)
            passed = False
            try:
                if stage.check:
                    stage.check(result)
                passed = True
            finally:
                # a failed check is recorded too, so an unchanged re-run checks again
                fs.write_json(join(out, RECORD), {
                    "stage": stage.name, "fingerprint": fp, "figures": figures,
                    "seconds": seconds, "status": "ok" if passed else "failed",
                    "finished_at": dt.datetime.now(dt.timezone.utc).isoformat()})
                self.outcomes.append(Outcome(stage.name, "ran" if passed else "failed", seconds,
                                             figures, out, fp, result))
        return self.outcomes


def format_summary(outcomes: list[Outcome], total_seconds: float) -> str:
    rows = [("stage", "status", "seconds", "key figures", "output")]
    rows += [(o.stage, o.status, f"{o.seconds:.1f}" if o.status in ("ran", "failed") else "-",
              o.figures, o.output) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["", "pipeline summary"]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    lines.append(f"  total {total_seconds:.1f}s")
    return "\n".join(lines)
