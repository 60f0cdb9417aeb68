"""The quality stage: run the suite on the lake, keep the history, write QDIR, judge the gate.

``run_quality(spark, lake, qdir, options)`` reads ``LAKE/reviews``, runs the suite with the
chosen engine, evaluates the anomaly checks against the metrics repository, looks up the
failing values of failed constraints, writes everything to ``QDIR`` and appends the run to the
repository. It returns the run's summary; :func:`gate` turns a failed summary into exit code 3.

QDIR after a run::

    metrics.json     metrics.parquet/       entity, instance, name, value
    checks.json      checks.parquet/        check, check_level, check_status, constraint,
                                            constraint_status, constraint_message
    suggestions.json suggestions.parquet/   column, description, rule, code
    profile.json                            histogram, review lengths, column profiles
    summary.json                            status, failures with their failing values, timings
    report.html                             the page a person reads
    _history/runs/*.json                    the metrics repository (unless --repository)

A run writes under ``QDIR/_staging/<run_id>/`` and swaps its files in only when all are
written (ingest's marker-based commit: an interrupted swap is finished by the next run), so a
killed run never leaves half-written results over good ones.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from ..errors import EXIT_GATE_FAILED, UserError
from ..fs import HadoopFS, join, qualify
from ..ingest import commit as commit_mod
from ..commit import new_run_id
from . import anomalies as anomalies_mod
from .repository import MetricsRepository, RunRecord
from .results import (CHECK_DDL, METRIC_DDL, SUGGESTION_DDL, ConstraintOutcome, EngineResult,
                      check_rows)
from .spark_engine import SparkEngine, col
from .suite import Suite

log = logging.getLogger(__name__)

ENGINES = ("auto", "deequ", "spark")
HISTORY = "_history"
TABLES = ("metrics", "checks", "suggestions")
OUTPUTS = (*(f"{t}.json" for t in TABLES), *(f"{t}.parquet" for t in TABLES), "profile.json",
           "summary.json", "report.html")


class GateFailed(UserError):
    """An Error-level check failed: the pipeline stops here (exit code 3)."""

    exit_code = EXIT_GATE_FAILED


@dataclass
class QualityOptions:
    suite: Suite
    engine: str = "auto"
    repository: str | None = None         # default: QDIR/_history
    tags: dict[str, str] = field(default_factory=dict)
    dataset_date: int | None = None       # ms since epoch; default: now
    examples: int = 5                     # failing values shown per failed constraint
    catalog: dict[str, Any] | None = None  # the profile's catalog section (Iceberg lakes)
    snapshot: int | None = None           # Iceberg: read this snapshot (default: the current)
    as_of: str | None = None              # ... or the one current at this time
    table: str | None = None              # a catalog table (namespace.table) instead of LAKE's


def open_lake(spark: SparkSession, fs: HadoopFS, lake: str,
              options: QualityOptions | None = None) -> tuple[DataFrame, dict[str, Any]]:
    """The lake's reviews and where they came from (:func:`reviewlake.lake.locate`): an
    Iceberg lake's table at one snapshot, or read_lake's Parquet directory."""
    from .. import lake as L

    o = options
    pinned = (o.catalog, o.snapshot, o.as_of, o.table) if o is not None else ()
    source = L.locate_if_iceberg(spark, fs, lake, *pinned)
    if source is not None:
        return L.read_reviews(spark, source), L.lineage(source)
    df, path = read_lake(spark, fs, lake)
    return df, {"format": "parquet", "path": path}


def read_lake(spark: SparkSession, fs: HadoopFS, lake: str) -> tuple[DataFrame, str]:
    """``LAKE/reviews`` written by ingest (or a Parquet directory given directly)."""
    reviews = join(lake, "reviews")
    path = reviews if fs.exists(reviews) else lake
    if not fs.exists(path):
        raise UserError(f"no lake at {lake}: expected {reviews} (write it with reviewlake ingest)")
    try:
        df = spark.read.parquet(path)
        df.schema  # noqa: B018 - resolve now: an empty or non-Parquet path fails here
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise UserError(f"cannot read the lake at {path}: {first[:200]}") from None
    return df, path


def select_engine(spark: SparkSession, requested: str, repository: str, dataset_date: int,
                  tags: dict[str, str]):
    from .deequ_engine import DeequEngine, deequ_available, require_deequ

    if requested not in ENGINES:
        raise UserError(f"--engine must be one of {', '.join(ENGINES)}, got {requested!r}")
    if requested == "auto":
        present = deequ_available(spark)
        choice = "deequ" if present else "spark"
        log.info("engine auto: %s (the Deequ jar is %s)", choice,
                 "on the classpath" if present else "not on the classpath")
    else:
        choice = requested
        if choice == "deequ":
            require_deequ(spark)
    if choice == "deequ":
        return DeequEngine(spark, join(repository, "deequ", "metrics.json"), dataset_date, tags)
    return SparkEngine(spark)


# ---------------------------------------------------------------------------- failing values


def _referenced_columns(df: DataFrame, predicate: str) -> list[str]:
    return [c for c in df.columns if re.search(r"(?<![\w`])`?" + re.escape(c) + r"`?(?![\w`])",
                                               predicate)]


def failing_values(df: DataFrame, suite: Suite, outcomes: list[ConstraintOutcome],
                   examples: int = 5) -> dict[int, dict[str, Any]]:
    """For each failed constraint (by index in ``outcomes``): which values or rows broke it.
    Small, bounded queries, run only for failed constraints."""
    # By position within each check: both engines give one outcome per suite constraint, in
    # the suite's order, whatever the engine calls it (Deequ 2.x prints
    # Completeness(a,None,None), its 1.x Completeness(a,None)).
    constraints = {(check.name, i): c for check in suite.checks
                   for i, c in enumerate(check.constraints)}
    position: dict[str, int] = {}
    out: dict[int, dict[str, Any]] = {}
    for i, o in enumerate(outcomes):
        k = position.get(o.check, 0)
        position[o.check] = k + 1
        if o.status == "Success":
            continue
        c = constraints.get((o.check, k))
        if c is None:
            continue
        try:
            detail = _explain(df, c, examples)
        except Exception as exc:  # a lookup must never hide the verdict
            log.warning("could not look up the failing values of %s: %s", o.constraint,
                        str(exc).splitlines()[0][:200])
            continue
        if detail:
            out[i] = detail
    return out


def _values(frame: DataFrame, key: str, examples: int) -> list[dict[str, Any]]:
    rows = (frame.groupBy(col(key).alias("value")).count()
            .orderBy(F.desc("count"), F.asc("value")).limit(examples).collect())
    return [{"value": r["value"], "rows": int(r["count"])} for r in rows]


def _explain(df: DataFrame, c, examples: int) -> dict[str, Any] | None:
    a = c.analyzer
    column = c.arg("column")
    if a.kind == "Completeness":
        n = df.where(col(column).isNull()).count()
        return {"summary": f"{n} rows with no {column}", "rows": n}
    if a.kind == "Uniqueness" and len(a.columns) == 1:
        k = a.column
        dups = df.where(col(k).isNotNull()).groupBy(col(k).alias("value")).count() \
            .where(F.col("count") > 1)
        agg = dups.agg(F.count(F.lit(1)).alias("values"), F.sum("count").alias("rows")).first()
        top = [{"value": r["value"], "rows": int(r["count"])} for r in
               dups.orderBy(F.desc("count"), F.asc("value")).limit(examples).collect()]
        nvalues, nrows = int(agg["values"] or 0), int(agg["rows"] or 0)
        return {"summary": f"{nvalues} {k} values occur more than once ({nrows} rows)",
                "rows": nrows, "values": top}
    if a.kind in ("Minimum", "Maximum"):
        bad = df.where(col(column).isNotNull() & ~F.expr(c.assertion.sql(f"`{column}`")))
        n = bad.count()
        return {"summary": f"{n} rows with {column} outside {c.assertion}", "rows": n,
                "values": _values(bad, column, examples)}
    if a.kind == "Compliance":
        bad = df.where(~F.coalesce(F.expr(str(a.predicate)), F.lit(False)))
        n = bad.count()
        detail: dict[str, Any] = {"summary": f"{n} rows do not satisfy {a.instance}", "rows": n}
        if column:
            detail["values"] = _values(bad, column, examples)
        else:
            cols = _referenced_columns(df, str(a.predicate))
            if "review_id" in df.columns and "review_id" not in cols:
                cols = ["review_id", *cols]
            if cols:
                detail["examples"] = [r.asDict() for r in
                                      bad.select(*[col(x) for x in cols]).limit(examples).collect()]
        return detail
    return None


# ---------------------------------------------------------------------------- the run


def _now_ms() -> int:
    return int(time.time() * 1000)


def run_quality(spark: SparkSession, lake: str, qdir: str,
                options: QualityOptions) -> dict[str, Any]:
    started = time.time()
    fs = HadoopFS(spark)
    lake, qdir = qualify(lake), qualify(qdir)
    run_id = new_run_id()
    dataset_date = options.dataset_date or _now_ms()
    repository = qualify(options.repository) if options.repository else join(qdir, HISTORY)
    suite = options.suite

    fs.check_writable(qdir)
    commit_mod.recover(fs, qdir)
    commit_mod.clean_stale_staging(fs, qdir)
    df, source = open_lake(spark, fs, lake, options)
    path = (f"{source['table']}@{source['snapshot_id']}" if source["format"] == "iceberg"
            else source["path"])

    engine = select_engine(spark, options.engine, repository, dataset_date, options.tags)
    try:
        result: EngineResult = engine.run(df, suite)
    finally:
        if hasattr(engine, "close"):
            engine.close()

    # anomaly checks against the repository (the same code for both engines)
    repo = MetricsRepository(fs, repository)
    history = repo.load()
    outcomes = list(result.outcomes)
    anomaly_notes = []
    for anomaly in suite.anomalies:
        current = result.metric(anomaly.analyzer)
        mv = result.metric_values.get(anomaly.analyzer)
        error = mv.error if mv is not None else None
        series = anomalies_mod.history_for(anomaly, history, options.tags, dataset_date)
        outcome = anomalies_mod.evaluate(anomaly, current, error, series)
        outcomes.append(outcome)
        anomaly_notes.append({"check": anomaly.name, "level": anomaly.level,
                              "metric": anomaly.analyzer.describe(), "value": current,
                              "history": len(series), "strategy": anomaly.strategy,
                              "status": outcome.status, "message": outcome.message})

    t_fail = time.perf_counter()
    details = failing_values(df, suite, result.outcomes, options.examples)
    timings = dict(result.timings)
    timings["failing_values"] = round(time.perf_counter() - t_fail, 3)

    rows = check_rows(outcomes)
    failures = []
    for i, o in enumerate(outcomes):
        if o.status != "Success":
            failures.append({"check": o.check, "level": o.level, "constraint": o.constraint,
                             "message": o.message, "value": o.value, **(
                                 {"details": details[i]} if i in details else {})})
    errors = [f for f in failures if f["level"] == "Error"]
    warnings = [f for f in failures if f["level"] == "Warning"]
    status = "failed" if errors else "passed"
    n_rows = int(result.profile.get("rows") or (result.metric(_size()) or 0))
    summary: dict[str, Any] = {
        "stage": "quality", "run_id": run_id, "status": status, "engine": result.engine,
        "engine_requested": options.engine, "input": path, "lake": source, "output": qdir,
        "suite": suite.source, "params": dict(suite.params), "tags": options.tags,
        "dataset_date": dataset_date, "repository": repository,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(),
        "rows": n_rows,
        "counts": {"constraints": len(result.outcomes),
                   "passed": sum(1 for o in result.outcomes if o.status == "Success"),
                   "failed_error": sum(1 for o in result.outcomes
                                       if o.status != "Success" and o.level == "Error"),
                   "failed_warning": sum(1 for o in result.outcomes
                                         if o.status != "Success" and o.level == "Warning"),
                   "anomaly_checks": len(anomaly_notes),
                   "anomalies": sum(1 for a in anomaly_notes if a["status"] != "Success"),
                   "metrics": len(result.metrics), "suggestions": len(result.suggestions)},
        "errors": errors, "warnings": warnings, "anomalies": anomaly_notes,
        "history_runs": len(history),
    }

    # -- stage everything, then swap it in
    t_write = time.perf_counter()
    stage = commit_mod.staging_dir(qdir, run_id)
    tables = {"metrics": (result.metrics, METRIC_DDL), "checks": (rows, CHECK_DDL),
              "suggestions": ([s.row() for s in result.suggestions], SUGGESTION_DDL)}
    for name, (data, ddl) in tables.items():
        fs.write_json(join(stage, f"{name}.json"), data)
        spark.createDataFrame(data, ddl).coalesce(1).write.mode("overwrite") \
            .parquet(join(stage, f"{name}.parquet"))
    fs.write_json(join(stage, "profile.json"), result.profile)
    summary["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    summary["seconds"] = round(time.time() - started, 3)
    timings["write"] = round(time.perf_counter() - t_write, 3)
    summary["timings"] = timings
    from .report import render_html

    fs.write_text(join(stage, "report.html"), render_html(summary, rows, result, suite))
    fs.write_json(join(stage, "summary.json"), summary)
    marker = {"run_id": run_id, "mode": "overwrite",
              "moves": [{"from": join(stage, name), "to": join(qdir, name)} for name in OUTPUTS]}
    commit_mod.commit(fs, qdir, marker)

    repo.save(RunRecord(dataset_date, dict(options.tags), run_id, result.metrics, status,
                        result.engine, path, {"suite": suite.source}))
    return summary


def _size():
    from .suite import Analyzer

    return Analyzer("Size")


def gate(summary: dict[str, Any]) -> None:
    """Raise GateFailed (exit code 3) when an Error-level check failed."""
    errors = summary.get("errors") or []
    if not errors:
        return
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise GateFailed(f"quality gate failed: {len(errors)} Error-level constraint"
                     f"{'s' if len(errors) > 1 else ''} failed: {first['check']}: "
                     f"{first['constraint']}: {first['message']}{more}; "
                     f"see {join(summary['output'], 'report.html')}")
