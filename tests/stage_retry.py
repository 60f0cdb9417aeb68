"""Issue 13's forced stage retry, in a Spark session of its own (run by
test_commit.test_a_recomputed_map_stage_counts_rows_once as ``python tests/stage_retry.py DIR``).

Deleting a map task's shuffle files makes the write's fetch fail and Spark re-run that map
task, which is the point; but in local mode the fetch failure also leaves the block manager
re-registering with a scheduler endpoint local mode does not have, every heartbeat, until the
executor gives up after spark.executor.heartbeat.maxFailures (60 x 10 s) and exits the JVM.
In the shared test session that killed the JVM ten minutes later, in whatever test ran then.
Here the session is this process's own. Prints the ingest report and what was deleted as JSON.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "lib"), str(ROOT / "tests")]


def main(base: Path) -> dict:
    from pyspark.sql import functions as F

    from conftest import config_for_tests
    from reviewlake.generate import generate
    from reviewlake.ingest import job as job_mod
    from reviewlake.ingest.job import IngestOptions, run_ingest
    from reviewlake.session import get_spark

    spark = get_spark(config_for_tests(), "stage-retry")
    raw = base / "raw"
    generate(rows=600, output=raw, seed=5, defects=True, files=2)
    env = spark._jvm.org.apache.spark.SparkEnv.get()
    local_dirs = [f.getAbsolutePath() for f in env.blockManager().diskBlockManager().localDirs()]

    def shuffle_files():   # (nested: the UDF below is pickled by value, with it)
        return [p for d in local_dirs for p in glob.glob(os.path.join(d, "*", "shuffle_*"))
                if p.endswith((".data", ".index"))]

    known = set(shuffle_files())
    flag = str(base / "sabotaged")
    real = job_mod.P.classify

    def sabotage(_):
        from pyspark import TaskContext

        if TaskContext.get().partitionId() != 1 or os.path.exists(flag):
            return True
        deadline = time.time() + 60
        while time.time() < deadline:   # until another map task has written its output
            fresh = [p for p in shuffle_files() if p not in known]
            if any(p.endswith(".data") for p in fresh):
                for p in fresh:
                    os.remove(p)
                with open(flag, "w") as fh:
                    fh.write(",".join(os.path.basename(p) for p in fresh))
                return True
            time.sleep(0.05)
        return True

    udf = F.udf(sabotage, "boolean")
    job_mod.P.classify = lambda lines: real(lines).where(udf(F.lit(1)))
    lake = base / "lake"
    report = run_ingest(spark, [str(raw)], str(lake),
                        IngestOptions(files_per_category=2, max_split_bytes="64k"))
    written = spark.read.parquet(str(lake / "reviews")).count()
    spark.stop()
    return {"report": {k: report[k] for k in ("rows_read", "rows_written", "rows_quarantined")},
            "deleted": Path(flag).read_text().split(",") if os.path.exists(flag) else [],
            "lake_rows": written}


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]))), flush=True)
