"""The deequ engine's translation of the suite into PyDeequ calls, checked against PyDeequ's own
signatures without the Deequ jar (PyDeequ's analyzer objects are plain Python until they meet
the JVM; checks are recorded). The run on the JVM is tested in test_quality_metrics.py where
the jar is present."""
import inspect
import os

import pytest

from conftest import ROOT
from reviewlake.quality.deequ_engine import DeequEngine
from reviewlake.quality.suite import load_suite, parse_suite

os.environ.setdefault("SPARK_VERSION", "3.5")
A = pytest.importorskip("pydeequ.analyzers")
C = pytest.importorskip("pydeequ.checks")


class Recorder:
    """Stands for a pydeequ Check: records each call, checks it binds to PyDeequ's method."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        method = getattr(C.Check, name)

        def call(*args):
            inspect.signature(method).bind(None, *args)   # raises on a wrong argument list
            self.calls.append((name, args))
            return self
        return call


def test_every_constraint_of_the_default_suite_translates():
    suite = load_suite(ROOT / "conf" / "quality.yaml")
    for check in suite.checks:
        rec = Recorder()
        for c in check.constraints:
            assert DeequEngine.constraint(rec, c) is rec
        methods = [name for name, _ in rec.calls]
        assert methods == [c.method for c in check.constraints]
    rec = Recorder()
    market = next(c for c in suite.checks[0].constraints if c.method == "isContainedIn")
    DeequEngine.constraint(rec, market)
    name, (column, values, assertion, hint) = rec.calls[0]
    assert (column, values) == ("marketplace", ["US", "UK", "DE", "JP", "FR"])
    assert assertion(1.0) and not assertion(0.99) and hint.startswith("marketplaces")


def test_every_check_kind_translates():
    specs = [{"hasSize": ">= 1"}, {"isComplete": "a"}, {"isUnique": "a"},
             {"hasCompleteness": {"column": "a", "assertion": ">= 0.9"}},
             {"hasUniqueness": {"columns": ["a", "b"], "assertion": "== 1"}},
             {"hasDistinctness": {"columns": ["a"], "assertion": "> 0.5"}},
             {"hasMin": {"column": "a", "assertion": ">= 0"}},
             {"hasMax": {"column": "a", "assertion": "<= 5"}},
             {"hasMean": {"column": "a", "assertion": "> 1"}},
             {"hasSum": {"column": "a", "assertion": "> 1"}},
             {"hasStandardDeviation": {"column": "a", "assertion": "< 2"}},
             {"isNonNegative": "a"}, {"isContainedIn": {"column": "a", "values": ["x"]}},
             {"satisfies": {"predicate": "a < b", "name": "a below b", "assertion": ">= 0.5"}},
             {"hasApproxCountDistinct": {"column": "a", "assertion": ">= 10"}},
             {"hasCorrelation": {"columns": ["a", "b"], "assertion": "> 0"}},
             {"hasEntropy": {"column": "a", "assertion": "> 0"}}]
    suite = parse_suite({"checks": [{"name": "c", "level": "Warning", "constraints": specs}]})
    rec = Recorder()
    for c in suite.checks[0].constraints:
        DeequEngine.constraint(rec, c)
    assert [n for n, _ in rec.calls] == [next(iter(s)) for s in specs]
    calls = dict(rec.calls)
    assert calls["satisfies"][:2] == ("a < b", "a below b")
    assert calls["hasCorrelation"][:2] == ("a", "b")
    assert calls["hasUniqueness"][0] == ["a", "b"]


def test_every_analyzer_translates():
    suite = load_suite(ROOT / "conf" / "quality.yaml")
    extra = parse_suite({"analyzers": [{"Distinctness": ["a", "b"]}, {"Entropy": "a"},
                                       {"MutualInformation": ["a", "b"]},
                                       {"CountDistinct": "a"}, {"UniqueValueRatio": "a"}]})
    engine = DeequEngine(spark=None)
    for a in suite.required_analyzers() + list(extra.analyzers):
        obj = engine.analyzer(A, a)
        assert type(obj).__name__ == a.kind
        if a.kind == "Compliance":
            assert (obj.instance, obj.predicate) == (a.instance, a.predicate)
        elif a.kind == "Correlation":
            assert (obj.column1, obj.column2) == a.columns
        elif a.kind == "ApproxQuantiles":
            assert obj.quantiles == [0.1, 0.5, 0.9] and obj.relativeError == 0.01
        elif a.kind in ("Uniqueness", "Distinctness", "UniqueValueRatio", "MutualInformation",
                        "CountDistinct"):
            assert obj.columns == list(a.columns)
        elif a.kind != "Size":
            assert obj.column == a.column


def test_deequ_check_rows_map_back_to_the_suite():
    suite = parse_suite({"checks": [{"name": "c", "level": "Error", "constraints": [
        {"isComplete": "a"}, {"isUnique": "a"}]}]})
    rows = [{"check": "c", "check_level": "Error", "check_status": "Error",
             "constraint": "CompletenessConstraint(Completeness(a,None,None))",
             "constraint_status": "Success", "constraint_message": ""},
            {"check": "c", "check_level": "Error", "check_status": "Error",
             "constraint": "UniquenessConstraint(Uniqueness(List(a),None,None))",
             "constraint_status": "Failure",
             "constraint_message": "Value: 0.5 does not meet the constraint requirement!"}]
    first, second = DeequEngine.outcomes(suite, rows)
    assert first.status == "Success" and first.column == "a" and first.method == "isComplete"
    assert second.status == "Failure" and second.constraint.startswith("UniquenessConstraint")
    assert second.method == "isUnique"
