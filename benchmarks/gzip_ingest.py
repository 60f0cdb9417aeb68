"""Ingest of one large .tsv.gz (as the public dataset is published) against the same rows as
plain files.

    python benchmarks/gzip_ingest.py [--rows 1000000] [--files 4] [--repeats 3]

Spark reads a gzip file in one task: without help, one core decompresses, parses, checks and
writes the whole file whatever the cluster. Ingest spreads the lines over the cores right after
decompression (``ingest.spread``, auto). Sides, all through run_ingest on the same generated
rows (same seed, same content):

* the rows as ``--files`` plain TSV files (Spark splits them over every core): the reference;
* one .tsv.gz with ``spread auto`` (what users get: on fewer than 4 cores, not spread);
* one .tsv.gz spread over every core (``spread N``): what the spreading costs and gains here.

Goal: one .tsv.gz as users get it (spread auto) >= 0.8 x the plain files' rows/s.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import WORK, generated_raw, goal, goal_lines, machine, med, median_times, save, table

GOAL = 0.8


def _sample(rows: int, files: int, gzip: bool) -> list[str]:
    src = generated_raw(f"gzip_ingest_{rows}_{'gz' if gzip else f'{files}plain'}", rows,
                        files=files, gzip=gzip)
    return sorted(str(p) for p in src.glob("*.tsv*"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=4, help="plain files of the reference side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    from reviewlake.config import Config
    from reviewlake.ingest.job import IngestOptions, run_ingest
    from reviewlake.session import get_spark

    plain = _sample(args.rows, args.files, gzip=False)
    gz = _sample(args.rows, 1, gzip=True)
    spark = get_spark(Config.load(None, ["spark.log_level=ERROR"]), "bench-ingest-gz")
    out = WORK / "gzip_ingest_out"
    reports: dict[str, dict] = {}

    def side(name: str, paths: list[str], spread):
        def run():
            reports[name] = run_ingest(spark, paths, str(out / name), IngestOptions(spread=spread))
        return run

    cores = spark.sparkContext.defaultParallelism
    times = median_times({"plain": side("plain", plain, "auto"),
                          "gz": side("gz", gz, "auto"),
                          "gz_spread": side("gz_spread", gz, max(2, cores))},
                         repeats=args.repeats, warmup=args.warmup)
    assert len({r["rows_written"] for r in reports.values()}) == 1, "the sides ingested other rows"
    m = {k: med(v) for k, v in times.items()}
    rate = {k: args.rows / v for k, v in m.items()}
    ratio = rate["gz"] / rate["plain"]
    mb = {"plain": sum(Path(p).stat().st_size for p in plain) / 1e6,
          "gz": sum(Path(p).stat().st_size for p in gz) / 1e6}
    spread = reports["gz"].get("spread_partitions", 0)
    rows = [
        [f"{args.files} plain TSV files ({mb['plain']:.0f} MB; Spark splits them)",
         f"{m['plain']:.2f}", f"{rate['plain']:,.0f}", "1.00"],
        [f"one .tsv.gz ({mb['gz']:.0f} MB), spread auto "
         f"({f'over {spread} partitions' if spread else 'not spread: one task'})",
         f"{m['gz']:.2f}", f"{rate['gz']:,.0f}", f"{ratio:.2f}"],
        [f"one .tsv.gz spread over {max(2, cores)} partitions after decompression",
         f"{m['gz_spread']:.2f}", f"{rate['gz_spread']:,.0f}",
         f"{rate['gz_spread'] / rate['plain']:.2f}"],
    ]
    mc = machine()
    text = table(f"ingest of one gzip file: {args.rows:,} rows, median of {args.repeats}, "
                 f"{mc['cores']} cores", ["side", "seconds", "rows/s", "ratio"], rows)
    goals = [goal("ingest of one .tsv.gz rows/s / the same rows as plain files rows/s",
                  ratio, GOAL)]
    print(text + "\n\n" + goal_lines(goals))
    save("gzip_ingest", {"rows": args.rows, "files": args.files, "times": times,
                       "median_seconds": m, "rows_per_second": rate, "ratio": ratio,
                       "spread_partitions": spread, "table": text, "goals": goals})
    spark.stop()


if __name__ == "__main__":
    main()
