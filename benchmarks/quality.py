"""The quality stage against one count() scan of the same lake, same session.

    python benchmarks/quality.py [--rows 1000000] [--repeats 3] [--warmup 2]

A clean generated sample is generated and ingested once (cached under benchmarks/_work).
Side A is the quality stage as users run it with the default suite (conf/quality.yaml):
run_quality = the spark engine's two jobs (every analyzer, check and column profile), the
anomaly checks against the metrics repository, the suggestions, the report with its plots,
the staged write of QDIR (JSON + Parquet tables) and the commit. Side B, the baseline of the
goal, is ``spark.read.parquet(LAKE/reviews).count()``. Two reference rows show the engine alone
(no outputs), with and without the column profiles behind the suggestions; two more show the
floors any implementation of the suite pays: decoding the columns it reads (count() reads none:
Parquet footers answer it) and the exact group-by of review_id that Uniqueness needs.
Goal: quality <= 2.5 x the count() scan.

Engines, side by side on the same lake and suite (a second table): the spark engine against
Deequ itself (the deequ engine: PyDeequ on the jar of jars/jars.txt), each computing the
suite's metrics, checks and suggestions; the two results are compared metric by metric
(reviewlake.quality.compare) and the table says whether they agree. Goal: spark engine <= 0.5x
Deequ's wall time. Without the Deequ jar that table says so and is left out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil

from common import WORK, goal, goal_lines, machine, med, median_times, save, table

GOAL = 2.5
ENGINE_GOAL = 0.5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    from reviewlake.config import Config
    from reviewlake.generate import generate
    from reviewlake.ingest.job import run_ingest
    from reviewlake.quality.job import QualityOptions, run_quality
    from reviewlake.quality.spark_engine import SparkEngine
    from reviewlake.quality.suite import load_suite
    from reviewlake.session import get_spark

    spark = get_spark(Config.load(None, ["spark.log_level=ERROR"]), "bench-quality")
    base = WORK / f"quality_{args.rows}"
    lake = base / "lake"
    report = lake / "_reports" / "ingest.json"
    if not report.exists() or json.loads(report.read_text())["rows_read"] != args.rows:
        shutil.rmtree(base, ignore_errors=True)
        generate(rows=args.rows, output=base / "raw", seed=5, defects=False, files=4)
        run_ingest(spark, [str(base / "raw")], str(lake))
        shutil.rmtree(base / "raw")
    out = WORK / "quality_out"
    shutil.rmtree(out, ignore_errors=True)
    reviews = str(lake / "reviews")
    suite = load_suite(None)
    no_profiles = dataclasses.replace(
        suite, suggestions=dataclasses.replace(suite.suggestions, enabled=False))
    engine = SparkEngine(spark)
    last: dict = {}

    def quality():
        last["summary"] = run_quality(spark, str(lake), str(out / "q"),
                                      QualityOptions(suite, engine="spark"))
        assert last["summary"]["status"] == "passed", last["summary"]["errors"]

    def count():
        spark.read.parquet(reviews).count()

    def engine_only():
        last["engine"] = engine.run(spark.read.parquet(reviews), suite).timings

    def engine_no_profiles():
        engine.run(spark.read.parquet(reviews), no_profiles)

    from pyspark.sql import functions as F

    suite_columns = sorted(suite.referenced_columns())

    def read_columns():
        # the floor of any suite: decode the columns it reads (one count per column)
        spark.read.parquet(reviews).agg(*[F.count(c) for c in suite_columns]).first()

    def group_ids():
        # the floor of an exact Uniqueness(review_id): one group-by of every id
        spark.read.parquet(reviews).groupBy("review_id").count() \
            .agg(F.sum((F.col("count") == 1).cast("int"))).first()

    from reviewlake.quality.compare import differences
    from reviewlake.quality.deequ_engine import DeequEngine, deequ_available

    sides = {"quality": quality, "count": count, "engine": engine_only,
             "engine_no_profiles": engine_no_profiles,
             "read_columns": read_columns, "group_ids": group_ids}
    deequ = DeequEngine(spark) if deequ_available(spark) else None
    if deequ is not None:
        def engine_spark():
            last["spark_result"] = engine.run(spark.read.parquet(reviews), suite)

        def engine_deequ():
            last["deequ_result"] = deequ.run(spark.read.parquet(reviews), suite)

        sides.update(engine_spark=engine_spark, engine_deequ=engine_deequ)
    try:
        times = median_times(sides, repeats=args.repeats, warmup=args.warmup)
    finally:
        if deequ is not None:
            deequ.close()
    m = {k: med(v) for k, v in times.items()}
    ratio = m["quality"] / m["count"]
    rows = [
        ["reviewlake quality, default suite (engine spark, history, report, staged write)",
         f"{m['quality']:.2f}", f"{ratio:.2f}"],
        ["spark.read.parquet(lake).count() (baseline)", f"{m['count']:.2f}", "1.00"],
        ["spark engine alone: metrics, checks, column profiles (reference)",
         f"{m['engine']:.2f}", f"{m['engine'] / m['count']:.2f}"],
        ["spark engine alone, suggestions off: no column profiles (reference)",
         f"{m['engine_no_profiles']:.2f}", f"{m['engine_no_profiles'] / m['count']:.2f}"],
        [f"floor: decode the suite's {len(suite_columns)} columns, count() each (reference)",
         f"{m['read_columns']:.2f}", f"{m['read_columns'] / m['count']:.2f}"],
        ["floor: exact group-by of review_id, as Uniqueness needs (reference)",
         f"{m['group_ids']:.2f}", f"{m['group_ids'] / m['count']:.2f}"],
    ]
    engines_text, engine_ratio, agree = "", None, None
    if deequ is not None:
        engine_ratio = m["engine_spark"] / m["engine_deequ"]
        diffs = differences(spark.read.parquet(reviews), last["spark_result"],
                            last["deequ_result"])
        agree = not diffs
        n_metrics = len(last["deequ_result"].metrics)
        same = "yes" if agree else f"NO: {len(diffs)} differences, first: {diffs[0]}"
        engines_text = table(
            f"quality engines: {args.rows:,} rows, default suite ({n_metrics} metrics, "
            f"checks, suggestions), median of {args.repeats}",
            ["engine", "seconds", "x deequ", "same metrics, checks, suggestions"],
            [["spark (Spark SQL aggregates)", f"{m['engine_spark']:.2f}",
              f"{engine_ratio:.2f}", same],
             ["deequ (PyDeequ on the Deequ jar)", f"{m['engine_deequ']:.2f}", "1.00", ""]])
    mc = machine()
    summary = last.get("summary", {})
    text = table(f"quality: {args.rows:,} rows, {summary.get('counts', {}).get('metrics', '?')} "
                 f"metrics, {summary.get('counts', {}).get('constraints', '?')} constraints, "
                 f"median of {args.repeats}, {mc['cores']} cores",
                 ["side", "seconds", "x count()"], rows)
    goals = [goal("quality seconds / one count() scan seconds", ratio, GOAL,
                  higher_is_better=False)]
    if engine_ratio is not None:
        goals.append(goal("spark engine seconds / deequ engine seconds (same suite, lake)",
                          engine_ratio, ENGINE_GOAL, higher_is_better=False))
        text += "\n\n" + engines_text
    print(text)
    print(f"\nphases of the last quality run (s): {summary.get('timings')}")
    print(f"\ngoal: quality <= {GOAL}x one count() scan -> {ratio:.2f}x "
          f"({'met' if ratio <= GOAL else 'MISSED'})")
    print(goal_lines(goals))
    save("quality", {"rows": args.rows, "times": times, "median_seconds": m, "ratio": ratio,
                     "engine_ratio": engine_ratio, "engines_agree": agree,
                     "table": text, "goals": goals,
                     "phases": summary.get("timings"), "engine_phases": last.get("engine")})
    spark.stop()


if __name__ == "__main__":
    main()
