"""Tokenization throughput of the prepare stage against the bare tokenizer and the book's UDF.

    python benchmarks/tokenization.py [--rows 200000] [--row-udf-rows 20000] [--repeats 3]

All sides encode the same generated review texts to max_seq_length 64 (truncation, padding,
attention mask) with the same WordPiece tokenizer, on the same cores (Spark local[*] with one
task per core; one Python process per core for the bare sides):

* stage: the prepare stage's encoder in Spark (``encode_frame``: mapInArrow over Arrow
  batches, the Rust batch encoder, tokenizer built once per worker from a broadcast), on a
  cached DataFrame, output to the noop sink; and the same encoder as a pandas UDF
  (``make_encode_udf``), which the stage does not use because of what it costs;
* (a) bare fast tokenizer, one process per core, each batch-encoding its share of the texts
  in batches of the Arrow batch size: (a0) the tokenizer as it is shipped, its own batch
  encode with its truncation and padding, ids and masks to numpy; (a1) with the stage's
  encoder (the same call without Spark: what Spark costs; its ASCII path normalizes in
  Python, so it is faster than the tokenizer itself), (a2) with the usual
  ``tokenizer(texts, truncation=True, padding="max_length")`` call of transformers;
* (b) a row-at-a-time Python UDF calling ``encode_plus`` per row, the book's way (its
  ``DistilBertTokenizer``, the Python implementation, captured in the UDF's closure), and
  (b2) the same UDF with the fast tokenizer. Row-at-a-time sides are timed on the first
  ``--row-udf-rows`` rows (their cost per row does not depend on the row count), and so are
  (a0) and (a2), in each table, on the first ``--slow-rows`` texts.

Goals: stage >= 0.8 x the fastest of (a0, a1, a2); stage >= 10 x (b).

A second table, on text with a long tail like real review bodies (lengths in characters
drawn from a log-normal with median 180 and sigma 1.2, capped at 20,000: mean ~370, p99 ~3,000,
built from generated bodies cut at spaces; ``--long-rows``): the stage, which tokenizes a long
review from a prefix (``encode.Encoder``), against the bare tokenizers' full-text batch encode
((a0) the tokenizer's own, (a1) the stage's encoder with ``prefix_chars=0``, (a2)
transformers' call, each one process per core), the stage with one budget of 8 x
max_seq_length characters (before the shorter first try) and the stage without prefixes. The
ids of the prefix encoder and the full-text encoder are compared on every long-tail text
before timing. Goal: stage >= 1.5 x the fastest bare full-text side.

Spark costs a fixed ~0.35 s per job here (scheduling, handing each task to a Python worker),
which the bare sides do not pay: the long-tail table has 400,000 texts by default so that the
stage's rate is its rate, not its start-up; the job on 400 texts is timed beside it to show
that cost.

(Not named tokenize.py: a script's directory comes first on sys.path, and a tokenize.py there
would shadow the standard library module that inspect, linecache and TensorFlow import, in
every script of this directory.)
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile

from common import generated_raw, goal, goal_lines, machine, med, median_times, save, table

GOAL_BARE, GOAL_ROW, GOAL_LONG = 0.8, 10.0, 1.5
MAX_SEQ_LENGTH = 64
LONG_MEDIAN_CHARS, LONG_SIGMA, LONG_MAX_CHARS = 180, 1.2, 20_000
TINY_ROWS = 400
_TEXTS: list = []
_LONG: list = []
_STATE: dict = {}


def _load_texts(rows: int) -> list[str]:
    import glob

    import pandas as pd

    # a few more than asked: some generated bodies are empty (a quirk of real text)
    src = generated_raw(f"tokenize_{rows}", rows + rows // 100 + 10, seed=5, defects=False,
                        files=1)
    df = pd.read_csv(glob.glob(str(src / "*.tsv"))[0], sep="\t", quoting=3, dtype=str,
                     usecols=["review_body"], keep_default_na=False)
    return [t for t in df["review_body"].tolist() if t.strip()][:rows]


def _long_tail(texts: list[str], rows: int, seed: int = 6) -> list[str]:
    """``rows`` texts with real review bodies' long tail of lengths, from generated bodies
    joined and cut at a space."""
    import numpy as np

    rng = np.random.default_rng(seed)
    target = np.minimum(rng.lognormal(np.log(LONG_MEDIAN_CHARS), LONG_SIGMA, rows),
                        LONG_MAX_CHARS).astype(int)
    out, at = [], 0
    for want in target:
        parts, have = [], 0
        while have < want:
            t = texts[at % len(texts)]
            at += 1
            parts.append(t)
            have += len(t) + 1
        text = " ".join(parts)
        cut = text.rfind(" ", 0, int(want) + 1)
        out.append(text[:cut] if cut > 0 else text)
    return out


def _init_worker(tokenizer_dir: str, json_text: str, pad: int, sep: int, batch: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from transformers import DistilBertTokenizerFast

    from reviewlake.features.encode import Encoder

    from tokenizers import Tokenizer

    own = Tokenizer.from_str(json_text)
    own.enable_truncation(MAX_SEQ_LENGTH)
    own.enable_padding(length=MAX_SEQ_LENGTH, pad_id=pad)
    _STATE.update(encoder=Encoder(json_text, MAX_SEQ_LENGTH, pad, sep),
                  encoder_full=Encoder(json_text, MAX_SEQ_LENGTH, pad, sep, prefix_chars=0),
                  hf=DistilBertTokenizerFast.from_pretrained(tokenizer_dir), own=own,
                  batch=batch)


def _bare(args) -> int:
    kind, shard, shards, which, limit = args
    texts = (_LONG if which == "long" else _TEXTS)[:limit][shard::shards]
    step = _STATE["batch"]
    for i in range(0, len(texts), step):
        chunk = texts[i:i + step]
        if kind in ("encoder", "encoder_full"):
            _STATE[kind].encode(chunk)
        elif kind == "own":
            import numpy as np

            encodings = _STATE["own"].encode_batch_fast(chunk)
            np.array([e.ids for e in encodings], dtype=np.int32)
            np.array([e.attention_mask for e in encodings], dtype=np.int32)
        else:
            _STATE["hf"](chunk, max_length=MAX_SEQ_LENGTH, truncation=True, padding="max_length")
    return len(texts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--row-udf-rows", type=int, default=20_000)
    ap.add_argument("--long-rows", type=int, default=400_000)
    ap.add_argument("--slow-rows", type=int, default=100_000,
                    help="texts the slower bare sides (a0, a2) are timed on, in each table")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()

    from reviewlake.config import Config
    from reviewlake.features import encode as E
    from reviewlake.features import tokenizer as TK

    cores = os.cpu_count() or 1
    slow_rows = args.slow_rows
    texts = _load_texts(args.rows)
    rows = len(texts)
    tok = TK.train_wordpiece(texts[:50_000], TK.DEFAULT_VOCAB_SIZE)
    info = TK.info(tok, "trained-wordpiece", None)
    tok_dir = tempfile.mkdtemp(prefix="bench-tokenizer-")
    tok.save_pretrained(tok_dir)
    cfg = Config.load(None, ["spark.log_level=ERROR"])
    batch = int(cfg.get("spark.arrow_batch_size", 10000))

    # The long tail: the prefix encoder's ids must be the full text's, on every text.
    long_texts = _long_tail(texts, args.long_rows)
    prefix_enc = E.Encoder(info.backend_json, MAX_SEQ_LENGTH, info.pad_id, info.sep_id)
    full_enc = E.Encoder(info.backend_json, MAX_SEQ_LENGTH, info.pad_id, info.sep_id, 0)
    for i in range(0, len(long_texts), batch):
        a, b = prefix_enc.encode(long_texts[i:i + batch]), full_enc.encode(long_texts[i:i + batch])
        assert all((x == y).all() for x, y in zip(a, b)), "prefix ids differ from the full text's"
    long_lengths = full_enc.count(long_texts[:20000])
    long_chars = [len(t) for t in long_texts]

    # The bare sides' processes are forked before the JVM starts (and reused by every round).
    _TEXTS[:] = texts
    _LONG[:] = long_texts
    pool = mp.get_context("fork").Pool(cores, _init_worker,
                                       (tok_dir, info.backend_json, info.pad_id, info.sep_id, batch))
    pool.map(_bare, [("encoder", 0, 10 ** 9, "short", None)] * cores)  # load the tokenizers

    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, IntegerType, StructField, StructType
    from transformers import DistilBertTokenizer

    from reviewlake.session import get_spark

    spark = get_spark(cfg, "bench-tokenize")
    import pandas as pd

    df = spark.createDataFrame(pd.DataFrame({"review_body": texts})) \
        .repartition(2 * cores).cache()
    assert df.count() == rows
    small = df.limit(args.row_udf_rows).repartition(2 * cores).cache()
    small_rows = small.count()
    encode_udf, bc = E.make_encode_udf(spark, info.backend_json, info.key, MAX_SEQ_LENGTH,
                                       info.pad_id, info.sep_id)
    encoded, bc2 = E.encode_frame(df, "review_body", info.backend_json, info.key,
                                  MAX_SEQ_LENGTH, info.pad_id, info.sep_id)
    long_df = spark.createDataFrame(pd.DataFrame({"review_body": long_texts})) \
        .repartition(2 * cores).cache()
    assert long_df.count() == len(long_texts)
    long_encoded, bc3 = E.encode_frame(long_df, "review_body", info.backend_json, info.key,
                                       MAX_SEQ_LENGTH, info.pad_id, info.sep_id)
    few = long_df.limit(TINY_ROWS).repartition(2 * cores).cache()
    assert few.count() == min(TINY_ROWS, len(long_texts))
    few_encoded, bc4 = E.encode_frame(few, "review_body", info.backend_json, info.key,
                                      MAX_SEQ_LENGTH, info.pad_id, info.sep_id)
    # the same stage with prefixes off (another key: another cached encoder per worker)
    long_full = long_df.mapInArrow(
        _other_encoder(info, MAX_SEQ_LENGTH, 0), long_encoded.schema)
    # the stage with one budget of 8 x max_seq_length characters (before: no shorter first try)
    one_budget = E.prefix_budgets(MAX_SEQ_LENGTH)[-1]
    long_one_budget = long_df.mapInArrow(
        _other_encoder(info, MAX_SEQ_LENGTH, one_budget), long_encoded.schema)

    def stage():
        encoded.write.format("noop").mode("overwrite").save()

    def noop(frame):
        frame.write.format("noop").mode("overwrite").save()

    def stage_pandas_udf():
        df.select(encode_udf("review_body").alias("f")) \
            .select("f.input_ids", "f.input_mask", "f.n_tokens").write.format("noop") \
            .mode("overwrite").save()

    def bare(kind, which="short", limit=None):
        done = sum(pool.map(_bare, [(kind, i, cores, which, limit) for i in range(cores)]))
        assert done == len((long_texts if which == "long" else texts)[:limit])

    schema = StructType([StructField(n, ArrayType(IntegerType(), False)) for n in
                         ("input_ids", "input_mask", "segment_ids", "label_ids")])

    def row_udf(tokenizer):
        # the book's convert_input, row at a time (label fixed: tokenization is what is timed)
        def convert_input(text):
            enc = tokenizer.encode_plus(text, padding="max_length", truncation=True,
                                        max_length=MAX_SEQ_LENGTH)
            return {"input_ids": enc["input_ids"], "input_mask": enc["attention_mask"],
                    "segment_ids": [0] * MAX_SEQ_LENGTH, "label_ids": [0]}
        return F.udf(convert_input, schema)

    slow_udf = row_udf(DistilBertTokenizer.from_pretrained(tok_dir))
    fast_udf = row_udf(tok)

    def per_row(udf):
        small.select(udf("review_body").alias("f")).select("f.*").write.format("noop") \
            .mode("overwrite").save()

    sides = {"stage": stage, "stage_pandas_udf": stage_pandas_udf,
             "bare_own": lambda: bare("own", limit=slow_rows),
             "bare_encoder": lambda: bare("encoder"),
             "bare_hf": lambda: bare("hf", limit=slow_rows), "row_book": lambda: per_row(slow_udf),
             "row_fast": lambda: per_row(fast_udf),
             "long_stage": lambda: noop(long_encoded),
             "long_stage_one_budget": lambda: noop(long_one_budget),
             "long_stage_full": lambda: noop(long_full),
             "long_stage_few": lambda: noop(few_encoded),
             "long_bare_own": lambda: bare("own", "long", slow_rows),
             "long_bare_encoder": lambda: bare("encoder_full", "long"),
             "long_bare_hf": lambda: bare("hf", "long", slow_rows)}
    times = median_times(sides, repeats=args.repeats, warmup=args.warmup)
    m = {k: med(v) for k, v in times.items()}
    n = {k: (small_rows if k.startswith("row_") else min(TINY_ROWS, len(long_texts))
             if k == "long_stage_few" else len(long_texts) if k.startswith("long_") else rows)
         for k in m}
    for k in ("bare_own", "bare_hf"):   # timed on the first --slow-rows texts
        n[k] = len(texts[:slow_rows])
        n["long_" + k] = len(long_texts[:slow_rows])
    rate = {k: n[k] / m[k] for k in m}
    best_bare = max(rate["bare_own"], rate["bare_encoder"], rate["bare_hf"])
    ratio_bare = rate["stage"] / best_bare
    ratio_row = rate["stage"] / rate["row_book"]
    labels = {
        "stage": "prepare stage: mapInArrow, Arrow batches (Spark)",
        "stage_pandas_udf": "the same encoder as a pandas UDF (Spark)",
        "bare_own": "(a0) bare: the tokenizer's own batch encode, 1 process/core",
        "bare_encoder": "(a1) bare: the stage's encoder, 1 process/core",
        "bare_hf": "(a2) bare: tokenizer(texts, truncation, padding), 1 process/core",
        "row_book": "(b) row UDF: encode_plus, DistilBertTokenizer (the book)",
        "row_fast": "(b2) row UDF: encode_plus, DistilBertTokenizerFast",
    }
    table_rows = [[labels[k], f"{n[k]:,}", f"{m[k]:.2f}", f"{rate[k]:,.0f}",
                   f"{rate[k] / rate['stage']:.2f}"] for k in labels]
    long_labels = {
        "long_stage": "prepare stage: prefix of 5, else 8 x max_seq_length chars (Spark)",
        "long_stage_one_budget": "the same, one prefix of 8 x max_seq_length chars (before)",
        "long_stage_full": "the same stage, every text in full (Spark)",
        "long_stage_few": f"the stage on {TINY_ROWS} texts: Spark's fixed cost per job",
        "long_bare_own": "(a0) bare: the tokenizer's own batch encode, full text, 1 process/core",
        "long_bare_encoder": "(a1) bare: the stage's encoder, full text, 1 process/core",
        "long_bare_hf": "(a2) bare: tokenizer(texts, truncation, padding), 1 process/core",
    }
    best_full = max(rate["long_bare_own"], rate["long_bare_encoder"], rate["long_bare_hf"])
    ratio_long = rate["long_stage"] / best_full
    long_rows_table = [[long_labels[k], f"{n[k]:,}", f"{m[k]:.2f}", f"{rate[k]:,.0f}",
                        f"{rate[k] / rate['long_stage']:.2f}"] for k in long_labels]
    mc = machine()
    lengths = E.Encoder(info.backend_json, MAX_SEQ_LENGTH, info.pad_id, info.sep_id) \
        .count(texts[:20000])    # full lengths (encode counts only up to max_seq_length + 1)
    text = table(f"tokenize: {rows:,} generated reviews (mean {lengths.mean():.0f} tokens, "
                 f"{100 * (lengths > MAX_SEQ_LENGTH).mean():.0f}% longer than {MAX_SEQ_LENGTH}), "
                 f"vocabulary {info.vocab_size}, median of {args.repeats}, {mc['cores']} cores",
                 ["side", "rows", "seconds", "rows/s", "vs stage"], table_rows)
    import numpy as np

    q = np.percentile(long_chars, [50, 99])
    long_text = table(
        f"tokenize, long tail: {len(long_texts):,} reviews (characters: median {q[0]:,.0f}, "
        f"mean {np.mean(long_chars):,.0f}, p99 {q[1]:,.0f}, max {max(long_chars):,}; tokens: "
        f"mean {long_lengths.mean():.0f}, {100 * (long_lengths > MAX_SEQ_LENGTH).mean():.0f}% "
        f"longer than {MAX_SEQ_LENGTH}), same ids checked on every text, median of "
        f"{args.repeats}, {mc['cores']} cores",
        ["side", "rows", "seconds", "rows/s", "vs stage"], long_rows_table)
    goals = [goal("stage rows/s / the fastest bare tokenizer's rows/s (per core, all cores)",
                  ratio_bare, GOAL_BARE),
             goal("stage rows/s / the book's row-at-a-time UDF rows/s", ratio_row, GOAL_ROW),
             goal("long tail: stage rows/s / the fastest bare full-text tokenizer's rows/s",
                  ratio_long, GOAL_LONG)]
    print(text)
    print()
    print(long_text)
    print(f"\nvs the same row UDF with the fast tokenizer {rate['stage'] / rate['row_fast']:.1f}x")
    print(goal_lines(goals))
    save("tokenization", {"rows": rows, "row_udf_rows": small_rows, "times": times,
                          "median_seconds": m, "rows_per_second": rate,
                          "ratio_vs_bare": ratio_bare, "ratio_vs_row_udf": ratio_row,
                          "ratio_vs_row_udf_fast": rate["stage"] / rate["row_fast"],
                          "ratio_pandas_udf_vs_stage": rate["stage_pandas_udf"] / rate["stage"],
                          "long_rows": len(long_texts), "ratio_long_vs_bare_full": ratio_long,
                          "prefix_stats": prefix_enc.stats,
                          "table": text + "\n\n" + long_text, "goals": goals})
    for b in (bc, bc2, bc3, bc4):
        b.unpersist()
    pool.close()
    spark.stop()


def _other_encoder(info, max_seq_length: int, prefix_chars: int):
    """A mapInArrow function: the stage's encoding with other prefix budgets (0: every text
    in full), its own encoder per worker."""
    json_text, pad, sep = info.backend_json, info.pad_id, info.sep_id

    def run(batches):
        from reviewlake.features import encode as E

        key = (f"bench-{prefix_chars}", max_seq_length)
        enc = E._ENCODERS.get(key)
        if enc is None:
            enc = E._ENCODERS[key] = E.Encoder(json_text, max_seq_length, pad, sep,
                                               prefix_chars=prefix_chars)
        return E.encode_batches(batches, "review_body", lambda: enc)
    return run


if __name__ == "__main__":
    main()
