"""Long reviews are tokenized from a prefix cut at a space, and in full only when the prefix
yields too few tokens: the ids must be exactly those of the full text, on long, short, CJK,
no-space and quirky texts, whatever the prefix length."""
import numpy as np
import pytest

from reviewlake.features import encode as E
from reviewlake.features import tokenizer as TK

WORDS = ("the battery lasts all day and charges quickly but the case scratched within a week "
         "extraordinarily disappointing customer-service experience, refund requested!").split()


def quirky_texts(seed: int, n: int) -> list[str]:
    """Texts of every kind the prefix must survive: long and short English, CJK without
    spaces, no spaces at all, runs of spaces, control characters, no-break spaces, emoji,
    accents, words longer than WordPiece's 100 characters, punctuation glued to words."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 8
        words = [WORDS[j] for j in rng.integers(0, len(WORDS), int(rng.integers(1, 400)))]
        if kind == 0:
            out.append(" ".join(words))
        elif kind == 1:   # CJK, no spaces: every ideograph is its own word to BERT
            out.append("".join(chr(0x4E00 + int(c)) for c in rng.integers(0, 500, int(rng.integers(1, 600)))))
        elif kind == 2:   # one long run with no space
            out.append("x" * int(rng.integers(50, 3000)) + "-".join(words))
        elif kind == 3:   # spaces in runs and at the cut, control characters, nbsp
            out.append("   ".join(words) + "\x1a\x1b " + "\u00a0".join(words[:20]) + "  ")
        elif kind == 4:   # emoji, accents, curly quotes, fullwidth punctuation
            out.append(" ".join(w + rng.choice(["", "\U0001F600", "\u00e9", "\u201d", "\uff01"])
                                for w in words))
        elif kind == 5:   # words longer than max_input_chars_per_word ([UNK])
            out.append(" ".join(("supercalifragilistic" * 8 if j % 7 == 0 else w)
                                for j, w in enumerate(words)))
        elif kind == 6:   # short
            out.append(" ".join(words[:int(rng.integers(0, 6))]))
        else:             # mixed scripts and a space right after the budget
            out.append(" ".join(words[:30]) + " " + "\u4e2d\u6587" * 40 + " " + " ".join(words))
    return out


@pytest.fixture(scope="module")
def tok():
    return TK.train_wordpiece(quirky_texts(1, 400), vocab_size=600)


def encoder(tok, length, prefix_chars=None):
    return E.Encoder(tok.backend_tokenizer.to_str(), length, tok.pad_token_id,
                     tok.sep_token_id, prefix_chars)


@pytest.mark.parametrize("length", [3, 16, 64, 128])
def test_prefix_ids_equal_the_full_texts(tok, length):
    texts = quirky_texts(2, 400) + [None, "", " ", "a " * 5000]
    full = encoder(tok, length, prefix_chars=0)
    want = full.encode(texts)
    assert full.stats["prefixed"] == 0 and full.stats["fallbacks"] == 0
    # the default budget, and budgets small enough that many prefixes fall short
    stats = {}
    for budget in (None, 9, 40, 4 * length, 61):
        enc = encoder(tok, length, budget)
        got = enc.encode(texts)
        for w, g, name in zip(want, got, ("input_ids", "input_mask", "n_tokens")):
            np.testing.assert_array_equal(g, w, err_msg=f"{name}, budget {budget}")
        stats[budget] = enc.stats
    # both paths ran: prefixes that filled the sequence, and prefixes that fell short
    assert stats[None]["prefixed"] > 0 and stats[4 * length]["prefixed"] > 0
    assert stats[9]["fallbacks"] > 0


def test_the_ids_are_the_reference_tokenizers(tok):
    """Against transformers' own call (truncation, padding), on the default budget."""
    texts = quirky_texts(3, 200)
    ids, mask, n_tokens = encoder(tok, 64).encode(texts)
    ref = tok(texts, max_length=64, truncation=True, padding="max_length")
    assert ids.tolist() == ref["input_ids"] and mask.tolist() == ref["attention_mask"]
    lengths = np.array([len(x) for x in tok(texts)["input_ids"]])
    np.testing.assert_array_equal(n_tokens, np.minimum(lengths, 65))
    np.testing.assert_array_equal(encoder(tok, 64).count(texts), lengths)


def test_cased_tokenizers_and_accents_keep_the_property():
    texts = quirky_texts(4, 160)
    cased = TK.train_wordpiece(texts, vocab_size=600, lowercase=False)
    want = encoder(cased, 32, 0).encode(texts)
    got = encoder(cased, 32, 20).encode(texts)
    for w, g in zip(want, got):
        np.testing.assert_array_equal(g, w)


def test_tokenizers_that_do_not_split_at_spaces_get_the_full_text(tok):
    from tokenizers import Tokenizer, pre_tokenizers

    other = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    other.pre_tokenizer = pre_tokenizers.Metaspace()
    enc = E.Encoder(other.to_str(), 16, tok.pad_token_id, tok.sep_token_id)
    assert enc.prefix_chars == 0
    enc.encode(["word " * 500])
    assert enc.stats["prefixed"] == 0
    assert encoder(tok, 16).prefix_chars == E.prefix_budget(16) == 256
    assert E.prefix_budget(512) == 4096
    assert E.cut_budgets(64) == (320, 512) and E.cut_budgets(16) == (160, 256)


def test_text_sample_is_seeded_and_bounded(spark):
    from reviewlake.features.job import text_sample

    df = spark.createDataFrame([(f"R{i:04d}", f"text {i}") for i in range(600)],
                               "review_id string, review_body string")
    a = text_sample(df, 50, 7, 600)
    b = text_sample(df.repartition(5), 50, 7, 600)
    c = text_sample(df, 50, 8, 600)
    assert len(a) == 50 and a == b and a != c
    assert sorted(text_sample(df, 1000, 7, 600)) == sorted(f"text {i}" for i in range(600))
    # the pre-filter never leaves fewer than asked
    assert all(len(text_sample(df, k, s, 600)) == k for k in (1, 3, 10) for s in range(5))


MARKUP = ["<br />", "<br/>", "< br >", "<p>", '<a href="http://x.example/a b">', "</a>", "&#34;",
          "&quot;", "&lt;3&gt;", "&amp", "AT&T", "&#x1F600;", "&eacute;", "\x1a", "\x0b", "\x0c",
          "\x1f", "\x85", "\u00a0", "\u2003", "\u200b", "e\u0301", "\r\n", "\t", "don't",
          "  ", "<3", "a<b", "x>y", "\u3000", "\ufeff", "\U0001F600"]


def markup_texts(seed: int, n: int) -> list[str]:
    """Long and short texts with the markup prepare.clean_text changes (and look-alikes it
    keeps), glued to words or between them, anywhere a cut may land."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(int(rng.integers(1, 300))):
            parts.append(WORDS[int(rng.integers(0, len(WORDS)))] if rng.random() < 0.8
                         else MARKUP[int(rng.integers(0, len(MARKUP)))])
            parts.append(rng.choice([" ", " ", " ", "", "  "]))
        out.append("".join(parts))
    return out


def straddling(budget: int) -> list[str]:
    """Plain English with one tag that has spaces inside, placed so that the last space
    before the budget falls inside the tag (or just around it)."""
    english = " ".join(WORDS * 20)
    tag = '<a href="http://x.example/a b c">'
    out = []
    for at in range(max(0, budget - len(tag) - 2), budget + 3):
        head = english[:at].rstrip()
        out.append(head + " " + tag + "link " + english)
    return out


@pytest.mark.parametrize("clean", [False, True], ids=["raw", "clean"])
def test_texts_cut_in_the_jvm_give_the_full_texts_ids_and_cleaning_counts(spark, tok, clean,
                                                                          monkeypatch):
    """encode_frame cuts long texts in Spark SQL before they reach Python; its ids, masks,
    token counts and (cleaning on) changed flags and tokens saved equal the full texts'
    computed in Python, on quirky and markup texts, at the default budget and at small odd
    budgets that put the cut everywhere."""
    from reviewlake.features.textclean import clean_texts

    cases = ((64, None), (16, (57, 101)), (32, (233,)))   # the JVM's budgets
    texts = quirky_texts(5, 240) + markup_texts(6, 240) + [None, "", " ", "a " * 5000,
                                                           "x" * 3000, "&amp; " * 900]
    texts += [t for length, budgets in cases
              for b in (budgets or E.cut_budgets(length)) for t in straddling(b) + [
                  # exactly k one-token words before the cut, k around the bound's limit
                  "the " * k + "x" * (b + 10) + " the end" for k in range(length - 4, length + 2)]]
    df = spark.createDataFrame(list(enumerate(texts)), "id int, body string").repartition(3)
    json_text = tok.backend_tokenizer.to_str()
    for length, budgets in cases:
        if budgets is not None:   # (the Python encoder's budget stays the default)
            monkeypatch.setattr(E, "cut_budgets", lambda n, b=budgets: b)
        full = encoder(tok, length, prefix_chars=0)
        inputs, changed = clean_texts(texts) if clean else (texts, None)
        want_ids, want_mask, want_n = full.encode(inputs)
        cut = E.cut_long_texts(df, "body", E.cut_budgets(length), length, clean)
        n_cut = cut.where(E.CUT_COLUMN).count()
        frame, bc = E.encode_frame(df, "body", json_text, f"jvm-cut-{length}-{budgets}", length,
                                   tok.pad_token_id, tok.sep_token_id, clean=clean)
        rows = sorted(frame.collect(), key=lambda r: r["id"])
        bc.unpersist()
        assert [r["id"] for r in rows] == list(range(len(texts)))
        assert E.CUT_COLUMN not in frame.columns and "body" not in frame.columns
        where = f"max_seq_length {length}, budgets {budgets}"
        np.testing.assert_array_equal(np.array([r["input_ids"] for r in rows]), want_ids, where)
        np.testing.assert_array_equal(np.array([r["input_mask"] for r in rows]), want_mask, where)
        np.testing.assert_array_equal(np.array([r["n_tokens"] for r in rows]), want_n, where)
        if clean:
            assert [r["text_changed"] for r in rows] == changed.tolist(), where
            saved = np.zeros(len(texts), dtype=np.int64)
            at = np.flatnonzero(changed)
            saved[at] = full.count([texts[i] for i in at]) - full.count([inputs[i] for i in at])
            assert [r["tokens_saved"] for r in rows] == saved.tolist(), where
        # the cut ran; at the default budget every long English text was cut in the JVM
        assert n_cut > 0, where
        if budgets is None:
            long_english = sum(1 for t in texts[:240:8] if len(t) > E.prefix_budget(length))
            assert n_cut >= long_english > 0, where
        monkeypatch.undo()


def test_the_jvm_cut_is_off_for_tokenizers_that_do_not_split_at_spaces(spark, tok):
    from tokenizers import Tokenizer, pre_tokenizers

    other = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    other.pre_tokenizer = pre_tokenizers.Metaspace()
    df = spark.createDataFrame([(1, "word " * 500)], "id int, body string")
    frame, bc = E.encode_frame(df, "body", other.to_str(), "metaspace-16", 16,
                               tok.pad_token_id, tok.sep_token_id)
    plan = frame._jdf.queryExecution().analyzed().toString()
    bc.unpersist()
    assert E.CUT_COLUMN not in plan
    frame, bc = E.encode_frame(df, "body", tok.backend_tokenizer.to_str(), "bert-16", 16,
                               tok.pad_token_id, tok.sep_token_id)
    assert E.CUT_COLUMN in frame._jdf.queryExecution().analyzed().toString()
    assert frame.collect()[0]["n_tokens"] == 17
    bc.unpersist()
