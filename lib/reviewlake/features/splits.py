"""Clean, balance and split the reviews: DataFrame -> DataFrame, exact and reproducible.

Cleaning keeps what can be a labelled example: a review id, a ``star_rating`` of 1..5 and a
non-blank ``review_body`` (:func:`drop_reason` names why a row goes). A review id must name
one review: copies of the same review are collapsed to one row; ids shared by different
reviews (another rating or text) are ambiguous and every copy is dropped
(:func:`dedupe`). So no review id can reach two splits.

A review's split is a function of its id and the seed alone: its key ``xxhash64(review_id,
seed)``, read as a fraction of the 64-bit range, falls below ``f_train`` (train), below
``f_train + f_validation`` (validation) or above (test). So a review never changes split when
the lake grows (an ``append-new`` ingest, another category), whatever the class counts,
partitioning, cluster or run: no test review of an earlier run can move into train. The split
sizes follow the fractions as a binomial draw does (within a few sqrt(n) rows).

Balancing undersamples each class to the size of the smallest class *within each split*,
exactly: inside a (split, class) group the reviews with the smallest keys are kept (ties,
which need a 64-bit collision, are broken by the id). The kept ranks are never materialised
(no global sort, no window over a group): :func:`find_cuts` finds the key at each cut rank
exactly from small histograms of the keys' leading bits (refined until a bucket holds a few
thousand keys, which are then collected), and :func:`assign_splits` compares each row's key
to them.
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
GROUP = "_group"   # (split, class) as one int: split index * 8 + star_rating
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


def key_thresholds(fractions: Sequence[float]) -> tuple[int | None, int | None]:
    """The signed 64-bit keys where train ends and where validation ends (None: the split
    runs to the end of the key range)."""
    out = []
    for cum in (fractions[0], fractions[0] + fractions[1]):
        t = math.floor(min(cum, 1.0) * 2.0 ** 64) + _MIN_LONG
        out.append(None if cum >= 1.0 - 1e-12 or t > (1 << 63) - 1 else int(t))
    return out[0], out[1]


def split_of_key(fractions: Sequence[float]) -> Column:
    """'train' / 'validation' / 'test' from the key alone (:func:`key_thresholds`)."""
    t1, t2 = key_thresholds(fractions)
    key = F.col(KEY)
    if t1 is None:
        return F.lit("train")
    train = F.when(key < F.lit(t1), F.lit("train"))
    if t2 is None:
        return train.otherwise(F.lit("validation"))
    return train.when(key < F.lit(t2), F.lit("validation")).otherwise(F.lit("test"))


def py_split_of_key(key: int, fractions: Sequence[float]) -> str:
    """:func:`split_of_key` for one key (tests, tools)."""
    t1, t2 = key_thresholds(fractions)
    if t1 is None or key < t1:
        return "train"
    return "validation" if t2 is None or key < t2 else "test"


def group_id(split: str, rating: int) -> int:
    return SPLITS.index(split) * 8 + int(rating)


def keep_counts(counts: dict[str, dict[int, int]], fractions: Sequence[float],
                balance: bool) -> dict[str, dict[int, int]]:
    """Per split and star rating, how many reviews are kept: with ``balance`` the smallest
    class's size within that split, else all of them. ``counts`` is per split and class."""
    totals = {r: sum(c.get(r, 0) for c in counts.values()) for r in STAR_RATINGS}
    if sum(totals.values()) == 0:
        raise UserError("no reviews left to prepare after cleaning (check --categories and "
                        "the lake)")
    missing = [r for r in STAR_RATINGS if totals[r] == 0]
    if balance and missing:
        raise UserError(f"no reviews with star_rating {', '.join(map(str, missing))} in the "
                        f"selection: balancing would keep nothing (use --no-balance or "
                        f"select more categories)")
    kept: dict[str, dict[int, int]] = {}
    for split, fraction in zip(SPLITS, fractions):
        have = {r: counts.get(split, {}).get(r, 0) for r in STAR_RATINGS}
        if balance and fraction > 0:
            short = [r for r in STAR_RATINGS if have[r] == 0]
            if short:
                raise UserError(
                    f"no reviews with star_rating {', '.join(map(str, short))} in the {split} "
                    f"split ({sum(have.values())} reviews): balancing would leave it empty "
                    f"(use a larger {split} fraction, more categories or --no-balance)")
            m = min(have.values())
            kept[split] = {r: m for r in STAR_RATINGS}
        else:
            kept[split] = have
    return kept


def _prefix(bits: int) -> Column:
    """The leading ``bits`` bits of the key in unsigned order (same order as the signed key)."""
    if bits == 0:
        return F.lit(0).cast("long")
    return F.shiftrightunsigned(F.col(KEY).bitwiseXOR(F.lit(_MIN_LONG)), 64 - bits)


def _py_prefix(key: int, bits: int) -> int:
    return 0 if bits == 0 else ((key - _MIN_LONG) & ((1 << 64) - 1)) >> (64 - bits)


def find_cuts(df: DataFrame, ends: dict[int, tuple[int, ...]],
              class_counts: dict[int, int],
              group: str = LABEL_COLUMN) -> dict[int, list[tuple[int, str] | None]]:
    """For every group and end rank k, the (key, review_id) of the k-th review of the group
    in key order (None for k = 0). ``df`` has the integer ``group`` column (the star rating
    by default), ``review_id`` and the key (:func:`with_key`); ``class_counts`` are the
    groups' sizes.

    Only small aggregates reach the driver: per round one count per (group, bucket) of the
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
        rows = (df.where(_in_buckets({(t[0], bits, t[4]) for t in active}, group))
                .groupBy(group, _prefix(bits + step).alias("b")).count().collect())
        buckets: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for r in rows:
            b = int(r["b"])
            buckets.setdefault((int(r[group]), b >> step), []).append((b, int(r["count"])))
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
        rows = (df.where(_in_buckets({(t[0], t[3], t[4]) for t in targets}, group))
                .select(group, KEY, ID_COLUMN).collect())
        for r in rows:
            keys.setdefault(int(r[group]), []).append((int(r[KEY]), r[ID_COLUMN]))
    found: dict[tuple[int, int], tuple[int, str]] = {}
    for rating, k, rank, bits, prefix, _ in targets:
        members = sorted(x for x in keys.get(rating, []) if _py_prefix(x[0], bits) == prefix)
        found[(rating, k)] = members[rank - 1]
    return {rating: [found[(rating, k)] if k > 0 else None for k in ks]
            for rating, ks in ends.items()}


def _in_buckets(groups: set[tuple[int, int, int]], group: str = LABEL_COLUMN) -> Column:
    """Rows of the given (group, prefix bits, prefix value) buckets."""
    cond = None
    for gid, bits, prefix in sorted(groups):
        c = (F.col(group) == gid) & (_prefix(bits) == F.lit(prefix))
        cond = c if cond is None else cond | c
    return cond


def _at_or_below(cut: tuple[int, str]) -> Column:
    key, rid = cut
    return (F.col(KEY) < F.lit(key)) | ((F.col(KEY) == F.lit(key)) & (F.col(ID_COLUMN) <= F.lit(rid)))


def kept_column(cuts: dict[int, list[tuple[int, str] | None]]) -> Column:
    """Whether a row (with its group) is at or below its group's cut; groups without a cut
    (nothing undersampled) keep every row."""
    expr = None
    for gid, (cut,) in sorted(cuts.items()):
        cond = (F.col(GROUP) == gid) & (F.lit(False) if cut is None else _at_or_below(cut))
        expr = cond if expr is None else expr | cond
    uncut = ~F.col(GROUP).isin(*sorted(cuts)) if cuts else F.lit(True)
    return uncut if expr is None else (uncut | expr)


def assign_splits(df: DataFrame, fractions: Sequence[float],
                  cuts: dict[int, list[tuple[int, str] | None]]) -> DataFrame:
    """Rows of ``df`` (with the key) with their ``split``, less those undersampled away."""
    with_split = df.withColumn(SPLIT, split_of_key(fractions))
    grouped = with_split.withColumn(GROUP, _group_column())
    return grouped.where(kept_column(cuts)).drop(GROUP)


def _group_column() -> Column:
    expr = F.lit(None).cast("int")
    for i, name in enumerate(SPLITS):
        expr = F.when(F.col(SPLIT) == name, F.lit(i * 8)).otherwise(expr)
    return expr + F.col(LABEL_COLUMN).cast("int")


def balance_and_split(df: DataFrame, fractions: Sequence[float], balance: bool,
                      seed: int) -> tuple[DataFrame, dict]:
    """Clean rows (one per review id) -> kept rows with ``split``; plus what was decided:
    class counts (all splits), counts per split and class before and after balancing, and
    the cuts."""
    keyed = with_key(df, seed)
    grouped = keyed.withColumn(SPLIT, split_of_key(fractions)).withColumn(GROUP, _group_column())
    by_split: dict[str, dict[int, int]] = {s: {} for s in SPLITS}
    for r in grouped.groupBy(SPLIT, LABEL_COLUMN).count().collect():
        by_split[r[SPLIT]][int(r[LABEL_COLUMN])] = int(r["count"])
    kept = keep_counts(by_split, fractions, balance)
    sizes = {group_id(s, r): n for s, c in by_split.items() for r, n in c.items()}
    ends = {group_id(s, r): (kept[s][r],) for s in SPLITS for r in STAR_RATINGS
            if kept[s][r] < by_split[s].get(r, 0)}
    cuts = find_cuts(grouped, ends, sizes, group=GROUP)
    counts = {r: sum(c.get(r, 0) for c in by_split.values()) for r in STAR_RATINGS}
    counts = {r: n for r, n in counts.items() if n}
    return assign_splits(keyed, fractions, cuts), {
        "class_counts": counts, "split_counts": by_split, "kept": kept, "cuts": cuts}
