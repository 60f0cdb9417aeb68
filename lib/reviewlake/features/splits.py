"""Clean, balance and split the reviews: DataFrame -> DataFrame, exact and reproducible.

Cleaning keeps what can be a labelled example: a review id, a ``star_rating`` of 1..5 and a
non-blank ``review_body`` (:func:`drop_reason` names why a row goes). A review id must name
one review: copies of the same review are collapsed to one row; ids shared by different
reviews (another rating or text) are ambiguous and every copy is dropped
(:func:`dedupe`). So no review id can reach two splits.

Balancing and splitting are one ranking. Every review gets a key, ``xxhash64(review_id,
seed)`` (ties, which need a 64-bit collision, are broken by the id), and is ranked by it
within its ``star_rating`` class. With ``m`` reviews kept per class (the smallest class's
size when balancing, else the class's size) and fractions ``f``:

* ranks ``[0, round(f_train * m))`` -> train,
* ranks up to ``round((f_train + f_validation) * m)`` -> validation,
* ranks up to ``m`` -> test, the rest are undersampled away.

So per class every split is within one row of its fraction, the classes are exactly
balanced, and a review's split depends only on its id, the seed and the class counts: not
on partitioning, file layout or run. The ranks are never materialised (no global sort, no
window over a class): :func:`find_cuts` finds the key at each cut rank exactly from small
histograms of the keys' leading bits (refined until a bucket holds a few thousand keys,
which are then collected), and :func:`assign_splits` compares each row's key to them.
"""
from __future__ import annotations

import math
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ..errors import UserError
from ..schema import ID_COLUMN, LABEL_COLUMN, PARTITION_COLUMN, STAR_RATINGS, TEXT_COLUMN

SPLITS = ("train", "validation", "test")
DROP_REASONS = ("missing_review_id", "invalid_star_rating", "blank_review_body")
KEY = "_key"
SPLIT = "split"
COLUMNS = (ID_COLUMN, LABEL_COLUMN, TEXT_COLUMN, PARTITION_COLUMN)
_MIN_LONG = -(1 << 63)
STEP_BITS = 10          # buckets per refinement round: 1024
COLLECT_LIMIT = 20000   # keys collected to the driver per cut, at most
MAX_BITS = 60           # (prefixes stay positive longs; 2**60 buckets is beyond any data)


# --------------------------------------------------------------------------- cleaning


def _blank(col: str) -> Column:
    return F.col(col).isNull() | F.col(col).rlike(r"(?U)^\s*$")


def drop_reason() -> Column:
    """Why a row cannot be an example (null when it can), first reason wins."""
    rating = F.col(LABEL_COLUMN)
    return (F.when(_blank(ID_COLUMN), F.lit("missing_review_id"))
            .when(rating.isNull() | ~rating.isin(*STAR_RATINGS), F.lit("invalid_star_rating"))
            .when(_blank(TEXT_COLUMN), F.lit("blank_review_body")))


def drop_counters() -> list[Column]:
    """Aggregates (for Observation) of the rows :func:`drop_reason` removes, by reason, and
    of the invalid ratings by kind (null, below 1, above 5)."""
    reason = F.col("_drop")
    rating = F.col(LABEL_COLUMN)
    invalid = reason == "invalid_star_rating"
    out = [F.count(F.lit(1)).alias("rows_read")]
    out += [F.sum(F.when(reason == r, 1).otherwise(0)).alias(r) for r in DROP_REASONS]
    out += [
        F.sum(F.when(invalid & rating.isNull(), 1).otherwise(0)).alias("rating_null"),
        F.sum(F.when(invalid & (rating < 1), 1).otherwise(0)).alias("rating_below_1"),
        F.sum(F.when(invalid & (rating > 5), 1).otherwise(0)).alias("rating_above_5"),
    ]
    return out


def valid_rows(df: DataFrame) -> DataFrame:
    """Rows that can be examples (the four columns prepare uses)."""
    return df.where(drop_reason().isNull()).select(*COLUMNS)


def dedupe(df: DataFrame) -> DataFrame:
    """One row per review_id, with ``_copies`` (rows that had the id) and ``_conflict`` (the
    copies differ in rating or text). Keep the rows where ``_conflict`` is false."""
    content = F.xxhash64(LABEL_COLUMN, TEXT_COLUMN)
    grouped = df.groupBy(ID_COLUMN).agg(
        F.count(F.lit(1)).alias("_copies"),
        F.max(content).alias("_hi"),
        # the smallest (content hash, category) copy: deterministic whatever the order
        F.min(F.struct(content.alias("h"), F.col(PARTITION_COLUMN), F.col(LABEL_COLUMN),
                       F.col(TEXT_COLUMN))).alias("_first"),
    )
    return grouped.select(
        ID_COLUMN, F.col(f"_first.{LABEL_COLUMN}").alias(LABEL_COLUMN),
        F.col(f"_first.{TEXT_COLUMN}").alias(TEXT_COLUMN),
        F.col(f"_first.{PARTITION_COLUMN}").alias(PARTITION_COLUMN),
        "_copies", (F.col("_first.h") != F.col("_hi")).alias("_conflict"))


def dedupe_counters() -> list[Column]:
    conflict = F.col("_conflict")
    return [
        F.sum(F.when(~conflict, F.col("_copies") - 1).otherwise(0)).alias("duplicate_review_id"),
        F.sum(F.when(conflict, F.col("_copies")).otherwise(0)).alias("conflicting_review_id"),
    ]


# --------------------------------------------------------------------------- ranking


def with_key(df: DataFrame, seed: int) -> DataFrame:
    """The ranking key of every review: xxhash64(review_id, seed)."""
    return df.withColumn(KEY, F.xxhash64(F.col(ID_COLUMN), F.lit(int(seed)).cast("long")))


def parse_fractions(text: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.90,0.05,0.05"`` (or a list) -> three fractions >= 0 that sum to 1."""
    try:
        parts = [float(x) for x in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise UserError(f"--split expects three fractions like 0.90,0.05,0.05, got {text!r}") from None
    if len(parts) != 3 or any(p < 0 or math.isnan(p) for p in parts):
        raise UserError(f"--split expects three fractions >= 0 like 0.90,0.05,0.05, got {text!r}")
    if abs(sum(parts) - 1.0) > 1e-6:
        raise UserError(f"--split fractions must sum to 1, got {text!r} (sum {sum(parts):g})")
    if parts[0] == 0:
        raise UserError("--split needs a training fraction above 0")
    return parts[0], parts[1], parts[2]


def _round(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def split_ends(class_counts: dict[int, int], fractions: Sequence[float],
               balance: bool) -> dict[int, tuple[int, int, int]]:
    """Per star rating, the cumulative end ranks of train, validation and test."""
    missing = [r for r in STAR_RATINGS if class_counts.get(r, 0) == 0]
    if balance and missing:
        raise UserError(f"no reviews with star_rating {', '.join(map(str, missing))} in the "
                        f"selection: balancing would keep nothing (use --no-balance or "
                        f"select more categories)")
    if sum(class_counts.values()) == 0:
        raise UserError("no reviews left to prepare after cleaning (check --categories and "
                        "the lake)")
    keep = min(class_counts[r] for r in STAR_RATINGS) if balance else None
    ends = {}
    for r in STAR_RATINGS:
        m = keep if balance else class_counts.get(r, 0)
        k1 = _round(fractions[0] * m)
        k2 = max(k1, min(m, _round((fractions[0] + fractions[1]) * m)))
        ends[r] = (k1, k2, m)
    return ends


def _prefix(bits: int) -> Column:
    """The leading ``bits`` bits of the key in unsigned order (same order as the signed key)."""
    if bits == 0:
        return F.lit(0).cast("long")
    return F.shiftrightunsigned(F.col(KEY).bitwiseXOR(F.lit(_MIN_LONG)), 64 - bits)


def _py_prefix(key: int, bits: int) -> int:
    return 0 if bits == 0 else ((key - _MIN_LONG) & ((1 << 64) - 1)) >> (64 - bits)


def find_cuts(df: DataFrame, ends: dict[int, tuple[int, ...]],
              class_counts: dict[int, int]) -> dict[int, list[tuple[int, str] | None]]:
    """For every class and end rank k, the (key, review_id) of the k-th review in key order
    (None for k = 0). ``df`` has ``star_rating``, ``review_id`` and the key (:func:`with_key`).

    Only small aggregates reach the driver: per round one count per (class, bucket) of the
    buckets still in play, and at the end the keys of one bucket per cut.
    """
    # a target: [class, end rank k, rank within its bucket, prefix bits, prefix, bucket size]
    targets = []
    for rating, ks in ends.items():
        for k in sorted(set(ks)):
            if k > 0:
                targets.append([rating, k, k, 0, 0, class_counts.get(rating, 0)])
    while True:
        active = [t for t in targets if t[5] > COLLECT_LIMIT and t[3] < MAX_BITS]
        if not active:
            break
        bits = active[0][3]  # every active target has refined the same number of rounds
        step = min(STEP_BITS, MAX_BITS - bits)
        rows = (df.where(_in_buckets({(t[0], bits, t[4]) for t in active}))
                .groupBy(LABEL_COLUMN, _prefix(bits + step).alias("b")).count().collect())
        buckets: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for r in rows:
            b = int(r["b"])
            buckets.setdefault((int(r[LABEL_COLUMN]), b >> step), []).append((b, int(r["count"])))
        for t in active:
            before = 0
            for b, n in sorted(buckets.get((t[0], t[4]), [])):
                if before + n >= t[2]:
                    t[2] -= before
                    t[3], t[4], t[5] = bits + step, b, n
                    break
                before += n
            else:  # pragma: no cover - only if the input changed between two queries
                raise RuntimeError("the reviews changed while the split cuts were computed")
    keys: dict[int, list[tuple[int, str]]] = {}
    if targets:
        rows = (df.where(_in_buckets({(t[0], t[3], t[4]) for t in targets}))
                .select(LABEL_COLUMN, KEY, ID_COLUMN).collect())
        for r in rows:
            keys.setdefault(int(r[LABEL_COLUMN]), []).append((int(r[KEY]), r[ID_COLUMN]))
    found: dict[tuple[int, int], tuple[int, str]] = {}
    for rating, k, rank, bits, prefix, _ in targets:
        members = sorted(x for x in keys.get(rating, []) if _py_prefix(x[0], bits) == prefix)
        found[(rating, k)] = members[rank - 1]
    return {rating: [found[(rating, k)] if k > 0 else None for k in ks]
            for rating, ks in ends.items()}


def _in_buckets(groups: set[tuple[int, int, int]]) -> Column:
    """Rows of the given (class, prefix bits, prefix value) buckets."""
    cond = None
    for rating, bits, prefix in sorted(groups):
        c = (F.col(LABEL_COLUMN) == rating) & (_prefix(bits) == F.lit(prefix))
        cond = c if cond is None else cond | c
    return cond


def _at_or_below(cut: tuple[int, str]) -> Column:
    key, rid = cut
    return (F.col(KEY) < F.lit(key)) | ((F.col(KEY) == F.lit(key)) & (F.col(ID_COLUMN) <= F.lit(rid)))


def split_column(cuts: dict[int, list[tuple[int, str] | None]]) -> Column:
    """'train' / 'validation' / 'test' / null (undersampled) from the cuts of every class."""
    expr = None
    for rating, class_cuts in sorted(cuts.items()):
        for name, cut in zip(SPLITS, class_cuts):
            if cut is None:
                continue
            cond = (F.col(LABEL_COLUMN) == rating) & _at_or_below(cut)
            expr = F.when(cond, F.lit(name)) if expr is None else expr.when(cond, F.lit(name))
    return F.lit(None).cast("string") if expr is None else expr


def assign_splits(df: DataFrame, cuts: dict[int, list[tuple[int, str] | None]]) -> DataFrame:
    """Rows of ``df`` (with the key) that are kept, with their ``split``."""
    return df.withColumn(SPLIT, split_column(cuts)).where(F.col(SPLIT).isNotNull())


def balance_and_split(df: DataFrame, fractions: Sequence[float], balance: bool,
                      seed: int) -> tuple[DataFrame, dict]:
    """Clean rows (one per review id) -> kept rows with ``split``; plus what was decided:
    class counts, end ranks and cuts."""
    keyed = with_key(df, seed)
    counts = {int(r[LABEL_COLUMN]): int(r["count"])
              for r in keyed.groupBy(LABEL_COLUMN).count().collect()}
    ends = split_ends(counts, fractions, balance)
    cuts = find_cuts(keyed, ends, counts)
    return assign_splits(keyed, cuts), {"class_counts": counts, "ends": ends, "cuts": cuts}
