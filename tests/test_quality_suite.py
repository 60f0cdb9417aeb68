"""The quality suite without Spark: YAML parsing, one-line validation errors, assertions,
Deequ's number formatting, anomaly strategies and suggestion rules on hand-made profiles."""
import math

import pytest

from conftest import ROOT, run_cli
from reviewlake.errors import UserError
from reviewlake.quality import anomalies
from reviewlake.quality.assertions import AssertionSyntaxError, parse_assertion
from reviewlake.quality.repository import RunRecord, parse_tags
from reviewlake.quality.results import Distribution, java_double
from reviewlake.quality.suggest import ColumnProfile, determine_type, lower_bound, suggest
from reviewlake.quality.suite import (Analyzer, SuggestionOptions, SuiteError, load_suite,
                                      parse_suite)


def test_assertions():
    a = parse_assertion(">= 0.99")
    assert a(0.99) and a(1) and not a(0.98) and not a(None) and not a(math.nan)
    both = parse_assertion("> 0 and <= 1")
    assert both(0.5) and both(1) and not both(0) and not both(1.5)
    assert parse_assertion("== min_size", {"min_size": 10})(10)
    assert parse_assertion(">= 0.99").python() == "lambda x: x >= 0.99"
    assert parse_assertion("== 1 and != 2").sql("`c`") == "(`c` = 1 AND `c` != 2)"
    for bad, needle in [(">== 1", "each part must be an operator"), ("1", "has no operator"),
                        (1, "has no operator"), (">= banana", "not a number nor a suite param"),
                        ("", "empty"), (">= nan", "not a number")]:
        with pytest.raises(AssertionSyntaxError, match=needle):
            parse_assertion(bad)


def test_java_double_prints_like_the_jvm():
    assert [java_double(x) for x in (1.0, 0.998, 5.0, 1.5e7, 1e-4, 0.0, -2.5, 123456.7)] == \
        ["1.0", "0.998", "5.0", "1.5E7", "1.0E-4", "0.0", "-2.5", "123456.7"]


def test_default_suite_has_the_books_checks_and_analyzers():
    suite = load_suite(ROOT / "conf" / "quality.yaml")
    kinds = {a.kind for a in suite.analyzers}
    assert {"Size", "Completeness", "ApproxCountDistinct", "Mean", "Compliance", "Correlation",
            "Uniqueness", "Minimum", "Maximum", "Sum", "ApproxQuantiles", "Histogram"} <= kinds
    correlations = [a.columns for a in suite.analyzers if a.kind == "Correlation"]
    assert ("total_votes", "star_rating") in correlations
    assert ("total_votes", "helpful_votes") in correlations
    levels = {c.name: c.level for c in suite.checks}
    assert set(levels.values()) == {"Error", "Warning"}
    methods = {(c.method, c.arg("column")): check.level for check in suite.checks
               for c in check.constraints}
    for key, level in [(("hasSize", None), "Error"), (("hasMin", "star_rating"), "Error"),
                       (("hasMax", "star_rating"), "Error"), (("isComplete", "review_id"), "Error"),
                       (("isUnique", "review_id"), "Error"), (("isComplete", "marketplace"), "Error"),
                       (("isContainedIn", "marketplace"), "Error"),
                       (("isNonNegative", "helpful_votes"), "Error"),
                       (("isNonNegative", "total_votes"), "Error"), (("satisfies", None), "Error"),
                       (("hasCompleteness", "review_body"), "Warning"),
                       (("isContainedIn", "product_category"), "Warning")]:
        assert methods[key] == level, key
    category = next(c for check in suite.checks for c in check.constraints
                    if c.arg("column") == "product_category")
    assert len(category.arg("values")) == 43
    assert {a.strategy for a in suite.anomalies} == {"RelativeRateOfChange", "AbsoluteChange"}
    # params: the file's default, overridable
    assert dict(suite.params)["min_size"] == 1000
    small = load_suite("quality", {"min_size": 5})
    size = next(c for c in small.checks[0].constraints if c.method == "hasSize")
    assert size.assertion(5) and not size.assertion(4)


def test_constraint_names_follow_deequ():
    suite = parse_suite({"checks": [{"name": "c", "level": "Error", "constraints": [
        {"isComplete": "a"}, {"isUnique": "a"}, {"hasSize": ">= 1"},
        {"isContainedIn": {"column": "m", "values": ["US", "O'K"]}},
        {"isNonNegative": "v"}, {"satisfies": {"predicate": "x <= y", "name": "x <= y"}}]}]})
    names = [c.name for c in suite.checks[0].constraints]
    assert names == [     # Deequ 2.x's (test_quality_engines.py compares them with the jar's)
        "CompletenessConstraint(Completeness(a,None,None))",
        "UniquenessConstraint(Uniqueness(List(a),None,None))",
        "SizeConstraint(Size(None))",
        "ComplianceConstraint(Compliance(m contained in US,O'K,`m` IS NULL OR `m` IN "
        "('US','O\\'K'),None,List(m),None))",
        "ComplianceConstraint(Compliance(v is non-negative,COALESCE(CAST(v AS DOUBLE), 0.0) >= 0,"
        "None,List(v),None))",
        "ComplianceConstraint(Compliance(x <= y,x <= y,None,List(),None))"]
    a = Analyzer("Correlation", ("x", "y"))
    assert (a.entity, a.instance_name) == ("Multicolumn", "x,y")   # Deequ 2.x's spelling
    assert Analyzer("Size").entity == "Dataset" and Analyzer("Size").instance_name == "*"


@pytest.mark.parametrize("data,needle", [
    ({"analyzers": ["Sizee"]}, "analyzers[0]: unknown analyzer 'Sizee'"),
    ({"analyzers": [{"Correlation": ["a"]}]}, "expects exactly 2 columns"),
    ({"analyzers": [{"ApproxQuantiles": {"column": "a", "quantiles": [2]}}]}, "in [0, 1]"),
    ({"checks": [{"name": "c", "level": "Error", "constraints": [{"hasMinn": "a"}]}]},
     "checks[0].constraints[0]: unknown check 'hasMinn'"),
    ({"checks": [{"name": "c", "level": "Error",
                  "constraints": [{"hasMin": {"column": "a", "assertion": ">== 1"}}]}]},
     "checks[0].constraints[0].hasMin.assertion: bad assertion '>== 1'"),
    ({"checks": [{"name": "c", "level": "Error",
                  "constraints": [{"hasMin": {"column": "a"}}]}]}, "missing assertion"),
    ({"checks": [{"name": "c", "level": "Fatal", "constraints": [{"isComplete": "a"}]}]},
     "level must be Error or Warning"),
    ({"checks": [{"name": "c", "level": "Error", "constraints": [{"isComplete": "a"}]}] * 2},
     "check names must be unique"),
    ({"checks": [{"name": "c", "level": "Error",
                  "constraints": [{"isComplete": {"column": "a", "colour": 1}}]}]},
     "unknown key colour"),
    ({"anomalies": [{"analyzer": "Size", "strategy": "Magic"}]}, "unknown strategy 'Magic'"),
    ({"anomalies": [{"analyzer": "Size", "strategy": "AbsoluteChange"}]},
     "needs max_rate_decrease and/or max_rate_increase"),
    ({"anomalies": [{"analyzer": {"Histogram": "a"}, "strategy": "AbsoluteChange",
                     "max_rate_increase": 1}]}, "single-valued metric"),
    ({"suggestions": {"rules": ["Psychic"]}}, "unknown rule 'Psychic'"),
    ({"params": {"min_size": "big"}}, "params.min_size: must be a number"),
    ({"colour": 1}, "unknown key colour"),
])
def test_suite_errors_are_one_line(data, needle):
    with pytest.raises(SuiteError) as err:
        parse_suite(data, source="s.yaml")
    message = str(err.value)
    assert needle in message and "\n" not in message and message.startswith("s.yaml: ")


def test_cli_reports_a_bad_suite_in_one_line(tmp_path):
    suite = tmp_path / "bad.yaml"
    suite.write_text("checks:\n  - name: c\n    level: Error\n    constraints:\n"
                     "      - hasMax: {column: star_rating, assertion: '=< 5'}\n")
    (tmp_path / "lake").mkdir()
    proc = run_cli("quality", "--input", str(tmp_path / "lake"), "--output", str(tmp_path / "q"),
                   "--suite", str(suite))
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("reviewlake quality: error: ")
    assert "checks[0].constraints[0].hasMax.assertion: bad assertion '=< 5'" in lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--input", "/no/such/lake"], "no lake at /no/such/lake"),
    (["--engine", "turbo"], "invalid choice: 'turbo'"),
    (["--suite", "/no/suite.yaml"], "quality suite not found: /no/suite.yaml"),
    (["--tags", "novalue"], "--tags expects key=value"),
    (["--set", "quality.params=7"], "quality.params must be a mapping"),
])
def test_cli_errors_are_one_line(tmp_path, args, needle):
    (tmp_path / "lake").mkdir()
    base = ["quality", "--input", str(tmp_path / "lake"), "--output", str(tmp_path / "q")]
    proc = run_cli(*base, *args)
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert needle in lines[0] and lines[0].startswith("reviewlake quality: error: ")


def test_tags():
    assert parse_tags(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    assert parse_tags({"k": 3}) == {"k": "3"}
    with pytest.raises(UserError):
        parse_tags(["=v"])


# ---------------------------------------------------------------------------- anomalies

def _anomaly(**spec):
    return parse_suite({"anomalies": [dict({"analyzer": "Size"}, **spec)]}).anomalies[0]


def _runs(*points, tags=None):
    return [RunRecord(date, tags or {}, f"r{date}",
                      [{"entity": "Dataset", "instance": "*", "name": "Size", "value": v}])
            for date, v in points]


def test_relative_rate_of_change():
    a = _anomaly(strategy="RelativeRateOfChange", max_rate_decrease=0.8, max_rate_increase=5,
                 level="Error")
    history = anomalies.history_for(a, _runs((1, 100.0), (2, 1000.0)), {}, before=3)
    assert history == [(1, 100.0), (2, 1000.0)]
    assert anomalies.evaluate(a, 900.0, None, history).status == "Success"     # 0.9
    half = anomalies.evaluate(a, 500.0, None, history)                          # 0.5
    assert half.status == "Failure" and half.level == "Error"
    assert half.constraint == "AnomalyConstraint(Size(None))"
    assert "relative change from 1000.0" in half.message and "0.5 is not in bounds [0.8, 5.0]" \
        in half.message
    assert anomalies.evaluate(a, 6000.0, None, history).status == "Failure"    # 6.0
    # the current run and later runs are not history
    assert anomalies.history_for(a, _runs((1, 100.0), (5, 1.0)), {}, before=5) == [(1, 100.0)]


def test_absolute_change_and_order():
    a = _anomaly(analyzer={"Mean": "x"}, strategy="AbsoluteChange", max_rate_decrease=-0.5,
                 max_rate_increase=0.5)
    assert anomalies.evaluate(a, 4.4, None, [(1, 4.0)]).status == "Success"
    assert anomalies.evaluate(a, 4.6, None, [(1, 4.0)]).status == "Failure"
    assert anomalies.evaluate(a, 3.4, None, [(1, 4.0)]).status == "Failure"
    second = _anomaly(strategy="AbsoluteChange", max_rate_increase=1, order=2)
    # 2nd difference of 1, 2, 4 = (4 - 2) - (2 - 1) = 1 -> in bounds; of 1, 2, 5 = 2 -> not
    assert anomalies.evaluate(second, 4, None, [(1, 1), (2, 2)]).status == "Success"
    assert anomalies.evaluate(second, 5, None, [(1, 1), (2, 2)]).status == "Failure"


def test_missing_history_and_tags():
    a = _anomaly(strategy="RelativeRateOfChange", max_rate_decrease=0.8)
    first = anomalies.evaluate(a, 10.0, None, [])
    assert first.status == "Success" and anomalies.NO_HISTORY in first.message
    strict = _anomaly(strategy="RelativeRateOfChange", max_rate_decrease=0.8,
                      on_missing_history="fail")
    assert anomalies.evaluate(strict, 10.0, None, []).status == "Failure"
    failed_metric = anomalies.evaluate(a, None, "Empty state", [(1, 1.0)])
    assert failed_metric.status == "Failure" and failed_metric.message == "Empty state"
    runs = _runs((1, 10.0), tags={"env": "prod"}) + _runs((2, 99.0), tags={"env": "dev"})
    assert anomalies.history_for(a, runs, {"env": "prod"}, 9) == [(1, 10.0)]
    anyone = _anomaly(strategy="RelativeRateOfChange", max_rate_decrease=0.8, with_tags="any")
    assert len(anomalies.history_for(anyone, runs, {"env": "prod"}, 9)) == 2
    threshold = _anomaly(strategy="SimpleThreshold", lower_bound=1, upper_bound=2)
    assert anomalies.evaluate(threshold, 1.5, None, []).status == "Success"
    assert anomalies.evaluate(threshold, 3, None, []).status == "Failure"


# ---------------------------------------------------------------------------- suggestions

def test_deequ_type_decision():
    assert determine_type({"Unknown": 5}) == "Unknown"
    assert determine_type({"Integral": 3, "Unknown": 1}) == "Integral"
    assert determine_type({"Integral": 3, "Fractional": 1}) == "Fractional"
    assert determine_type({"Boolean": 2}) == "Boolean"
    assert determine_type({"Boolean": 2, "Integral": 1}) == "String"
    assert determine_type({"String": 1, "Integral": 9}) == "String"


def test_confidence_bounds():
    assert lower_bound(0.9, 100, "wald") == 0.84         # 0.9 - 1.96 * 0.03 = 0.8412
    assert lower_bound(0.995, 10000, "wald") == 0.99     # 0.99361...
    assert lower_bound(0.9, 100, "wilson") == 0.82       # 0.8256...


def test_suggestion_rules_on_profiles():
    hist = Distribution((("N", 95, 0.95), ("Y", 5, 0.05)), 2)
    profiles = {
        "id": ColumnProfile("id", "string", 1.0, 100, "String", True, {"String": 1},
                            distinct_share=1.0),
        "cust": ColumnProfile("cust", "string", 1.0, 60, "Integral", True, {"Integral": 1},
                              minimum=3.0, distinct_share=0.6),
        "body": ColumnProfile("body", "string", 0.9, 90, "String", True, {"String": 1},
                              distinct_share=0.9),
        "vine": ColumnProfile("vine", "string", 1.0, 2, "String", True, {"String": 1},
                              histogram=hist, distinct_share=0.02),
        "stars": ColumnProfile("stars", "int", 1.0, 5, "Integral", False, {}, minimum=1.0,
                               histogram=Distribution((("5", 60, .6), ("4", 40, .4)), 2),
                               distinct_share=0.05),
    }
    got = {(s.column, s.rule): s for s in suggest(profiles, 100, SuggestionOptions())}
    assert got[("id", "CompleteIfCompleteRule")].code == '.isComplete("id")'
    assert got[("id", "UniqueIfApproximatelyUniqueRule")].description == "'id' is unique"
    assert got[("cust", "RetainTypeRule")].description == "'cust' has type Integral"
    assert got[("cust", "NonNegativeNumbersRule")].code == '.isNonNegative("cust")'
    body = got[("body", "RetainCompletenessRule")]
    assert body.description == "'body' has less than 16% missing values"
    assert body.code == ('.hasCompleteness("body", lambda x: x >= 0.84, '
                         '"It should be above 0.84!")')
    assert ("body", "CompleteIfCompleteRule") not in got
    assert got[("vine", "CategoricalRangeRule")].code == '.isContainedIn("vine", ["N", "Y"])'
    frac = got[("vine", "FractionalCategoricalRangeRule")]
    assert frac.description == "'vine' has value range 'N' for at least 90.0% of values"
    assert got[("stars", "CategoricalRangeRule")].description == \
        "'stars' has value range '5', '4'"
    assert ("stars", "RetainTypeRule") not in got           # a declared type is not suggested
    assert ("stars", "FractionalCategoricalRangeRule") not in got   # strings only
    only = suggest(profiles, 100, SuggestionOptions(rules=("CompleteIfComplete",)))
    assert {s.rule for s in only} == {"CompleteIfCompleteRule"}
