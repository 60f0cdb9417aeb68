"""Engine ``deequ``: the suite translated to PyDeequ, run by Deequ on the JVM.

* checks -> ``pydeequ.checks.Check`` (one per suite check, its constraints in order);
* the suite's analyzers -> required analyzers of the same ``VerificationSuite`` run, so Deequ
  computes analyzers and checks together, sharing its scans;
* the run is saved in Deequ's ``FileSystemMetricsRepository`` (``REPO/deequ/metrics.json``)
  under a ``ResultKey`` of the run's time and tags;
* suggestions -> ``ConstraintSuggestionRunner`` with the suite's rules.

The Deequ classes must be on the driver's classpath (the jar in ``jars/``, ``--packages`` on a
cluster, EMR's and SageMaker's Deequ-enabled images). That is checked before PyDeequ is
imported: without the jar PyDeequ fails later with "'JavaPackage' object is not callable".
PyDeequ reads ``SPARK_VERSION`` when it is imported; it is set from the session.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from typing import Any

from pyspark.sql import DataFrame

from ..errors import UserError
from ..jars import DEEQU
from ..session import has_class
from .results import ConstraintOutcome, EngineResult, Suggestion
from .spark_engine import check_columns, report_data
from .suite import Analyzer, Check, Constraint, Suite

log = logging.getLogger(__name__)

DEEQU_CLASS = "com.amazon.deequ.VerificationSuite"
DEEQU_COORDINATE = DEEQU
MISSING_JAR = (f"engine deequ needs the Deequ jar ({DEEQU_COORDINATE}) on the classpath: "
               f"run jars/fetch.sh deequ (into jars/, picked up by every job), or add "
               f"--packages {DEEQU_COORDINATE} to spark-submit (profile key spark.packages); "
               f"or use --engine spark")


def deequ_available(spark) -> bool:
    return has_class(spark, DEEQU_CLASS)


def require_deequ(spark) -> None:
    if not deequ_available(spark):
        raise UserError(MISSING_JAR)


class _StdoutToLog(io.TextIOBase):
    """PyDeequ prints ("Python Callback server started!"); keep stdout for the summary."""

    def write(self, text: str) -> int:
        if text.strip():
            log.debug("pydeequ: %s", text.strip())
        return len(text)


def import_pydeequ(spark):
    """Import PyDeequ with SPARK_VERSION set (PyDeequ picks its Deequ coordinates from it)."""
    require_deequ(spark)
    os.environ.setdefault("SPARK_VERSION", spark.version)
    try:
        import pydeequ  # noqa: F401
        from pydeequ import analyzers, checks, repository, suggestions, verification
    except RuntimeError as exc:   # an unsupported SPARK_VERSION
        raise UserError(f"PyDeequ cannot start: {exc}") from None
    return analyzers, checks, repository, suggestions, verification


class DeequEngine:
    name = "deequ"

    def __init__(self, spark, repository_path: str | None = None, dataset_date: int | None = None,
                 tags: dict[str, str] | None = None):
        self.spark = spark
        self.repository_path = repository_path
        self.dataset_date = dataset_date
        self.tags = tags or {}

    # -- translation
    def analyzer(self, A, a: Analyzer):
        """A suite analyzer as a PyDeequ analyzer object."""
        k = a.kind
        if k == "Size":
            return A.Size()
        if k == "Compliance":
            return A.Compliance(a.instance, a.predicate)
        if k == "ApproxQuantiles":
            return A.ApproxQuantiles(a.column, list(a.quantiles), a.relative_error)
        if k == "Histogram":
            return A.Histogram(a.column, maxDetailBins=a.max_detail_bins)
        if k in ("Correlation",):
            return A.Correlation(a.columns[0], a.columns[1])
        if k in ("Uniqueness", "Distinctness", "UniqueValueRatio", "MutualInformation"):
            return getattr(A, k)(list(a.columns))
        if k == "CountDistinct":
            return A.CountDistinct(list(a.columns))
        return getattr(A, k)(a.column)   # Completeness, Mean, Minimum, ... of one column

    def check(self, C, check: Check):
        level = C.CheckLevel.Error if check.level == "Error" else C.CheckLevel.Warning
        out = C.Check(self.spark, level, check.name)
        for c in check.constraints:
            out = self.constraint(out, c)
        return out

    @staticmethod
    def constraint(chk, c: Constraint):
        m, h, a = c.method, c.hint, c.assertion
        col = c.arg("column")
        if m == "hasSize":
            return chk.hasSize(a, h)
        if m == "isComplete":
            return chk.isComplete(col, h)
        if m == "isUnique":
            return chk.isUnique(col, h)
        if m in ("hasUniqueness", "hasDistinctness"):
            return getattr(chk, m)(list(c.arg("columns")), a, h)
        if m == "hasCorrelation":
            x, y = c.arg("columns")
            return chk.hasCorrelation(x, y, a, h)
        if m == "isNonNegative":
            return chk.isNonNegative(col, a, h)
        if m == "isContainedIn":
            return chk.isContainedIn(col, list(c.arg("values")), a, h)
        if m == "satisfies":
            return chk.satisfies(c.arg("predicate"), c.arg("name"), a, h)
        # hasCompleteness, hasMin, hasMax, hasMean, hasSum, hasStandardDeviation,
        # hasApproxCountDistinct, hasEntropy: (column, assertion, hint)
        return getattr(chk, m)(col, a, h)

    # -- run
    def run(self, df: DataFrame, suite: Suite) -> EngineResult:
        A, C, R, S, V = import_pydeequ(self.spark)
        check_columns(df, suite)
        jvm = self.spark.sparkContext._jvm
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(_StdoutToLog()):
            builder = V.VerificationSuite(self.spark).onData(df)
            for check in suite.checks:
                builder = builder.addCheck(self.check(C, check))
            for a in suite.required_analyzers():
                pa = self.analyzer(A, a)
                pa._set_jvm(jvm)
                # Deequ's VerificationRunBuilder.addRequiredAnalyzer (not wrapped by PyDeequ)
                builder._VerificationRunBuilder = \
                    builder._VerificationRunBuilder.addRequiredAnalyzer(pa._analyzer_jvm)
            if self.repository_path:
                repo = R.FileSystemMetricsRepository(self.spark, self.repository_path)
                key = R.ResultKey(self.spark, self.dataset_date or R.ResultKey.current_milli_time(),
                                  self.tags or None)
                builder = builder.useRepository(repo).saveOrAppendResult(key)
            result = builder.run()
            metrics = [r.asDict() for r in
                       V.VerificationResult.successMetricsAsDataFrame(self.spark, result).collect()]
            checks = [r.asDict() for r in
                      V.VerificationResult.checkResultsAsDataFrame(self.spark, result).collect()]
            timings["verification"] = round(time.perf_counter() - t0, 3)
            t1 = time.perf_counter()
            suggestions = self.suggest(S, df, suite) if suite.suggestions.enabled else []
            timings["suggestions"] = round(time.perf_counter() - t1, 3)
        outcomes = self.outcomes(suite, checks)
        profile = report_data(self.spark, df, suite)
        timings["total"] = round(time.perf_counter() - t0, 3)
        return EngineResult("deequ", [_metric_row(m) for m in metrics], outcomes, suggestions,
                            {}, profile, timings)

    @staticmethod
    def outcomes(suite: Suite, rows: list[dict[str, Any]]) -> list[ConstraintOutcome]:
        """Deequ's check-results rows, matched to the suite's constraints by position."""
        by_check: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            by_check.setdefault(str(r.get("check")), []).append(r)
        out = []
        for check in suite.checks:
            got = by_check.get(check.name, [])
            for i, c in enumerate(check.constraints):
                r = got[i] if i < len(got) else {}
                out.append(ConstraintOutcome(
                    check.name, check.level, str(r.get("constraint") or c.name),
                    str(r.get("constraint_status") or "Failure"),
                    str(r.get("constraint_message") or ("" if r else "no result from Deequ")),
                    column=c.arg("column"), method=c.method))
        return out

    def suggest(self, S, df: DataFrame, suite: Suite) -> list[Suggestion]:
        opts = suite.suggestions
        from pydeequ.scala_utils import to_scala_seq

        from .suggest import profiled_columns
        from .spark_engine import estimated_bytes

        data = df
        size = estimated_bytes(df)
        if opts.sample_bytes and size and size > opts.sample_bytes:
            data = df.sample(fraction=opts.sample_bytes / size, seed=23)
        runner = S.ConstraintSuggestionRunner(self.spark).onData(data)
        rules = {
            "CompleteIfComplete": lambda: S.CompleteIfCompleteRule(),
            "RetainCompleteness": lambda: S.RetainCompletenessRule(),
            "RetainType": lambda: S.RetainTypeRule(),
            "CategoricalRange": lambda: S.CategoricalRangeRule(),
            "FractionalCategoricalRange": lambda: S.FractionalCategoricalRangeRule(
                opts.fractional_coverage),
            "NonNegativeNumbers": lambda: S.NonNegativeNumbersRule(),
            "UniqueIfApproximatelyUnique": lambda: S.UniqueIfApproximatelyUniqueRule(),
        }
        for name in opts.rules:
            runner = runner.addConstraintRule(rules[name]())
        jvm = self.spark.sparkContext._jvm
        jb = runner._ConstraintSuggestionRunBuilder
        jb = jb.restrictToColumns(to_scala_seq(jvm, profiled_columns(df, opts)))
        runner._ConstraintSuggestionRunBuilder = jb.withLowCardinalityHistogramThreshold(
            opts.low_cardinality_histogram_threshold)
        result = runner.run()
        out = []
        for s in result.get("constraint_suggestions", []):
            rule = str(s.get("suggesting_rule", "")).split("(", 1)[0]
            out.append(Suggestion(str(s.get("column_name", "")), str(s.get("description", "")),
                                  rule, str(s.get("code_for_constraint", "")),
                                  str(s.get("current_value", ""))))
        return out

    def close(self) -> None:
        """Stop PyDeequ's callback server so the driver can exit."""
        gateway = self.spark.sparkContext._gateway
        with contextlib.suppress(Exception):
            gateway.shutdown_callback_server()


def _metric_row(m: dict[str, Any]) -> dict[str, Any]:
    return {"entity": str(m.get("entity")), "instance": str(m.get("instance")),
            "name": str(m.get("name")), "value": float(m.get("value"))}
