"""The prepare stage: the Parquet lake -> balanced, split, tokenized TFRecords (+ Parquet).

Steps (each a DataFrame -> DataFrame function of :mod:`.splits` or :mod:`.encode`):

1. read ``LAKE/reviews`` (partition pruning on ``--categories``), drop rows that cannot be
   examples and collapse duplicate review ids; the clean rows are staged as Parquet so the
   following steps read only the columns they need instead of recomputing the shuffle;
2. split by review id and seed (stable as the lake grows), then balance each split exactly
   (see :mod:`.splits`);
3. the tokenizer: a saved directory, or a WordPiece vocabulary trained on a bounded,
   deterministic sample of the training split;
4. features in a vectorised Arrow function (``mapInArrow``), written as Parquet
   partitioned by ``split``;
5. from that Parquet, TFRecord files per split (spark-tfrecord jar, or the Python writer);
6. counts, per label and per file, checked against each other; the token-length profile
   (full tokenization of a seeded sample);
7. ``_meta.json``, the commit: one PUT.

Output layout (paths in ``_meta.json`` are relative to FEATURES; R = ``runs/<run_id>``)::

    FEATURES/R/train/part-NNNNN-<run>.tfrecord[.gz]   tf.train.Example: input_ids, input_mask,
    FEATURES/R/validation/...  FEATURES/R/test/...    segment_ids [max_seq_length], label_ids
    FEATURES/R/{train,validation,test}/_SUCCESS
    FEATURES/R/tokenizer/                             DistilBertTokenizerFast.from_pretrained
    FEATURES/R/parquet/split=<s>/part-*.parquet       the same features + review_id,
                                                      product_category, n_tokens (<= L+1)
    FEATURES/_meta.json                               the pointer: counts, spec, tokenizer,
                                                      profile, ... and every file of R (size)

No renames: a run holds ``FEATURES/_lock.json``, writes everything under its own prefix R,
checks it, and commits by writing ``_meta.json`` (one PUT, last), which names R and lists its
files with their sizes; readers (train) use only the files it lists. A run that fails or is
killed before that PUT leaves the previous ``_meta.json`` and the files it lists untouched.
After the PUT, runs beyond ``prepare.keep_runs`` (the current one and those it replaced,
newest first) are deleted; never the current run, never a run newer than it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import unquote

import numpy as np

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from .. import __version__
from .. import commit as commit_mod
from .. import lake as L
from ..commit import new_run_id
from ..errors import UserError
from ..fs import HadoopFS, is_remote, join, qualify
from ..schema import ID_COLUMN, LABEL_COLUMN, PARTITION_COLUMN, STAR_RATINGS, TEXT_COLUMN
from . import encode as E
from .textclean import clean_texts
from . import splits as S
from . import tfrecord as T
from . import tokenizer as TK
from . import write as W

log = logging.getLogger(__name__)

REVIEWS = "reviews"
META = "_meta.json"
PARQUET = "parquet"
TOKENIZER = "tokenizer"
CLEAN = "_clean"  # inside the run's prefix; removed before the commit
RUNS = "runs"
LEGACY_OUTPUTS = ("train", "validation", "test", "tokenizer", "parquet", "_staging")
NUM_LABELS = len(STAR_RATINGS)
LABEL_OFFSET = 1
PERCENTILES = tuple(range(10, 101, 10))


class CountMismatch(UserError):
    """The TFRecord files do not hold what the Parquet features hold: nothing is committed."""

    exit_code = 4


@dataclass
class PrepareOptions:
    max_seq_length: int = 64
    split: Sequence[float] = (0.90, 0.05, 0.05)
    balance: bool = True
    tokenizer: str | None = None
    vocab_size: int = TK.DEFAULT_VOCAB_SIZE
    tokenizer_sample_rows: int = 200_000
    profile_sample_rows: int = 20_000
    categories: Sequence[str] | None = None
    seed: int = 42
    compression: str = "none"
    writer: str = "auto"
    records_per_file: int = 200_000
    min_files: int = 2
    clean_text: bool = True
    keep_runs: int = 2
    catalog: dict[str, Any] | None = None   # the profile's catalog section (Iceberg lakes)
    snapshot: int | None = None             # Iceberg: read this snapshot (default: the current)
    as_of: str | None = None                # ... or the one current at this time
    table: str | None = None                # a catalog table (namespace.table) instead of LAKE's

    def validate(self) -> None:
        self.split = S.parse_fractions(self.split)
        if not isinstance(self.max_seq_length, int) or not 3 <= self.max_seq_length <= TK.MODEL_MAX_LENGTH:
            raise UserError(f"--max-seq-length must be an integer between 3 and "
                            f"{TK.MODEL_MAX_LENGTH}, got {self.max_seq_length!r}")
        if self.compression not in T.COMPRESSIONS:
            raise UserError(f"--compression must be one of {', '.join(T.COMPRESSIONS)}, "
                            f"got {self.compression!r}")
        if self.writer not in W.WRITERS:
            raise UserError(f"--writer must be one of {', '.join(W.WRITERS)}, got {self.writer!r}")
        if int(self.vocab_size) <= len(TK.SPECIAL_TOKENS):
            raise UserError(f"--vocab-size must be larger than {len(TK.SPECIAL_TOKENS)}, "
                            f"got {self.vocab_size}")
        if int(self.tokenizer_sample_rows) < 1:
            raise UserError("prepare.tokenizer_sample_rows must be at least 1")
        if int(self.profile_sample_rows) < 1:
            raise UserError("prepare.profile_sample_rows must be at least 1")
        if not isinstance(self.keep_runs, int) or self.keep_runs < 1:
            raise UserError(f"prepare.keep_runs must be an integer of at least 1, got "
                            f"{self.keep_runs!r}")
        if int(self.records_per_file) < 1 or int(self.min_files) < 1:
            raise UserError("prepare.records_per_file and prepare.min_files must be at least 1")
        if self.categories is not None:
            cats = [c.strip() for c in self.categories if c and c.strip()]
            if not cats:
                raise UserError("--categories needs at least one product category")
            self.categories = sorted(set(cats))


def _inside(a: str, b: str) -> bool:
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b)


def lake_categories(fs: HadoopFS, reviews: str) -> list[str]:
    """The product categories present in the lake (its partition directories)."""
    out = []
    prefix = f"{PARTITION_COLUMN}="
    for path in fs.list_subdirs(reviews):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith(prefix):
            out.append(unquote(name[len(prefix):]))
    return sorted(out)


def read_reviews(spark: SparkSession, source: str | dict[str, Any],
                 categories: Sequence[str] | None) -> DataFrame:
    """The lake's reviews (only the partitions of ``categories`` are read when given):
    ``source`` is a Parquet directory or what :func:`reviewlake.lake.locate` found."""
    if isinstance(source, str):
        source = {"format": "parquet", "path": source}
    df = L.read_reviews(spark, source)
    if categories:
        df = df.where(F.col(PARTITION_COLUMN).isin(list(categories)))
    return df


def clean_reviews(df: DataFrame, run_id: str) -> tuple[DataFrame, Observation, Observation]:
    """Valid, deduplicated reviews, with observations counting what was dropped and why."""
    drops = Observation(f"prepare-drops-{run_id}")
    dupes = Observation(f"prepare-dupes-{run_id}")
    reasoned = df.select(*S.COLUMNS).withColumn("_drop", S.drop_reason()).observe(
        drops, *S.drop_counters())
    valid = reasoned.where(F.col("_drop").isNull()).drop("_drop")
    deduped = S.dedupe(valid).observe(dupes, *S.dedupe_counters())
    return deduped.where(~F.col("_conflict")).select(*S.COLUMNS), drops, dupes


def tokenizer_sample(assigned: DataFrame, rows: int, seed: int, train_count: int) -> list[str]:
    """A deterministic sample of at most ``rows`` training texts (the tokenizer's corpus)."""
    return text_sample(assigned.where(F.col(S.SPLIT) == "train"), rows, int(seed) + 1,
                       train_count)


def text_sample(rows_df: DataFrame, rows: int, key_seed: int, count: int) -> list[str]:
    """At most ``rows`` texts of ``rows_df`` (``count`` rows), the same for the same reviews
    and seed: those with the smallest xxhash64 of (review_id, key_seed)."""
    sample_key = F.xxhash64(F.col(ID_COLUMN), F.lit(int(key_seed)).cast("long"))
    if count > rows:
        # a cheap pre-filter keeps ~1.2x the sample (and 100 more, for small samples), the
        # exact top-k by key does the rest
        keep = min(1.0, (1.2 * rows + 100) / count)
        threshold = int(-(1 << 63) + keep * ((1 << 64) - 1))
        rows_df = rows_df.where(sample_key <= F.lit(min(threshold, (1 << 63) - 1)))
    picked = (rows_df.select(sample_key.alias("_s"), ID_COLUMN, TEXT_COLUMN)
              .orderBy("_s", ID_COLUMN).limit(int(rows)).collect())
    return [r[TEXT_COLUMN] for r in picked]


def features_frame(assigned: DataFrame, tinfo: TK.TokenizerInfo, max_seq_length: int,
                   clean_text: bool = False,
                   cleaning: Observation | None = None) -> tuple[DataFrame, Any]:
    """Kept rows -> the feature rows (Parquet schema of FEATURES/parquet); plus the
    tokenizer's broadcast, to release once the features are written. With ``clean_text`` the
    texts are cleaned first and ``cleaning`` observes how many changed, how many tokens that
    saved and how many it left empty."""
    rows = assigned.select(
        ID_COLUMN, PARTITION_COLUMN, S.SPLIT,
        (F.col(LABEL_COLUMN) - LABEL_OFFSET).cast("int").alias("label_ids"), TEXT_COLUMN)
    encoded, broadcast = E.encode_frame(rows, TEXT_COLUMN, tinfo.backend_json, tinfo.key,
                                        max_seq_length, tinfo.pad_id, tinfo.sep_id,
                                        clean=clean_text)
    if clean_text and cleaning is not None:
        encoded = encoded.observe(
            cleaning, F.sum(F.col("text_changed").cast("long")).alias("reviews_changed"),
            F.sum(F.col("tokens_saved").cast("long")).alias("tokens_saved"),
            F.sum((F.col("text_changed") & (F.col("n_tokens") <= 2)).cast("long"))
            .alias("reviews_emptied"))
    return encoded.select(
        ID_COLUMN, PARTITION_COLUMN, "label_ids", "input_ids", "input_mask",
        F.array_repeat(F.lit(0), max_seq_length).alias("segment_ids"), "n_tokens",
        S.SPLIT), broadcast


def _cleaning_meta(enabled: bool, cleaning: Observation) -> dict[str, Any]:
    """What prepare.clean_text did (counts over the kept reviews)."""
    if not enabled:
        return {"enabled": False}
    got = cleaning.get
    return {"enabled": True, "steps": ["tags to spaces", "HTML entities unescaped",
                                       "control characters removed", "whitespace collapsed"],
            "reviews_changed": int(got.get("reviews_changed") or 0),
            "tokens_saved": int(got.get("tokens_saved") or 0),
            "reviews_emptied": int(got.get("reviews_emptied") or 0)}


def token_profile(features: DataFrame, lengths: np.ndarray, max_seq_length: int,
                  sample: dict[str, Any]) -> dict[str, Any]:
    """The token-length profile: percentiles of review lengths in tokens ([CLS] and [SEP]
    included) from full tokenization of a sample (``lengths``; the features hold lengths only
    up to max_seq_length + 1), the book's rule for max_seq_length (the smallest power of two
    >= the 80th percentile), and the share of all reviews longer than the chosen length
    (truncated; exact, from the features)."""
    row = features.agg(
        F.avg(F.when(F.col("n_tokens") > max_seq_length, 1.0).otherwise(0.0)).alias("trunc"),
        F.count(F.lit(1)).alias("n")).first()
    if not row["n"] or not len(lengths):
        return {"percentiles": {}, "suggested_max_seq_length": None, "truncated_fraction": 0.0,
                "mean": None, "counted": 0, "sample": sample}
    pct = {str(p): int(np.percentile(lengths, p, method="inverted_cdf")) for p in PERCENTILES}
    p80 = pct["80"]
    suggested = 1
    while suggested < p80:
        suggested *= 2
    return {"percentiles": pct, "suggested_max_seq_length": min(suggested, TK.MODEL_MAX_LENGTH),
            "rule": "smallest power of two >= the 80th percentile (at most 512)",
            "truncated_fraction": round(float(row["trunc"]), 6),
            "mean": round(float(np.mean(lengths)), 2), "counted": int(len(lengths)),
            "reviews": int(row["n"]), "sample": sample,
            "unit": "tokens per review, [CLS] and [SEP] included, full text"}


def profile_lengths(assigned: DataFrame, tinfo: TK.TokenizerInfo, opts: "PrepareOptions",
                    kept: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Full token lengths of a seeded sample of the kept reviews (all splits), cleaned as the
    features are, on the driver."""
    texts = text_sample(assigned, int(opts.profile_sample_rows), int(opts.seed) + 2, kept)
    if opts.clean_text:
        texts = clean_texts(texts)[0]
    enc = E.Encoder(tinfo.backend_json, opts.max_seq_length, tinfo.pad_id, tinfo.sep_id)
    return enc.count(texts), {"rows": len(texts), "of": int(kept), "limit":
                              int(opts.profile_sample_rows), "seed": int(opts.seed),
                              "how": "smallest xxhash64(review_id, seed + 2), all splits"}


def feature_spec(max_seq_length: int) -> dict[str, Any]:
    seq = {"dtype": "int64", "shape": [max_seq_length]}
    return {"input_ids": dict(seq), "input_mask": dict(seq), "segment_ids": dict(seq),
            "label_ids": {"dtype": "int64", "shape": []}}


def tokenizer_source(fs: HadoopFS, path: str) -> str:
    """``--tokenizer`` may name a features directory: its ``_meta.json`` says where its
    tokenizer is (under ``runs/<run_id>/``)."""
    meta = fs.read_json(join(path, META)) if fs.is_dir(path) else None
    rel = ((meta or {}).get("tokenizer") or {}).get("path")
    return join(path, rel) if rel and "://" not in rel and not rel.startswith("/") else path


def run_files(fs: HadoopFS, output: str, run_rel: str) -> dict[str, int]:
    """Every file of a run's prefix, as path relative to FEATURES -> size."""
    return {f"{run_rel}/{rel}": size
            for rel, size in sorted(fs.list_files(join(output, run_rel)).items())}


def previous_runs(previous_meta: dict[str, Any] | None, keep_runs: int) -> list[str]:
    """The run prefixes the new ``_meta.json`` keeps besides its own (newest first)."""
    if not previous_meta or not previous_meta.get("run_dir"):
        return []
    chain = [previous_meta["run_dir"], *previous_meta.get("previous_runs", [])]
    return chain[:max(0, keep_runs - 1)]


def expire_runs(fs: HadoopFS, output: str, meta: dict[str, Any],
                legacy: bool = False) -> list[str]:
    """Delete the run prefixes ``meta`` (just committed) does not keep and that are older than
    its run; with ``legacy`` (the output was in the layout before run prefixes) also the old
    top-level directories. Call it holding the lock."""
    keep = {meta["run_dir"], *meta.get("previous_runs", [])}
    removed = []
    for path in fs.list_subdirs(join(output, RUNS)):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        rel = f"{RUNS}/{name}"
        if rel in keep or name >= meta["run_id"]:
            continue
        fs.delete(path)
        removed.append(rel)
    for name in LEGACY_OUTPUTS if legacy else ():
        if fs.exists(join(output, name)):
            fs.delete(join(output, name))
            removed.append(name)
    return removed


def run_prepare(spark: SparkSession, lake: str, output: str,
                options: PrepareOptions | None = None) -> dict[str, Any]:
    """Prepare ``lake`` into ``output``; returns the ``_meta.json`` content (also written).
    The run holds the output's lock (``FEATURES/_lock.json``) while it works."""
    with contextlib.ExitStack() as held:   # the lock, once taken, is released on the way out
        return _run_prepare(spark, lake, output, options, held)


def _run_prepare(spark: SparkSession, lake: str, output: str,
                 options: PrepareOptions | None, held: contextlib.ExitStack) -> dict[str, Any]:
    opts = options or PrepareOptions()
    opts.validate()
    started = time.time()
    lake, output = qualify(lake), qualify(output)
    fs = HadoopFS(spark)
    run_id = new_run_id()
    run_tag = run_id.rsplit("-", 1)[-1] + uuid.uuid4().hex[:6]
    phases: dict[str, float] = {}
    clock = [started]

    def phase(name: str) -> None:
        now = time.time()
        phases[name] = round(now - clock[0], 3)
        clock[0] = now

    reviews = join(lake, REVIEWS)
    # an Iceberg lake: its reviews table at one snapshot, recorded in _meta.json
    source = L.locate_if_iceberg(spark, fs, lake, opts.catalog, opts.snapshot, opts.as_of,
                                 opts.table)
    if source is None:
        source = {"format": "parquet", "path": reviews}
        if not fs.is_dir(reviews):
            raise UserError(f"no lake at {lake} ({reviews} not found); run reviewlake ingest "
                            f"first or pass --input LAKE")
    if _inside(output, lake) or _inside(lake, output):
        raise UserError(f"--output {output} must not be inside the lake {lake} or contain it")
    if opts.categories:
        present = (lake_categories(fs, reviews) if source["format"] == "parquet" else
                   sorted(r[0] for r in L.read_reviews(spark, source)
                          .select(PARTITION_COLUMN).distinct().collect()))
        unknown = [c for c in opts.categories if c not in present]
        if unknown:
            raise UserError(f"no product_category {', '.join(map(repr, unknown))} in {lake} "
                            f"(it has {len(present)}: {', '.join(present[:5])}"
                            f"{', ...' if len(present) > 5 else ''})")
    writer_kind = W.choose_writer(spark, opts.writer, output)
    pretrained = None
    if opts.tokenizer:
        tokenizer_load = tokenizer_source(fs, qualify(opts.tokenizer))
        # recorded as given, or where a features directory's _meta.json led
        tokenizer_path = opts.tokenizer if tokenizer_load == qualify(opts.tokenizer) \
            else tokenizer_load
        pretrained = TK.load_pretrained(fs, tokenizer_load)
        TK.check_bert_like(pretrained, opts.max_seq_length, opts.tokenizer)
    fs.check_writable(output)
    lock = held.enter_context(commit_mod.lock_output(fs, output, run_id, "prepare"))
    previous_meta = fs.read_json(join(output, META))
    run_rel = f"{RUNS}/{run_id}"
    stage = join(output, run_rel)
    phase("checks")

    # 1. clean rows, staged
    clean_dir = join(stage, CLEAN)
    clean, drops, dupes = clean_reviews(read_reviews(spark, source, opts.categories), run_id)
    clean.write.mode("overwrite").parquet(clean_dir)
    dropped_rows = {k: int(v or 0) for k, v in drops.get.items()}
    dedupe_rows = {k: int(v or 0) for k, v in dupes.get.items()}
    clean = spark.read.parquet(clean_dir)
    phase("clean")

    # 2. balance and split
    assigned, plan = S.balance_and_split(clean, opts.split, opts.balance, opts.seed)
    counts = plan["class_counts"]
    train_total = sum(plan["kept"]["train"].values())
    phase("split")

    # 3. tokenizer
    if pretrained is not None:
        tok = pretrained
        tinfo = TK.info(tok, "pretrained", tokenizer_path)
    else:
        texts = tokenizer_sample(assigned, int(opts.tokenizer_sample_rows), opts.seed, train_total)
        if opts.clean_text:   # the vocabulary is learnt from the text the model will see
            texts = clean_texts(texts)[0]
        tok = TK.train_wordpiece(texts, int(opts.vocab_size))
        TK.check_bert_like(tok, opts.max_seq_length, "the trained tokenizer")
        tinfo = TK.info(tok, "trained-wordpiece", None,
                        {"split": "train", "rows": len(texts), "requested_vocab_size":
                         int(opts.vocab_size), "sample_limit": int(opts.tokenizer_sample_rows)})
        del texts
    TK.save(tok, fs, join(stage, TOKENIZER))
    phase("tokenizer")

    # 4. features -> Parquet
    parquet_dir = join(stage, PARQUET)
    cleaning = Observation(f"prepare-cleaning-{run_id}")
    encoded, broadcast = features_frame(assigned, tinfo, opts.max_seq_length,
                                        bool(opts.clean_text), cleaning)
    try:
        encoded.write.mode("overwrite").partitionBy(S.SPLIT).parquet(parquet_dir)
    finally:
        broadcast.unpersist()
    features = spark.read.parquet(parquet_dir)
    phase("encode")

    # 5. counts and the token-length profile (from the Parquet features)
    by_split: dict[str, dict[str, int]] = {s: {str(i): 0 for i in range(NUM_LABELS)}
                                           for s in S.SPLITS}
    for r in features.groupBy(S.SPLIT, "label_ids").count().collect():
        by_split[r[S.SPLIT]][str(r["label_ids"])] = int(r["count"])
    lengths, sample = profile_lengths(assigned, tinfo, opts,
                                      sum(sum(c.values()) for c in by_split.values()))
    profile = token_profile(features, lengths, opts.max_seq_length, sample)
    phase("profile")

    # 6. TFRecords per split
    s3 = W.s3_options_for(spark, output) if writer_kind == "python" and is_remote(output) else {}
    splits_meta: dict[str, Any] = {}
    for name in S.SPLITS:
        split_dir = join(stage, name)
        count = sum(by_split[name].values())
        n_files = W.files_for(count, int(opts.records_per_file), int(opts.min_files))
        part = features.where(F.col(S.SPLIT) == name).repartition(n_files, ID_COLUMN)
        if writer_kind == "jar":
            W.write_split_jar(part, split_dir, opts.compression)
            files = W.list_split_files(fs, split_dir)
            # what the data source wrote, read back and parsed (not the expected counts)
            records, labels, per_file = W.read_back_jar(spark, split_dir, files)
        else:
            stats = W.write_split_python(part, split_dir, run_tag, opts.compression,
                                         opts.max_seq_length, s3) if count else []
            W.finish_split(fs, split_dir)
            on_disk = {f["file"]: f for f in W.list_split_files(fs, split_dir)}
            files = sorted(({"file": s["file"], "bytes": s["bytes"]} for s in stats),
                           key=lambda f: f["file"])
            labels = {str(i): sum(s["labels"][i] for s in stats) for i in range(NUM_LABELS)}
            records = sum(s["records"] for s in stats)
            per_file = {s["file"]: int(s["records"]) for s in stats}
            if sorted(on_disk) != [f["file"] for f in files] or any(
                    on_disk[f["file"]]["bytes"] != f["bytes"] for f in files):
                raise CountMismatch(f"{name}: the files on disk ({len(on_disk)}) are not the "
                                    f"files (names and sizes) the writers committed "
                                    f"({len(files)}); nothing was "
                                    f"committed, the previous output is unchanged")
        if records != count or labels != by_split[name]:
            raise CountMismatch(f"{name}: TFRecords hold {records} records {labels}, the "
                                f"features {count} {by_split[name]}; nothing was committed, "
                                f"the previous output is unchanged")
        splits_meta[name] = {
            "count": count, "labels": by_split[name],
            "files": [f"{run_rel}/{name}/{f['file']}" for f in files],
            # records per file: train gives every process an exact, equal share from these
            "file_records": {f"{run_rel}/{name}/{f['file']}": int(per_file.get(f["file"], 0))
                             for f in files},
            "bytes": sum(f["bytes"] for f in files),
        }
    phase("tfrecord")

    fs.delete(clean_dir)
    files_written = run_files(fs, output, run_rel)
    tok_prefix = f"{run_rel}/{TOKENIZER}/"
    tok_files = {k[len(tok_prefix):]: v for k, v in files_written.items()
                 if k.startswith(tok_prefix)}
    finished = time.time()
    rows_read = dropped_rows.pop("rows_read", 0)
    invalid_detail = {"null": dropped_rows.pop("rating_null", 0),
                      "below_1": dropped_rows.pop("rating_below_1", 0),
                      "above_5": dropped_rows.pop("rating_above_5", 0)}
    kept = sum(s["count"] for s in splits_meta.values())
    clean_total = sum(counts.values())
    dropped = dict(dropped_rows, **dedupe_rows, balance=clean_total - kept)
    meta: dict[str, Any] = {
        "format": "tfrecord", "compression": opts.compression,
        "max_seq_length": opts.max_seq_length, "num_labels": NUM_LABELS,
        "label_offset": LABEL_OFFSET, "label_column": LABEL_COLUMN, "text_column": TEXT_COLUMN,
        "features": feature_spec(opts.max_seq_length),
        "splits": splits_meta,
        "tokenizer": dict(tinfo.meta(f"{run_rel}/{TOKENIZER}"), files=tok_files),
        "token_lengths": profile,
        "text_cleaning": _cleaning_meta(opts.clean_text, cleaning),
        "parquet": {"path": f"{run_rel}/{PARQUET}", "partitioned_by": S.SPLIT,
                    "columns": ["review_id", "product_category", "label_ids", "input_ids",
                                "input_mask", "segment_ids", "n_tokens"]},
        "source_lake": lake, "lake": L.lineage(source), "seed": opts.seed, "split_fractions": list(opts.split),
        "balance": opts.balance,
        "categories": list(opts.categories) if opts.categories else None,
        "rows": {"read": rows_read, "clean": clean_total, "kept": kept},
        "dropped": dropped,
        "dropped_detail": {"invalid_star_rating": invalid_detail},
        "star_ratings_before_balance": {str(r): counts.get(r, 0) for r in STAR_RATINGS},
        "writer": "spark-tfrecord" if writer_kind == "jar" else "python",
        "run_id": run_id, "run_dir": run_rel,
        "previous_runs": previous_runs(previous_meta, int(opts.keep_runs)),
        "created_at": dt.datetime.fromtimestamp(finished, dt.timezone.utc).isoformat(),
        "seconds": round(finished - started, 3), "phases": phases,
        "reviewlake_version": __version__,
    }
    if rows_read != sum(dropped.values()) + kept:
        raise CountMismatch(f"row accounting failed: read {rows_read} != dropped "
                            f"{sum(dropped.values())} + kept {kept}; nothing was committed")
    listed = [f for s in splits_meta.values() for f in s["files"]]
    unlisted = [f for f in listed if f not in files_written]
    if unlisted:
        raise CountMismatch(f"{len(unlisted)} TFRecord files are not in {stage}, e.g. "
                            f"{unlisted[0]}; nothing was committed")
    meta["files"] = files_written
    legacy = bool(previous_meta) and not previous_meta.get("run_dir")
    commit_features(fs, output, meta, lock, legacy)
    log.info("prepare phases (s): %s", phases)
    return meta


def commit_features(fs: HadoopFS, output: str, meta: dict[str, Any], lock,
                    legacy: bool = False) -> list[str]:
    """The commit: ``_meta.json`` (one PUT) points at the run's prefix; then old runs expire.
    Returns the prefixes removed."""
    lock.check()
    fs.write_json(join(output, META), meta)
    try:
        return expire_runs(fs, output, meta, legacy)
    except Exception as exc:  # the commit is done; the next run expires them
        log.warning("could not expire old runs in %s: %s", output, exc)
        return []
