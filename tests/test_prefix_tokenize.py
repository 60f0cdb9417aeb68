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
    # the default budgets, and budgets small enough that many prefixes fall short: alone,
    # and as a cascade (a longer prefix for those the first left short, then the full text)
    stats = {}
    for budget in (None, 9, 40, 4 * length, 61, (9, 40), (2 * length, 5 * length + 3)):
        enc = encoder(tok, length, budget)
        got = enc.encode(texts)
        for w, g, name in zip(want, got, ("input_ids", "input_mask", "n_tokens")):
            np.testing.assert_array_equal(g, w, err_msg=f"{name}, budget {budget}")
        stats[budget] = enc.stats
    # both paths ran: prefixes that filled the sequence, and prefixes that fell short
    assert stats[None]["prefixed"] > 0 and stats[4 * length]["prefixed"] > 0
    assert stats[9]["fallbacks"] > 0
    assert stats[(2 * length, 5 * length + 3)]["retried"] > 0
    for st in stats.values():   # every text is counted once: from a prefix, or in full
        assert st["prefixed"] + st["fallbacks"] <= st["texts"] == len(texts)


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
    assert encoder(tok, 16).budgets == E.prefix_budgets(16) == (160, 256)
    assert E.prefix_budgets(64) == (320, 512) and E.prefix_budgets(512) == (2560, 4096)


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
