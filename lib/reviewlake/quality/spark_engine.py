"""Engine ``spark``: the suite computed with Spark SQL aggregates, following Deequ's definitions.

Two Spark jobs compute everything, however many analyzers, checks and profiled columns:

1. **one aggregation pass** over the rows computes every scan-based analyzer (Deequ's
   ScanShareableAnalyzer), the column profiles the suggestions need (completeness, approximate
   distinct count, inferred type, minimum) and the report's review-length figures;
2. **one grouping job** computes every frequency-based analyzer: one ``GROUPING SETS`` query
   groups the rows once per distinct column set (Uniqueness, Distinctness, Histogram, ... of
   the same column(s) share one group-by), and one small aggregation over those frequencies
   gives every metric, and the histograms of low-cardinality columns, in a single collect.

Only aggregates reach the driver: one row from job 1, one row per column set from job 2.

Definitions (``n`` = rows of the data; Deequ's analyzers of the same name, without ``where``):

===================  =====================================================================
Size                 n
Completeness(c)      rows where c is not null / n
Compliance(i, p)     rows where predicate p is true / n  (null counts as not compliant)
Mean(c)              sum(c) / count(c), nulls ignored
Minimum / Maximum    min(c) / max(c) as double, nulls ignored
Sum(c)               sum(c) as double, nulls ignored
StandardDeviation    population standard deviation of the non-null values (sqrt(m2 / count))
Correlation(a, b)    Pearson correlation over rows where both are non-null
ApproxCountDistinct  HyperLogLog++ with precision p = 9 (relative SD 0.05), as Deequ's sketch
ApproxQuantiles      Spark's approximate percentile with accuracy 1/relative_error (Deequ's)
Uniqueness(cs)       values occurring exactly once / rows where at least one of cs is non-null
Distinctness(cs)     distinct values / rows where at least one of cs is non-null
UniqueValueRatio     values occurring exactly once / distinct values
CountDistinct        distinct values (rows where all of cs are null are left out)
Entropy(c)           -sum(p ln p), p = count of a value / non-null rows
MutualInformation    sum over value pairs with both non-null of p_ab ln(p_ab / (p_a p_b)),
                     p = count / rows where at least one of the two is non-null
Histogram(c)         per value (cast to string, null as "NullValue"): count and count / n;
                     bins = number of distinct values; details for the 1000 largest
===================  =====================================================================

A metric whose input is empty (no rows, or only nulls) fails with Deequ's message
("Empty state for analyzer ..."), and every constraint on it fails with that message.
"""
from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..errors import UserError
from . import suggest
from .results import (NULL_VALUE, Distribution, EngineResult, MetricValue,
                      empty_state_message, evaluate_constraint)
from .suite import Analyzer, Suite

log = logging.getLogger(__name__)

HLL_RELATIVE_SD = 0.05          # Spark's HLL++ at this error uses p = 9, Deequ's precision
COLLECT_HISTOGRAM_BELOW = 900   # approx. distinct values under which a histogram is collected
                                # in the grouping job itself (HLL's error stays below 1000)
# Deequ 2.x's DataType analyzer patterns (StatefulDataType; matched against the whole value):
# "1e5" and "1.5" are Fractional, "+4" Integral, "" "0." ".5" String. (Deequ 1.x took
# "\d*\.\d*" and "\d*", so "" was Integral and "1e5" String.)
FRACTIONAL_RE = r"^(-|\+)? ?\d+((\.\d+)|((?:\.\d+)?[Ee][-+]?\d+))\z"
INTEGRAL_RE = r"^(-|\+)? ?\d+\z"
BOOLEAN_RE = r"^(true|false)\z"
TYPE_CODES = {1: "Fractional", 2: "Integral", 3: "Boolean", 4: "String"}
# Word-count buckets of the review-length distribution: 5-word steps up to 100, then wider.
LENGTH_EDGES = (*range(5, 101, 5), 128, 160, 200, 256, 320, 384, 512, 768, 1024, 2048, 4096)
LENGTH_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def col(name: str) -> Column:
    return F.col("`" + name.replace("`", "``") + "`")


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class _Aggregations:
    """The select list of the one aggregation pass; identical aggregates are computed once.

    Row-level expressions that several aggregates share (a predicate, a value's inferred type,
    a word count) are derived once per row in a projection under the aggregation (Spark does
    not eliminate common subexpressions across aggregate functions).
    """

    def __init__(self) -> None:
        self.columns: list[Column] = []
        self.derived: list[Column] = []
        self._aliases: dict[str, str] = {}
        self._derived: dict[str, str] = {}

    def add(self, key: str, make: Callable[[], Column]) -> str:
        alias = self._aliases.get(key)
        if alias is None:
            alias = f"_q{len(self.columns)}"
            self.columns.append(make().alias(alias))
            self._aliases[key] = alias
        return alias

    def has(self, key: str) -> bool:
        return key in self._aliases

    def derive(self, key: str, make: Callable[[], Column]) -> Column:
        name = self._derived.get(key)
        if name is None:
            name = f"_d{len(self.derived)}"
            self.derived.append(make().alias(name))
            self._derived[key] = name
        return F.col(name)

    def hll(self, c: str) -> str:
        return self.add(f"hll({c})", lambda: F.approx_count_distinct(col(c), HLL_RELATIVE_SD))

    def run(self, spark, df: DataFrame) -> dict[str, Any]:
        from ..session import spark_conf

        source = df.select("*", *self.derived) if self.derived else df
        # generated code for a wide aggregation (Spark's default stops at 100 fields)
        fields = str(max(100, 8 * (len(self.columns) + len(self.derived)) + 100))
        with spark_conf(spark, {"spark.sql.codegen.maxFields": fields,
                                "spark.sql.debug.maxToStringFields": "1000"}):
            return source.agg(*self.columns).first().asDict()

    # aggregates shared by many analyzers
    def rows(self) -> str:
        return self.add("count(1)", lambda: F.count(F.lit(1)))

    def nonnull(self, c: str) -> str:
        return self.add(f"count({c})", lambda: F.count(col(c)))

    def matches(self, predicate: str) -> str:
        # Deequ: sum(cast(predicate as int)); a null predicate is not a match
        match = self.derive(f"pred({predicate})", lambda: F.expr(predicate).cast("int"))
        return self.add(f"sum_pred({predicate})", lambda: F.sum(match).cast("long"))


def check_columns(df: DataFrame, suite: Suite) -> None:
    """Every column and predicate of the suite must make sense on the data (one line if not)."""
    names = set(df.columns)
    for a in suite.required_analyzers():
        for c in a.columns:
            if c not in names:
                raise UserError(f"column {c!r} of {a.describe()} (suite {suite.source}) is not in "
                                f"the data; columns: {', '.join(df.columns)}")
    for a in suite.required_analyzers():
        if a.predicate:
            try:
                df.select(F.expr(a.predicate).alias("p")).schema
            except Exception as exc:  # AnalysisException / ParseException
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise UserError(f"predicate of {a.describe()} does not work on the data: "
                                f"{a.predicate!r}: {first[:200]}") from None
    for opt, c in (("report.histogram", suite.report.histogram_column),
                   ("report.length_column", suite.report.length_column)):
        if c and c not in names:
            raise UserError(f"column {c!r} of {opt} (suite {suite.source}) is not in the data")


# ---------------------------------------------------------------------------- scan pass


def _scan_reader(a: Analyzer, aggs: _Aggregations,
                 numeric: set[str]) -> Callable[[dict], MetricValue]:
    """Register the aggregates of a scan-based analyzer; return how to read its metric."""
    n = aggs.rows()
    kind = a.kind

    def ratio(num_alias: str) -> Callable[[dict], MetricValue]:
        def read(row: dict) -> MetricValue:
            total, num = row[n], row[num_alias]
            if not total or num is None:
                return MetricValue(a, error=empty_state_message(a))
            return MetricValue(a, num / total)
        return read

    def single(alias: str) -> Callable[[dict], MetricValue]:
        def read(row: dict) -> MetricValue:
            v = row[alias]
            if v is None:
                return MetricValue(a, error=empty_state_message(a))
            return MetricValue(a, float(v))
        return read

    if kind == "Size":
        return lambda row: MetricValue(a, float(row[n]))
    if kind == "Completeness":
        return ratio(aggs.nonnull(a.column))
    if kind == "Compliance":
        return ratio(aggs.matches(str(a.predicate)))
    if a.column not in numeric and kind in ("Mean", "Sum", "StandardDeviation", "Minimum",
                                            "Maximum", "Correlation", "ApproxQuantiles") \
            or (kind == "Correlation" and a.columns[1] not in numeric):
        bad = [c for c in a.columns if c not in numeric]
        msg = (f"{kind} needs numeric columns; {', '.join(bad)} is not numeric")
        return lambda row: MetricValue(a, error=msg)
    c = a.column
    if kind == "Mean":
        return single(aggs.add(f"avg({c})", lambda: F.avg(col(c))))
    if kind == "Minimum":
        return single(aggs.add(f"min({c})", lambda: F.min(col(c)).cast("double")))
    if kind == "Maximum":
        return single(aggs.add(f"max({c})", lambda: F.max(col(c)).cast("double")))
    if kind == "Sum":
        return single(aggs.add(f"sum({c})", lambda: F.sum(col(c)).cast("double")))
    if kind == "StandardDeviation":
        return single(aggs.add(f"stddev_pop({c})", lambda: F.stddev_pop(col(c))))
    if kind == "Correlation":
        x, y = a.columns
        corr = aggs.add(f"corr({x},{y})", lambda: F.corr(col(x), col(y)))
        pairs = aggs.add(f"pairs({x},{y})", lambda: F.count(
            F.when(col(x).isNotNull() & col(y).isNotNull(), 1)))

        def read_corr(row: dict) -> MetricValue:
            # Spark's corr is null where a variance is 0; Deequ's state divides: NaN. Only no
            # rows with both values is Deequ's empty state.
            if row[corr] is None:
                return (MetricValue(a, math.nan) if row[pairs]
                        else MetricValue(a, error=empty_state_message(a)))
            return MetricValue(a, float(row[corr]))
        return read_corr
    if kind == "ApproxCountDistinct":
        return single(aggs.hll(c))
    if kind == "ApproxQuantiles":
        accuracy = max(1, int(1.0 / a.relative_error))
        key = f"pct({c},{a.quantiles},{accuracy})"
        alias = aggs.add(key, lambda: F.percentile_approx(
            col(c).cast("double"), F.array(*[F.lit(q) for q in a.quantiles]), accuracy))

        def read(row: dict) -> MetricValue:
            values = row[alias]
            if values is None:
                return MetricValue(a, error=empty_state_message(a))
            return MetricValue(a, {str(q): float(v) for q, v in zip(a.quantiles, values)})
        return read
    raise AssertionError(kind)  # pragma: no cover


def _type_bit(c: str) -> Column:
    """Deequ's DataType classification of a string value, as one bit: 1 null, 2 fractional,
    4 integral, 8 boolean, 16 string. Values whose first character cannot start a number or a
    boolean skip the regular expressions (same result, far cheaper on free text)."""
    v = col(c)
    first = F.substring(v, 1, 1)
    may_be_typed = first.isin("-", "+", " ", "t", "f", *"0123456789")
    return (F.when(v.isNull(), 1)
            .when(~may_be_typed, 16)
            .when(v.rlike(FRACTIONAL_RE), 2)
            .when(v.rlike(INTEGRAL_RE), 4)
            .when(v.rlike(BOOLEAN_RE), 8)
            .otherwise(16))


@dataclass
class _ProfileReaders:
    columns: list[str] = field(default_factory=list)
    reads: dict[str, dict[str, str]] = field(default_factory=dict)
    fraction: float = 1.0
    sample_n: str | None = None     # alias of the sampled-row count (fraction < 1)


def _profile_aggregations(df: DataFrame, columns: list[str], aggs: _Aggregations,
                          fraction: float = 1.0) -> _ProfileReaders:
    """Deequ ColumnProfiler passes 1 and 2 (completeness, approximate distinct count, inferred
    type, numeric minimum) as aggregates of the shared pass.

    Completeness and the minimum of numeric columns always cover every row. With
    ``fraction`` < 1 the per-value work (type inference by regular expressions, distinct-count
    sketches) covers a seeded random sample of the rows, and the profile says so."""
    types = dict((f.name, f.dataType) for f in df.schema.fields)
    out = _ProfileReaders(columns=list(columns))
    sampled = (F.lit(True) if fraction >= 1
               else aggs.derive(f"sampled({fraction})", lambda: F.rand(23) < fraction))
    if fraction < 1:
        out.sample_n = aggs.add(f"count_sampled({fraction})",
                                lambda: F.count(F.when(sampled, 1)))
    for c in columns:
        dtype = types[c]
        every_row = fraction >= 1 or aggs.has(f"hll({c})")   # already counted on every row
        if every_row:
            hll = aggs.hll(c)
        else:
            hll = aggs.add(f"hll_sampled({c},{fraction})", lambda c=c: F.approx_count_distinct(
                F.when(sampled, col(c)), HLL_RELATIVE_SD))
        reads = {"nonnull": aggs.nonnull(c), "hll": hll, "hll_every_row": every_row}
        if isinstance(dtype, T.StringType):
            bit = aggs.derive(f"type({c},{fraction})", lambda c=c: F.when(sampled, _type_bit(c)))
            # Which kinds of value occur (all Deequ's type decision needs): one bit per kind
            reads["types"] = aggs.add(f"typemask({c},{fraction})", lambda bit=bit: F.bit_or(bit))
            # the minimum of the value as a number (used when all values turn out numeric)
            reads["num_min"] = aggs.add(
                f"nummin({c},{fraction})", lambda bit=bit, c=c: F.min(
                    F.when(bit.isin(2, 4), col(c).cast("double"))))
        elif isinstance(dtype, T.NumericType):
            reads["min"] = aggs.add(f"min({c})", lambda c=c: F.min(col(c)).cast("double"))
        out.reads[c] = reads
    out.fraction = fraction
    return out


def _length_aggregations(df: DataFrame, column: str, fraction: float,
                         aggs: _Aggregations) -> dict[str, Any]:
    """Words per review (the book's CARDINALITY(SPLIT(review_body, ' '))), on all rows or on a
    seeded random sample of them: spaces + 1, counted without splitting (splitting costs several
    times more). Counted into buckets; the quantiles are read off the buckets (the upper edge
    of the bucket where the cumulative share reaches q)."""
    v = col(column)
    words = F.octet_length(v) - F.octet_length(F.replace(v, F.lit(" "), F.lit(""))) + 1
    sampled = v.isNotNull() if fraction >= 1 else (v.isNotNull() & (F.rand(17) < fraction))
    w = aggs.derive(f"words({column},{fraction})", lambda: F.when(sampled, words))
    reads: dict[str, Any] = {"fraction": fraction}
    reads["n"] = aggs.add("len_n", lambda: F.count(w))
    reads["sum"] = aggs.add("len_sum", lambda: F.sum(w))
    reads["min"] = aggs.add("len_min", lambda: F.min(w))
    reads["max"] = aggs.add("len_max", lambda: F.max(w))
    bounds = [0, *LENGTH_EDGES]
    reads["buckets"] = []
    for lo, hi in zip(bounds, [*LENGTH_EDGES, None]):
        cond = (w >= lo) if hi is None else ((w >= lo) & (w < hi))
        reads["buckets"].append((lo, hi, aggs.add(f"len_b{lo}", lambda cond=cond: F.count(
            F.when(cond, 1)))))
    return reads


def _read_lengths(reads: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    n = int(row[reads["n"]] or 0)
    out: dict[str, Any] = {"sampled_rows": n, "sample_fraction": reads["fraction"]}
    buckets = [{"from": lo, "to": hi, "count": int(row[alias] or 0)}
               for lo, hi, alias in reads["buckets"]]
    out["buckets"] = buckets
    if n:
        mx = int(row[reads["max"]])
        out.update(mean=float(row[reads["sum"]]) / n, min=int(row[reads["min"]]), max=mx)
        quantiles, seen, i = {}, 0, 0
        for q in LENGTH_QUANTILES:
            while i < len(buckets) and seen + buckets[i]["count"] < q * n:
                seen += buckets[i]["count"]
                i += 1
            hi = buckets[min(i, len(buckets) - 1)]["to"]
            quantiles[str(q)] = min(mx, (hi - 1) if hi is not None else mx)
        out["quantiles_at_most"] = quantiles
    return out


def estimated_bytes(df: DataFrame) -> int | None:
    """Spark's size estimate of the input (the files' total size for a Parquet scan)."""
    try:
        return int(df._jdf.queryExecution().optimizedPlan().stats().sizeInBytes().longValue())
    except Exception:  # not a file scan, or an API difference: no estimate
        return None


# ---------------------------------------------------------------------------- grouping job


@dataclass
class _GroupingSet:
    columns: tuple[str, ...]
    gid: int = 0
    histogram: bool = False           # per-value counts wanted
    collect: bool = True              # small enough to collect inside the grouping job
    max_detail_bins: int = 1000


def _grouping_job(spark, df: DataFrame, sets: list[_GroupingSet]) -> dict[tuple[str, ...], dict]:
    """One GROUPING SETS query over the data; per set: total rows, rows with a non-null key,
    distinct keys, keys seen once, sum c*ln(c), bins, and the per-value counts of histograms."""
    if not sets:
        return {}
    all_cols: list[str] = []
    for s in sets:
        for c in s.columns:
            if c not in all_cols:
                all_cols.append(c)
    k = len(all_cols)
    for s in sets:  # grouping_id(): bit set (MSB first) for each column NOT in the set
        s.gid = sum(1 << (k - 1 - i) for i, c in enumerate(all_cols) if c not in s.columns)
    view = f"reviewlake_quality_{uuid.uuid4().hex[:12]}"
    df.createOrReplaceTempView(view)
    try:
        group_sets = ", ".join("(" + ", ".join(quote(c) for c in s.columns) + ")" for s in sets)
        cols_sql = ", ".join(quote(c) for c in all_cols)
        freq = spark.sql(
            f"SELECT {cols_sql}, grouping_id({cols_sql}) AS gid, count(1) AS cnt "
            f"FROM {view} GROUP BY GROUPING SETS ({group_sets})")
        gid = F.col("gid")
        valid = None
        key_str = None
        for s in sets:
            cond = None
            for c in s.columns:
                cond = col(c).isNotNull() if cond is None else (cond | col(c).isNotNull())
            valid = (F.when(gid == s.gid, cond) if valid is None
                     else valid.when(gid == s.gid, cond))
            if s.histogram:
                value = F.coalesce(col(s.columns[0]).cast("string"), F.lit(NULL_VALUE))
                key_str = (F.when(gid == s.gid, value) if key_str is None
                           else key_str.when(gid == s.gid, value))
        cnt = F.col("cnt")
        valid_col = F.coalesce(valid, F.lit(False))
        collect_gids = [s.gid for s in sets if s.histogram and s.collect]
        aggs = [
            F.sum(cnt).alias("total"),
            F.sum(F.when(valid_col, cnt).otherwise(0)).alias("rows"),
            F.sum(F.when(valid_col, 1).otherwise(0)).alias("groups"),
            F.sum(F.when(valid_col & (cnt == 1), 1).otherwise(0)).alias("unique"),
            F.sum(F.when(valid_col, cnt * F.log(cnt)).otherwise(0.0)).alias("clogc"),
            F.count(F.lit(1)).alias("bins"),
        ]
        if collect_gids:
            aggs.append(F.collect_list(F.when(gid.isin(collect_gids),
                                              F.struct(key_str.alias("k"), cnt.alias("c"))))
                        .alias("hist"))
        big = [s for s in sets if s.histogram and not s.collect]
        if big:
            freq = freq.persist()
        try:
            rows = {r["gid"]: r for r in freq.groupBy("gid").agg(*aggs).collect()}
            out: dict[tuple[str, ...], dict] = {}
            for s in sets:
                r = rows.get(s.gid)
                stats = {"total": 0, "rows": 0, "groups": 0, "unique": 0, "clogc": 0.0,
                         "bins": 0, "hist": []}
                if r is not None:
                    stats.update(total=int(r["total"]), rows=int(r["rows"]),
                                 groups=int(r["groups"]), unique=int(r["unique"]),
                                 clogc=float(r["clogc"]), bins=int(r["bins"]))
                    if s.histogram and s.collect:
                        stats["hist"] = [(x["k"], int(x["c"])) for x in (r["hist"] or [])]
                if s.histogram and not s.collect and r is not None:
                    top = (freq.where(gid == s.gid)
                           .select(key_str.alias("k"), cnt.alias("c"))
                           .orderBy(F.desc("c"), F.asc("k")).limit(s.max_detail_bins).collect())
                    stats["hist"] = [(x["k"], int(x["c"])) for x in top]
                out[s.columns] = stats
            return out
        finally:
            if big:
                freq.unpersist()
    finally:
        spark.catalog.dropTempView(view)


def _distribution(stats: dict, max_bins: int = 1000) -> Distribution:
    total = stats["total"]
    items = sorted(stats["hist"], key=lambda kv: (-kv[1], str(kv[0])))[:max_bins]
    return Distribution(tuple((k, c, c / total if total else 0.0) for k, c in items),
                        stats["bins"])


def _grouping_metric(a: Analyzer, stats: dict | None) -> MetricValue:
    if stats is None:
        return MetricValue(a, error="Missing Analysis")
    if a.kind == "Histogram":
        if not stats["total"]:
            return MetricValue(a, Distribution((), 0))
        return MetricValue(a, _distribution(stats, a.max_detail_bins))
    rows, groups, unique = stats["rows"], stats["groups"], stats["unique"]
    if a.kind == "CountDistinct":
        return MetricValue(a, float(groups))
    if not rows:
        return MetricValue(a, error=empty_state_message(a))
    if a.kind == "Uniqueness":
        return MetricValue(a, unique / rows)
    if a.kind == "Distinctness":
        return MetricValue(a, groups / rows)
    if a.kind == "UniqueValueRatio":
        return MetricValue(a, unique / groups)
    if a.kind == "Entropy":
        # -sum (c/N) ln(c/N) = ln N - sum(c ln c) / N
        return MetricValue(a, math.log(rows) - stats["clogc"] / rows)
    raise AssertionError(a.kind)  # pragma: no cover


def _mutual_information(spark, df: DataFrame, a: Analyzer) -> MetricValue:
    """Deequ's MutualInformation from the joint and marginal frequencies of two columns."""
    x, y = a.columns
    data = df.select(col(x).alias("x"), col(y).alias("y")).where(
        F.col("x").isNotNull() | F.col("y").isNotNull())
    joint = data.groupBy("x", "y").agg(F.count(F.lit(1)).alias("cxy"))
    total = joint.agg(F.sum("cxy")).first()[0]
    if not total:
        return MetricValue(a, error=empty_state_message(a))
    mx = joint.groupBy("x").agg(F.sum("cxy").alias("cx"))
    my = joint.groupBy("y").agg(F.sum("cxy").alias("cy"))
    n = float(total)
    pxy = F.col("cxy") / n
    term = pxy * F.log(pxy / ((F.col("cx") / n) * (F.col("cy") / n)))
    value = joint.join(mx, "x").join(my, "y").agg(F.sum(term)).first()[0]
    if value is None:
        return MetricValue(a, error=empty_state_message(a))
    return MetricValue(a, float(value))


# ---------------------------------------------------------------------------- the engine


class SparkEngine:
    name = "spark"

    def __init__(self, spark):
        self.spark = spark

    def run(self, df: DataFrame, suite: Suite) -> EngineResult:
        check_columns(df, suite)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        analyzers = suite.required_analyzers()
        numeric = {f.name for f in df.schema.fields if isinstance(f.dataType, T.NumericType)}
        scan = [a for a in analyzers if not a.grouping]
        grouping = [a for a in analyzers if a.grouping]

        # -- job 1: one aggregation pass
        aggs = _Aggregations()
        aggs.rows()
        readers = {a: _scan_reader(a, aggs, numeric) for a in scan}
        hist_columns = {a.column for a in grouping if a.kind == "Histogram"}
        report_hist = suite.report.histogram_column
        if report_hist:
            hist_columns.add(report_hist)
        hist_hll = {c: aggs.hll(c) for c in sorted(hist_columns)}
        sopts = suite.suggestions
        profile_cols = suggest.profiled_columns(df, sopts) if sopts.enabled else []
        size = estimated_bytes(df)

        def fraction(limit: int | None) -> float:
            return 1.0 if not size or not limit else min(1.0, limit / size)

        profile = _profile_aggregations(df, profile_cols, aggs,
                                        fraction(sopts.sample_bytes))
        lengths = None
        if suite.report.length_column:
            lengths = _length_aggregations(df, suite.report.length_column,
                                           fraction(suite.report.length_sample_bytes), aggs)
        row = aggs.run(self.spark, df)
        timings["scan_pass"] = round(time.perf_counter() - t0, 3)
        n_rows = int(row[aggs.rows()])
        values: dict[Analyzer, MetricValue] = {a: read(row) for a, read in readers.items()}
        profiles = suggest.read_profiles(df, profile, row, n_rows)

        # -- job 2: one grouping job for every column set
        t1 = time.perf_counter()
        sets: dict[tuple[str, ...], _GroupingSet] = {}
        for a in grouping:
            if a.kind == "MutualInformation":
                continue
            s = sets.setdefault(a.columns, _GroupingSet(a.columns))
            if a.kind == "Histogram":
                s.histogram = True
                s.max_detail_bins = max(s.max_detail_bins, a.max_detail_bins)
                s.collect = (row[hist_hll[a.column]] or 0) < COLLECT_HISTOGRAM_BELOW
        if report_hist:
            s = sets.setdefault((report_hist,), _GroupingSet((report_hist,)))
            if not s.histogram:
                s.histogram = True
                s.collect = (row[hist_hll[report_hist]] or 0) < COLLECT_HISTOGRAM_BELOW
        profile_hists = suggest.histogram_columns(df, profiles,
                                                  sopts.low_cardinality_histogram_threshold)
        for c in profile_hists:
            s = sets.setdefault((c,), _GroupingSet((c,)))
            s.histogram = True   # low cardinality by construction: collected in the job
        stats = _grouping_job(self.spark, df, list(sets.values()))
        for a in grouping:
            if a.kind == "MutualInformation":
                values[a] = _mutual_information(self.spark, df, a)
            else:
                values[a] = _grouping_metric(a, stats.get(a.columns))
        timings["grouping_job"] = round(time.perf_counter() - t1, 3)

        # -- checks
        outcomes = []
        for check in suite.checks:
            for c in check.constraints:
                outcomes.append(evaluate_constraint(check.name, check.level, c,
                                                    values.get(c.analyzer)))
        # -- suggestions (Deequ's rules on the profiles)
        for c in profile_hists:
            profiles[c].histogram = _distribution(stats[(c,)])
        suggestions = suggest.suggest(profiles, n_rows, sopts) if sopts.enabled else []

        metrics = [r for a in analyzers for r in values[a].flatten()]
        report_profile: dict[str, Any] = {"rows": n_rows}
        if report_hist and (report_hist,) in stats:
            report_profile["histogram"] = {"column": report_hist, **_hist_json(
                _distribution(stats[(report_hist,)]))}
        if lengths is not None:
            report_profile["lengths"] = {"column": suite.report.length_column,
                                         **_read_lengths(lengths, row)}
        report_profile["columns"] = {c: p.to_json() for c, p in profiles.items()}
        timings["total"] = round(time.perf_counter() - t0, 3)
        log.info("spark engine: %d analyzers (%d scan-based, %d grouping in %d column sets), "
                 "%d profiled columns: scan %.2fs, grouping %.2fs", len(analyzers), len(scan),
                 len(grouping), len(sets), len(profile_cols), timings["scan_pass"],
                 timings["grouping_job"])
        return EngineResult("spark", metrics, outcomes, suggestions, values, report_profile,
                            timings)


def _hist_json(d: Distribution) -> dict[str, Any]:
    return {"bins": d.number_of_bins,
            "values": [{"value": v, "count": c, "ratio": r} for v, c, r in d.values]}


def report_data(spark, df: DataFrame, suite: Suite) -> dict[str, Any]:
    """What the report draws, for engines that do not compute it on the way (deequ): the
    histogram of the report column and the review-length distribution, in one aggregation and
    one group-by."""
    out: dict[str, Any] = {}
    aggs = _Aggregations()
    n = aggs.rows()
    lengths = None
    if suite.report.length_column:
        size = estimated_bytes(df)
        fraction = 1.0 if not size else min(1.0, suite.report.length_sample_bytes / size)
        lengths = _length_aggregations(df, suite.report.length_column, fraction, aggs)
    c = suite.report.histogram_column
    hll = aggs.hll(c) if c else None
    row = aggs.run(spark, df)
    out["rows"] = int(row[n])
    if lengths is not None:
        out["lengths"] = {"column": suite.report.length_column, **_read_lengths(lengths, row)}
    if c:
        s = _GroupingSet((c,), histogram=True,
                         collect=(row[hll] or 0) < COLLECT_HISTOGRAM_BELOW)
        stats = _grouping_job(spark, df, [s])[(c,)]
        out["histogram"] = {"column": c, **_hist_json(_distribution(stats))}
    return out
