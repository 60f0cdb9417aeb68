"""The lake as the stages see it: Apache Iceberg tables in a catalog, or plain Parquet.

A lake is named by its directory (``data.lake``, ``--input``/``--output LAKE``) in both
formats, so the commands of a Parquet lake keep working for an Iceberg one:

* ``parquet``: ``LAKE/reviews/product_category=<c>/`` and ``LAKE/_quarantine/``;
* ``iceberg``: the tables ``<namespace>.reviews`` (partitioned by identity(product_category))
  and ``<namespace>.quarantine`` in the profile's catalog (``catalog:`` section; namespace
  ``reviewlake`` by default). The embedded catalog is a SQLite file, ``LAKE/_catalog.db``, with
  the tables' files under ``LAKE/<namespace>/``; on AWS the Glue Data Catalog holds them.

Both keep ingest's reports in ``LAKE/_reports/``; ``ingest.json`` says which format the lake
is in (``format``), so readers find the tables from the lake directory alone. A reader can also
name a table of the catalog directly (``--table reviewlake.reviews``: Glue, Hive).

Iceberg reads are pinned: :func:`read_reviews` resolves one snapshot (the current one, or
``snapshot``/``as_of``) and reads exactly it, and the caller records its id.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from pyspark.sql import DataFrame, SparkSession

from .errors import UserError
from .fs import HadoopFS, join
from .session import (EMBEDDED_CATALOG_FILE, ICEBERG_CATALOG_CLASS, SQLITE_DRIVER_CLASS,
                      catalog_type, has_class, use_iceberg_catalog)

log = logging.getLogger(__name__)

FORMATS = ("auto", "iceberg", "parquet")
DEFAULT_NAMESPACE = "reviewlake"
REVIEWS_TABLE = "reviews"
QUARANTINE_TABLE = "quarantine"
REPORT = "_reports/ingest.json"


class IcebergUnavailable(UserError):
    """Iceberg was asked for and its runtime jar is not on the classpath."""


def iceberg_available(spark: SparkSession, catalog: Mapping[str, Any] | None = None) -> bool:
    if not has_class(spark, ICEBERG_CATALOG_CLASS):
        return False
    return catalog_type(catalog) != "embedded" or has_class(spark, SQLITE_DRIVER_CLASS)


def require_iceberg(spark: SparkSession, catalog: Mapping[str, Any] | None = None) -> None:
    from .jars import ICEBERG, SQLITE_JDBC

    if not has_class(spark, ICEBERG_CATALOG_CLASS):
        raise IcebergUnavailable(
            f"Iceberg is not on the classpath: fetch it with `jars/fetch.sh iceberg sqlite` (or "
            f"--packages {ICEBERG}), or set ingest.format parquet")
    if catalog_type(catalog) == "embedded" and not has_class(spark, SQLITE_DRIVER_CLASS):
        raise IcebergUnavailable(
            f"the embedded Iceberg catalog needs the SQLite JDBC driver: fetch it with "
            f"`jars/fetch.sh sqlite` (or --packages {SQLITE_JDBC}), or set catalog.type")


def choose_format(spark: SparkSession, requested: str,
                  catalog: Mapping[str, Any] | None = None) -> str:
    """``auto``: iceberg when its runtime (and, for the embedded catalog, SQLite's driver) is
    on the classpath, else parquet; the choice is logged."""
    if requested not in FORMATS:
        raise UserError(f"ingest.format must be one of {', '.join(FORMATS)}, got {requested!r}")
    if requested == "auto":
        present = iceberg_available(spark, catalog)
        choice = "iceberg" if present else "parquet"
        log.info("format auto: %s (the Iceberg runtime is %s)", choice,
                 "on the classpath" if present else "not on the classpath")
        return choice
    if requested == "iceberg":
        require_iceberg(spark, catalog)
    return requested


@dataclass(frozen=True)
class Tables:
    """The Iceberg tables of one lake: ``catalog.namespace.table`` names."""

    catalog: str
    namespace: str

    @property
    def reviews(self) -> str:
        return f"{self.catalog}.{self.namespace}.{REVIEWS_TABLE}"

    @property
    def quarantine(self) -> str:
        return f"{self.catalog}.{self.namespace}.{QUARANTINE_TABLE}"

    def short(self, full: str) -> str:
        """The name users query (``reviewlake.reviews``), without the session's catalog."""
        return full.split(".", 1)[1]


def tables(spark: SparkSession, catalog: Mapping[str, Any] | None, lake: str) -> Tables:
    """Configure the lake's catalog on the session; its table names."""
    name = use_iceberg_catalog(spark, catalog, lake)
    namespace = str(dict(catalog or {}).get("namespace") or DEFAULT_NAMESPACE)
    return Tables(name, namespace)


def ensure_namespace(spark: SparkSession, t: Tables) -> None:
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {t.catalog}.{t.namespace}")


def table_exists(spark: SparkSession, full: str) -> bool:
    catalog, namespace, table = full.split(".")
    try:
        spark.sql(f"SHOW NAMESPACES IN {catalog}")  # loads the catalog: config errors surface
    except Exception as exc:
        raise UserError(f"cannot open the Iceberg catalog {catalog}: {_first_line(exc)}") from None
    try:
        return bool(spark.sql(f"SHOW TABLES IN {catalog}.{namespace}")
                    .where(f"tableName = '{table}'").count())
    except Exception:  # no such namespace
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


# -- snapshots ---------------------------------------------------------------------------------

def snapshots(spark: SparkSession, full: str) -> list[dict[str, Any]]:
    """Every snapshot of a table (oldest first): id, parent, operation, committed_at, summary."""
    rows = spark.sql(f"SELECT snapshot_id, parent_id, operation, committed_at, summary "
                     f"FROM {full}.snapshots ORDER BY committed_at").collect()
    return [{"snapshot_id": int(r["snapshot_id"]),
             "parent_id": None if r["parent_id"] is None else int(r["parent_id"]),
             "operation": r["operation"], "committed_at": r["committed_at"],
             "summary": dict(r["summary"] or {})} for r in rows]


def history(spark: SparkSession, full: str) -> list[tuple[dt.datetime, int]]:
    """(made_current_at as an aware UTC datetime, snapshot_id) in the order the snapshots
    became current (epoch milliseconds from Spark: no local time zone in between)."""
    rows = spark.sql(f"SELECT unix_millis(made_current_at) AS ms, snapshot_id FROM {full}.history "
                     f"ORDER BY made_current_at").collect()
    return [(dt.datetime.fromtimestamp(int(r["ms"]) / 1000, dt.timezone.utc), int(r["snapshot_id"]))
            for r in rows]


def current_snapshot(spark: SparkSession, full: str) -> int | None:
    rows = spark.sql(f"SELECT snapshot_id FROM {full}.refs WHERE name = 'main'").collect()
    return int(rows[0][0]) if rows else None


def current_snapshot_if_exists(spark: SparkSession, full: str) -> int | None:
    """:func:`current_snapshot`, None where the table does not exist (yet)."""
    return current_snapshot(spark, full) if table_exists(spark, full) else None


def parse_as_of(text: str) -> dt.datetime:
    """An ISO timestamp (UTC when it names no zone) or milliseconds since the epoch."""
    text = str(text).strip()
    try:
        if text.isdigit():
            return dt.datetime.fromtimestamp(int(text) / 1000, dt.timezone.utc)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--as-of expects an ISO timestamp (2026-01-31T12:00:00Z) or epoch "
                        f"milliseconds, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def resolve_snapshot(spark: SparkSession, full: str, snapshot: int | str | None = None,
                     as_of: str | dt.datetime | None = None) -> int:
    """The snapshot id to read: ``snapshot`` (checked), the one current at ``as_of``, or the
    current one."""
    if snapshot is not None and as_of is not None:
        raise UserError("give --snapshot or --as-of, not both")
    if snapshot is not None:
        try:
            wanted = int(snapshot)
        except (TypeError, ValueError):
            raise UserError(f"--snapshot expects a snapshot id (a number), got {snapshot!r}") from None
        known = {s["snapshot_id"] for s in snapshots(spark, full)}
        if wanted not in known:
            raise UserError(f"{full} has no snapshot {wanted} (it has {len(known)}; list them "
                            f"with SELECT * FROM {full.split('.', 1)[1]}.snapshots)")
        return wanted
    if as_of is not None:
        when = as_of if isinstance(as_of, dt.datetime) else parse_as_of(as_of)
        when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
        best = None
        for made, sid in history(spark, full):
            if made <= when:
                best = sid
        if best is None:
            raise UserError(f"{full} has no snapshot at or before {when.isoformat()}")
        return best
    current = current_snapshot(spark, full)
    if current is None:
        raise UserError(f"{full} has no snapshot yet (run reviewlake ingest)")
    return current


def read_at(spark: SparkSession, full: str, snapshot_id: int) -> DataFrame:
    return spark.read.option("snapshot-id", str(snapshot_id)).table(full)


# -- what a lake directory holds ---------------------------------------------------------------

def lake_format(fs: HadoopFS, lake: str) -> str | None:
    """``iceberg`` or ``parquet`` as the lake's latest ingest report says (a lake written
    before reports had a format: parquet when LAKE/reviews exists); None: no lake."""
    report = fs.read_json(join(lake, REPORT), default=None) or {}
    if report.get("format") in ("iceberg", "parquet"):
        return report["format"]
    if fs.exists(join(lake, REVIEWS_TABLE)):
        return "parquet"
    if fs.exists(join(lake, EMBEDDED_CATALOG_FILE)):
        return "iceberg"
    return None


def locate(spark: SparkSession, lake: str | None, catalog: Mapping[str, Any] | None = None,
           snapshot: int | str | None = None, as_of: str | None = None,
           table: str | None = None) -> dict[str, Any]:
    """Where the lake's reviews are: ``{"format": "iceberg", "table", "snapshot_id", "lake",
    "catalog"}`` (one resolved snapshot) or ``{"format": "parquet", "path"}``. ``table``: a
    table of the catalog (``namespace.table``) instead of the lake's own reviews table."""
    fs = HadoopFS(spark)
    pinned = snapshot is not None or as_of is not None
    fmt = "iceberg" if table else (lake_format(fs, lake) if lake else None)
    if fmt is None:
        raise UserError(f"no lake at {lake}: expected {join(lake or '', REPORT)} or "
                        f"{join(lake or '', REVIEWS_TABLE)} (write it with reviewlake ingest)")
    if fmt == "parquet":
        if pinned:
            raise UserError(f"--snapshot/--as-of need an Iceberg lake; {lake} is plain Parquet "
                            f"(re-ingest it with ingest.format iceberg)")
        return {"format": "parquet", "path": join(lake, REVIEWS_TABLE)}
    require_iceberg(spark, catalog)
    t = tables(spark, catalog, lake or "")
    if table:
        parts = table.split(".")
        if len(parts) == 1:
            parts = [t.namespace, parts[0]]
        if len(parts) != 2:
            raise UserError(f"--table expects NAMESPACE.TABLE (e.g. reviewlake.reviews), got {table!r}")
        full = f"{t.catalog}.{parts[0]}.{parts[1]}"
    else:
        full = t.reviews
    if not table_exists(spark, full):
        raise UserError(f"no table {t.short(full)} in the lake's catalog ({lake}); run "
                        f"reviewlake ingest first")
    sid = resolve_snapshot(spark, full, snapshot, as_of)
    return {"format": "iceberg", "table": t.short(full), "snapshot_id": sid, "lake": lake,
            "catalog": catalog_type(catalog), "_full": full}


def locate_if_iceberg(spark: SparkSession, fs: HadoopFS, lake: str,
                      catalog: Mapping[str, Any] | None = None,
                      snapshot: int | str | None = None, as_of: str | None = None,
                      table: str | None = None) -> dict[str, Any] | None:
    """:func:`locate`'s answer where the read goes through the catalog (a snapshot, a time
    or a table was asked for, or the lake is Iceberg); None for a plain Parquet lake, which
    the caller reads (and checks) as before."""
    if snapshot is None and as_of is None and not table and lake_format(fs, lake) != "iceberg":
        return None
    return locate(spark, lake, catalog, snapshot, as_of, table)


def read_reviews(spark: SparkSession, source: Mapping[str, Any]) -> DataFrame:
    """The reviews :func:`locate` found, at exactly its snapshot."""
    if source["format"] == "parquet":
        return spark.read.parquet(source["path"])
    return read_at(spark, source["_full"], int(source["snapshot_id"]))


def lineage(source: Mapping[str, Any]) -> dict[str, Any]:
    """What outputs record about the lake they read (no session-specific catalog name)."""
    return {k: v for k, v in source.items() if not k.startswith("_")}
