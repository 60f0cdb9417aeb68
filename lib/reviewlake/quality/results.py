"""The result tables both engines write, and the metric values behind them.

* metrics: ``entity, instance, name, value`` -- Deequ's ``successMetricsAsDataFrame``: one row
  per number, composite metrics flattened (``Histogram.bins``, ``Histogram.abs.<v>``,
  ``Histogram.ratio.<v>``, ``ApproxQuantiles-<q>``); failed metrics have no row.
* checks: ``check, check_level, check_status, constraint, constraint_status,
  constraint_message`` -- Deequ's ``checkResultsAsDataFrame``; anomaly checks are rows too.
* suggestions: ``column, description, rule, code`` -- from ConstraintSuggestionRunner.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

from .assertions import Assertion
from .suite import Analyzer, Constraint

METRIC_COLUMNS = ("entity", "instance", "name", "value")
CHECK_COLUMNS = ("check", "check_level", "check_status", "constraint", "constraint_status",
                 "constraint_message")
SUGGESTION_COLUMNS = ("column", "description", "rule", "code")

METRIC_DDL = "entity string, instance string, name string, value double"
CHECK_DDL = ("`check` string, check_level string, check_status string, `constraint` string, "
             "constraint_status string, constraint_message string")
SUGGESTION_DDL = "`column` string, description string, rule string, code string"

NULL_VALUE = "NullValue"   # Deequ's Histogram.NullFieldReplacement


@dataclass(frozen=True)
class Distribution:
    """A histogram: value -> (absolute count, ratio of all rows); bins = distinct values."""

    values: tuple[tuple[str, int, float], ...]
    number_of_bins: int

    def as_dict(self) -> dict[str, tuple[int, float]]:
        return {v: (a, r) for v, a, r in self.values}


@dataclass
class MetricValue:
    """The outcome of one analyzer: a number, a keyed set of numbers, a histogram, or an error."""

    analyzer: Analyzer
    value: float | dict[str, float] | Distribution | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def flatten(self) -> list[dict[str, Any]]:
        a = self.analyzer
        if not self.ok:
            return []
        row = {"entity": a.entity, "instance": a.instance_name}
        if isinstance(self.value, Distribution):
            rows = [dict(row, name="Histogram.bins", value=float(self.value.number_of_bins))]
            for key, absolute, ratio in self.value.values:
                rows.append(dict(row, name=f"Histogram.abs.{key}", value=float(absolute)))
                rows.append(dict(row, name=f"Histogram.ratio.{key}", value=float(ratio)))
            return rows
        if isinstance(self.value, dict):
            return [dict(row, name=f"{a.kind}-{k}", value=float(v))
                    for k, v in self.value.items()]
        return [dict(row, name=a.kind, value=float(self.value))]


def empty_state_message(analyzer: Analyzer) -> str:
    """Deequ's message when an aggregate saw no (non-null) input."""
    return (f"Empty state for analyzer {analyzer.deequ_repr()}, all input values were NULL.")


def java_double(x: float) -> str:
    """A double as the JVM prints it (Scala's ``s"$x"``): 1.0, 0.998, 1.5E7, 1.0E-4."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        text = repr(float(x))
        return text if ("." in text or "e" in text) else text + ".0"
    sign, digits, exp = Decimal(repr(float(x))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    exponent = len(ds) - 1 + exp
    mantissa = ds[0] + "." + (ds[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{exponent}"


@dataclass
class ConstraintOutcome:
    check: str
    level: str
    constraint: str
    status: str              # Success | Failure
    message: str = ""
    value: float | None = None   # the value the assertion judged (for the report)
    column: str | None = None    # for the report's failing-values lookup
    method: str | None = None

    def row(self, check_status: str) -> dict[str, Any]:
        return {"check": self.check, "check_level": self.level, "check_status": check_status,
                "constraint": self.constraint, "constraint_status": self.status,
                "constraint_message": self.message}


def evaluate_constraint(check: str, level: str, c: Constraint,
                        metric: MetricValue | None) -> ConstraintOutcome:
    """Deequ's AnalysisBasedConstraint: pick the value, run the assertion, explain a failure."""
    out = ConstraintOutcome(check, level, c.name, "Failure", method=c.method,
                            column=c.arg("column"))
    if metric is None:
        out.message = "Missing Analysis, can't run the constraint!"
        return out
    if not metric.ok:
        out.message = metric.error or "metric computation failed"
        return out
    value = metric.value
    if not isinstance(value, (int, float)):
        out.message = f"Can't retrieve the value to assert on: {c.analyzer.kind} is not a number!"
        return out
    picked: float = float(int(value)) if c.long_valued else float(value)
    out.value = picked
    if _assert(c.assertion, picked):
        out.status = "Success"
        return out
    shown = str(int(picked)) if c.long_valued else java_double(picked)
    out.message = f"Value: {shown} does not meet the constraint requirement!"
    if c.hint:
        out.message += f" {c.hint}"
    return out


def _assert(assertion: Assertion, value: float) -> bool:
    return bool(assertion(value))


def check_rows(outcomes: Iterable[ConstraintOutcome]) -> list[dict[str, Any]]:
    """Rows of the check-results table; a check's status is its level if any constraint of it
    failed (Error or Warning), Success otherwise."""
    outcomes = list(outcomes)
    failed: dict[str, bool] = {}
    for o in outcomes:
        failed[o.check] = failed.get(o.check, False) or o.status != "Success"
    return [o.row(o.level if failed[o.check] else "Success") for o in outcomes]


@dataclass
class Suggestion:
    column: str
    description: str
    rule: str
    code: str
    current_value: str = ""

    def row(self) -> dict[str, Any]:
        return {"column": self.column, "description": self.description, "rule": self.rule,
                "code": self.code}


@dataclass
class EngineResult:
    """What an engine hands back: the three tables and what the report needs to draw."""

    engine: str
    metrics: list[dict[str, Any]]
    outcomes: list[ConstraintOutcome]
    suggestions: list[Suggestion]
    metric_values: dict[Analyzer, MetricValue] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def metric(self, analyzer: Analyzer) -> float | None:
        """A single-valued metric by analyzer (from the flattened table, so it works for both
        engines)."""
        for row in self.metrics:
            if (row["entity"], row["instance"], row["name"]) == \
                    (analyzer.entity, analyzer.instance_name, analyzer.kind):
                return float(row["value"])
        return None
