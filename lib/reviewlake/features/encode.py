"""BERT features of review texts, vectorised over Arrow batches.

Per Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows) the fast tokenizer's
batch encoder is called once (Rust, no per-row Python call into the tokenizer; ASCII reviews
skip the normalizer steps that cannot change ASCII text) and the padded id matrix is built with
numpy:

* ``input_ids``: ``[CLS] t1 .. tk [SEP] [PAD] ..`` of length ``max_seq_length``; a longer
  review keeps its first ``max_seq_length - 2`` tokens (as the tokenizer's own truncation
  does for one sequence);
* ``input_mask``: 1 for real tokens, 0 for padding (the attention mask);
* ``n_tokens``: the review's length in tokens before truncation, [CLS] and [SEP] included,
  counted up to ``max_seq_length + 1``: a value above ``max_seq_length`` means "truncated"
  (the exact length of a long review is not computed, see below; the token-length profile of
  ``_meta.json`` comes from full tokenization of a sample, :meth:`Encoder.count`).

Only the first ``max_seq_length - 2`` tokens of a review are kept, and real review bodies run
to ~20 KB, so a long review is tokenized from a prefix: its first ``prefix_chars`` characters
cut back to the last space. BERT's normalizer works character by character and its
pre-tokenizer splits at whitespace before WordPiece sees a word, so the tokens of such a
prefix are exactly the first tokens of the whole text. When the prefix yields more than
``max_seq_length - 2`` tokens, its truncated ids are the full text's; otherwise (few, long
words; no space at all, as in CJK text) the full text is tokenized. Tokenizers whose
normalizer or pre-tokenizer is not BERT's always get the full text.

Two ways to run it in Spark, both Arrow-vectorised:

* :func:`encode_frame` (what the stage uses): ``mapInArrow``; the id matrices become Arrow
  list arrays without a copy and the other columns pass through untouched;
* :func:`make_encode_udf`: a pandas UDF (a column expression, for use in other pipelines).
  Spark converts every array a pandas UDF returns element by element in Python, which costs
  about a quarter of the tokenizer's own time per row (benchmarks/tokenization.py measures both).

``segment_ids`` (all zeros) and ``label_ids`` are plain Spark expressions.

The tokenizer reaches the executors as a broadcast of its JSON and is built once per Python
worker process (Spark reuses workers), in :data:`_ENCODERS` keyed by the JSON's SHA-256 and
the length: not per row, not per batch. Executors need ``tokenizers``, numpy and pyarrow,
never ``transformers`` or TensorFlow.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

import numpy as np
import pandas as pd  # module level: the UDF's type hints are resolved here

_ENCODERS: dict[tuple[str, int], "Encoder"] = {}
BUILDS: dict[tuple[str, int], int] = {}  # how often this process built each encoder (tests)


class Encoder:
    """A tokenizers.Tokenizer (no truncation, no padding: both done here) and the ids needed
    to pad and truncate like BERT."""

    def __init__(self, tokenizer_json: str, max_seq_length: int, pad_id: int, sep_id: int,
                 prefix_chars: int | None = None):
        """``prefix_chars``: the prefix length for long texts (None: :func:`prefix_budget`;
        0: always the full text)."""
        if max_seq_length < 2:
            raise ValueError("max_seq_length must be at least 2")
        self.tokenizer = _untruncated(tokenizer_json)
        self._batch = _batch_encoder(self.tokenizer)
        self._ascii_batch = _ascii_batch_encoder(tokenizer_json, self.tokenizer)
        self.max_seq_length = max_seq_length
        self.pad_id = pad_id
        self.sep_id = sep_id
        self._positions = np.arange(max_seq_length, dtype=np.int32)
        if prefix_chars is None:
            prefix_chars = prefix_budget(max_seq_length)
        self.prefix_chars = prefix_chars if _splits_at_spaces(self.tokenizer) else 0
        # this process (tests, benchmarks)
        self.stats = {"texts": 0, "prefixed": 0, "fallbacks": 0, "cut_in_jvm": 0}

    def encode(self, texts: list, cut: list | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input_ids (n, L) int32, input_mask (n, L) int32, n_tokens (n,) int32, at most
        L + 1). ``cut`` marks texts that are already a prefix, cut in the JVM where a lower
        bound proved it holds more than L tokens (:func:`cut_long_texts`): they are tokenized
        as they are, and must come out truncated."""
        length = self.max_seq_length
        texts = [t if isinstance(t, str) else "" for t in texts]
        inputs, prefixed = self._prefixes(texts, cut)
        encodings = self._encode_all(inputs)
        short = [i for i in prefixed if len(encodings[i].ids) <= length]
        if short:    # the prefix did not fill the sequence: the full text decides
            for i, enc in zip(short, self._encode_all([texts[i] for i in short])):
                encodings[i] = enc
        if cut is not None:
            jvm = [i for i, c in enumerate(cut) if c]
            wrong = [i for i in jvm if len(encodings[i].ids) <= length]
            if wrong:   # the bound is a proof; this would mean ids that differ from the text's
                raise RuntimeError(
                    f"a text cut in the JVM gave {len(encodings[wrong[0]].ids)} tokens, not more "
                    f"than {length}: the cut's token bound does not hold for this tokenizer "
                    f"(set prepare.jvm_prefix false, and please report it): {texts[wrong[0]][:80]!r}")
            self.stats["cut_in_jvm"] += len(jvm)
        self.stats["texts"] += len(texts)
        self.stats["prefixed"] += len(prefixed) - len(short)
        self.stats["fallbacks"] += len(short)
        n = len(encodings)
        ids = np.full((n, length), self.pad_id, dtype=np.int32)
        n_tokens = np.empty(n, dtype=np.int32)
        for i, enc in enumerate(encodings):
            row = enc.ids
            k = len(row)
            if k > length:
                row = row[:length]
                n_tokens[i] = length + 1
                k = length
            else:
                n_tokens[i] = k
            ids[i, :k] = row
        truncated = n_tokens > length
        if truncated.any():
            ids[truncated, length - 1] = self.sep_id
        mask = (self._positions < np.minimum(n_tokens, length)[:, None]).astype(np.int32)
        return ids, mask, n_tokens

    def count(self, texts: list) -> np.ndarray:
        """Full lengths in tokens ([CLS] and [SEP] included) of whole texts, no prefix."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        return np.fromiter((len(e.ids) for e in self._encode_all(texts)), dtype=np.int64,
                           count=len(texts))

    def _prefixes(self, texts: list[str], jvm_cut: list | None = None
                  ) -> tuple[list[str], list[int]]:
        """The texts to tokenize (a long text's prefix, cut at a space) and where a prefix
        stands in for the text (not those cut in the JVM already: ``jvm_cut``)."""
        budget = self.prefix_chars
        if not budget:
            return texts, []
        inputs, prefixed = texts, []
        for i, t in enumerate(texts):
            if len(t) > budget and not (jvm_cut is not None and jvm_cut[i]):
                cut = t.rfind(" ", 0, budget + 1)
                if cut > 0:
                    if not prefixed:
                        inputs = list(texts)
                    inputs[i] = t[:cut]
                    prefixed.append(i)
        return inputs, prefixed

    def _encode_all(self, texts: list[str]) -> list:
        """Encodings of ``texts`` in order: ASCII texts through the ASCII normalizer (when the
        tokenizer has one), the others through the tokenizer's own."""
        if self._ascii_batch is None:
            return self._batch(texts)
        is_ascii = [t.isascii() for t in texts]
        if all(is_ascii):
            return self._ascii_batch(texts)
        if not any(is_ascii):
            return self._batch(texts)
        out: list = [None] * len(texts)
        for flag, encode in ((True, self._ascii_batch), (False, self._batch)):
            at = [i for i, a in enumerate(is_ascii) if a is flag]
            for i, e in zip(at, encode([texts[i] for i in at])):
                out[i] = e
        return out


def prefix_budget(max_seq_length: int) -> int:
    """Characters of a long text tokenized first: ~8 per kept token, about twice what
    English review text needs (4-5 characters per WordPiece token with its space), so the
    full text is rarely needed."""
    return max(256, 8 * max_seq_length)


def _splits_at_spaces(tokenizer) -> bool:
    """Whether a space always ends a word for this tokenizer (BERT's character-wise
    normalizer, or none, and BERT's pre-tokenizer): then a prefix cut at a space tokenizes to
    a prefix of the text's tokens."""
    from tokenizers import normalizers, pre_tokenizers

    norm = tokenizer.normalizer
    return (norm is None or type(norm) is normalizers.BertNormalizer) and \
        type(tokenizer.pre_tokenizer) is pre_tokenizers.BertPreTokenizer


def _untruncated(tokenizer_json: str):
    """The tokenizer of ``tokenizer_json`` without truncation and padding (done by Encoder)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _batch_encoder(tokenizer) -> Callable[[list], list]:
    # Offsets are not needed: the fast path skips tracking them when available.
    return getattr(tokenizer, "encode_batch_fast", None) or tokenizer.encode_batch


def _ascii_batch_encoder(tokenizer_json: str, tokenizer) -> Callable[[list], list] | None:
    """The same tokenizer with BERT's normalizer minus the steps that cannot change ASCII text
    (Chinese-character spacing; accent stripping, whose NFD decomposition leaves ASCII as it
    is), or None when the normalizer is not BERT's. The same ids for every ASCII text, ~20%
    less time per review (benchmarks/NOTES.md)."""
    from tokenizers import normalizers

    norm = tokenizer.normalizer
    if type(norm) is not normalizers.BertNormalizer:
        return None
    ascii_tok = _untruncated(tokenizer_json)
    ascii_tok.normalizer = normalizers.BertNormalizer(
        clean_text=norm.clean_text, handle_chinese_chars=False, strip_accents=False,
        lowercase=norm.lowercase)
    return _batch_encoder(ascii_tok)


def cached_encoder(key: str, max_seq_length: int, pad_id: int, sep_id: int,
                   tokenizer_json: Callable[[], str]) -> Encoder:
    """The encoder of this process for a tokenizer, built on first use."""
    enc = _ENCODERS.get((key, max_seq_length))
    if enc is None:
        # One Spark task per core: the tokenizer must not start its own thread pool in each.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        enc = _ENCODERS[(key, max_seq_length)] = Encoder(tokenizer_json(), max_seq_length,
                                                         pad_id, sep_id)
        BUILDS[(key, max_seq_length)] = BUILDS.get((key, max_seq_length), 0) + 1
    return enc


ENCODED_DDL = "input_ids array<int>, input_mask array<int>, n_tokens int"
ENCODED_COLUMNS = ("input_ids", "input_mask", "n_tokens")


CLEANING_COLUMNS = ("text_changed", "tokens_saved")


def encode_batches(batches: Iterator, text_column: str, encoder: Callable[[], Encoder],
                   clean: bool = False) -> Iterator:
    """Arrow record batches -> the same batches without the text column, plus the features.
    With ``clean``, texts go through :func:`..textclean.clean_texts` first and two more
    columns say whether each changed and how many tokens (of the full, untruncated counts)
    cleaning saved it."""
    import pyarrow as pa

    from .textclean import clean_texts

    for batch in batches:
        enc = encoder()
        names = batch.schema.names
        text_at = names.index(text_column)
        texts = batch.column(text_at).to_pylist()
        cut = None
        drop = {text_at}
        if CUT_COLUMN in names:   # cut_long_texts ran in the JVM
            drop.add(names.index(CUT_COLUMN))
            cut = batch.column(names.index(CUT_COLUMN)).to_pylist()
        if clean:
            raw, (texts, changed) = texts, clean_texts(texts)
        ids, mask, n_tokens = enc.encode(texts, cut)
        rows, length = ids.shape
        offsets = pa.array(np.arange(0, rows * length + 1, length, dtype=np.int32))
        columns = [batch.column(i) for i in range(len(names)) if i not in drop]
        columns += [pa.ListArray.from_arrays(offsets, pa.array(ids.reshape(-1))),
                    pa.ListArray.from_arrays(offsets, pa.array(mask.reshape(-1))),
                    pa.array(n_tokens)]
        out_names = [n for i, n in enumerate(names) if i not in drop] + list(ENCODED_COLUMNS)
        if clean:
            saved = np.zeros(rows, dtype=np.int32)
            at = np.flatnonzero(changed)
            if at.size:   # the changed texts, raw and clean, counted in full
                saved[at] = enc.count([raw[i] for i in at]) - enc.count([texts[i] for i in at])
            columns += [pa.array(changed), pa.array(saved)]
            out_names += list(CLEANING_COLUMNS)
        yield pa.RecordBatch.from_arrays(columns, names=out_names)


def encode_frame(df, text_column: str, tokenizer_json: str, key: str, max_seq_length: int,
                 pad_id: int, sep_id: int, clean: bool = False, jvm_prefix: bool = True,
                 cut_observation=None):
    """``df`` with ``text_column`` replaced by input_ids, input_mask and n_tokens (and, with
    ``clean``, text_changed and tokens_saved) (mapInArrow); returns (DataFrame, the broadcast
    to release when the job is done). With ``jvm_prefix`` (and a tokenizer that splits at
    spaces) long texts are cut in the JVM first (:func:`cut_long_texts`): the same ids and
    counts, without moving the rest of a long text to Python; ``cut_observation`` (a
    pyspark Observation) then counts ``texts`` and ``cut_in_jvm``."""
    from pyspark.sql.types import (ArrayType, BooleanType, IntegerType, StructField,
                                   StructType)

    fields = [f for f in df.schema.fields if f.name != text_column]
    if jvm_prefix and _splits_at_spaces(_untruncated(tokenizer_json)):
        df = cut_long_texts(df, text_column, cut_budgets(max_seq_length), max_seq_length,
                            clean)
        if cut_observation is not None:
            from pyspark.sql import functions as F

            df = df.observe(cut_observation, F.count(F.lit(1)).alias("texts"),
                            F.sum(F.col(CUT_COLUMN).cast("long")).alias("cut_in_jvm"))
    broadcast = df.sparkSession.sparkContext.broadcast(tokenizer_json)
    schema = StructType(fields + [
        StructField("input_ids", ArrayType(IntegerType(), True), True),
        StructField("input_mask", ArrayType(IntegerType(), True), True),
        StructField("n_tokens", IntegerType(), True)] + ([
            StructField("text_changed", BooleanType(), True),
            StructField("tokens_saved", IntegerType(), True)] if clean else []))

    def encoder() -> Encoder:
        return cached_encoder(key, max_seq_length, pad_id, sep_id, lambda: broadcast.value)

    def encode_partition(batches):
        return encode_batches(batches, text_column, encoder, clean)

    return df.mapInArrow(encode_partition, schema), broadcast


# -- long texts cut in the JVM ----------------------------------------------------------------
#
# A long review's prefix (see Encoder) can be cut before the text leaves the JVM, so the rest
# of it never crosses to the Python worker, when the JVM can prove, without the tokenizer, that
# the prefix holds more than max_seq_length tokens. The proof is a lower bound that holds for
# BERT's normalizer and pre-tokenizer (what _splits_at_spaces checks) whatever the vocabulary:
#
# * the pre-tokenizer splits at whitespace and around every punctuation character, and an
#   ASCII punctuation character is a token of its own ([UNK] at worst);
# * a run of characters between splits that holds an ASCII letter or digit is at least one
#   token: the normalizer keeps ASCII letters and digits (it lowercases them), and WordPiece
#   makes at least one token ([UNK]) of a word;
# * the normalizer may delete characters (controls, accents) and so join runs, but it turns
#   only whitespace into spaces: runs are split only at space, tab, CR, LF and the ASCII
#   punctuation here, so the count never exceeds the true one.
#
# Markup that prepare.clean_text would change is counted as nothing: tag-like ``<...>`` as a
# space, entity-like ``&...;`` removed (both only join or drop runs). A prefix ends before a
# space or before an unclosed ``<`` (a tag the cut would split), so its tokens are the first
# tokens of the whole text, cleaned or not. With cleaning, a text is cut only when nothing
# after the prefix would be cleaned (no markup, control, special whitespace, double or trailing
# space): then the cleaning's counts (text_changed, tokens_saved) are the prefix's, exactly.
_SPLITS = r" \t\n\r!-/:-@\[-`{-~"
_RUN = rf"(?<![^{_SPLITS}])[^{_SPLITS}]*[A-Za-z0-9][^{_SPLITS}]*"
_ASCII_PUNCT = r"[!-/:-@\[-`{-~]"
_TAG_LIKE = r"<[^<>]*>"
_ENTITY_LIKE = r"&[#A-Za-z0-9]*;?"
_UNCLOSED = r"<[^>]*$"
# a superset of what textclean's _MARKUP_HINT finds in a text's rest (which starts at a space)
_REST_MARKUP = (r"[<&\x00-\x1f\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
                r"\u205f\u3000]|  | $")
CUT_COLUMN = "_cut_in_jvm"


def cut_budgets(max_seq_length: int) -> tuple[int, ...]:
    """The prefix lengths the JVM tries, shortest first: ~5 characters per kept token (what
    English review text needs, so most long texts are cut there), then the Python encoder's
    :func:`prefix_budget` for texts of longer words."""
    return (max(160, 5 * max_seq_length), prefix_budget(max_seq_length))


def cut_long_texts(df, text_column: str, budgets: int | tuple[int, ...], max_seq_length: int,
                   clean: bool = False):
    """``df`` with each long text replaced by its prefix where the prefix provably holds more
    than ``max_seq_length`` tokens (``[CLS]`` and ``[SEP]`` included), trying each of
    ``budgets`` (characters, shortest first), and a boolean column :data:`CUT_COLUMN` saying
    which were cut. Spark SQL only: runs in the JVM, before the texts are sent to Python."""
    from pyspark.sql import functions as F

    body = F.col(text_column)
    choice = None
    for budget in ((budgets,) if isinstance(budgets, int) else budgets):
        head = F.substring(body, 1, budget + 1)    # Python's rfind(" ", 0, budget + 1)
        from_end = F.locate(" ", F.reverse(head))  # the last space, from the end; 0: none
        prefix = F.regexp_replace(head.substr(F.lit(1), F.length(head) - from_end),
                                  _UNCLOSED, "")
        visible = F.regexp_replace(F.regexp_replace(prefix, _TAG_LIKE, " "), _ENTITY_LIKE, "")
        bound = (F.regexp_count(visible, F.lit(_RUN))
                 + F.regexp_count(visible, F.lit(_ASCII_PUNCT)))
        ok = (F.length(body) > budget) & (from_end > 0) & (bound >= max_seq_length - 1)
        if clean:
            rest = body.substr(F.length(prefix) + 1, F.length(body))
            ok = ok & ~rest.rlike(_REST_MARKUP)
        ok = F.coalesce(ok, F.lit(False))
        choice = F.when(ok, prefix) if choice is None else choice.when(ok, prefix)
    text = choice.otherwise(F.lit(None).cast("string"))
    return (df.withColumn(CUT_COLUMN, text.isNotNull())
            .withColumn(text_column, F.coalesce(text, body)))


def make_encode_udf(spark, tokenizer_json: str, key: str, max_seq_length: int, pad_id: int,
                    sep_id: int):
    """(pandas UDF text -> struct<input_ids, input_mask, n_tokens>, the broadcast to release)."""
    from pyspark.sql.functions import pandas_udf

    broadcast = spark.sparkContext.broadcast(tokenizer_json)

    @pandas_udf(ENCODED_DDL)
    def encode_reviews(texts: pd.Series) -> pd.DataFrame:
        enc = cached_encoder(key, max_seq_length, pad_id, sep_id, lambda: broadcast.value)
        ids, mask, n_tokens = enc.encode(texts.tolist())
        return pd.DataFrame({"input_ids": list(ids), "input_mask": list(mask),
                             "n_tokens": n_tokens})

    return encode_reviews, broadcast
