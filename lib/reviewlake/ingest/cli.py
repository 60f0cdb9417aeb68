"""``reviewlake ingest``: TSV -> Parquet lake partitioned by product_category."""
from __future__ import annotations

import argparse
import glob
import os
from typing import Any, Sequence

from ..cli import add_common, load_config
from ..errors import UserError
from ..fs import check_writable_output, has_glob, is_remote


def register(sub) -> None:
    p = sub.add_parser("ingest", help="TSV -> Parquet lake partitioned by product_category")
    add_common(p)
    p.add_argument("--input", nargs="+", metavar="PATH",
                   help="files, directories or globs; local, hdfs://, s3a:// (default: data.raw)")
    p.add_argument("--output", metavar="LAKE", help="the lake (default: data.lake)")
    p.add_argument("--mode", choices=["overwrite", "append-new"],
                   help="overwrite: rebuild the lake from the inputs; append-new: add only "
                        "files not ingested before (default: ingest.mode)")
    p.add_argument("--format", choices=["iceberg", "parquet", "auto"],
                   help="iceberg: Iceberg tables in the profile's catalog; parquet: plain "
                        "Parquet directories; auto: iceberg when its jar is on the classpath "
                        "(default: ingest.format)")
    p.add_argument("--max-split-bytes", help="largest input split per task (default: 1g)")
    p.add_argument("--files-per-category", type=int,
                   help="shuffle so each category gets at most N files (default: no shuffle)")
    p.add_argument("--spread", metavar="auto|off|N",
                   help="spread the lines of gzip inputs (one task per file) over the cores "
                        "after decompression (default: ingest.spread, auto)")
    p.set_defaults(func=cmd_ingest)


def _check_local_inputs(paths: Sequence[str]) -> None:
    """Fail before starting Spark when a local input obviously does not exist."""
    for path in paths:
        if is_remote(path):
            continue
        local = path[len("file://"):] if path.startswith("file://") else path
        if has_glob(local):
            if not glob.glob(os.path.expanduser(local)):
                raise UserError(f"no input files matched {path} (check the path, or quote a glob)")
        elif not os.path.exists(os.path.expanduser(local)):
            raise UserError(f"input not found: {path}")


def cmd_ingest(args: argparse.Namespace) -> int:
    cfg = load_config(args, {
        "ingest.input": args.input, "data.lake": args.output, "ingest.mode": args.mode,
        "ingest.format": args.format,
        "ingest.max_split_bytes": args.max_split_bytes,
        "ingest.files_per_category": args.files_per_category,
        "ingest.spread": args.spread,
    })
    print(summary(run(cfg)))
    return 0


def inputs_of(cfg) -> list[str]:
    inputs = cfg.get("ingest.input") or cfg.get("data.raw")
    return [inputs] if isinstance(inputs, str) else list(inputs or [])


def run(cfg, spark=None) -> dict:
    """The stage from a loaded profile; returns its report (also used by the pipeline)."""
    from ..session import get_spark
    from .job import IngestOptions, run_ingest

    inputs = inputs_of(cfg)
    lake = cfg.get("data.lake")
    if not inputs:
        raise UserError("no input given: pass --input PATH or set data.raw in the profile")
    if not lake:
        raise UserError("no output given: pass --output LAKE or set data.lake in the profile")
    _check_local_inputs(inputs)
    check_writable_output(lake)
    opts = IngestOptions(
        mode=cfg.get("ingest.mode", "overwrite"),
        max_split_bytes=cfg.get("ingest.max_split_bytes"),
        files_per_category=cfg.get("ingest.files_per_category"),
        format=cfg.get("ingest.format") or "parquet",
        catalog=cfg.section("catalog"),
        spread=cfg.get("ingest.spread", "auto"),
    )
    spark = spark or get_spark(cfg, "ingest")
    return run_ingest(spark, inputs, lake, opts)


def summary(report: dict[str, Any]) -> str:
    lines = [f"ingest {report['status']}: run {report['run_id']} ({report['mode']}) "
             f"into {report['lake']}"]
    if report["status"] == "nothing_new":
        lines.append(f"  no new files ({len(report['skipped_files'])} already ingested)")
        for name, sid in (report.get("snapshots") or {}).items():
            lines.append(f"  {report['tables'][name]} unchanged at snapshot {sid}")
        return "\n".join(lines)
    lines.append(f"  files {len(report['files'])}   rows read {report['rows_read']}   "
                 f"written {report['rows_written']}   quarantined {report['rows_quarantined']}   "
                 f"in {report['seconds']:.1f}s ({report['rows_per_second']:.0f} rows/s)")
    for reason, count in report["by_reason"].items():
        lines.append(f"  quarantined {reason:<16} {count}")
    snaps = report.get("snapshots") or {}
    for name, label in (("reviews", "reviews   "), ("quarantine", "quarantine")):
        line = f"  {label} {report['output'][name]}"
        if name == "reviews":
            line += f" ({len(report['rows_by_category'])} categories)"
        if name in snaps:
            line += f"  snapshot {snaps[name]}"
        lines.append(line)
    return "\n".join(lines)
