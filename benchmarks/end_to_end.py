"""End to end: a generated sample of >= 1M reviews through ingest, quality and prepare.

    python benchmarks/end_to_end.py [--rows 1000000] [--repeats 3]

One SparkSession (local[*], the local profile), the stages as the pipeline runs them
(``run(cfg, spark)`` of each stage's command module, profile defaults: 90/5/5 split, balanced,
max_seq_length 64, trained WordPiece vocabulary, Python TFRecord writer). The sample is
generated once (gzip, 4 files, malformed lines included) and cached under benchmarks/_work.

The table gives each stage's median seconds and rows/s over the repeats, with the plain Spark
csv->parquet copy of the same input (the ingest baseline) as the common yardstick, and the
peak memory seen while the stages ran: the driver's JVM (which, in local mode, is also the
executor: its heap and off-heap pools live there) and the executors' Python workers (the
tokenizer's processes), sampled every 0.2 s from the process tree, plus Spark's own peak
executor metrics (JVM heap) from its status API.
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import psutil

from common import WORK, generated_raw, machine, med, save, table


class PeakMemory:
    """Peak RSS of the driver JVM and of its Python worker processes (sampled)."""

    def __init__(self, jvm_pid: int, interval: float = 0.2):
        self.jvm = psutil.Process(jvm_pid)
        self.interval = interval
        self.peak_jvm = 0
        self.peak_workers = 0
        self.peak_worker = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_jvm = max(self.peak_jvm, self.jvm.memory_info().rss)
                workers = [c.memory_info().rss for c in self.jvm.children(recursive=True)
                           if "python" in (c.name() or "").lower()]
            except psutil.Error:
                workers = []
            if workers:
                self.peak_workers = max(self.peak_workers, sum(workers))
                self.peak_worker = max(self.peak_worker, max(workers))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def spark_peak_heap(spark) -> int | None:
    """Spark's own peak JVM heap of the executors (status API), bytes."""
    import urllib.request

    url = spark.sparkContext.uiWebUrl
    if not url:
        return None
    app = spark.sparkContext.applicationId
    try:
        with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/executors",
                                    timeout=10) as r:
            executors = json.load(r)
    except OSError:
        return None
    peaks = [e.get("peakMemoryMetrics", {}).get("JVMHeapMemory") for e in executors]
    peaks = [p for p in peaks if p]
    return max(peaks) if peaks else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from reviewlake.config import Config
    from reviewlake.features.cli import run as prepare
    from reviewlake.ingest.cli import run as ingest
    from reviewlake.quality.cli import run as quality
    from reviewlake.schema import raw_ddl
    from reviewlake.session import get_spark

    base = WORK / f"e2e_{args.rows}"
    raw = generated_raw(f"e2e_{args.rows}/raw", args.rows, seed=11, defects="malformed",
                        files=4, gzip=True)
    cfg = Config.load(None, [
        "spark.log_level=ERROR", f"data.raw={raw}", f"data.lake={base / 'lake'}",
        f"data.quality={base / 'quality'}", f"data.features={base / 'features'}"])
    conf = dict(cfg.get("spark.conf") or {})
    conf["spark.executor.processTreeMetrics.enabled"] = "true"   # peaks incl. Python workers
    cfg.set("spark.conf", conf)
    spark = get_spark(cfg, "bench-end-to-end")
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())

    def baseline():
        out = str(base / "plain")
        spark.read.csv(str(raw), schema=raw_ddl(), sep="\t", header=True) \
            .write.mode("overwrite").parquet(out)

    stages = {"ingest": lambda: ingest(cfg, spark), "quality": lambda: quality(cfg, spark),
              "prepare": lambda: prepare(cfg, spark)}
    times: dict[str, list[float]] = {k: [] for k in [*stages, "total", "baseline"]}
    results: dict[str, dict] = {}
    baseline()    # warm-up of the JVM and the file cache (the stages warm up in repeat 1)
    with PeakMemory(jvm_pid) as mem:
        for _ in range(args.repeats):
            start_all = time.perf_counter()
            for name, fn in stages.items():
                start = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - start)
            times["total"].append(time.perf_counter() - start_all)
            start = time.perf_counter()
            baseline()
            times["baseline"].append(time.perf_counter() - start)
    heap = spark_peak_heap(spark)
    m = {k: med(v) for k, v in times.items()}
    assert results["quality"]["status"] == "passed", results["quality"]["errors"]
    rows_in = {"ingest": args.rows, "quality": results["ingest"]["rows_written"],
               "prepare": results["ingest"]["rows_written"], "total": args.rows,
               "baseline": args.rows}
    notes = {
        "ingest": f"{results['ingest']['rows_written']:,} written, "
                  f"{results['ingest']['rows_quarantined']:,} quarantined",
        "quality": f"{results['quality']['counts']['constraints']} constraints, "
                   f"{results['quality']['counts']['metrics']} metrics, "
                   f"{results['quality']['status']}",
        "prepare": " / ".join(f"{k} {v['count']:,}" for k, v in
                              results["prepare"]["splits"].items()) + " records",
        "total": "ingest + quality + prepare",
        "baseline": "spark.read.csv(...).write.parquet(...), same input",
    }
    labels = {"ingest": "ingest", "quality": "quality (spark engine, default suite)",
              "prepare": "prepare (balance, split, tokenize, TFRecords + Parquet)",
              "total": "end to end", "baseline": "plain Spark csv->parquet (yardstick)"}
    rows = [[labels[k], f"{rows_in[k]:,}", f"{m[k]:.1f}", f"{rows_in[k] / m[k]:,.0f}",
             f"{m[k] / m['baseline']:.2f}", notes[k]] for k in labels]
    mc = machine()
    gib = 1024 ** 3
    text = table(f"end to end: {args.rows:,} generated reviews (gzip TSV, 4 files), median of "
                 f"{args.repeats}, {mc['cores']} cores, {mc['memory_gb']} GB",
                 ["stage", "rows in", "seconds", "rows/s", "x csv->parquet", "output"], rows)
    memory = {"driver_jvm_peak_rss_gb": round(mem.peak_jvm / gib, 2),
              "python_workers_peak_rss_gb": round(mem.peak_workers / gib, 2),
              "python_worker_peak_rss_gb": round(mem.peak_worker / gib, 2),
              "executor_peak_jvm_heap_gb": round(heap / gib, 2) if heap else None}
    text += ("\n\nPeak memory while the stages ran: driver JVM (driver and executor in local "
             f"mode) {memory['driver_jvm_peak_rss_gb']} GB RSS"
             + (f" (Spark's peak executor JVM heap {memory['executor_peak_jvm_heap_gb']} GB)"
                if heap else "")
             + f"; executors' Python workers {memory['python_workers_peak_rss_gb']} GB RSS in "
             f"all, {memory['python_worker_peak_rss_gb']} GB the largest one.")
    print(text)
    save("end_to_end", {"rows": args.rows, "times": times, "median_seconds": m,
                        "memory": memory, "table": text, "goals": []})
    spark.stop()


if __name__ == "__main__":
    main()
