"""The quality suite: a declarative YAML in Deequ's vocabulary, validated into plain objects.

A suite file (default ``conf/quality.yaml``) has these sections::

    params:      {min_size: 1000}            # numbers assertions may name (">= min_size")
    analyzers:   [Size, {Completeness: review_id}, {Correlation: [total_votes, star_rating]}, ...]
    checks:      [{name: ..., level: Error|Warning, constraints: [{isComplete: review_id}, ...]}]
    anomalies:   [{analyzer: Size, strategy: RelativeRateOfChange, max_rate_decrease: 0.8, ...}]
    suggestions: {enabled: true, rules: [...], exclude_columns: [...]}
    report:      {histogram: star_rating, length_column: review_body}

Every mistake in a suite is reported as one line naming the file, the place in it
(``checks[0].constraints[3]``) and what is allowed, before Spark starts.
Column names and SQL predicates are checked against the data when the run starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..config import PACKAGE_CONF, _repo_conf_dir, read_resource, resource_is_file
from ..errors import UserError
from .assertions import IS_ONE, Assertion, AssertionSyntaxError, parse_assertion

DEFAULT_SUITE = "quality.yaml"
LEVELS = ("Error", "Warning")

# ---------------------------------------------------------------------------- analyzers

# Analyzers computed from one aggregation over the rows (Deequ: ScanShareableAnalyzer).
SCAN_ANALYZERS = ("Size", "Completeness", "Compliance", "Mean", "Minimum", "Maximum", "Sum",
                  "StandardDeviation", "Correlation", "ApproxCountDistinct", "ApproxQuantiles")
# Analyzers computed from the frequencies of the values of their column(s) (Deequ:
# FrequencyBasedAnalyzer / Histogram): one group-by per column set, shared.
GROUPING_ANALYZERS = ("Uniqueness", "Distinctness", "UniqueValueRatio", "CountDistinct",
                      "Entropy", "MutualInformation", "Histogram")
ANALYZERS = SCAN_ANALYZERS + GROUPING_ANALYZERS
# Analyzers whose metric is a single number (the ones checks and anomaly checks can judge).
SINGLE_VALUED = tuple(a for a in ANALYZERS if a not in ("ApproxQuantiles", "Histogram"))

_ONE_COLUMN = ("Completeness", "Mean", "Minimum", "Maximum", "Sum", "StandardDeviation",
               "ApproxCountDistinct", "Entropy", "Histogram", "ApproxQuantiles")
_TWO_COLUMNS = ("Correlation", "MutualInformation")
_COLUMN_SETS = ("Uniqueness", "Distinctness", "UniqueValueRatio", "CountDistinct")
# Analyzers that Deequ 2.x gave an ``analyzerOptions`` field (null handling, filtered rows):
# it shows in their constraint names as a third field (checked against the jar in
# tests/test_quality_engines.py, for every analyzer a check can name).
_WITH_OPTIONS = ("Completeness", "Uniqueness", "Minimum", "Maximum", "Compliance")


@dataclass(frozen=True)
class Analyzer:
    """One Deequ analyzer. ``columns`` is empty for Size; Compliance has instance + predicate."""

    kind: str
    columns: tuple[str, ...] = ()
    instance: str | None = None
    predicate: str | None = None
    quantiles: tuple[float, ...] = ()
    relative_error: float = 0.01      # ApproxQuantiles (Deequ's default)
    max_detail_bins: int = 1000       # Histogram (Deequ's Histogram.MaximumAllowedDetailBins)

    @property
    def column(self) -> str:
        return self.columns[0]

    @property
    def grouping(self) -> bool:
        return self.kind in GROUPING_ANALYZERS

    @property
    def entity(self) -> str:
        """Deequ's Entity of the metric (Deequ 1.x spelled the third one 'Mutlicolumn'; 2.x,
        which the platform runs, 'Multicolumn')."""
        if self.kind == "Size":
            return "Dataset"
        if self.kind in _TWO_COLUMNS or len(self.columns) > 1:
            return "Multicolumn"
        return "Column"

    @property
    def instance_name(self) -> str:
        if self.kind == "Size":
            return "*"
        if self.kind == "Compliance":
            return str(self.instance)
        return ",".join(self.columns)

    def deequ_repr(self) -> str:
        """How Deequ 2.x prints the analyzer inside a constraint name: its case-class fields,
        ``where`` and, for the analyzers that have them, ``analyzerOptions`` (``None``), e.g.
        ``Completeness(a,None,None)``, ``Mean(a,None)``,
        ``Compliance(a is non-negative,COALESCE(CAST(a AS DOUBLE), 0.0) >= 0,None,List(a),None)``."""
        if self.kind == "Size":
            return "Size(None)"
        if self.kind == "Compliance":
            return (f"Compliance({self.instance},{self.predicate},None,"
                    f"List({', '.join(self.columns)}),None)")
        if self.kind in _COLUMN_SETS or self.kind == "MutualInformation":
            options = ",None" if self.kind in _WITH_OPTIONS else ""
            return f"{self.kind}(List({', '.join(self.columns)}),None{options})"
        if self.kind == "Correlation":
            return f"Correlation({self.columns[0]},{self.columns[1]},None)"
        if self.kind == "ApproxQuantiles":
            qs = ", ".join(str(q) for q in self.quantiles)
            return f"ApproxQuantiles({self.column},List({qs}),{self.relative_error})"
        options = ",None" if self.kind in _WITH_OPTIONS else ""
        return f"{self.kind}({self.column},None{options})"

    def describe(self) -> str:
        """Short human form: ``Completeness(review_id)``."""
        if self.kind == "Size":
            return "Size"
        if self.kind == "Compliance":
            return f"Compliance({self.instance})"
        return f"{self.kind}({', '.join(self.columns)})"

    def referenced_columns(self) -> tuple[str, ...]:
        return self.columns


# ---------------------------------------------------------------------------- checks

# check method -> (analyzer kind, argument shape)
CHECKS: dict[str, str] = {
    "hasSize": "Size",
    "isComplete": "Completeness",
    "hasCompleteness": "Completeness",
    "isUnique": "Uniqueness",
    "hasUniqueness": "Uniqueness",
    "hasDistinctness": "Distinctness",
    "hasMin": "Minimum",
    "hasMax": "Maximum",
    "hasMean": "Mean",
    "hasSum": "Sum",
    "hasStandardDeviation": "StandardDeviation",
    "isNonNegative": "Compliance",
    "isContainedIn": "Compliance",
    "satisfies": "Compliance",
    "hasApproxCountDistinct": "ApproxCountDistinct",
    "hasCorrelation": "Correlation",
    "hasEntropy": "Entropy",
}
_CONSTRAINT_CLASS = {
    "Size": "SizeConstraint", "Completeness": "CompletenessConstraint",
    "Uniqueness": "UniquenessConstraint", "Distinctness": "DistinctnessConstraint",
    "Minimum": "MinimumConstraint", "Maximum": "MaximumConstraint", "Mean": "MeanConstraint",
    "Sum": "SumConstraint", "StandardDeviation": "StandardDeviationConstraint",
    "Compliance": "ComplianceConstraint", "ApproxCountDistinct": "ApproxCountDistinctConstraint",
    "Correlation": "CorrelationConstraint", "Entropy": "EntropyConstraint",
}


@dataclass(frozen=True)
class Constraint:
    """One constraint of a check: a metric (from its analyzer) and an assertion on it."""

    method: str                     # the Deequ Check method, e.g. "isContainedIn"
    analyzer: Analyzer
    assertion: Assertion
    hint: str | None = None
    args: tuple[tuple[str, Any], ...] = ()   # the method's arguments (for the PyDeequ translation)

    @property
    def name(self) -> str:
        """Deequ's constraint name, e.g. ``CompletenessConstraint(Completeness(review_id,None))``."""
        return f"{_CONSTRAINT_CLASS[self.analyzer.kind]}({self.analyzer.deequ_repr()})"

    @property
    def long_valued(self) -> bool:
        """hasSize judges the row count as a Long (Deequ's value picker ``_.toLong``)."""
        return self.method == "hasSize"

    def arg(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)


@dataclass(frozen=True)
class Check:
    name: str
    level: str
    constraints: tuple[Constraint, ...]


# ---------------------------------------------------------------------------- anomalies

STRATEGIES = {
    # Deequ's strategies: change between consecutive points (absolute or relative), or bounds.
    "RelativeRateOfChange": ("max_rate_decrease", "max_rate_increase", "order"),
    "AbsoluteChange": ("max_rate_decrease", "max_rate_increase", "order"),
    "SimpleThreshold": ("lower_bound", "upper_bound"),
}


@dataclass(frozen=True)
class AnomalyCheck:
    """A metric of this run judged against the history of the same metric in the repository."""

    analyzer: Analyzer
    strategy: str
    params: tuple[tuple[str, float], ...]
    level: str = "Warning"
    name: str = ""
    with_tags: str | tuple[tuple[str, str], ...] = "same"   # "same" | "any" | fixed tag values
    on_missing_history: str = "pass"                        # "pass" | "fail"

    def param(self, key: str, default: Any = None) -> Any:
        return dict(self.params).get(key, default)

    @property
    def constraint_name(self) -> str:
        return f"AnomalyConstraint({self.analyzer.deequ_repr()})"


# ---------------------------------------------------------------------------- suggestions

SUGGESTION_RULES = ("CompleteIfComplete", "RetainCompleteness", "RetainType", "CategoricalRange",
                    "FractionalCategoricalRange", "NonNegativeNumbers",
                    "UniqueIfApproximatelyUnique")


@dataclass(frozen=True)
class SuggestionOptions:
    enabled: bool = True
    rules: tuple[str, ...] = SUGGESTION_RULES
    columns: tuple[str, ...] | None = None           # None: every column of the data
    exclude_columns: tuple[str, ...] = ()
    low_cardinality_histogram_threshold: int = 120   # Deequ's ColumnProfiler default
    fractional_coverage: float = 0.9                 # FractionalCategoricalRangeRule's target
    interval: str = "wald"                           # confidence interval: wald | wilson
    sample_bytes: int | None = None                  # profile types and distinct counts on a
                                                     # sample of lakes larger than this


@dataclass(frozen=True)
class ReportOptions:
    histogram_column: str | None = "star_rating"
    length_column: str | None = "review_body"
    length_sample_bytes: int = 256 * 1024 * 1024   # word counts on all rows up to this lake size


@dataclass(frozen=True)
class Suite:
    name: str
    source: str
    params: tuple[tuple[str, Any], ...]
    analyzers: tuple[Analyzer, ...]
    checks: tuple[Check, ...]
    anomalies: tuple[AnomalyCheck, ...] = ()
    suggestions: SuggestionOptions = field(default_factory=SuggestionOptions)
    report: ReportOptions = field(default_factory=ReportOptions)

    def required_analyzers(self) -> list[Analyzer]:
        """Every analyzer the run must compute, once each, in a stable order: the suite's
        analyzers, then those its checks and anomaly checks need (Deequ's VerificationSuite
        runs the same union)."""
        seen: dict[Analyzer, None] = {}
        for a in self.analyzers:
            seen.setdefault(a, None)
        for check in self.checks:
            for c in check.constraints:
                seen.setdefault(c.analyzer, None)
        for anomaly in self.anomalies:
            seen.setdefault(anomaly.analyzer, None)
        return list(seen)

    def referenced_columns(self) -> set[str]:
        cols = {c for a in self.required_analyzers() for c in a.columns}
        for col in (self.report.histogram_column, self.report.length_column):
            if col:
                cols.add(col)
        return cols


# ---------------------------------------------------------------------------- loading


class SuiteError(UserError):
    """A malformed suite: one line naming the file, the place and what is allowed."""


def resolve_suite(name: str | os.PathLike | None) -> Path:
    """A suite given as a path, or as a bare name looked up in conf/ (like profiles)."""
    if name is None:
        name = DEFAULT_SUITE
    path = Path(name)
    if path.is_file():
        return path
    for folder in filter(None, [_repo_conf_dir(), PACKAGE_CONF]):
        for candidate in (folder / str(name), folder / f"{name}.yaml"):
            if resource_is_file(candidate):
                return candidate
    raise SuiteError(f"quality suite not found: {name} (give a YAML path or a name in conf/)")


def load_suite(name: str | os.PathLike | None = None,
               params: Mapping[str, Any] | None = None) -> Suite:
    """Read and validate a suite; ``params`` override the file's ``params`` section."""
    path = resolve_suite(name)
    try:
        data = yaml.safe_load(read_resource(path))
    except OSError as exc:
        raise SuiteError(f"cannot read quality suite {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"quality suite {path} is not valid YAML: "
                         f"{str(exc).splitlines()[0]}") from None
    return parse_suite(data, source=str(path), params=params)


def parse_suite(data: Any, source: str = "<suite>",
                params: Mapping[str, Any] | None = None) -> Suite:
    return _Parser(source).suite(data, dict(params or {}))


class _Parser:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str) -> SuiteError:
        return SuiteError(f"{self.source}: {where}: {message}" if where
                          else f"{self.source}: {message}")

    # -- top level
    def suite(self, data: Any, param_overrides: dict[str, Any]) -> Suite:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self.fail("", "a suite must be a mapping with analyzers, checks, anomalies, "
                                "suggestions")
        allowed = {"name", "params", "analyzers", "checks", "anomalies", "suggestions", "report"}
        self.only(data, allowed, "")
        params = dict(self.mapping(data.get("params") or {}, "params"))
        for key, value in param_overrides.items():
            params[key] = value
        for key, value in params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(f"params.{key}", f"must be a number, got {value!r}")
        self.params = params
        analyzers = tuple(self.analyzer(spec, f"analyzers[{i}]")
                          for i, spec in enumerate(self.sequence(data.get("analyzers") or [],
                                                                  "analyzers")))
        checks = tuple(self.check(spec, f"checks[{i}]")
                       for i, spec in enumerate(self.sequence(data.get("checks") or [], "checks")))
        names = [c.name for c in checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise self.fail("checks", f"check names must be unique, repeated: {', '.join(dupes)}")
        anomalies = tuple(self.anomaly(spec, f"anomalies[{i}]")
                          for i, spec in enumerate(self.sequence(data.get("anomalies") or [],
                                                                  "anomalies")))
        return Suite(
            name=str(data.get("name") or Path(self.source).stem),
            source=self.source,
            params=tuple(sorted(params.items())),
            analyzers=analyzers,
            checks=checks,
            anomalies=anomalies,
            suggestions=self.suggestions(data.get("suggestions")),
            report=self.report(data.get("report")),
        )

    # -- helpers
    def only(self, data: Mapping, allowed: Iterable[str], where: str) -> None:
        unknown = sorted(set(map(str, data)) - set(allowed))
        if unknown:
            raise self.fail(where, f"unknown key{'s' if len(unknown) > 1 else ''} "
                                   f"{', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")

    def mapping(self, value: Any, where: str) -> Mapping:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a mapping, got {type(value).__name__}")
        return value

    def sequence(self, value: Any, where: str) -> list:
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list, got {type(value).__name__}")
        return value

    def column_name(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"a column name must be a non-empty string, got {value!r}")
        return value.strip()

    def columns(self, value: Any, where: str, exactly: int | None = None) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.fail(where, "expects a column or a list of columns")
        cols = tuple(self.column_name(v, where) for v in items)
        if exactly is not None and len(cols) != exactly:
            raise self.fail(where, f"expects exactly {exactly} columns, got {len(cols)}")
        return cols

    def assertion(self, value: Any, where: str) -> Assertion:
        try:
            return parse_assertion(value, self.params)
        except AssertionSyntaxError as exc:
            raise self.fail(where, str(exc)) from None

    def level(self, value: Any, where: str, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        text = str(value).strip().capitalize() if value is not None else ""
        if text not in LEVELS:
            raise self.fail(where, f"level must be Error or Warning, got {value!r}")
        return text

    @staticmethod
    def single_key(spec: Any) -> tuple[str, Any] | None:
        if isinstance(spec, str):
            return spec, None
        if isinstance(spec, Mapping) and len(spec) == 1:
            key, value = next(iter(spec.items()))
            return str(key), value
        return None

    # -- analyzers
    def analyzer(self, spec: Any, where: str) -> Analyzer:
        kv = self.single_key(spec)
        if kv is None:
            raise self.fail(where, "an analyzer is a name (Size) or a one-key mapping such as "
                                   "{Completeness: review_id}")
        kind, arg = kv
        if kind not in ANALYZERS:
            raise self.fail(where, f"unknown analyzer {kind!r} (known: {', '.join(ANALYZERS)})")
        return self.analyzer_of(kind, arg, f"{where}.{kind}")

    def analyzer_of(self, kind: str, arg: Any, where: str) -> Analyzer:
        if kind == "Size":
            if arg not in (None, {}):
                raise self.fail(where, "Size takes no arguments")
            return Analyzer("Size")
        if kind == "Compliance":
            m = self.mapping(arg, where)
            self.only(m, {"instance", "predicate"}, where)
            if not m.get("instance") or not m.get("predicate"):
                raise self.fail(where, "Compliance needs instance (a name) and predicate (SQL)")
            return Analyzer("Compliance", instance=str(m["instance"]),
                            predicate=str(m["predicate"]))
        if kind == "ApproxQuantiles":
            m = self.mapping(arg, where)
            self.only(m, {"column", "quantiles", "relative_error"}, where)
            qs = self.sequence(m.get("quantiles"), f"{where}.quantiles")
            quantiles = []
            for q in qs:
                if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 1:
                    raise self.fail(f"{where}.quantiles", f"quantiles must be numbers in [0, 1], "
                                                          f"got {q!r}")
                quantiles.append(float(q))
            if not quantiles:
                raise self.fail(f"{where}.quantiles", "needs at least one quantile")
            err = m.get("relative_error", 0.01)
            if isinstance(err, bool) or not isinstance(err, (int, float)) or not 0 < err <= 1:
                raise self.fail(f"{where}.relative_error", f"must be in (0, 1], got {err!r}")
            return Analyzer("ApproxQuantiles", (self.column_name(m.get("column"), where),),
                            quantiles=tuple(quantiles), relative_error=float(err))
        if kind == "Histogram" and isinstance(arg, Mapping):
            self.only(arg, {"column", "max_detail_bins"}, where)
            bins = arg.get("max_detail_bins", 1000)
            if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= 1000:
                raise self.fail(f"{where}.max_detail_bins", "must be an integer in 1..1000 "
                                                             "(Deequ's maximum)")
            return Analyzer("Histogram", (self.column_name(arg.get("column"), where),),
                            max_detail_bins=bins)
        if kind in _ONE_COLUMN:
            return Analyzer(kind, self.columns(arg, where, exactly=1))
        if kind in _TWO_COLUMNS:
            return Analyzer(kind, self.columns(arg, where, exactly=2))
        return Analyzer(kind, self.columns(arg, where))

    # -- checks
    def check(self, spec: Any, where: str) -> Check:
        m = self.mapping(spec, where)
        self.only(m, {"name", "level", "constraints"}, where)
        name = str(m.get("name") or "").strip()
        if not name:
            raise self.fail(where, "a check needs a name")
        level = self.level(m.get("level"), f"{where}.level")
        items = self.sequence(m.get("constraints") or [], f"{where}.constraints")
        if not items:
            raise self.fail(f"{where}.constraints", "a check needs at least one constraint")
        constraints = tuple(self.constraint(c, f"{where}.constraints[{i}]")
                            for i, c in enumerate(items))
        return Check(name, level, constraints)

    def constraint(self, spec: Any, where: str) -> Constraint:
        kv = self.single_key(spec)
        if kv is None:
            raise self.fail(where, "a constraint is a one-key mapping such as "
                                   "{isComplete: review_id}")
        method, arg = kv
        if method not in CHECKS:
            raise self.fail(where, f"unknown check {method!r} (known: {', '.join(CHECKS)})")
        where = f"{where}.{method}"
        m: dict[str, Any]
        if isinstance(arg, Mapping):
            m = dict(arg)
        elif method == "hasSize":
            m = {"assertion": arg}
        elif method in ("isComplete", "isUnique", "isNonNegative"):
            m = {"column": arg}
        else:
            raise self.fail(where, _CHECK_USAGE.get(method, "expects a mapping of arguments"))
        hint = m.pop("hint", None)
        hint = None if hint is None else str(hint)

        def need(key: str) -> Any:
            if m.get(key) in (None, "", []):
                raise self.fail(where, f"missing {key}: {_CHECK_USAGE[method]}")
            return m[key]

        def assertion(default: Assertion | None = None) -> Assertion:
            if "assertion" not in m or m["assertion"] is None:
                if default is None:
                    raise self.fail(where, f"missing assertion: {_CHECK_USAGE[method]}")
                return default
            return self.assertion(m["assertion"], f"{where}.assertion")

        allowed = _CHECK_KEYS[method] | {"hint"}
        self.only({**m, **({"hint": hint} if hint else {})}, allowed, where)
        if method == "hasSize":
            return Constraint(method, Analyzer("Size"), assertion(), hint)
        if method in ("isComplete", "isUnique"):
            col = self.column_name(need("column"), where)
            kind = CHECKS[method]
            analyzer = Analyzer(kind, (col,))
            return Constraint(method, analyzer, IS_ONE, hint, (("column", col),))
        if method in ("hasCompleteness", "hasMin", "hasMax", "hasMean", "hasSum",
                      "hasStandardDeviation", "hasApproxCountDistinct", "hasEntropy"):
            col = self.column_name(need("column"), where)
            return Constraint(method, Analyzer(CHECKS[method], (col,)), assertion(), hint,
                              (("column", col),))
        if method in ("hasUniqueness", "hasDistinctness"):
            cols = self.columns(m.get("columns", m.get("column")), where)
            return Constraint(method, Analyzer(CHECKS[method], cols), assertion(), hint,
                              (("columns", cols),))
        if method == "hasCorrelation":
            cols = self.columns(need("columns"), where, exactly=2)
            return Constraint(method, Analyzer("Correlation", cols), assertion(), hint,
                              (("columns", cols),))
        if method == "isNonNegative":
            col = self.column_name(need("column"), where)
            # Deequ's own predicate (the CAST makes it work on numeric strings too)
            analyzer = Analyzer("Compliance", (col,), instance=f"{col} is non-negative",
                                predicate=f"COALESCE(CAST({col} AS DOUBLE), 0.0) >= 0")
            return Constraint(method, analyzer, assertion(IS_ONE), hint, (("column", col),))
        if method == "isContainedIn":
            col = self.column_name(need("column"), where)
            values = self.sequence(need("values"), f"{where}.values")
            if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                       for v in values):
                raise self.fail(f"{where}.values", "allowed values must be strings or numbers")
            values = tuple(str(v) for v in values)
            # Spark SQL string literals take backslash escapes: a quote is \' (Deequ's escape);
            # '' would be read as two adjacent literals (Men''s -> Mens).
            quoted = ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
                              for v in values)
            analyzer = Analyzer("Compliance", (col,),
                                instance=f"{col} contained in {','.join(values)}",
                                predicate=f"`{col}` IS NULL OR `{col}` IN ({quoted})")
            return Constraint(method, analyzer, assertion(IS_ONE), hint,
                              (("column", col), ("values", values)))
        if method == "satisfies":
            predicate = str(need("predicate")).strip()
            name = str(m.get("name") or predicate)
            analyzer = Analyzer("Compliance", instance=name, predicate=predicate)
            return Constraint(method, analyzer, assertion(IS_ONE), hint,
                              (("predicate", predicate), ("name", name)))
        raise AssertionError(method)  # pragma: no cover - CHECKS and the branches agree

    # -- anomalies
    def anomaly(self, spec: Any, where: str) -> AnomalyCheck:
        m = self.mapping(spec, where)
        self.only(m, {"name", "analyzer", "strategy", "level", "with_tags", "on_missing_history",
                      *{k for keys in STRATEGIES.values() for k in keys}}, where)
        analyzer = self.analyzer(m.get("analyzer"), f"{where}.analyzer")
        if analyzer.kind not in SINGLE_VALUED:
            raise self.fail(f"{where}.analyzer", f"anomaly checks need a single-valued metric, "
                                                 f"not {analyzer.kind}")
        strategy = str(m.get("strategy") or "")
        if strategy not in STRATEGIES:
            raise self.fail(f"{where}.strategy", f"unknown strategy {strategy!r} "
                                                 f"(known: {', '.join(STRATEGIES)})")
        params: dict[str, float] = {}
        for key in STRATEGIES[strategy]:
            value = m.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.fail(f"{where}.{key}", f"must be a number, got {value!r}")
            params[key] = float(value)
        foreign = [k for keys in STRATEGIES.values() for k in keys
                   if k in m and k not in STRATEGIES[strategy]]
        if foreign:
            raise self.fail(where, f"{strategy} does not take {', '.join(sorted(set(foreign)))} "
                                   f"(it takes {', '.join(STRATEGIES[strategy])})")
        if strategy == "SimpleThreshold":
            if "upper_bound" not in params:
                raise self.fail(where, "SimpleThreshold needs upper_bound (and optionally "
                                       "lower_bound)")
            if params.get("lower_bound", float("-inf")) > params["upper_bound"]:
                raise self.fail(where, "lower_bound must not exceed upper_bound")
        else:
            lo, hi = params.get("max_rate_decrease"), params.get("max_rate_increase")
            if lo is None and hi is None:
                raise self.fail(where, f"{strategy} needs max_rate_decrease and/or "
                                       f"max_rate_increase")
            if lo is not None and hi is not None and lo > hi:
                raise self.fail(where, "max_rate_decrease must not exceed max_rate_increase")
            order = params.get("order", 1.0)
            if not float(order).is_integer() or order < 1:
                raise self.fail(f"{where}.order", "order must be a positive integer")
            params["order"] = float(int(order))
        tags = m.get("with_tags", "same")
        if isinstance(tags, Mapping):
            with_tags: Any = tuple(sorted((str(k), str(v)) for k, v in tags.items()))
        elif tags in ("same", "any"):
            with_tags = tags
        else:
            raise self.fail(f"{where}.with_tags", "must be 'same' (runs with this run's tags), "
                                                  "'any', or a mapping of tag values")
        missing = str(m.get("on_missing_history", "pass"))
        if missing not in ("pass", "fail"):
            raise self.fail(f"{where}.on_missing_history", "must be pass or fail")
        name = str(m.get("name") or f"Anomaly detection: {analyzer.describe()}")
        return AnomalyCheck(analyzer, strategy, tuple(sorted(params.items())),
                            self.level(m.get("level"), f"{where}.level", "Warning"),
                            name, with_tags, missing)

    # -- suggestions and report
    def suggestions(self, spec: Any) -> SuggestionOptions:
        if spec is None:
            return SuggestionOptions()
        if isinstance(spec, bool):
            return SuggestionOptions(enabled=spec)
        m = self.mapping(spec, "suggestions")
        self.only(m, {"enabled", "rules", "columns", "exclude_columns",
                      "low_cardinality_histogram_threshold", "fractional_coverage", "interval",
                      "sample_bytes"},
                  "suggestions")
        rules = tuple(str(r) for r in self.sequence(m.get("rules", list(SUGGESTION_RULES)),
                                                     "suggestions.rules"))
        bad = [r for r in rules if r not in SUGGESTION_RULES]
        if bad:
            raise self.fail("suggestions.rules", f"unknown rule {bad[0]!r} "
                                                 f"(known: {', '.join(SUGGESTION_RULES)})")
        cols = m.get("columns")
        columns = None if cols in (None, "all") else self.columns(cols, "suggestions.columns")
        exclude = () if not m.get("exclude_columns") else \
            self.columns(m["exclude_columns"], "suggestions.exclude_columns")
        threshold = m.get("low_cardinality_histogram_threshold", 120)
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise self.fail("suggestions.low_cardinality_histogram_threshold",
                            "must be a positive integer")
        coverage = m.get("fractional_coverage", 0.9)
        if isinstance(coverage, bool) or not isinstance(coverage, (int, float)) \
                or not 0 < coverage <= 1:
            raise self.fail("suggestions.fractional_coverage", "must be in (0, 1]")
        interval = str(m.get("interval", "wald"))
        if interval not in ("wald", "wilson"):
            raise self.fail("suggestions.interval", "must be wald or wilson")
        sample = m.get("sample_bytes")
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)
                                   or sample < 1):
            raise self.fail("suggestions.sample_bytes", "must be a positive integer or null")
        return SuggestionOptions(bool(m.get("enabled", True)), rules, columns, exclude,
                                 threshold, float(coverage), interval, sample)

    def report(self, spec: Any) -> ReportOptions:
        if spec is None:
            return ReportOptions()
        m = self.mapping(spec, "report")
        self.only(m, {"histogram", "length_column", "length_sample_bytes"}, "report")
        hist = m.get("histogram", "star_rating")
        length = m.get("length_column", "review_body")
        sample = m.get("length_sample_bytes", ReportOptions.length_sample_bytes)
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise self.fail("report.length_sample_bytes", "must be a positive integer")
        return ReportOptions(
            None if hist in (None, False) else self.column_name(hist, "report.histogram"),
            None if length in (None, False) else self.column_name(length, "report.length_column"),
            sample)


_CHECK_USAGE = {
    "hasSize": "hasSize: \">= 1000\" (or {assertion, hint})",
    "isComplete": "isComplete: COLUMN (or {column, hint})",
    "isUnique": "isUnique: COLUMN (or {column, hint})",
    "isNonNegative": "isNonNegative: COLUMN (or {column, assertion, hint})",
    "hasCompleteness": "hasCompleteness: {column, assertion}",
    "hasMin": "hasMin: {column, assertion}",
    "hasMax": "hasMax: {column, assertion}",
    "hasMean": "hasMean: {column, assertion}",
    "hasSum": "hasSum: {column, assertion}",
    "hasStandardDeviation": "hasStandardDeviation: {column, assertion}",
    "hasApproxCountDistinct": "hasApproxCountDistinct: {column, assertion}",
    "hasEntropy": "hasEntropy: {column, assertion}",
    "hasUniqueness": "hasUniqueness: {columns, assertion}",
    "hasDistinctness": "hasDistinctness: {columns, assertion}",
    "hasCorrelation": "hasCorrelation: {columns: [a, b], assertion}",
    "isContainedIn": "isContainedIn: {column, values: [...], assertion (optional)}",
    "satisfies": "satisfies: {predicate: SQL, name, assertion (optional)}",
}
_CHECK_KEYS = {
    "hasSize": {"assertion"},
    "isComplete": {"column"}, "isUnique": {"column"},
    "isNonNegative": {"column", "assertion"},
    "hasCompleteness": {"column", "assertion"}, "hasMin": {"column", "assertion"},
    "hasMax": {"column", "assertion"}, "hasMean": {"column", "assertion"},
    "hasSum": {"column", "assertion"}, "hasStandardDeviation": {"column", "assertion"},
    "hasApproxCountDistinct": {"column", "assertion"}, "hasEntropy": {"column", "assertion"},
    "hasUniqueness": {"columns", "column", "assertion"},
    "hasDistinctness": {"columns", "column", "assertion"},
    "hasCorrelation": {"columns", "assertion"},
    "isContainedIn": {"column", "values", "assertion"},
    "satisfies": {"predicate", "name", "assertion"},
}
