"""Ingest throughput against plain Spark csv -> Parquet on the same generated file.

    python benchmarks/ingest.py [--rows 1000000] [--repeats 3] [--defects]

The file is clean by default (the throughput comparison); with --defects it carries 0.35%
malformed lines, so the ingest side also builds the quarantine (exact line numbers).

Side A is the ingest job as users run it (run_ingest: listing, classification of every line,
Parquet partitioned by product_category, quarantine, accounting, commit). Side B is the
baseline the goal is stated against: spark.read.csv(schema, sep="\\t").write.parquet,
unpartitioned, no checks. A third row, the baseline writing the same partitioned layout,
shows what the partitioning alone costs. Goal: ingest rows/s >= 0.9 x baseline rows/s.
"""
from __future__ import annotations

import argparse

from common import WORK, generated_raw, goal, goal_lines, machine, med, median_times, save, table

GOAL = 0.9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--defects", action="store_true", help="0.35%% malformed lines")
    args = ap.parse_args()

    from reviewlake.config import Config
    from reviewlake.ingest.job import run_ingest
    from reviewlake.schema import raw_ddl
    from reviewlake.session import get_spark

    src = generated_raw(f"ingest_{args.rows}{'_defects' if args.defects else ''}", args.rows,
                        defects=args.defects, files=1)
    tsv = str(next(src.glob("*.tsv")))
    spark = get_spark(Config.load(None, ["spark.log_level=ERROR"]), "bench-ingest")
    out = WORK / "ingest_out"

    def ingest():
        run_ingest(spark, [tsv], str(out / "lake"))

    def baseline(partitioned=False):
        df = spark.read.csv(tsv, schema=raw_ddl(), sep="\t", header=True, quote="")
        w = df.write.mode("overwrite")
        if partitioned:
            w = w.partitionBy("product_category")
        w.parquet(str(out / ("csv_part" if partitioned else "csv")))

    times = median_times({"ingest": ingest, "csv": baseline,
                          "csv_partitioned": lambda: baseline(True)}, repeats=args.repeats)
    m = {k: med(v) for k, v in times.items()}
    rate = {k: args.rows / v for k, v in m.items()}
    ratio = rate["ingest"] / rate["csv"]
    rows = [
        ["reviewlake ingest (partitioned, checked, quarantined)", f"{m['ingest']:.2f}",
         f"{rate['ingest']:,.0f}", f"{ratio:.2f}"],
        ["spark.read.csv -> write.parquet (baseline)", f"{m['csv']:.2f}", f"{rate['csv']:,.0f}",
         "1.00"],
        ["spark.read.csv -> partitionBy(product_category) (reference)",
         f"{m['csv_partitioned']:.2f}", f"{rate['csv_partitioned']:,.0f}",
         f"{rate['csv_partitioned'] / rate['csv']:.2f}"],
    ]
    mc = machine()
    kind = "with 0.35% malformed lines" if args.defects else "clean"
    text = table(f"ingest: {args.rows:,} rows, one {round((src / tsv).stat().st_size / 1e6)} MB "
                 f"TSV ({kind}), median of {args.repeats}, {mc['cores']} cores",
                 ["side", "seconds", "rows/s", "ratio"], rows)
    goals = [goal("ingest rows/s / plain csv->parquet rows/s", ratio, GOAL)]
    print(text + "\n\n" + goal_lines(goals))
    save("ingest_defects" if args.defects else "ingest", {
        "rows": args.rows, "defects": args.defects, "times": times, "median_seconds": m,
        "rows_per_second": rate, "ratio": ratio, "table": text, "goals": goals})
    spark.stop()


if __name__ == "__main__":
    main()
