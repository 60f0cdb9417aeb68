"""``reviewlake quality``: Deequ checks on the lake as a pipeline gate (exit 3 on an Error)."""
from __future__ import annotations

import argparse

import os

from ..cli import add_common, add_snapshot_args, load_config
from ..errors import UserError
from ..fs import is_remote


def register(sub) -> None:
    p = sub.add_parser("quality", help="Deequ checks on the lake: metrics, history, anomalies, "
                                       "suggestions, report; exit 3 if an Error check fails")
    add_common(p)
    p.add_argument("--input", metavar="LAKE", help="the lake written by ingest (default: data.lake)")
    p.add_argument("--output", metavar="QDIR",
                   help="where the results and report.html go (default: data.quality)")
    p.add_argument("--suite", metavar="YAML",
                   help="the quality suite: a path or a name in conf/ (default: quality.suite)")
    p.add_argument("--engine", choices=["auto", "deequ", "spark"],
                   help="deequ: PyDeequ on the Deequ jar; spark: Spark SQL, no jar; auto: deequ "
                        "when the jar is on the classpath (default: quality.engine)")
    p.add_argument("--repository", metavar="PATH",
                   help="metrics repository, local or s3a:// (default: QDIR/_history)")
    add_snapshot_args(p)
    p.add_argument("--tags", nargs="+", metavar="K=V",
                   help="tags of this run in the repository; anomaly checks compare with runs "
                        "that have the same tags")
    p.set_defaults(func=cmd_quality)


def cmd_quality(args: argparse.Namespace) -> int:
    from .job import gate

    cfg = load_config(args, {
        "data.lake": args.input, "data.quality": args.output, "quality.suite": args.suite,
        "quality.engine": args.engine, "quality.repository": args.repository,
        "quality.snapshot": args.snapshot, "quality.as_of": args.as_of,
        "quality.table": args.table,
    })
    result = run(cfg, None, extra_tags=args.tags)
    print(summary(result))
    gate(result)
    return 0


def options_from(cfg, extra_tags: list[str] | None = None):
    """(lake, QDIR, QualityOptions) from a loaded profile; one-line errors before Spark."""
    from .job import QualityOptions
    from .repository import parse_tags
    from .suite import load_suite

    lake, qdir = cfg.get("data.lake"), cfg.get("data.quality")
    if not lake:
        raise UserError("no input given: pass --input LAKE or set data.lake in the profile")
    if not qdir:
        raise UserError("no output given: pass --output QDIR or set data.quality in the profile")
    if not cfg.get("quality.table"):
        _check_local_lake(str(lake))
    tags = parse_tags(cfg.get("quality.tags") or {})
    tags.update(parse_tags(extra_tags or []))
    params = cfg.get("quality.params") or {}
    if not isinstance(params, dict):
        raise UserError("quality.params must be a mapping of numbers, e.g. "
                        "--set quality.params.min_size=1000")
    suite = load_suite(cfg.get("quality.suite"), params)   # a bad suite fails before Spark
    engine = str(cfg.get("quality.engine") or "auto")
    return str(lake), str(qdir), QualityOptions(
        suite=suite, engine=engine, repository=cfg.get("quality.repository"), tags=tags,
        examples=int(cfg.get("quality.examples", 5)), catalog=cfg.section("catalog"),
        snapshot=cfg.get("quality.snapshot"), as_of=cfg.get("quality.as_of"),
        table=cfg.get("quality.table"))


def run(cfg, spark=None, extra_tags: list[str] | None = None) -> dict:
    """The stage from a loaded profile; returns the run's summary (summary.json). The gate is
    the caller's: ``job.gate(result)`` raises exit code 3 on an Error-level failure."""
    from ..session import get_spark
    from .job import run_quality

    lake, qdir, options = options_from(cfg, extra_tags)
    spark = spark or get_spark(cfg, "quality")
    return run_quality(spark, lake, qdir, options)


def summary(result: dict) -> str:
    from .report import format_summary

    return format_summary(result)


def _check_local_lake(lake: str) -> None:
    """Fail before starting Spark when a local lake obviously does not exist."""
    if is_remote(lake):
        return
    local = os.path.expanduser(lake[len("file://"):] if lake.startswith("file://") else lake)
    if not os.path.isdir(local):
        raise UserError(f"no lake at {lake}: expected {lake.rstrip('/')}/reviews "
                        f"(write it with reviewlake ingest)")
