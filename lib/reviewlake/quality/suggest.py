"""Constraint suggestions from column profiles, by Deequ's rules (spark engine).

The profiles are Deequ's ColumnProfiler's: for every column its completeness, approximate
number of distinct values and data type (declared, or inferred for string columns from how
many values look fractional, integral, boolean or neither), the minimum of numeric columns,
and the exact histogram of columns with at most 120 (approximate) distinct values. The spark
engine computes them inside its two jobs; this module turns them into suggestions.

Rules (Deequ's ``Rules.DEFAULT`` plus UniqueIfApproximatelyUnique):

* CompleteIfComplete: completeness 1 -> ``isComplete``
* RetainCompleteness: 0.2 < completeness < 1 -> ``hasCompleteness(c, >= lower bound)``, the
  lower bound of a 95% binomial confidence interval (Wald, or Wilson), rounded down to 0.01
* RetainType: a string column whose values are all integral / fractional / boolean ->
  ``hasDataType``
* CategoricalRange: a histogram (string or integral column) in which at most 10% of the
  values occur once -> ``isContainedIn(c, values)``
* FractionalCategoricalRange: a string histogram with at most 40% single values whose most
  frequent values cover 90% (but not all) of the rows -> ``isContainedIn(c, top values,
  >= lower bound)``
* NonNegativeNumbers: a numeric (or numeric-looking) column with minimum >= 0 ->
  ``isNonNegative``
* UniqueIfApproximatelyUnique: complete, and approximate distinct count within 8% of the row
  count -> ``isUnique``

The suggested code is PyDeequ code, as PyDeequ's ConstraintSuggestionRunner prints it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from statistics import NormalDist
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from .results import NULL_VALUE, Distribution, Suggestion, java_double
from .suite import SuggestionOptions

HISTOGRAM_SPARK_TYPES = (T.StringType, T.BooleanType, T.DoubleType, T.FloatType, T.IntegerType,
                         T.LongType, T.ShortType)


@dataclass
class ColumnProfile:
    column: str
    spark_type: str
    completeness: float
    approx_distinct: int
    data_type: str                 # Integral | Fractional | Boolean | String | Unknown
    inferred: bool                 # the type was inferred from string values
    type_counts: dict[str, int]    # kinds of value seen (1) or not (0), for string columns
    minimum: float | None = None   # numeric profiles
    histogram: Distribution | None = None
    distinct_share: float = 0.0    # approximate distinct values / rows (of the sample)
    sample_fraction: float = 1.0   # share of rows the type and distinct count were taken from

    @property
    def numeric(self) -> bool:
        return self.data_type in ("Integral", "Fractional")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.data_type, "inferred": self.inferred, "spark_type": self.spark_type,
            "completeness": self.completeness, "approx_distinct": self.approx_distinct}
        if self.type_counts:
            out["kinds_seen"] = sorted(k for k, v in self.type_counts.items() if v)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.histogram is not None:
            out["histogram_bins"] = self.histogram.number_of_bins
        if self.sample_fraction < 1:
            out["sample_fraction"] = self.sample_fraction
        return out


def profiled_columns(df: DataFrame, opts: SuggestionOptions) -> list[str]:
    wanted = list(opts.columns) if opts.columns is not None else list(df.columns)
    missing = [c for c in wanted if c not in df.columns]
    if missing:
        from ..errors import UserError
        raise UserError(f"suggestions.columns names columns not in the data: {', '.join(missing)}")
    return [c for c in wanted if c not in set(opts.exclude_columns)]


def known_type(dtype: T.DataType) -> str:
    """Deequ's mapping of Spark types to its DataTypeInstances."""
    if isinstance(dtype, (T.ShortType, T.IntegerType, T.LongType, T.ByteType)):
        return "Integral"
    if isinstance(dtype, (T.DecimalType, T.FloatType, T.DoubleType)):
        return "Fractional"
    if isinstance(dtype, T.BooleanType):
        return "Boolean"
    if isinstance(dtype, T.TimestampType):
        return "String"
    return "Unknown"


def determine_type(counts: dict[str, int]) -> str:
    """Deequ's DataTypeHistogram.determineType (it only asks which kinds occur at all)."""
    total = sum(counts.values())
    if total == 0 or counts.get("Unknown", 0) == total:
        return "Unknown"
    if counts.get("String", 0) > 0 or (counts.get("Boolean", 0) > 0 and (
            counts.get("Integral", 0) > 0 or counts.get("Fractional", 0) > 0)):
        return "String"
    if counts.get("Boolean", 0) > 0:
        return "Boolean"
    if counts.get("Fractional", 0) > 0:
        return "Fractional"
    return "Integral"


def read_profiles(df: DataFrame, readers, row: dict, n_rows: int) -> dict[str, ColumnProfile]:
    types = {f.name: f.dataType for f in df.schema.fields}
    sample_n = n_rows if readers.sample_n is None else int(row[readers.sample_n] or 0)
    out: dict[str, ColumnProfile] = {}
    for c in readers.columns:
        r = readers.reads[c]
        nonnull = int(row[r["nonnull"]] or 0)
        completeness = nonnull / n_rows if n_rows else 0.0
        dtype = types[c]
        distinct = int(row[r["hll"]] or 0)
        if readers.fraction < 1 and sample_n and not r.get("hll_every_row"):
            # distinct values of a sample: as a share of the sample, scaled to the rows
            distinct_share = distinct / sample_n
        else:
            distinct_share = distinct / n_rows if n_rows else 0.0
        if isinstance(dtype, T.StringType):
            mask = int(row[r["types"]] or 0)
            counts = {kind: int(bool(mask & (1 << code))) for code, kind in enumerate(
                ("Unknown", "Fractional", "Integral", "Boolean", "String"))}
            data_type = determine_type(counts)
            minimum = row[r["num_min"]] if data_type in ("Integral", "Fractional") else None
            profile = ColumnProfile(c, dtype.simpleString(), completeness, distinct, data_type,
                                    True, counts, None if minimum is None else float(minimum))
        else:
            minimum = row[r["min"]] if "min" in r else None
            profile = ColumnProfile(c, dtype.simpleString(), completeness, distinct,
                                    known_type(dtype), False, {},
                                    None if minimum is None else float(minimum))
        profile.distinct_share = distinct_share
        profile.sample_fraction = readers.fraction
        out[c] = profile
    return out


def histogram_columns(df: DataFrame, profiles: dict[str, ColumnProfile],
                      threshold: int) -> list[str]:
    """Deequ's findTargetColumnsForHistograms: low-cardinality string, boolean and numeric
    columns."""
    types = {f.name: f.dataType for f in df.schema.fields}
    return [c for c, p in profiles.items()
            if isinstance(types[c], HISTOGRAM_SPARK_TYPES)
            and p.data_type in ("String", "Boolean", "Integral", "Fractional")
            and p.approx_distinct <= threshold]


# ---------------------------------------------------------------------------- rules

Z_95 = NormalDist().inv_cdf(0.975)


def _round_down(x: float) -> float:
    return float(Decimal(repr(x)).quantize(Decimal("0.01"), rounding=ROUND_DOWN))


def lower_bound(p: float, n: int, interval: str) -> float:
    """Lower end of a 95% confidence interval of a proportion, rounded down to 0.01."""
    if interval == "wilson":
        z2n = Z_95 ** 2 / n
        factor = 1.0 / (1 + z2n)
        centre = p + z2n / 2
        margin = Z_95 * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
        return _round_down(factor * (centre - margin))
    return _round_down(p - 1.96 * math.sqrt(p * (1 - p) / n))


def _sql_values(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def escape_java(s: str) -> str:
    """commons-lang3 StringEscapeUtils.escapeJava, which Deequ applies to suggested values."""
    out = []
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _JAVA_CONTROL:
            out.append(_JAVA_CONTROL[ch])
        elif o < 32 or o > 0x7f:
            units = [o] if o <= 0xFFFF else [0xD800 + ((o - 0x10000) >> 10),
                                               0xDC00 + ((o - 0x10000) & 0x3FF)]
            out.extend(f"\\u{u:04X}" for u in units)
        else:
            out.append(ch)
    return "".join(out)


_JAVA_CONTROL = {"\b": "\\b", "\n": "\\n", "\t": "\\t", "\f": "\\f", "\r": "\\r"}


def _code_values(values: list[str]) -> str:
    return ", ".join('"' + escape_java(v) + '"' for v in values)


def _java_string_hash(s: str) -> int:
    h = 0
    data = s.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] | data[i + 1] << 8)) & 0xFFFFFFFF
    return h


def _scala_hash_order(key: str) -> tuple[int, ...]:
    """Where Scala 2.12's immutable HashMap puts a key: the improved String hash, read five
    bits at a time from the lowest (the trie's levels)."""
    h = _java_string_hash(key)
    h = (h + (~(h << 9) & 0xFFFFFFFF)) & 0xFFFFFFFF
    h ^= h >> 14
    h = (h + (h << 4)) & 0xFFFFFFFF
    h ^= h >> 10
    return tuple((h >> shift) & 31 for shift in range(0, 35, 5))


def scala_map_order(items: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    """The iteration order of a Scala immutable Map built from ``items`` (in that order):
    insertion order up to 4 entries (Map1..Map4), hash-trie order above. Deequ's suggestion
    rules sort a histogram Map stably by count, so ties come out in this order (reversed)."""
    if len(items) <= 4:
        return list(items)
    return sorted(items, key=lambda v: _scala_hash_order(v[0]))


def _by_popularity(items: list[tuple[str, int, float]]) -> list[tuple[str, int, float]]:
    """Deequ's categorySorter: a stable sort by absolute count, reversed."""
    return list(reversed(sorted(items, key=lambda v: v[1])))


def _unique_value_ratio(h: Distribution) -> float:
    if not h.values:
        return 1.0
    return sum(1 for _, a, _ in h.values if a == 1) / len(h.values)


def _top_for_coverage(h: Distribution, coverage: float) -> list[tuple[str, int, float]]:
    """Deequ's getTopCategoriesForFractionalDataCoverage: values by ratio (stable sort of the
    Map's order, reversed) until they cover ``coverage``; kept in a Map again."""
    out, covered = [], 0.0
    for item in reversed(sorted(scala_map_order(_insertion_order(h)), key=lambda v: v[2])):
        if covered < coverage:
            covered += item[2]
            out.append(item)
    return scala_map_order(out)


def _insertion_order(h: Distribution) -> list[tuple[str, int, float]]:
    """The order the histogram's rows reach Deequ's Map: by count, most frequent first (ties
    by value here; Spark's order for ties is not defined, and matters only up to 4 values)."""
    return sorted(h.values, key=lambda v: (-v[1], v[0]))


def suggest(profiles: dict[str, ColumnProfile], n_rows: int,
            opts: SuggestionOptions) -> list[Suggestion]:
    out: list[Suggestion] = []
    if not n_rows:
        return out
    for c, p in profiles.items():
        for rule in opts.rules:
            s = _apply(rule, p, n_rows, opts)
            if s is not None:
                out.append(s)
    return out


def _apply(rule: str, p: ColumnProfile, n: int, opts: SuggestionOptions) -> Suggestion | None:
    c = p.column
    if rule == "CompleteIfComplete" and p.completeness == 1.0:
        return Suggestion(c, f"'{c}' is not null", "CompleteIfCompleteRule",
                          f'.isComplete("{c}")', f"Completeness: {java_double(p.completeness)}")
    if rule == "RetainCompleteness" and 0.2 < p.completeness < 1.0:
        target = lower_bound(p.completeness, n, opts.interval)
        percent = int((1.0 - target) * 100)
        t = java_double(target)
        return Suggestion(c, f"'{c}' has less than {percent}% missing values",
                          "RetainCompletenessRule",
                          f'.hasCompleteness("{c}", lambda x: x >= {t}, "It should be above {t}!")',
                          f"Completeness: {java_double(p.completeness)}")
    if rule == "RetainType" and p.inferred and p.data_type in ("Integral", "Fractional",
                                                                "Boolean"):
        return Suggestion(c, f"'{c}' has type {p.data_type}", "RetainTypeRule",
                          f'.hasDataType("{c}", ConstrainableDataTypes.{p.data_type})',
                          f"DataType: {p.data_type}")
    h = p.histogram
    if rule == "CategoricalRange" and h is not None and p.data_type in ("String", "Integral") \
            and _unique_value_ratio(h) <= 0.1:
        values = [v for v, _, _ in _by_popularity(
            [x for x in scala_map_order(_insertion_order(h)) if x[0] != NULL_VALUE])]
        return Suggestion(c, f"'{c}' has value range {_sql_values(values)}",
                          "CategoricalRangeRule",
                          f'.isContainedIn("{c}", [{_code_values(values)}])', "Compliance: 1")
    if rule == "FractionalCategoricalRange" and h is not None \
            and p.data_type in ("String", "Integral"):
        top = _top_for_coverage(h, opts.fractional_coverage)
        covered = sum(r for _, _, r in top)
        if _unique_value_ratio(h) <= 0.4 and covered < 1:
            values = [v for v, _, _ in _by_popularity([x for x in top if x[0] != NULL_VALUE])]
            target = lower_bound(covered, n, opts.interval)
            t = java_double(target)
            return Suggestion(
                c, f"'{c}' has value range {_sql_values(values)} for at least "
                   f"{java_double(target * 100)}% of values",
                "FractionalCategoricalRangeRule",
                f'.isContainedIn("{c}", [{_code_values(values)}], lambda x: x >= {t}, '
                f'"It should be above {t}!")', f"Compliance: {java_double(covered)}")
    if rule == "NonNegativeNumbers" and p.numeric and p.minimum is not None and p.minimum >= 0:
        return Suggestion(c, f"'{c}' has no negative values", "NonNegativeNumbersRule",
                          f'.isNonNegative("{c}")', f"Minimum: {java_double(p.minimum)}")
    if rule == "UniqueIfApproximatelyUnique" and p.completeness == 1.0 \
            and abs(1.0 - p.distinct_share) <= 0.08:
        return Suggestion(c, f"'{c}' is unique", "UniqueIfApproximatelyUniqueRule",
                          f'.isUnique("{c}")',
                          f"ApproxDistinctness: {java_double(p.distinct_share)}")
    return None
