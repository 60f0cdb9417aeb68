"""The quality stage end to end on generated lakes: a clean lake passes; the lake with defects
fails the gate (exit code 3) and every injected defect is named; a second run on half the rows
raises the Size anomaly; the outputs; the spark-submit path."""
import json
import os
import subprocess

import pytest

from conftest import ROOT, VENV_BIN, jar_present, need_jar
from reviewlake.jars import DEEQU
from reviewlake.quality.deequ_engine import DEEQU_CLASS
from reviewlake.generate import generate, quirks
from reviewlake.ingest.job import run_ingest
from reviewlake.quality.job import GateFailed, QualityOptions, gate, run_quality
from reviewlake.quality.report import format_summary
from reviewlake.quality.suite import load_suite

SMALL = {"min_size": 100}


@pytest.fixture(scope="module")
def clean_lake(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("quality_clean")
    generate(rows=2000, output=base / "raw", seed=11, defects=False, files=2)
    run_ingest(spark, [str(base / "raw")], str(base / "lake"))
    return base / "lake"


@pytest.fixture(scope="module")
def defects_lake(spark, defects_sample, tmp_path_factory):
    raw, _ = defects_sample
    lake = tmp_path_factory.mktemp("quality_defects") / "lake"
    run_ingest(spark, [str(raw)], str(lake))
    return lake


@pytest.fixture(scope="module")
def clean_run(spark, clean_lake, tmp_path_factory):
    qdir = tmp_path_factory.mktemp("quality_out") / "q"
    summary = run_quality(spark, str(clean_lake), str(qdir),
                          QualityOptions(load_suite(None, SMALL), engine="auto"))
    return qdir, summary


@pytest.mark.jarfree
def test_a_clean_lake_passes(clean_run):
    qdir, summary = clean_run
    assert summary["status"] == "passed" and summary["errors"] == []
    # auto: Deequ where its jar is in jars/ (the set-up fetches it), the spark engine without
    assert summary["engine"] == ("deequ" if jar_present(DEEQU) else "spark")
    assert summary["rows"] == 2000
    assert summary["counts"]["passed"] == summary["counts"]["constraints"] == 12
    gate(summary)   # does not raise
    # the first run has no history: anomaly checks pass and say why
    assert all(a["status"] == "Success" and a["history"] == 0 for a in summary["anomalies"])


@pytest.mark.jarfree
def test_outputs(clean_run, spark):
    qdir, summary = clean_run
    for name in ("metrics", "checks", "suggestions"):
        rows = json.loads((qdir / f"{name}.json").read_text())
        table = spark.read.parquet(str(qdir / f"{name}.parquet"))
        assert table.count() == len(rows) > 0
    checks = spark.read.parquet(str(qdir / "checks.parquet"))
    assert checks.columns == ["check", "check_level", "check_status", "constraint",
                              "constraint_status", "constraint_message"]
    assert spark.read.parquet(str(qdir / "metrics.parquet")).columns == \
        ["entity", "instance", "name", "value"]
    assert spark.read.parquet(str(qdir / "suggestions.parquet")).columns == \
        ["column", "description", "rule", "code"]
    metrics = {(m["entity"], m["instance"], m["name"]): m["value"]
               for m in json.loads((qdir / "metrics.json").read_text())}
    assert metrics[("Dataset", "*", "Size")] == 2000
    assert ("Multicolumn", "total_votes,helpful_votes", "Correlation") in metrics
    assert metrics[("Column", "review_id", "Uniqueness")] == 1.0
    html = (qdir / "report.html").read_text()
    assert "PASSED" in html and html.count("data:image/png;base64,") == 2
    assert "Suggested constraints" in html and "UniquenessConstraint" in html
    assert json.loads((qdir / "summary.json").read_text())["run_id"] == summary["run_id"]
    runs = list((qdir / "_history" / "runs").glob("*.json"))
    assert len(runs) == 1 and not (qdir / "_staging").exists()
    profile = json.loads((qdir / "profile.json").read_text())
    assert profile["histogram"]["column"] == "star_rating"
    # every review with a body (the sample's quirks include empty ones)
    assert profile["lengths"]["sampled_rows"] == 2000 - quirks.counts(2000)["empty_body"]


@pytest.mark.parametrize("engine", ["spark", pytest.param("deequ", marks=pytest.mark.slow)])
def test_defects_fail_the_gate_and_are_named(spark, defects_lake, tmp_path, engine):
    """Under either engine the gate names every defect with its failing values."""
    if engine == "deequ":
        need_jar(spark, DEEQU_CLASS, DEEQU)
    summary = run_quality(spark, str(defects_lake), str(tmp_path / "q"),
                          QualityOptions(load_suite(None, SMALL), engine=engine))
    assert summary["engine"] == engine
    assert summary["status"] == "failed"
    with pytest.raises(GateFailed) as err:
        gate(summary)
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    failed = {f["constraint"]: f for f in summary["errors"]}

    def find(prefix):
        hits = [f for c, f in failed.items() if c.startswith(prefix)]
        assert hits, (prefix, list(failed))
        return hits[0]

    dup = find("UniquenessConstraint(Uniqueness(List(review_id)")        # duplicate ids
    assert "occur more than once" in dup["details"]["summary"]
    assert all(v["rows"] >= 2 for v in dup["details"]["values"])
    empty = find("CompletenessConstraint(Completeness(review_id")         # empty ids
    assert empty["details"]["rows"] > 0
    low = find("MinimumConstraint(Minimum(star_rating")                   # rating 0
    assert low["message"].startswith("Value: 0.0 does not meet") and \
        [v["value"] for v in low["details"]["values"]] == [0]
    high = find("MaximumConstraint(Maximum(star_rating")                  # rating 6
    assert high["message"].startswith("Value: 6.0") and \
        [v["value"] for v in high["details"]["values"]] == [6]
    market = find("ComplianceConstraint(Compliance(marketplace contained in")  # "XX"
    assert [v["value"] for v in market["details"]["values"]] == ["XX"]
    # the check-results table names them as well
    rows = json.loads((tmp_path / "q" / "checks.json").read_text())
    failures = [r for r in rows if r["constraint_status"] == "Failure"]
    assert {r["check_status"] for r in failures} == {"Error"}
    assert any("review_id" in r["constraint"] and "Uniqueness" in r["constraint"]
               for r in failures)
    text = format_summary(summary)
    assert "quality FAILED" in text and "XX: " in text
    assert "FAILED" in (tmp_path / "q" / "report.html").read_text()


def test_half_the_rows_raise_the_size_anomaly(spark, clean_run, clean_lake, tmp_path):
    qdir, _ = clean_run
    half = tmp_path / "half"
    spark.read.parquet(str(clean_lake / "reviews")).sample(fraction=0.5, seed=3) \
        .write.partitionBy("product_category").parquet(str(half / "reviews"))
    # a run killed while staging leaves its debris; the results stay those of the last run
    debris = qdir / "_staging" / "19700101T000000Z-dead00"
    debris.mkdir(parents=True)
    (debris / "metrics.json").write_text("[]")
    before = (qdir / "summary.json").read_text()
    assert (qdir / "summary.json").read_text() == before
    summary = run_quality(spark, str(half), str(qdir),
                          QualityOptions(load_suite(None, SMALL), engine="spark"))
    size = next(a for a in summary["anomalies"] if a["metric"] == "Size")
    assert size["status"] == "Failure" and size["history"] == 1
    assert "[RelativeRateOfChange] relative change from 2000.0" in size["message"]
    assert summary["status"] == "failed"          # the Size anomaly check is at level Error
    assert [f["check"] for f in summary["errors"]] == ["Size anomaly"]
    rows = json.loads((qdir / "checks.json").read_text())
    anomaly = next(r for r in rows if r["check"] == "Size anomaly")
    assert anomaly["constraint"] == "AnomalyConstraint(Size(None))"
    assert anomaly["check_status"] == "Error" and anomaly["constraint_status"] == "Failure"
    assert not (qdir / "_staging").exists()
    assert len(list((qdir / "_history" / "runs").glob("*.json"))) == 2
    # different tags: no comparable history, no anomaly
    other = run_quality(spark, str(half), str(tmp_path / "q2"), QualityOptions(
        load_suite(None, SMALL), engine="spark", repository=str(qdir / "_history"),
        tags={"dataset": "other"}))
    assert other["status"] == "passed"
    assert all(a["history"] == 0 for a in other["anomalies"])


@pytest.mark.slow
def test_spark_submit_quality_exits_3_on_defects(defects_lake, tmp_path):
    env = dict(os.environ, REVIEWLAKE_VENV=str(VENV_BIN.parent))
    env.pop("PYSPARK_GATEWAY_PORT", None)
    proc = subprocess.run([str(ROOT / "spark-submit.sh"), "jobs/quality.py", "--input",
                           str(defects_lake), "--output", str(tmp_path / "q"),
                           "--set", "quality.params.min_size=100", "--tags", "run=submit"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    both = proc.stdout + proc.stderr
    assert proc.returncode == 3, both[-3000:]
    assert "quality FAILED" in both and "Traceback" not in both
    assert "reviewlake quality: error: quality gate failed: 5 Error-level constraints failed" \
        in both
    summary = json.loads((tmp_path / "q" / "summary.json").read_text())
    assert summary["tags"] == {"run": "submit"}
    assert summary["engine"] == ("deequ" if jar_present(DEEQU) else "spark")


@pytest.mark.slow
@pytest.mark.jarfree
def test_engine_deequ_without_the_jar_is_one_line(clean_lake, tmp_path):
    """--engine deequ on a machine without the jar: one line naming the jar and what to do."""
    from conftest import run_cli

    empty = tmp_path / "no-jars"
    empty.mkdir()
    proc = run_cli("quality", "--input", str(clean_lake), "--output", str(tmp_path / "q"),
                   "--engine", "deequ", env={"REVIEWLAKE_JARS_DIR": str(empty)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("reviewlake quality: error:")]
    assert len(lines) == 1 and DEEQU in lines[0] and "jars/fetch.sh" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
