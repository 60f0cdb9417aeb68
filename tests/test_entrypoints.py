"""The ways users start a job: spark-submit.sh, the demo target, and a killed run."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, run_cli
from reviewlake import lake as L
from reviewlake.generate import generate
from reviewlake.ingest.job import run_ingest
from reviewlake.launch.submit import spark_submit_args, split_args

VENV = str(VENV_BIN.parent)


def test_split_args():
    assert split_args(["--master", "yarn", "--verbose", "jobs/x.py", "--input", "a"]) == (
        ["--master", "yarn", "--verbose"], "jobs/x.py", ["--input", "a"])
    assert split_args(["--conf=spark.a=1", "app.py"]) == (["--conf=spark.a=1"], "app.py", [])


def test_spark_submit_args_local_and_cluster(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEWLAKE_JARS_DIR", str(tmp_path / "jars"))
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "deequ-2.1.0-spark-3.5.jar").write_bytes(b"")
    args = spark_submit_args(["jobs/ingest.py", "--input", "x"], build_dir=tmp_path)
    assert args[:2] == ["--master", "local[*]"]
    assert args[args.index("--driver-memory") + 1] == "6g"
    assert args[args.index("--jars") + 1].endswith("deequ-2.1.0-spark-3.5.jar")
    assert "--py-files" not in args
    assert args[-3:] == ["jobs/ingest.py", "--input", "x"]
    args = spark_submit_args(["--master", "yarn", "jobs/ingest.py", "--config", "emr"],
                             build_dir=tmp_path)
    assert args[:2] == ["--master", "yarn"] and "--driver-memory" not in args
    bundle = args[args.index("--py-files") + 1]
    assert Path(bundle).is_file()
    import zipfile
    names = zipfile.ZipFile(bundle).namelist()
    assert "reviewlake/ingest/job.py" in names and "reviewlake/conf/local.yaml" in names
    assert "com.amazon.deequ:deequ:2.1.0-spark-3.5" in args[args.index("--packages") + 1].split(",")


@pytest.mark.slow
def test_spark_submit_sh_behaves_like_the_cli(tmp_path, spark):
    raw = tmp_path / "raw"
    generate(rows=2000, output=raw, seed=4, defects=True, files=2, gzip=True)
    env = dict(os.environ, REVIEWLAKE_VENV=VENV)
    env.pop("PYSPARK_GATEWAY_PORT", None)
    sub = subprocess.run([str(ROOT / "spark-submit.sh"), "jobs/ingest.py", "--input", str(raw),
                          "--output", str(tmp_path / "a")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert sub.returncode == 0, sub.stderr[-3000:]
    cli = run_cli("ingest", "--input", str(raw), "--output", str(tmp_path / "b"))
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "ingest ok" in sub.stdout and "ingest ok" in cli.stdout
    ra = json.loads((tmp_path / "a" / "_reports" / "ingest.json").read_text())
    rb = json.loads((tmp_path / "b" / "_reports" / "ingest.json").read_text())
    for key in ("rows_read", "rows_written", "rows_quarantined", "by_reason", "rows_by_category",
                "headers"):
        assert ra[key] == rb[key], key
    cols = ["review_id", "star_rating", "review_body", "product_category", "review_date"]
    assert ra["format"] == rb["format"]   # ingest.format auto: the same choice in both
    a = L.read_reviews(spark, L.locate(spark, str(tmp_path / "a"))).select(cols)
    b = L.read_reviews(spark, L.locate(spark, str(tmp_path / "b"))).select(cols)
    assert a.count() == b.count() and a.exceptAll(b).count() == 0
    bad = subprocess.run([str(ROOT / "spark-submit.sh"), "jobs/ingest.py", "--input", "/no/such"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    # spark-submit's Python runner sends the job's stderr to its stdout
    both = bad.stdout + bad.stderr
    assert bad.returncode == 2 and "reviewlake ingest: error: input not found: /no/such" in both
    assert "Traceback" not in both


@pytest.mark.slow
def test_killed_run_leaves_the_previous_lake(tmp_path, spark):
    small = tmp_path / "small"
    generate(rows=1000, output=small, seed=1, files=1)
    lake = tmp_path / "lake"
    run_ingest(spark, [str(small)], str(lake))
    before = spark.read.parquet(str(lake / "reviews")).count()
    big = tmp_path / "big"
    generate(rows=300_000, output=big, seed=2, files=2)
    proc = subprocess.Popen([str(VENV_BIN / "reviewlake"), "ingest", "--input", str(big),
                             "--output", str(lake), "-q"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = lake / "_staging"
    deadline = time.time() + 300
    try:
        # Kill once the run is writing Parquet files into its staging area.
        while time.time() < deadline:
            if staged.exists() and any(p.suffix == ".parquet" for p in staged.rglob("*")):
                break
            if proc.poll() is not None:
                pytest.fail("ingest finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("the run never started writing")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert spark.read.parquet(str(lake / "reviews")).count() == before
    assert not (lake / "_commit.json").exists()
    report = run_ingest(spark, [str(small)], str(lake))
    assert report["rows_written"] == before
    assert not staged.exists()
