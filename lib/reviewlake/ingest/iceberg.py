"""Ingest's commit into Apache Iceberg tables (``ingest.format: iceberg``).

The run stages and checks its output exactly as for the Parquet layout (one pass over the
input into ``LAKE/_staging/<run_id>/``, the row accounting against what was staged); then,
instead of renaming directories, each table gets ONE Iceberg commit, the catalog's atomic
swap of the table's metadata pointer:

* ``overwrite``: ``createOrReplace`` (a replace: the previous snapshots stay readable by id);
* ``append-new``: one ``append``.

Reviews first, then the quarantine. Every snapshot carries the run in its summary
(``reviewlake.run-id``, ``reviewlake.mode``; the reviews snapshot also ``reviewlake.files``,
the input files it ingested with their sizes), so the list of files ingested so far is part
of the table's own history (``append-new`` reads it from there: no second file to keep in
step), and the written counts are checked against the snapshots' ``added-records``. A run
that fails after its first commit rolls the tables back to their previous snapshots; a run
killed between the two commits is finished by the next run (:func:`recover`) from its staging
area, whose ``_iceberg.json`` says what was to be committed.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import lake as L
from ..fs import HadoopFS, join
from ..schema import LAKE_COLUMNS, PARTITION_COLUMN

log = logging.getLogger(__name__)

RUN = "reviewlake.run-id"
MODE = "reviewlake.mode"
FILES = "reviewlake.files"
PENDING = "_iceberg.json"   # in the run's staging area: what the run commits, for recover()
TABLE_PROPERTIES = {"write.parquet.compression-codec": "snappy", "format-version": "2"}


def open_tables(spark: SparkSession, catalog: dict[str, Any] | None, lake: str) -> L.Tables:
    t = L.tables(spark, catalog, lake)
    L.ensure_namespace(spark, t)
    return t


def ingested_files(spark: SparkSession, t: L.Tables) -> tuple[bool, dict[str, dict]]:
    """(reviews table exists, {input path: {size, run_id}}) from the current snapshot's
    ancestry back to the last overwrite."""
    if not L.table_exists(spark, t.reviews):
        return False, {}
    snaps = {s["snapshot_id"]: s for s in L.snapshots(spark, t.reviews)}
    sid = L.current_snapshot(spark, t.reviews)
    chain = []
    while sid is not None and sid in snaps:
        chain.append(snaps[sid])
        if snaps[sid]["summary"].get(MODE) == "overwrite":
            break
        sid = snaps[sid]["parent_id"]
    files: dict[str, dict] = {}
    for snap in reversed(chain):
        run_id = snap["summary"].get(RUN)
        for path, size in json.loads(snap["summary"].get(FILES) or "{}").items():
            files[path] = {"size": size, "run_id": run_id}
    return True, files


def _jtable(spark: SparkSession, full: str):
    jvm = spark.sparkContext._jvm
    return jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, full)


def _rollback(spark: SparkSession, full: str, previous: int | None) -> None:
    """Make ``previous`` the table's current snapshot again (no previous: drop the table
    this run created)."""
    try:
        if previous is None:
            if L.table_exists(spark, full):
                spark.sql(f"DROP TABLE {full}")
            return
        if L.current_snapshot(spark, full) != previous:
            _jtable(spark, full).manageSnapshots().setCurrentSnapshot(previous).commit()
    except Exception as exc:  # keep the original failure; say what is left to do
        log.error("could not roll %s back to snapshot %s: %s", full, previous, exc)


def _snapshot_of_run(spark: SparkSession, full: str, run_id: str) -> dict | None:
    if not L.table_exists(spark, full):
        return None
    found = [s for s in L.snapshots(spark, full) if s["summary"].get(RUN) == run_id]
    return found[-1] if found else None


def _run_properties(run_id: str, mode: str) -> dict[str, str]:
    """What every snapshot of a run carries in its summary."""
    return {RUN: run_id, MODE: "overwrite" if mode == "overwrite" else "append"}


def _write(df: DataFrame, full: str, mode: str, props: dict[str, str], partitioned: bool) -> None:
    writer = df.writeTo(full)
    for key, value in props.items():
        writer = writer.option(f"snapshot-property.{key}", value)
    if mode == "overwrite":
        for key, value in TABLE_PROPERTIES.items():
            writer = writer.tableProperty(key, value)
        if partitioned:
            writer = writer.partitionedBy(F.col(PARTITION_COLUMN))
        writer.createOrReplace()
    else:
        writer.append()


def _staged_reviews(spark: SparkSession, path: str) -> DataFrame:
    cols = [n for n, _ in LAKE_COLUMNS] + [PARTITION_COLUMN]
    return spark.read.parquet(path).select(*cols)


def _staged_quarantine(spark: SparkSession, path: str) -> DataFrame:
    return spark.read.parquet(join(path, "*.parquet"))


def commit(spark: SparkSession, fs: HadoopFS, t: L.Tables, pending: dict[str, Any]) -> dict[str, int]:
    """Commit a staged run (``pending``: run_id, mode, staged paths, files, expected counts);
    returns the new snapshot ids. Either both tables move to the run's snapshots, with the
    counts expected, or (on any error) both are back at their previous snapshots."""
    run_id, mode = pending["run_id"], pending["mode"]
    fs.write_json(join(pending["stage"], PENDING), pending)
    before = {full: L.current_snapshot_if_exists(spark, full)
              for full in (t.reviews, t.quarantine)}
    base = _run_properties(run_id, mode)
    try:
        _write(_staged_reviews(spark, pending["reviews"]), t.reviews, mode,
               dict(base, **{FILES: json.dumps(pending["files"], sort_keys=True)}), True)
        _write(_staged_quarantine(spark, pending["quarantine"]), t.quarantine, mode, base, False)
        return verify(spark, t, pending)
    except BaseException:
        for full, previous in before.items():
            _rollback(spark, full, previous)
        raise


def verify(spark: SparkSession, t: L.Tables, pending: dict[str, Any]) -> dict[str, int]:
    """The run's snapshots, checked against the staged counts (``added-records``)."""
    from .job import AccountingError

    out = {}
    for name, full, expected in (("reviews", t.reviews, pending["rows_written"]),
                                 ("quarantine", t.quarantine, pending["rows_quarantined"])):
        snap = _snapshot_of_run(spark, full, pending["run_id"])
        if snap is None and expected == 0 and L.table_exists(spark, full):
            out[name] = L.current_snapshot(spark, full)   # nothing to add may add no snapshot
            continue
        if snap is None:
            raise AccountingError(f"no snapshot of run {pending['run_id']} in {t.short(full)}; "
                                  f"nothing was committed, the lake is unchanged")
        added = int(snap["summary"].get("added-records", 0))
        if added != expected:
            raise AccountingError(
                f"row accounting failed: {t.short(full)} snapshot {snap['snapshot_id']} added "
                f"{added} rows, the run staged {expected}; rolled back, the lake is unchanged")
        out[name] = snap["snapshot_id"]
    return out


def recover(spark: SparkSession, fs: HadoopFS, t: L.Tables, lake: str, staging: str) -> str | None:
    """Finish a run killed between its two commits (reviews committed, quarantine not): the
    quarantine is committed from the run's staging area and the run's reports are written.
    Returns the run id it finished, if any."""
    if not L.table_exists(spark, t.reviews):
        return None
    current = L.current_snapshot(spark, t.reviews)
    snap = next((s for s in L.snapshots(spark, t.reviews) if s["snapshot_id"] == current), None)
    run_id = (snap or {}).get("summary", {}).get(RUN)
    if not run_id or _snapshot_of_run(spark, t.quarantine, run_id) is not None:
        return None
    pending = fs.read_json(join(staging, run_id, PENDING))
    if not pending:
        return None
    log.warning("finishing the interrupted Iceberg commit of ingest run %s in %s", run_id, lake)
    base = _run_properties(run_id, pending["mode"])
    _write(_staged_quarantine(spark, pending["quarantine"]), t.quarantine, pending["mode"],
           base, False)
    snapshots = verify(spark, t, pending)
    for path, report in pending.get("reports", {}).items():
        fs.write_json(path, dict(report, snapshots=snapshots, recovered=True))
    return run_id
