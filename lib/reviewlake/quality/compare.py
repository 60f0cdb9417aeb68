"""Two engines' results on the same data, compared table by table.

Used by the tests (Deequ's jar against the spark engine) and by the quality benchmark (the
same metrics on both sides of the timing). Exact metrics must agree to floating-point
summation order; ApproxCountDistinct within its HyperLogLog error; ApproxQuantiles within the
sketch's rank error (checked against the data); constraint names, statuses and messages, and
the suggestions (column, rule, code) exactly.
"""
from __future__ import annotations

import math

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .results import EngineResult

HLL_TOLERANCE = 0.05    # relative; HLL++ at Deequ's precision has ~1.6% standard error
QUANTILE_RANK_ERROR = 0.01


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1.0)


def _rank_ok(df: DataFrame, column: str, q: float, value: float, eps: float) -> bool:
    """The value's rank among the column's non-null values is within eps of q."""
    c = F.col("`" + column.replace("`", "``") + "`")
    row = df.where(c.isNotNull()).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(c < value, 1).otherwise(0)).alias("below"),
        F.sum(F.when(c <= value, 1).otherwise(0)).alias("upto")).first()
    n = row["n"] or 0
    return bool(n) and row["below"] / n - eps <= q <= row["upto"] / n + eps


def differences(df: DataFrame, a: EngineResult, b: EngineResult,
                suggestions: bool = True) -> list[str]:
    """Every way two results differ, one readable line each (empty: they agree)."""
    out: list[str] = []
    key = lambda m: (m["entity"], m["instance"], m["name"])  # noqa: E731
    ma = {key(m): float(m["value"]) for m in a.metrics}
    mb = {key(m): float(m["value"]) for m in b.metrics}
    for k in sorted(set(ma) ^ set(mb)):
        out.append(f"metric {k} only in {a.engine if k in ma else b.engine}")
    for k in sorted(set(ma) & set(mb)):
        x, y, name = ma[k], mb[k], k[2]
        if math.isnan(x) or math.isnan(y):
            if not (math.isnan(x) and math.isnan(y)):
                out.append(f"metric {k}: {a.engine} {x!r}, {b.engine} {y!r}")
        elif name.startswith("ApproxQuantiles"):
            q = float(name.split("-", 1)[1])
            if not (_rank_ok(df, k[1], q, x, QUANTILE_RANK_ERROR)
                    and _rank_ok(df, k[1], q, y, QUANTILE_RANK_ERROR)):
                out.append(f"metric {k}: {a.engine} {x!r}, {b.engine} {y!r} "
                           f"(beyond the sketch's rank error)")
        elif name == "ApproxCountDistinct":
            if abs(x - y) > HLL_TOLERANCE * max(abs(y), 1.0):
                out.append(f"metric {k}: {a.engine} {x!r}, {b.engine} {y!r}")
        elif not _close(x, y):
            out.append(f"metric {k}: {a.engine} {x!r}, {b.engine} {y!r}")
    rows_a = [(o.check, o.constraint, o.status, o.message) for o in a.outcomes]
    rows_b = [(o.check, o.constraint, o.status, o.message) for o in b.outcomes]
    for x, y in zip(rows_a, rows_b):
        if x != y:
            out.append(f"constraint: {a.engine} {x}, {b.engine} {y}")
    if len(rows_a) != len(rows_b):
        out.append(f"constraints: {a.engine} {len(rows_a)}, {b.engine} {len(rows_b)}")
    if suggestions:
        sa = {(s.column, s.rule, s.code) for s in a.suggestions}
        sb = {(s.column, s.rule, s.code) for s in b.suggestions}
        out += [f"suggestion only in {a.engine}: {s}" for s in sorted(sa - sb)]
        out += [f"suggestion only in {b.engine}: {s}" for s in sorted(sb - sa)]
    return out
