"""Both quality engines on the same data, compared table by table: Deequ itself (the real jar of
jars/jars.txt, through PyDeequ) against the spark engine's reimplementation of its definitions.

* metrics: the same (entity, instance, name) rows; exact metrics equal (to the last few ulps of
  floating-point summation order), approximate ones within their sketch's error;
* checks: the same constraint names, constraint statuses and messages;
* suggestions: the same (column, rule, code) set
(``reviewlake.quality.compare.differences``, which the quality benchmark uses too).

On the suite-coverage frame (every analyzer, every check kind passing and failing) and on the
default suite over a clean and a defective generated lake. Skipped, saying why, where the
Deequ jar is not on the classpath (the jar-free pass of ``make test``)."""
from __future__ import annotations

import pytest

from conftest import need_jar
from reviewlake.generate import generate
from reviewlake.ingest.job import run_ingest
from reviewlake.jars import DEEQU
from reviewlake.quality.compare import differences
from reviewlake.quality.deequ_engine import DEEQU_CLASS, DeequEngine
from reviewlake.quality.job import read_lake
from reviewlake.quality.results import EngineResult
from reviewlake.quality.spark_engine import SparkEngine
from reviewlake.quality.suite import load_suite, parse_suite
from test_quality_metrics import ANALYZERS, CHECKS, frame, wide  # noqa: F401 (fixtures)

# The check kinds test_quality_metrics.CHECKS leaves out (Deequ's names differ per analyzer).
MORE_CHECKS = [{"hasDistinctness": {"columns": ["id"], "assertion": "> 0.5"}},
               {"hasSum": {"column": "x", "assertion": "== 11"}},
               {"hasStandardDeviation": {"column": "x", "assertion": "< 2"}},
               {"hasCorrelation": {"columns": ["x", "y"], "assertion": "> 0.99"}},
               {"hasEntropy": {"column": "id", "assertion": "> 1"}},
               {"hasMean": {"column": "y", "assertion": "> 100", "hint": "a hint"}}]
NO_REPORT = {"histogram": None, "length_column": None}


@pytest.fixture(scope="module")
def deequ(spark):
    need_jar(spark, DEEQU_CLASS, DEEQU)
    engine = DeequEngine(spark)
    yield engine
    engine.close()


def both(spark, deequ, df, suite) -> tuple[EngineResult, EngineResult]:
    return SparkEngine(spark).run(df, suite), deequ.run(df, suite)


def test_every_analyzer_and_check_kind_agree(spark, deequ, wide):
    suite = parse_suite({
        "analyzers": ANALYZERS,
        "checks": [{"name": "pass", "level": "Error", "constraints": [g for g, _, _ in CHECKS]},
                   {"name": "fail", "level": "Warning", "constraints": [b for _, b, _ in CHECKS]},
                   {"name": "more", "level": "Warning", "constraints": MORE_CHECKS}],
        "suggestions": True, "report": NO_REPORT})
    ours, theirs = both(spark, deequ, wide, suite)
    diffs = differences(wide, ours, theirs)
    assert not diffs, "\n".join(diffs)
    assert {o.status for o in theirs.outcomes[:len(CHECKS)]} == {"Success"}
    assert {o.status for o in theirs.outcomes[len(CHECKS):2 * len(CHECKS)]} == {"Failure"}


def test_quirks_agree(spark, deequ):
    """The cases where the spark engine once differed from Deequ 2.x: number-like strings
    (``1e5`` Fractional, ``""`` String), a quote inside an isContainedIn value, categorical
    ranges of an Integral column, and a Correlation with a constant column."""
    rows = [("1e5", "Men's", 1, 7, "A"), ("", "Men's", 1, 7, "A"), ("7", "Women's", 2, 7, "B"),
            ("1.5", "x", 2, 7, "A"), ("-3", "Men's", 3, 7, "A"), ("true", "x", 1, 7, "A"),
            (None, "Men's", 1, 7, "B"), ("0.", "Men's", 2, 7, "A"), (".5", "x", 1, 7, "A"),
            ("+4", "Men's", 2, 7, "A")] * 4
    df = spark.createDataFrame(rows, "s string, cat string, small int, const int, grade string")
    suite = parse_suite({
        "analyzers": [{"Correlation": ["small", "const"]}, {"Histogram": "s"}, "Size",
                      {"Entropy": "cat"}],
        "checks": [{"name": "quoted", "level": "Error", "constraints": [
            {"isContainedIn": {"column": "cat", "values": ["Men's", "Women's", "x"]}},
            {"isContainedIn": {"column": "cat", "values": ["Men's"],
                               "assertion": ">= 0.5"}}]}],
        "suggestions": True, "report": NO_REPORT})
    ours, theirs = both(spark, deequ, df, suite)
    diffs = differences(df, ours, theirs)
    assert not diffs, "\n".join(diffs)
    assert [o.status for o in theirs.outcomes] == ["Success", "Success"]


@pytest.fixture(scope="module")
def lakes(spark, defects_sample, tmp_path_factory):
    base = tmp_path_factory.mktemp("engines")
    generate(rows=3000, output=base / "raw", seed=5, defects=False, files=2)
    run_ingest(spark, [str(base / "raw")], str(base / "clean"))
    run_ingest(spark, [str(defects_sample[0])], str(base / "defects"))
    return {"clean": base / "clean", "defects": base / "defects"}


@pytest.mark.parametrize("which", ["clean", "defects"])
def test_default_suite_agrees_on_generated_lakes(spark, deequ, lakes, which):
    from reviewlake.fs import HadoopFS

    df, _ = read_lake(spark, HadoopFS(spark), str(lakes[which]))
    suite = load_suite(None, {"min_size": 100})
    ours, theirs = both(spark, deequ, df.cache(), suite)
    try:
        diffs = differences(df, ours, theirs)
        assert not diffs, "\n".join(diffs)
        statuses = {o.status for o in theirs.outcomes}
        assert statuses == ({"Success"} if which == "clean" else {"Success", "Failure"})
    finally:
        df.unpersist()


@pytest.mark.jarfree
def test_differences_finds_each_kind_of_difference():
    from reviewlake.quality.results import ConstraintOutcome, Suggestion

    def result(engine, value, status, code):
        return EngineResult(engine, [{"entity": "Column", "instance": "a", "name": "Mean",
                                      "value": value},
                                     {"entity": "Column", "instance": "a",
                                      "name": "ApproxCountDistinct", "value": 100.0}],
                            [ConstraintOutcome("c", "Error", "MeanConstraint(Mean(a,None))",
                                               status)],
                            [Suggestion("a", "d", "RetainTypeRule", code)])

    same = differences(None, result("spark", 1.0, "Success", "x"),
                       result("deequ", 1.0 + 1e-15, "Success", "x"))
    assert same == []
    diff = differences(None, result("spark", 1.0, "Success", "x"),
                       result("deequ", 1.1, "Failure", "y"))
    assert len(diff) == 4 and diff[0].startswith("metric ('Column', 'a', 'Mean')")
    assert any(d.startswith("constraint:") for d in diff)
    assert "suggestion only in spark: ('a', 'RetainTypeRule', 'x')" in diff
