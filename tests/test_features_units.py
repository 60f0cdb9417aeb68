"""The prepare stage's pieces: cleaning, exact cuts and splits, the encoder and its UDF."""
import numpy as np
import pytest
from pyspark.sql import functions as F

from reviewlake.errors import UserError
from reviewlake.features import encode as E
from reviewlake.features import splits as S
from reviewlake.features import tokenizer as TK
from reviewlake.session import spark_conf

TEXTS = [
    "Great product, works exactly as described!",
    "", "   ", "Terrible. Broke after two days; would not buy again.",
    "word " * 200, "Ünïcödé accents and CAPITALS are lower-cased", "[SEP] [PAD] literal specials",
    "short", "a b c d e f", "emoji 🙂 and 中文 characters",
]


@pytest.fixture(scope="module")
def tok():
    corpus = [t for t in TEXTS if t.strip()] * 30 + ["the quick brown fox jumps over the lazy dog"] * 30
    return TK.train_wordpiece(corpus, vocab_size=300)


# --------------------------------------------------------------------------- cleaning


def frame(spark, rows):
    return spark.createDataFrame(rows, "review_id string, star_rating int, review_body string, "
                                       "product_category string")


def test_drop_reasons(spark):
    rows = [("R1", 5, "fine", "Books"), (None, 5, "fine", "Books"), ("  ", 4, "fine", "Books"),
            ("R2", 0, "fine", "Books"), ("R3", 6, "fine", "Books"), ("R4", None, "fine", "Books"),
            ("R5", 3, None, "Books"), ("R6", 3, " \t\n", "Books"), ("R7", 3, "\u00a0", "Books"),
            (None, 9, None, "Books")]
    got = {r.review_id: r.reason for r in
           frame(spark, rows).select("review_id", S.drop_reason().alias("reason")).collect()
           if r.review_id is None or r.review_id.strip()}
    assert got == {"R1": None, "R2": "invalid_star_rating", "R3": "invalid_star_rating",
                   "R4": "invalid_star_rating", "R5": "blank_review_body",
                   "R6": "blank_review_body", "R7": "blank_review_body",
                   None: "missing_review_id"}
    assert [r.review_id for r in S.valid_rows(frame(spark, rows)).collect()] == ["R1"]


def test_dedupe_collapses_copies_and_drops_conflicts(spark):
    rows = [("A", 5, "same", "Books"), ("A", 5, "same", "Books"),
            ("B", 5, "one text", "Books"), ("B", 4, "one text", "Books"),
            ("C", 2, "alone", "Toys"),
            ("D", 1, "copy", "Toys"), ("D", 1, "copy", "Books"), ("D", 1, "copy", "Music"),
            ("E", 3, "x", "Toys"), ("E", 3, "y", "Toys")]
    out = S.dedupe(frame(spark, rows))
    got = {r.review_id: (r.star_rating, r.review_body, r.product_category, r._copies, r._conflict)
           for r in out.collect()}
    assert got["A"] == (5, "same", "Books", 2, False)
    assert got["B"][3:] == (2, True) and got["E"][3:] == (2, True)
    assert got["C"] == (2, "alone", "Toys", 1, False)
    assert got["D"] == (1, "copy", "Books", 3, False)  # the smallest category, whatever the order
    counts = out.agg(*S.dedupe_counters()).first()
    assert counts.duplicate_review_id == 3 and counts.conflicting_review_id == 4


# --------------------------------------------------------------------------- balance and split


def test_parse_fractions():
    assert S.parse_fractions("0.90,0.05,0.05") == (0.9, 0.05, 0.05)
    assert S.parse_fractions([0.8, 0.1, 0.1]) == (0.8, 0.1, 0.1)
    for bad in ("0.9,0.1", "a,b,c", "0.9,0.2,0.1", "-0.1,0.6,0.5", "0,0.5,0.5"):
        with pytest.raises(UserError, match="--split"):
            S.parse_fractions(bad)


def test_a_split_is_a_function_of_the_key_alone():
    """The key, read as a fraction of the 64-bit range, against the cumulative fractions."""
    lo, hi = -(1 << 63), (1 << 63) - 1
    f = (0.9, 0.05, 0.05)
    t1, t2 = S.key_thresholds(f)
    assert t1 == int(f[0] * 2 ** 64) + lo and t2 == int((f[0] + f[1]) * 2 ** 64) + lo
    assert [S.py_split_of_key(k, f) for k in (lo, t1 - 1, t1, t2 - 1, t2, hi)] == \
        ["train", "train", "validation", "validation", "test", "test"]
    assert {S.py_split_of_key(k, (1.0, 0.0, 0.0)) for k in (lo, 0, hi)} == {"train"}
    assert {S.py_split_of_key(k, (0.5, 0.5, 0.0)) for k in (0, hi)} == {"validation"}
    assert {S.py_split_of_key(k, (0.8, 0.0, 0.2)) for k in (t1, hi)} == {"test"}
    rng = np.random.default_rng(0)
    keys = [int(k) for k in rng.integers(lo, hi, 200_000, dtype=np.int64)]
    share = sum(S.py_split_of_key(k, f) == "validation" for k in keys) / len(keys)
    assert abs(share - 0.05) < 0.003   # about 6 standard deviations of a binomial draw


def test_balancing_is_exact_within_each_split():
    counts = {"train": {1: 93, 2: 51, 3: 900, 4: 52, 5: 9000},
              "validation": {1: 5, 2: 3, 3: 50, 4: 4, 5: 500},
              "test": {1: 5, 2: 3, 3: 50, 4: 2, 5: 499}}
    kept = S.keep_counts(counts, (0.9, 0.05, 0.05), balance=True)
    assert kept == {"train": dict.fromkeys(range(1, 6), 51), "validation": dict.fromkeys(range(1, 6), 3),
                    "test": dict.fromkeys(range(1, 6), 2)}
    assert S.keep_counts(counts, (0.9, 0.05, 0.05), balance=False) == counts
    with pytest.raises(UserError, match="star_rating 2 in the selection"):
        S.keep_counts({"train": {1: 5, 3: 5, 4: 5, 5: 5}}, (0.9, 0.05, 0.05), balance=True)
    short = {"train": dict.fromkeys(range(1, 6), 9), "validation": {1: 1, 2: 1, 3: 1, 4: 1},
             "test": dict.fromkeys(range(1, 6), 1)}
    with pytest.raises(UserError, match="star_rating 5 in the validation split .* larger "
                                        "validation fraction"):
        S.keep_counts(short, (0.9, 0.05, 0.05), balance=True)
    # an empty split that is meant to be empty is fine
    kept = S.keep_counts({"train": dict.fromkeys(range(1, 6), 4)}, (1.0, 0.0, 0.0), balance=True)
    assert kept["train"] == dict.fromkeys(range(1, 6), 4) and kept["test"] == dict.fromkeys(range(1, 6), 0)
    with pytest.raises(UserError, match="no reviews left"):
        S.keep_counts({}, (0.9, 0.05, 0.05), balance=False)


@pytest.fixture(scope="module")
def ranked(spark):
    rng = np.random.default_rng(3)
    n = 3000
    ratings = rng.choice([1, 2, 3, 4, 5], n, p=[0.1, 0.05, 0.1, 0.2, 0.55])
    rows = [(f"R{i:06d}", int(r), "text", "Books") for i, r in enumerate(ratings)]
    df = S.with_key(frame(spark, rows), seed=11).cache()
    keys = {}
    for r in df.select("review_id", "star_rating", S.KEY).collect():
        keys.setdefault(r.star_rating, []).append((r[S.KEY], r.review_id))
    return df, {c: sorted(v) for c, v in keys.items()}


@pytest.mark.parametrize("collect_limit,step_bits", [(20000, 10), (7, 3)])
def test_find_cuts_is_exact(ranked, monkeypatch, collect_limit, step_bits):
    """Whether the keys are collected at once or after several rounds of refinement, the cut
    is the k-th key of its group."""
    monkeypatch.setattr(S, "COLLECT_LIMIT", collect_limit)
    monkeypatch.setattr(S, "STEP_BITS", step_bits)
    df, ordered = ranked
    counts = {c: len(v) for c, v in ordered.items()}
    m = min(counts.values())
    ends = {c: (round(0.9 * m), round(0.95 * m), m) for c in counts}
    ends[5] = (1, 2, counts[5])  # the first and last key of a group too
    ends[4] = (0, m)
    cuts = S.find_cuts(df, ends, counts)
    for c, ks in ends.items():
        assert cuts[c] == [ordered[c][k - 1] if k else None for k in ks]


def expected_splits(ordered, fractions, balance):
    """review_id -> split, from the keys in Python: the split from the key, then per (split,
    class) the smallest keys up to the smallest class's size in that split."""
    groups = {}
    for c, keys in ordered.items():
        for key, rid in keys:
            groups.setdefault(S.py_split_of_key(key, fractions), {}).setdefault(c, []).append((key, rid))
    out = {}
    for split, by_class in groups.items():
        m = min(len(v) for v in by_class.values()) if balance else None
        for members in by_class.values():
            for key, rid in sorted(members)[:m]:
                out[rid] = split
    return out


@pytest.mark.parametrize("balance", [True, False])
def test_assign_splits_follows_the_keys_whatever_the_partitioning(ranked, balance):
    df, ordered = ranked
    base = df.drop(S.KEY)
    expected = expected_splits(ordered, (0.8, 0.1, 0.1), balance)
    for layout in (base.repartition(7), base.coalesce(1), base.repartition(3, "star_rating")):
        assigned, plan = S.balance_and_split(layout, (0.8, 0.1, 0.1), balance, seed=11)
        got = {r.review_id: r.split for r in assigned.select("review_id", "split").collect()}
        assert got == expected
    per = {}
    for rid, split in expected.items():
        per[split] = per.get(split, 0) + 1
    assert {s: sum(plan["kept"][s].values()) for s in S.SPLITS} == per
    if balance:
        assert all(len(set(plan["kept"][s].values())) == 1 for s in S.SPLITS)


def test_splits_never_move_as_the_lake_grows(spark, ranked):
    """Prepare, append reviews (other classes in other proportions), prepare again: no
    review that both runs keep changes split, and no earlier test or validation review
    reaches train."""
    df, _ = ranked
    base = df.drop(S.KEY)
    rng = np.random.default_rng(8)
    ratings = rng.choice([1, 2, 3, 4, 5], 4000, p=[0.5, 0.2, 0.1, 0.1, 0.1])
    more = frame(spark, [(f"N{i:06d}", int(r), "text", "Toys") for i, r in enumerate(ratings)])
    f = (0.9, 0.05, 0.05)
    before, _ = S.balance_and_split(base, f, True, seed=4)
    after, _ = S.balance_and_split(base.unionByName(more), f, True, seed=4)
    first = {r.review_id: r.split for r in before.select("review_id", "split").collect()}
    second = {r.review_id: r.split for r in after.select("review_id", "split").collect()}
    both = set(first) & set(second)
    assert len(both) > 0.5 * len(first)
    assert all(first[r] == second[r] for r in both)
    held_out = {r for r, s in first.items() if s != "train"}
    assert not {r for r, s in second.items() if s == "train"} & held_out
    # the unbalanced assignment of every earlier review is the same too
    all_before, _ = S.balance_and_split(base, f, False, seed=4)
    all_after, _ = S.balance_and_split(base.unionByName(more), f, False, seed=4)
    a = {r.review_id: r.split for r in all_before.collect()}
    b = {r.review_id: r.split for r in all_after.collect()}
    assert len(a) == 3000 and all(b[r] == s for r, s in a.items())


def test_another_seed_gives_another_sample(spark, ranked):
    df, _ = ranked
    base = df.drop(S.KEY)
    a, _ = S.balance_and_split(base, (0.9, 0.05, 0.05), True, seed=1)
    b, _ = S.balance_and_split(base, (0.9, 0.05, 0.05), True, seed=2)
    a_ids = {r.review_id for r in a.where("split = 'test'").collect()}
    b_ids = {r.review_id for r in b.where("split = 'test'").collect()}
    assert a_ids and b_ids and a_ids != b_ids
    for out in (a, b):   # each balanced within its test split
        per_class = out.where("split = 'test'").groupBy("star_rating").count().collect()
        assert len(per_class) == 5 and len({r["count"] for r in per_class}) == 1


# --------------------------------------------------------------------------- encoder


@pytest.mark.parametrize("length", [4, 8, 64])
def test_encoder_matches_the_tokenizer(tok, length):
    enc = E.Encoder(tok.backend_tokenizer.to_str(), length, tok.pad_token_id, tok.sep_token_id)
    ids, mask, n_tokens = enc.encode(TEXTS + [None])
    ref = tok(TEXTS + [""], max_length=length, truncation=True, padding="max_length")
    assert ids.tolist() == ref["input_ids"]
    assert mask.tolist() == ref["attention_mask"]
    full = tok(TEXTS + [""])["input_ids"]
    # the full length, counted up to length + 1 (above length: truncated)
    assert n_tokens.tolist() == [min(len(x), length + 1) for x in full]
    assert ids.shape == (len(TEXTS) + 1, length) and ids.dtype == np.int32


def test_ascii_texts_take_the_ascii_normalizer_with_the_same_ids(tok):
    enc = E.Encoder(tok.backend_tokenizer.to_str(), 16, tok.pad_token_id, tok.sep_token_id)
    assert enc._ascii_batch is not None
    texts = ["Tabs\tand\r\nnew lines, NUL\x00 and BEL\x07 controls; CAPS!", "ASCII only",
             "caf\u00e9 \u00fcber", "\u4e2d\u6587 mixed with ASCII", "  ", "E\u0301 combining"]
    assert [e.ids for e in enc._encode_all(texts)] == \
        [e.ids for e in tok.backend_tokenizer.encode_batch(texts)]
    ascii_only = [t for t in texts if t.isascii()]
    assert [e.ids for e in enc._ascii_batch(ascii_only)] == \
        [e.ids for e in tok.backend_tokenizer.encode_batch(ascii_only)]
    # a tokenizer whose normalizer is not BERT's keeps its own for every text
    from tokenizers import Tokenizer, normalizers

    other = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    other.normalizer = normalizers.Lowercase()
    assert E.Encoder(other.to_str(), 16, tok.pad_token_id, tok.sep_token_id)._ascii_batch is None


def _ascii_fuzz(n: int, seed: int) -> list[str]:
    """ASCII texts heavy in what BERT's normalizer acts on: every control character, capitals,
    line ends, punctuation and the special tokens' texts in several cases, whole and broken
    up by control characters."""
    rng = np.random.default_rng(seed)
    common = [chr(c) for c in range(128)] + [
        " ", " ", "word", "Word", "WORDS", "fox", "quick", "\r\n", "\r", "\t", "\x0b\x0c", "[",
        "]", "don't", "A" * 120]
    rare = ["[CLS]", "[cls]", "[SeP]", "[UNK]", "[MASK]x", "[PAD]", "[C\x00LS]", "[S\x1fEP]",
            "[[SEP]]"]
    p = np.r_[np.full(len(common), 0.99 / len(common)), np.full(len(rare), 0.01 / len(rare))]
    pieces = common + rare
    return ["".join(rng.choice(pieces, size=rng.integers(0, 40), p=p)) for _ in range(n)]


@pytest.mark.parametrize("clean_text,lowercase", [(True, True), (True, False), (False, True)])
def test_the_ascii_path_gives_the_tokenizers_ids_on_every_kind_of_ascii_text(
        tok, clean_text, lowercase):
    """The ASCII path normalizes in Python and runs the tokenizer without its normalizer;
    texts with a special token's text go through the tokenizer's normalizer instead. The ids
    are the tokenizer's own on every text, for BERT's normalizer options that apply to
    ASCII."""
    from tokenizers import Tokenizer, normalizers

    own = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    own.normalizer = normalizers.BertNormalizer(clean_text=clean_text, lowercase=lowercase,
                                                handle_chinese_chars=True, strip_accents=None)
    enc = E.Encoder(own.to_str(), 16, tok.pad_token_id, tok.sep_token_id)
    assert isinstance(enc._ascii_batch, E._AsciiEncoder)
    texts = _ascii_fuzz(3000, seed=11) + [
        "plain text", "UPPER Case", "bell\x07inside", "del\x7fchar", "cr\rinside", "[CLS]"]
    assert all(t.isascii() for t in texts)
    assert [e.ids for e in enc._encode_all(texts)] == [e.ids for e in own.encode_batch(texts)]
    # both routes were taken: most texts without the Rust normalizer, the specials' with it
    special = enc._ascii_batch.raw_specials(texts, enc._ascii_batch.normalize(texts))
    assert 100 < len(special) < len(texts) // 2


def test_a_normalized_added_token_with_whitespace_keeps_the_tokenizers_normalizer(tok):
    """Such a token is matched in BERT's normalized text, where tabs and line ends are
    spaces: the Python normalizer, which leaves them, does not apply."""
    from tokenizers import AddedToken, Tokenizer

    own = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    own.add_tokens([AddedToken("new york", normalized=True)])
    enc = E.Encoder(own.to_str(), 16, tok.pad_token_id, tok.sep_token_id)
    assert enc._ascii_batch is None
    texts = ["in new\tyork", "New\r\nYork city", "new york"]
    assert [e.ids for e in enc._encode_all(texts)] == [e.ids for e in own.encode_batch(texts)]


def test_encoder_is_built_once_per_process(tok, monkeypatch):
    monkeypatch.setattr(E, "_ENCODERS", {})
    calls = []

    def source():
        calls.append(1)
        return tok.backend_tokenizer.to_str()

    a = E.cached_encoder("k1", 16, tok.pad_token_id, tok.sep_token_id, source)
    b = E.cached_encoder("k1", 16, tok.pad_token_id, tok.sep_token_id, source)
    c = E.cached_encoder("k1", 32, tok.pad_token_id, tok.sep_token_id, source)
    assert a is b and a is not c and len(calls) == 2


def test_spark_encoders_match_the_encoder(spark, tok):
    """mapInArrow (the stage's) and the pandas UDF give the encoder's output, other columns
    pass through."""
    info = TK.info(tok, "trained-wordpiece", None)
    df = spark.createDataFrame([(i, t, i % 5) for i, t in enumerate(TEXTS)],
                               "i int, t string, label int").repartition(3)
    frame_out, bc1 = E.encode_frame(df, "t", info.backend_json, info.key, 16, info.pad_id,
                                    info.sep_id)
    udf, bc2 = E.make_encode_udf(spark, info.backend_json, info.key, 16, info.pad_id, info.sep_id)
    try:
        assert frame_out.columns == ["i", "label", "input_ids", "input_mask", "n_tokens"]
        by_frame = frame_out.collect()
        by_udf = df.select("i", udf("t").alias("f")).select("i", "f.*").collect()
    finally:
        bc1.unpersist()
        bc2.unpersist()
    enc = E.Encoder(info.backend_json, 16, info.pad_id, info.sep_id)
    ids, mask, n_tokens = enc.encode(TEXTS)
    for rows in (by_frame, by_udf):
        assert sorted(r.i for r in rows) == list(range(len(TEXTS)))
        for r in rows:
            assert r.input_ids == ids[r.i].tolist() and r.input_mask == mask[r.i].tolist()
            assert r.n_tokens == n_tokens[r.i]
    assert all(r.label == r.i % 5 for r in by_frame)


def test_tokenizer_is_built_once_per_executor_process(spark, tok):
    info = TK.info(tok, "trained-wordpiece", None)
    key = info.key + "-once"
    df = spark.range(1200).select(F.concat(F.lit("review number "), F.col("id").cast("string"))
                                  .alias("t")).repartition(6)
    with spark_conf(spark, {"spark.sql.execution.arrow.maxRecordsPerBatch": "50"}):  # many batches
        out, bc = E.encode_frame(df, "t", info.backend_json, key, 16, info.pad_id, info.sep_id)
        assert out.count() == 1200
        bc.unpersist()

        def builds(batches):
            import os

            import pyarrow as pa

            from reviewlake.features import encode

            for _ in batches:
                pass
            yield pa.RecordBatch.from_pydict({"pid": [os.getpid()],
                                              "n": [encode.BUILDS.get((key, 16), 0)]})

        seen = df.mapInArrow(builds, "pid long, n long").collect()
    # 6 tasks of 4 batches each ran in the reused Python workers: one build per worker
    assert {r.n for r in seen} <= {0, 1} and any(r.n == 1 for r in seen)


def test_tokenizer_checks(tok, tmp_path):
    TK.check_bert_like(tok, 64, "x")
    with pytest.raises(UserError, match="longer than the tokenizer's model_max_length 512"):
        TK.check_bert_like(tok, 513, "x")
    info = TK.info(tok, "trained-wordpiece", None)
    tok.save_pretrained(str(tmp_path / "t"))
    vocab = (tmp_path / "t" / "vocab.txt").read_text(encoding="utf-8")
    import hashlib
    assert hashlib.sha256(vocab.encode("utf-8")).hexdigest() == info.vocab_sha256
    assert info.vocab_size == len(vocab.splitlines()) and info.lowercase is True
    assert info.special_tokens == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
