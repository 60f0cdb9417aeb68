"""The spark engine against hand-computed values: every metric on a small frame, every check
passing and failing, the suggestions of a small table, and the deequ engine's jar check.

The frame (5 rows):

    id    cat   x     y     s
    a     u     1     10.0  "12"
    b     u     2     20.0  "7"
    b     v     3     null  "0"
    null  v     null  40.0  null
    c     null  5     50.0  "31"
"""
import math

import pytest

from reviewlake.errors import UserError
from reviewlake.quality.results import Distribution
from reviewlake.quality.spark_engine import SparkEngine
from reviewlake.quality.suite import Analyzer, parse_suite

ROWS = [("a", "u", 1, 10.0, "12"), ("b", "u", 2, 20.0, "7"), ("b", "v", 3, None, "0"),
        (None, "v", None, 40.0, None), ("c", None, 5, 50.0, "31")]
DDL = "id string, cat string, x int, y double, s string"


@pytest.fixture(scope="module")
def frame(spark):
    return spark.createDataFrame(ROWS, DDL)


@pytest.fixture(scope="module")
def wide(frame):
    """The frame plus ``neg`` (x with -1 for 3) and a complete column ``k``."""
    return frame.selectExpr("*", "CASE WHEN x = 3 THEN -1 ELSE x END AS neg", "1 AS k")


ANALYZERS = [
    "Size", {"Completeness": "id"}, {"Completeness": "x"},
    {"Compliance": {"instance": "x at least 2", "predicate": "x >= 2"}},
    {"Mean": "x"}, {"Minimum": "x"}, {"Maximum": "x"}, {"Sum": "x"},
    {"StandardDeviation": "x"}, {"Correlation": ["x", "y"]}, {"ApproxCountDistinct": "id"},
    {"ApproxQuantiles": {"column": "x", "quantiles": [0.5, 1.0]}},
    {"Uniqueness": "id"}, {"Distinctness": "id"}, {"UniqueValueRatio": "id"},
    {"CountDistinct": "id"}, {"Entropy": "id"}, {"Histogram": "cat"},
    {"Uniqueness": ["id", "cat"]}, {"MutualInformation": ["id", "cat"]},
]


@pytest.fixture(scope="module")
def metrics(spark, frame):
    suite = parse_suite({"analyzers": ANALYZERS, "suggestions": False,
                         "report": {"histogram": None, "length_column": None}})
    result = SparkEngine(spark).run(frame, suite)
    return result


def value(result, spec):
    a = parse_suite({"analyzers": [spec]}).analyzers[0]
    mv = result.metric_values[a]
    assert mv.ok, mv.error
    return mv.value


@pytest.mark.parametrize("spec,expected", [
    ("Size", 5.0),
    ({"Completeness": "id"}, 0.8),                     # 4 of 5 non-null
    ({"Completeness": "x"}, 0.8),
    ({"Compliance": {"instance": "x at least 2", "predicate": "x >= 2"}}, 0.6),  # null: no
    ({"Mean": "x"}, 2.75),                             # (1+2+3+5)/4
    ({"Minimum": "x"}, 1.0), ({"Maximum": "x"}, 5.0), ({"Sum": "x"}, 11.0),
    ({"StandardDeviation": "x"}, math.sqrt(8.75 / 4)),  # population
    ({"Correlation": ["x", "y"]}, 1.0),                # rows with both: (1,10) (2,20) (5,50)
    ({"ApproxCountDistinct": "id"}, 3.0),
    ({"Uniqueness": "id"}, 0.5),                       # a, c once / 4 non-null rows
    ({"Distinctness": "id"}, 0.75),                    # 3 distinct / 4 non-null rows
    ({"UniqueValueRatio": "id"}, 2 / 3),
    ({"CountDistinct": "id"}, 3.0),
    ({"Entropy": "id"}, 1.5 * math.log(2)),            # counts 1, 2, 1 of 4
    ({"Uniqueness": ["id", "cat"]}, 1.0),              # every (id, cat) pair is distinct
    ({"MutualInformation": ["id", "cat"]}, 0.2 * math.log(2.5 * 1.25 * 1.25)),
])
def test_metric_values(metrics, spec, expected):
    assert value(metrics, spec) == pytest.approx(expected, rel=1e-12)


def test_quantiles_and_histogram(metrics):
    assert value(metrics, {"ApproxQuantiles": {"column": "x", "quantiles": [0.5, 1.0]}}) == \
        {"0.5": 2.0, "1.0": 5.0}
    hist = value(metrics, {"Histogram": "cat"})
    assert isinstance(hist, Distribution) and hist.number_of_bins == 3
    assert hist.as_dict() == {"u": (2, 0.4), "v": (2, 0.4), "NullValue": (1, 0.2)}


def test_metrics_table_is_deequs_flattening(metrics):
    rows = {(m["entity"], m["instance"], m["name"]): m["value"] for m in metrics.metrics}
    assert rows[("Dataset", "*", "Size")] == 5.0
    assert rows[("Column", "x at least 2", "Compliance")] == 0.6
    assert rows[("Multicolumn", "x,y", "Correlation")] == pytest.approx(1.0)
    assert rows[("Multicolumn", "id,cat", "Uniqueness")] == 1.0
    assert rows[("Column", "cat", "Histogram.bins")] == 3.0
    assert rows[("Column", "cat", "Histogram.abs.NullValue")] == 1.0
    assert rows[("Column", "cat", "Histogram.ratio.u")] == 0.4
    assert rows[("Column", "x", "ApproxQuantiles-0.5")] == 2.0


def test_empty_input_fails_the_metric_like_deequ(spark):
    df = spark.createDataFrame([(None,), (None,)], "z int")
    suite = parse_suite({"checks": [{"name": "c", "level": "Error", "constraints": [
        {"hasMean": {"column": "z", "assertion": ">= 0"}}, {"hasSize": "== 2"}]}],
        "suggestions": False, "report": {"histogram": None, "length_column": None}})
    result = SparkEngine(spark).run(df, suite)
    mean, size = result.outcomes
    assert mean.status == "Failure"
    assert mean.message == "Empty state for analyzer Mean(z,None), all input values were NULL."
    assert size.status == "Success"
    assert not any(m["name"] == "Mean" for m in result.metrics)


# (check, passing spec, failing spec, message of the failing one)
CHECKS = [
    ({"hasSize": ">= 5"}, {"hasSize": {"assertion": "> 5", "hint": "too small"}},
     "Value: 5 does not meet the constraint requirement! too small"),
    ({"isComplete": "k"}, {"isComplete": "id"}, "Value: 0.8 does not meet"),
    ({"hasCompleteness": {"column": "id", "assertion": ">= 0.8"}},
     {"hasCompleteness": {"column": "id", "assertion": ">= 0.9"}}, "Value: 0.8 does not meet"),
    ({"isUnique": "x"}, {"isUnique": "id"}, "Value: 0.5 does not meet"),
    ({"hasUniqueness": {"columns": ["id", "cat"], "assertion": "== 1"}},
     {"hasUniqueness": {"columns": ["id"], "assertion": "> 0.5"}}, "Value: 0.5 does not meet"),
    ({"hasMin": {"column": "x", "assertion": ">= 1"}},
     {"hasMin": {"column": "x", "assertion": ">= 2"}}, "Value: 1.0 does not meet"),
    ({"hasMax": {"column": "x", "assertion": "<= 5"}},
     {"hasMax": {"column": "x", "assertion": "< 5"}}, "Value: 5.0 does not meet"),
    ({"hasMean": {"column": "x", "assertion": "> 2.5 and < 3"}},
     {"hasMean": {"column": "x", "assertion": "== 3"}}, "Value: 2.75 does not meet"),
    ({"isNonNegative": "x"},
     {"isNonNegative": {"column": "neg", "assertion": ">= 0.9"}}, "Value: 0.8 does not meet"),
    ({"isContainedIn": {"column": "cat", "values": ["u", "v"]}},
     {"isContainedIn": {"column": "cat", "values": ["u"]}}, "Value: 0.6 does not meet"),
    ({"isContainedIn": {"column": "cat", "values": ["u"], "assertion": ">= 0.6"}},
     {"isContainedIn": {"column": "cat", "values": ["u"], "assertion": ">= 0.7"}},
     "Value: 0.6 does not meet"),
    ({"satisfies": {"predicate": "x * 10 = y", "name": "y is ten x", "assertion": ">= 0.6"}},
     {"satisfies": {"predicate": "x * 10 = y", "name": "y is ten x"}},
     "Value: 0.6 does not meet"),
    ({"hasApproxCountDistinct": {"column": "id", "assertion": "== 3"}},
     {"hasApproxCountDistinct": {"column": "id", "assertion": ">= 4"}},
     "Value: 3.0 does not meet"),
]


def test_each_check_passes_and_fails(spark, wide):
    df = wide
    checks = [{"name": f"pass {i}", "level": "Error", "constraints": [good]}
              for i, (good, _, _) in enumerate(CHECKS)]
    checks += [{"name": f"fail {i}", "level": "Warning", "constraints": [bad]}
               for i, (_, bad, _) in enumerate(CHECKS)]
    suite = parse_suite({"checks": checks, "suggestions": False,
                         "report": {"histogram": None, "length_column": None}})
    result = SparkEngine(spark).run(df, suite)
    by_check = {o.check: o for o in result.outcomes}
    for i, (good, bad, message) in enumerate(CHECKS):
        ok, ko = by_check[f"pass {i}"], by_check[f"fail {i}"]
        assert ok.status == "Success", (good, ok.message)
        assert ko.status == "Failure" and ko.message.startswith(message), (bad, ko.message)


def test_check_status_is_the_level_of_a_failed_check():
    from reviewlake.quality.results import ConstraintOutcome, check_rows

    rows = check_rows([ConstraintOutcome("a", "Error", "c1", "Success"),
                       ConstraintOutcome("a", "Error", "c2", "Failure", "m"),
                       ConstraintOutcome("b", "Warning", "c3", "Failure", "m"),
                       ConstraintOutcome("c", "Error", "c4", "Success")])
    assert [r["check_status"] for r in rows] == ["Error", "Error", "Warning", "Success"]
    assert set(rows[0]) == {"check", "check_level", "check_status", "constraint",
                            "constraint_status", "constraint_message"}


def test_unknown_columns_and_bad_predicates_are_one_line(spark, frame):
    for spec, needle in [({"analyzers": [{"Mean": "nope"}]}, "column 'nope' of Mean(nope)"),
                         ({"analyzers": [{"Compliance": {"instance": "i", "predicate": "x >>> 2"}}]},
                          "predicate of Compliance(i) does not work on the data")]:
        suite = parse_suite(dict(spec, suggestions=False))
        with pytest.raises(UserError, match=r"^" + needle.replace("(", r"\(").replace(")", r"\)")) \
                as err:
            SparkEngine(spark).run(frame, suite)
        assert "\n" not in str(err.value)


def test_suggestions_of_a_small_table(spark):
    rows = []
    for i in range(200):
        rows.append((f"R{i:05d}",                            # unique, complete
                     str(10000 + 7 * i),                      # numbers as strings
                     ["US", "US", "DE"][i % 3],               # categorical
                     None if i % 10 == 0 else f"text {i}",    # 90% complete
                     "Y" if i % 20 == 0 else "N",             # 95% N
                     i % 5 + 1))                              # stars 1..5
    df = spark.createDataFrame(rows, "rid string, cust string, market string, body string, "
                                     "vine string, stars int")
    suite = parse_suite({"report": {"histogram": None, "length_column": None}})
    result = SparkEngine(spark).run(df, suite)
    got = {(s.column, s.rule): s for s in result.suggestions}
    assert ("rid", "CompleteIfCompleteRule") in got and ("rid", "UniqueIfApproximatelyUniqueRule") in got
    assert got[("cust", "RetainTypeRule")].description == "'cust' has type Integral"
    assert ("cust", "NonNegativeNumbersRule") in got
    assert got[("market", "CategoricalRangeRule")].code == '.isContainedIn("market", ["US", "DE"])'
    assert got[("body", "RetainCompletenessRule")].description == \
        "'body' has less than 15% missing values"        # 0.9 - 1.96 * sqrt(.09 / 200) = 0.858
    assert "'vine' has value range 'N' for at least" in \
        got[("vine", "FractionalCategoricalRangeRule")].description
    assert got[("stars", "CategoricalRangeRule")].code.startswith('.isContainedIn("stars", [')
    assert ("stars", "NonNegativeNumbersRule") in got
    assert ("body", "CompleteIfCompleteRule") not in got
    cols = result.profile["columns"]
    assert cols["cust"]["type"] == "Integral" and cols["cust"]["inferred"] is True
    assert cols["stars"]["type"] == "Integral" and cols["stars"]["inferred"] is False
    assert cols["body"]["completeness"] == 0.9


@pytest.mark.jarfree
def test_deequ_engine_needs_the_jar(spark):
    from reviewlake.quality import deequ_engine
    from reviewlake.quality.job import select_engine

    if deequ_engine.deequ_available(spark):
        pytest.skip("the Deequ jar is on the classpath here")
    with pytest.raises(UserError) as err:
        select_engine(spark, "deequ", "/tmp/repo", 1, {})
    message = str(err.value)
    assert "com.amazon.deequ:deequ:2.1.0-spark-3.5" in message
    assert "jars/fetch.sh" in message and "--packages" in message and "\n" not in message
    assert select_engine(spark, "auto", "/tmp/repo", 1, {}).name == "spark"


def test_deequ_and_spark_engines_agree(spark, wide):
    """Both engines, one suite, the same tables (runs where the Deequ jar is present)."""
    from reviewlake.quality import deequ_engine

    if not deequ_engine.deequ_available(spark):
        pytest.skip("the Deequ jar (com.amazon.deequ:deequ:2.1.0-spark-3.5) is not on the "
                    "classpath: jars/fetch.sh deequ needs Maven Central, unreachable here")
    suite = parse_suite({"analyzers": ANALYZERS[:12],
                         "checks": [{"name": "c", "level": "Error", "constraints": [
                             good for good, _, _ in CHECKS]},
                                    {"name": "d", "level": "Warning", "constraints": [
                             bad for _, bad, _ in CHECKS]}],
                         "suggestions": False,
                         "report": {"histogram": None, "length_column": None}})
    ours = SparkEngine(spark).run(wide, suite)
    engine = deequ_engine.DeequEngine(spark)
    try:
        theirs = engine.run(wide, suite)
    finally:
        engine.close()
    key = lambda m: (m["entity"], m["instance"], m["name"])  # noqa: E731
    mine = {key(m): m["value"] for m in ours.metrics}
    for m in theirs.metrics:
        if key(m) in mine:
            assert m["value"] == pytest.approx(mine[key(m)], rel=1e-9), key(m)
    assert [o.status for o in theirs.outcomes] == [o.status for o in ours.outcomes]
    assert [o.message.split("!")[0] for o in theirs.outcomes] == \
        [o.message.split("!")[0] for o in ours.outcomes]
    assert Analyzer("Size") in suite.required_analyzers()


@pytest.mark.jarfree
def test_deequ_2_semantics_without_the_jar(spark):
    """What the spark engine once did differently from Deequ 2.x (test_quality_engines.py
    compares with the jar itself): DataType's patterns, a quote in isContainedIn, a
    zero-variance Correlation."""
    rows = [("1e5", "", "+4", "Men's", 1, 7), ("1.5", "7", "-3", "Women's", 2, 7),
            ("2E-3", "8", "12", "Men's", 3, 7)]
    df = spark.createDataFrame(rows, "f string, s string, i string, cat string, x int, k int")
    suite = parse_suite({
        "analyzers": [{"Correlation": ["x", "k"]}],
        "checks": [{"name": "c", "level": "Error", "constraints": [
            {"isContainedIn": {"column": "cat", "values": ["Men's", "Women's"]}}]}],
        "report": {"histogram": None, "length_column": None}})
    result = SparkEngine(spark).run(df, suite)
    types = {c: p["type"] for c, p in result.profile["columns"].items()}
    assert (types["f"], types["s"], types["i"]) == ("Fractional", "String", "Integral")
    assert [o.status for o in result.outcomes] == ["Success"]       # Men's is Men's
    assert math.isnan(value(result, {"Correlation": ["x", "k"]}))     # Deequ: NaN, not empty
