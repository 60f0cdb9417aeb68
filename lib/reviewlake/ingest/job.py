"""The ingest stage: raw review TSV -> Parquet lake partitioned by product_category.

One pass over the input does everything: each line is classified (header, good row, rejected
row with a reason) and written once, partitioned by ``product_category``; rejected lines go
to a reserved partition of the same write, which is then turned into ``_quarantine/``. So
ingest reads its input once however many lines are bad, and the accounting comes from the
same pass (Spark's observed metrics) and is checked against what was actually written.

Layout of a lake::

    LAKE/reviews/product_category=<c>/part-*.parquet   the typed reviews
    LAKE/_quarantine/part-*.parquet                    every rejected line, with its reason
    LAKE/_reports/ingest.json                          the latest run's report
    LAKE/_reports/runs/ingest-<run_id>.json            every run's report
    LAKE/_reports/ingested_files.json                  input files ingested so far

With ``format="iceberg"`` the reviews and the quarantine are Iceberg tables instead
(:mod:`reviewlake.lake`, the commit in :mod:`reviewlake.ingest.iceberg`); the reports stay in
``LAKE/_reports/`` and name the tables and the run's snapshot ids.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterable

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from .. import lake as lake_mod
from ..commit import new_run_id
from ..errors import UserError
from ..fs import FileInfo, HadoopFS, canonical_uri, join, qualify
from ..schema import LAKE_COLUMNS, PARTITION_COLUMN
from ..session import spark_conf
from . import commit as commit_mod
from . import parse as P

log = logging.getLogger(__name__)

REVIEWS = "reviews"
QUARANTINE = "_quarantine"
REPORT = "ingest.json"
MANIFEST = "ingested_files.json"
MODES = ("overwrite", "append-new")
# Rejected lines travel in the same write as good rows, in this reserved partition.
SENTINEL = "__reviewlake_rejected__"
# High-cardinality text columns: dictionary encoding only costs time there (every value is
# new), and in a write split 43 ways each small file would retry it from scratch.
NO_DICTIONARY = ("review_body", "review_id", "customer_id")

QUARANTINE_COLUMNS = ("run_id", "source_file", "line_number", "split_start", "reason",
                      "detail", "raw", "raw_bytes")


class AccountingError(UserError):
    """rows read != rows written + rows quarantined: the run is not committed."""

    exit_code = 4


@dataclass
class IngestOptions:
    mode: str = "overwrite"
    max_split_bytes: str | None = "1g"
    files_per_category: int | None = None
    compression: str = "snappy"
    format: str = "parquet"                 # iceberg | parquet | auto (reviewlake.lake)
    catalog: dict[str, Any] | None = None   # the profile's catalog section (iceberg)
    spread: str | int | None = "auto"


# Compressed files Spark cannot split: each is decompressed and read by one task.
UNSPLITTABLE = (".gz", ".gzip", ".deflate", ".zst", ".lz4", ".snappy")
SPREAD_MIN_BYTES = 32 << 20   # auto: an unsplittable file smaller than this is not worth a shuffle
TEXT_PER_COMPRESSED_BYTE = 4  # auto: what a compressed byte of review TSV weighs in text bytes
# auto: fewer cores than this, and the shuffle costs more than the cores it frees gain
# (benchmarks/gzip_ingest.py on 2 cores: one 1M-row .tsv.gz 0.88x of the same rows as plain
# files unspread, 0.81x spread over both cores)
SPREAD_MIN_CORES = 4


def spread_partitions(files: list[FileInfo], parallelism: int,
                      setting: str | int | None = "auto") -> int:
    """Over how many partitions ingest spreads the lines after the scan (0: not spread).

    A gzip file is read by one task, so a few large ``.tsv.gz`` files (as the public dataset
    is published) would be parsed, checked and written by a few cores whatever the cluster.
    ``auto`` spreads the lines over ``parallelism`` partitions (the cluster's cores, at least 4)
    when one unsplittable file of at least 32 MB holds more than 1.5 times a core's fair share
    of the input (in text bytes: a compressed byte counts as 4); plain files are split by Spark.
    ``off`` (or 0) never spreads; a number always spreads over that many partitions.
    """
    fixed = spread_setting(setting)
    if fixed is not None:
        return fixed
    # shares in text bytes: review text compresses about 4x
    text = [(f.size * TEXT_PER_COMPRESSED_BYTE, True) if f.path.lower().endswith(UNSPLITTABLE)
            else (f.size, False) for f in files]
    whole = [size for size, unsplittable in text if unsplittable]
    if (parallelism < SPREAD_MIN_CORES or not whole
            or max(whole) < SPREAD_MIN_BYTES * TEXT_PER_COMPRESSED_BYTE):
        return 0
    total = sum(size for size, _ in text)
    return parallelism if max(whole) > 1.5 * total / parallelism else 0


def spread_setting(setting: str | int | None) -> int | None:
    """``ingest.spread`` read: None for auto, 0 for off, else the number of partitions; a
    one-line UserError for anything else."""
    if setting in (None, "auto"):
        return None
    if setting is False or str(setting).lower() in ("off", "false", "no", "0"):
        return 0
    try:
        n = int(setting)
    except (TypeError, ValueError):
        n = -1
    if n < 1:
        raise UserError(f"ingest.spread must be auto, off or a number of partitions, "
                        f"got {setting!r}")
    return n


def list_inputs(fs: HadoopFS, inputs: Iterable[str]) -> list[FileInfo]:
    """Every data file named by the inputs (files, directories, globs), each once, in order."""
    seen: dict[str, FileInfo] = {}
    for raw in inputs:
        path = qualify(raw)
        try:
            found = list(fs.files_under(path))
        except Exception as exc:  # py4j: unknown scheme, no credentials, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"cannot list input {raw}: {first[:200]}") from None
        if not found:
            raise UserError(f"no input files matched {raw} (check the path, or quote a glob)")
        for info in found:
            seen.setdefault(info.path, info)
    return list(seen.values())


def _output_frame(classified: DataFrame) -> DataFrame:
    """Good rows as lake rows; rejected rows packed into the reserved partition."""
    rejected = F.col(P.REASON).isNotNull()
    packed = {  # where a rejected line's facts travel until the quarantine is built
        "marketplace": F.col(P.REASON),
        "review_headline": F.col(P.DETAIL),
        "review_body": F.col(P.LINE),
        "customer_id": F.col(P.SPLIT_START).cast("string"),
        "review_id": F.col(P.ROW_ID).cast("string"),
        "source_file": F.col(P.FILE),
        PARTITION_COLUMN: F.lit(SENTINEL),
    }
    cols = []
    for name in P.lake_columns():
        dtype = dict(LAKE_COLUMNS).get(name, "string")
        if name in packed:
            cols.append(F.when(rejected, packed[name]).otherwise(F.col(name)).alias(name))
        else:
            cols.append(F.when(rejected, F.lit(None).cast(dtype)).otherwise(F.col(name)).alias(name))
    return classified.where(~F.col(P.HEADER)).select(*cols)


def _line_numbers(spark: SparkSession, files: list[str]) -> DataFrame:
    """(source_file, split_start, first_row_id, lines_before) for every split of the input.

    A second scan, made only when some line was rejected: it counts the lines of each split
    so that a rejected line's number in its file is lines before its split + its position in
    the split + 1. One row per split, so the result is small.
    """
    counts = P.split_line_counts(spark, files).collect()
    rows = []
    by_file: dict[str, list] = {}
    for r in counts:
        by_file.setdefault(r[P.FILE], []).append(r)
    for file, splits in by_file.items():
        before = 0
        for r in sorted(splits, key=lambda r: r[P.SPLIT_START]):
            rows.append((file, int(r[P.SPLIT_START]), int(r["first_row_id"]), before))
            before += int(r["lines"])
    return spark.createDataFrame(
        rows, "source_file string, split_start long, first_row_id long, lines_before long")


def _build_quarantine(spark: SparkSession, rejected_dir: str, files: list[str],
                      run_id: str) -> DataFrame:
    packed = spark.read.parquet(rejected_dir)
    splits = _line_numbers(spark, files)
    raw_bytes = F.col("review_body").cast("binary")
    q = packed.select(
        F.col("source_file"),
        F.col("customer_id").cast("long").alias("split_start"),
        F.col("review_id").cast("long").alias("row_id"),
        F.col("marketplace").alias("reason"),
        F.col("review_headline").alias("detail"),
        # raw: readable text (invalid bytes shown as U+FFFD); raw_bytes: the line exactly.
        F.decode(raw_bytes, "UTF-8").alias("raw"),
        raw_bytes.alias("raw_bytes"),
    ).join(F.broadcast(splits), ["source_file", "split_start"], "left")
    return q.select(
        F.lit(run_id).alias("run_id"), "source_file",
        (F.col("lines_before") + F.col("row_id") - F.col("first_row_id") + 1).alias("line_number"),
        "split_start", "reason", "detail", "raw", "raw_bytes",
    )


def _empty_quarantine(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [], "run_id string, source_file string, line_number long, split_start long, "
            "reason string, detail string, raw string, raw_bytes binary")


def read_quarantine(spark: SparkSession, path: str) -> DataFrame:
    """Read a quarantine directory (named with a leading underscore, which Spark's readers
    warn about and skip inside directory trees, so its files are named explicitly)."""
    return spark.read.parquet(join(path, "*.parquet"))


def _counts_by(df: DataFrame, *keys: str) -> list[tuple]:
    return [tuple(r) for r in df.groupBy(*keys).count().collect()]


def run_ingest(spark: SparkSession, inputs: list[str], lake: str,
               options: IngestOptions | None = None) -> dict[str, Any]:
    """Ingest ``inputs`` into ``lake``; returns the run's report (also written to the lake).
    The run holds the lake's lock (``LAKE/_lock.json``) from before recovery to the end."""
    with contextlib.ExitStack() as held:   # the lock, once taken, is released on the way out
        return _run_ingest(spark, inputs, lake, options, held)


def _run_ingest(spark: SparkSession, inputs: list[str], lake: str,
                options: IngestOptions | None, held: contextlib.ExitStack) -> dict[str, Any]:
    opts = options or IngestOptions()
    if opts.mode not in MODES:
        raise UserError(f"--mode must be one of {', '.join(MODES)}, got {opts.mode!r}")
    spread_setting(opts.spread)   # a bad setting fails before any work
    started = time.time()
    lake = qualify(lake)
    fs = HadoopFS(spark)
    run_id = new_run_id()

    files = list_inputs(fs, inputs)
    fs.check_writable(lake)
    lock = held.enter_context(commit_mod.lock_output(fs, lake, run_id, "ingest"))
    fmt = lake_mod.choose_format(spark, opts.format, opts.catalog)
    tables = None
    if fmt == "iceberg":  # the Iceberg layout: the tables' history keeps the ingested files
        from . import iceberg as ice

        tables = ice.open_tables(spark, opts.catalog, lake)
        finished_run = ice.recover(spark, fs, tables, lake, join(lake, commit_mod.STAGING))
        finished_run = commit_mod.recover(fs, lake) or finished_run
    else:
        finished_run = commit_mod.recover(fs, lake)
    commit_mod.clean_stale_staging(fs, lake)

    reports = join(lake, commit_mod.REPORTS)
    if tables is not None:
        lake_exists, known = ice.ingested_files(spark, tables)
        manifest = {"files": known}
    else:
        manifest = fs.read_json(join(reports, MANIFEST), default={"files": {}})
        lake_exists = fs.exists(join(lake, REVIEWS))
    mode = opts.mode if (opts.mode == "overwrite" or lake_exists) else "overwrite"
    skipped, changed = [], []
    if opts.mode == "append-new" and lake_exists:
        todo = []
        for info in files:
            known = manifest["files"].get(info.path)
            if known is None:
                todo.append(info)
            elif known.get("size") != info.size:
                changed.append(info.path)
            else:
                skipped.append(info.path)
        files = todo
        mode = "append"

    report: dict[str, Any] = {
        "stage": "ingest", "run_id": run_id, "mode": mode, "requested_mode": opts.mode,
        "format": fmt, "lake": lake, "inputs": list(inputs), "recovered_run": finished_run,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
        "skipped_files": skipped, "changed_files_skipped": changed,
    }
    if changed:
        log.warning("%d input files changed since they were ingested and are skipped "
                    "(use --mode overwrite to rebuild the lake): %s", len(changed), changed[:3])
    if not files:
        report.update(status="nothing_new", rows_read=0, rows_written=0, rows_quarantined=0,
                      headers=0, by_reason={}, files=[], seconds=round(time.time() - started, 3))
        if tables is not None:
            report.update(tables=_table_names(tables), snapshots={
                "reviews": lake_mod.current_snapshot(spark, tables.reviews),
                "quarantine": lake_mod.current_snapshot_if_exists(spark, tables.quarantine)})
        log.warning("no new input files to ingest")
        fs.write_json(join(reports, "runs", f"ingest-{run_id}.json"), report)
        fs.write_json(join(reports, REPORT), report)
        return report

    phases: dict[str, float] = {}
    clock = [started]

    def phase(name: str) -> None:
        now = time.time()
        phases[name] = round(now - clock[0], 3)
        clock[0] = now

    phase("list_and_recover")
    stage = commit_mod.staging_dir(lake, run_id)
    staged_reviews = join(stage, REVIEWS)
    staged_quarantine = join(stage, QUARANTINE)
    paths = [f.path for f in files]
    conf = {"spark.sql.files.maxPartitionBytes": opts.max_split_bytes,
            "spark.sql.legacy.timeParserPolicy": "CORRECTED"}
    with spark_conf(spark, conf):
        spread = spread_partitions(files, spark.sparkContext.defaultParallelism, opts.spread)
        report["spread_partitions"] = spread
        classified = P.classify(P.read_lines(spark, paths, spread))
        if opts.files_per_category:
            # Shuffle first, count after: the observation then lives in the write (result)
            # stage, whose successful tasks' metrics Spark counts once per partition, while a
            # map stage that Spark re-runs (a lost executor, a fetch failure) would count its
            # rows again. Same keys as the output's (category, hash of review_id) partitioning.
            rejected = F.col(P.REASON).isNotNull()
            category = F.when(rejected, F.lit(SENTINEL)).otherwise(F.col(PARTITION_COLUMN))
            key = F.when(rejected, F.col(P.ROW_ID).cast("string")).otherwise(F.col("review_id"))
            classified = classified.drop(P.TEXT, P.FIELDS).repartition(
                category, F.abs(F.hash(key)) % int(opts.files_per_category))
        obs = Observation(f"ingest-{run_id}")
        is_header = F.col(P.HEADER)
        observed = classified.observe(
            obs,
            F.sum(F.when(~is_header, 1).otherwise(0)).alias("rows_read"),
            F.sum(F.when(is_header, 1).otherwise(0)).alias("headers"),
            F.sum(F.when(~is_header & F.col(P.REASON).isNull(), 1).otherwise(0)).alias("good"),
        )
        out = _output_frame(observed)
        writer = out.write.mode("overwrite").partitionBy(PARTITION_COLUMN) \
            .option("compression", opts.compression)
        for column in NO_DICTIONARY:
            writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
        writer.parquet(staged_reviews)
        metrics = {k: int(v or 0) for k, v in obs.get.items()}
        phase("write")

        rejected_dir = join(staged_reviews, f"{PARTITION_COLUMN}={SENTINEL}")
        if fs.exists(rejected_dir):
            quarantine = _build_quarantine(spark, rejected_dir, paths, run_id)
            n_rejected = metrics["rows_read"] - metrics["good"]
            quarantine = quarantine.repartition(max(1, math.ceil(n_rejected / 1_000_000)))
            quarantine.write.mode("overwrite").parquet(staged_quarantine)
            fs.delete(rejected_dir)
        else:
            _empty_quarantine(spark).coalesce(1).write.mode("overwrite").parquet(staged_quarantine)

    phase("quarantine")
    # Accounting: what the scan saw against what is actually on disk.
    written = spark.read.parquet(staged_reviews)
    quarantined = read_quarantine(spark, staged_quarantine)
    per_file_written: dict[str, int] = {}
    per_category: dict[str, int] = {}
    for file, category, n in _counts_by(written, "source_file", PARTITION_COLUMN):
        per_file_written[canonical_uri(file)] = per_file_written.get(canonical_uri(file), 0) + n
        per_category[str(category)] = per_category.get(str(category), 0) + n
    per_file_reason = [(canonical_uri(f), r, n)
                       for f, r, n in _counts_by(quarantined, "source_file", "reason")]
    rows_written = sum(per_file_written.values())
    rows_quarantined = sum(c for _, _, c in per_file_reason)
    by_reason: dict[str, int] = {}
    per_file_q: dict[str, dict[str, int]] = {}
    for file, reason, count in per_file_reason:
        by_reason[reason] = by_reason.get(reason, 0) + count
        per_file_q.setdefault(file, {})[reason] = count
    phase("accounting")
    file_reports = []
    for info in files:
        q = per_file_q.get(info.uri, {})
        w = per_file_written.get(info.uri, 0)
        file_reports.append({"path": info.path, "uri": info.uri, "bytes": info.size,
                             "rows_read": w + sum(q.values()),
                             "rows_written": w, "rows_quarantined": sum(q.values()), "by_reason": q})
    report.update(
        status="ok", files=file_reports, rows_read=metrics["rows_read"], headers=metrics["headers"],
        rows_written=rows_written, rows_quarantined=rows_quarantined,
        by_reason=dict(sorted(by_reason.items())),
        rows_by_category=dict(sorted(per_category.items())),
        output={"reviews": join(lake, REVIEWS), "quarantine": join(lake, QUARANTINE)},
    )
    if metrics["rows_read"] != rows_written + rows_quarantined or metrics["good"] != rows_written:
        fs.delete(stage)
        raise AccountingError(
            f"row accounting failed: read {metrics['rows_read']} != written {rows_written} + "
            f"quarantined {rows_quarantined}; nothing was committed, the lake is unchanged")

    finished = time.time()
    report["finished_at"] = dt.datetime.fromtimestamp(finished, dt.timezone.utc).isoformat()
    report["seconds"] = round(finished - started, 3)
    report["rows_per_second"] = round(metrics["rows_read"] / max(finished - started, 1e-9), 1)
    if mode == "overwrite":
        manifest = {"files": {}}
    for fr in file_reports:
        manifest["files"][fr["path"]] = {"size": fr["bytes"], "run_id": run_id,
                                         "rows_read": fr["rows_read"]}
    marker = {
        "run_id": run_id, "mode": "overwrite" if mode == "overwrite" else "append",
        "moves": [{"from": staged_reviews, "to": join(lake, REVIEWS)},
                  {"from": staged_quarantine, "to": join(lake, QUARANTINE)}],
        "files": {join(reports, REPORT): report,
                  join(reports, "runs", f"ingest-{run_id}.json"): report,
                  join(reports, MANIFEST): manifest},
    }
    phase("report")
    report["phases"] = phases
    lock.check()
    if tables is not None:
        _commit_iceberg(spark, fs, tables, report, marker, stage, staged_reviews,
                        staged_quarantine)
        log.info("ingest phases (s): %s; commit %.2f", phases, time.time() - clock[0])
        return report
    commit_mod.commit(fs, lake, marker)
    log.info("ingest phases (s): %s; commit %.2f", phases, time.time() - clock[0])
    return report


def _table_names(tables) -> dict[str, str]:
    return {"reviews": tables.short(tables.reviews), "quarantine": tables.short(tables.quarantine)}


def _commit_iceberg(spark: SparkSession, fs: HadoopFS, tables, report: dict[str, Any],
                    marker: dict[str, Any], stage: str, staged_reviews: str,
                    staged_quarantine: str) -> None:
    """The Iceberg layout's commit: one snapshot per table (reviewlake.ingest.iceberg), then
    the reports (with the snapshot ids) and the staging area removed."""
    from . import iceberg as ice

    report["tables"] = _table_names(tables)
    report["output"] = dict(report["tables"])
    reports = {path: content for path, content in marker["files"].items()
               if not path.endswith("/" + MANIFEST)}
    pending = {"run_id": report["run_id"], "mode": marker["mode"], "stage": stage,
               "reviews": staged_reviews, "quarantine": staged_quarantine,
               "rows_written": report["rows_written"],
               "rows_quarantined": report["rows_quarantined"],
               "files": {fr["path"]: fr["bytes"] for fr in report["files"]},
               "reports": reports}
    try:
        report["snapshots"] = ice.commit(spark, fs, tables, pending)
    except Exception:
        fs.delete(stage)
        raise
    for path in reports:
        fs.write_json(path, report)
    fs.delete(stage)
    staging_root = stage.rstrip("/").rsplit("/", 1)[0]
    if fs.exists(staging_root) and not fs.list_dir(staging_root):
        fs.delete(staging_root)
