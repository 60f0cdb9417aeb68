"""BERT features of review texts, vectorised over Arrow batches.

Per Arrow batch (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows) the fast tokenizer's
batch encoder is called once (Rust, no per-row Python call into the tokenizer; ASCII reviews
are normalized in Python, :class:`_AsciiEncoder`) and the padded id matrix is built with
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
to ~20 KB, so a long review is tokenized from a prefix: its first characters (a budget) cut
back to the last space. BERT's normalizer works character by character and its
pre-tokenizer splits at whitespace before WordPiece sees a word, so the tokens of such a
prefix are exactly the first tokens of the whole text. When the prefix yields more than
``max_seq_length - 2`` tokens, its truncated ids are the full text's; otherwise (long words;
no space at all, as in CJK text) the next, longer budget is tried, and at last the full text.
The budgets (:func:`prefix_budgets`) are ~5 characters per kept token, what English review
text needs, so most long reviews are done at the first, then ~8. Tokenizers whose normalizer
or pre-tokenizer is not BERT's always get the full text.

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
import re
from typing import Callable, Iterator

import numpy as np
import pandas as pd  # module level: the UDF's type hints are resolved here

_ENCODERS: dict[tuple[str, int], "Encoder"] = {}
BUILDS: dict[tuple[str, int], int] = {}  # how often this process built each encoder (tests)


class Encoder:
    """A tokenizers.Tokenizer (no truncation, no padding: both done here) and the ids needed
    to pad and truncate like BERT."""

    def __init__(self, tokenizer_json: str, max_seq_length: int, pad_id: int, sep_id: int,
                 prefix_chars: int | tuple[int, ...] | None = None):
        """``prefix_chars``: the prefix budgets for long texts, shortest first (None:
        :func:`prefix_budgets`; one number: that budget alone; 0: always the full text)."""
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
            prefix_chars = prefix_budgets(max_seq_length)
        budgets = (prefix_chars,) if isinstance(prefix_chars, int) else tuple(prefix_chars)
        self.budgets = tuple(b for b in budgets if b) if _splits_at_spaces(self.tokenizer) else ()
        # this process (tests, benchmarks): texts done from a prefix, done from a longer
        # budget's prefix after the first fell short, done in full after a prefix fell short
        self.stats = {"texts": 0, "prefixed": 0, "retried": 0, "fallbacks": 0}

    @property
    def prefix_chars(self) -> int:
        """The first budget (0: prefixes off)."""
        return self.budgets[0] if self.budgets else 0

    def encode(self, texts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input_ids (n, L) int32, input_mask (n, L) int32, n_tokens (n,) int32, at most
        L + 1)."""
        length = self.max_seq_length
        texts = [t if isinstance(t, str) else "" for t in texts]
        inputs, prefixed = self._prefixes(texts, self.prefix_chars)
        encodings = self._encode_all(inputs)
        short = [i for i in prefixed if len(encodings[i].ids) <= length]
        done_from_prefix = len(prefixed) - len(short)
        for budget in (*self.budgets[1:], 0):
            if not short:   # a prefix that did not fill the sequence: a longer one, or in full
                break
            inputs, again = self._prefixes([texts[i] for i in short], budget)
            retry = self._encode_all(inputs)
            still = set(j for j in again if len(retry[j].ids) <= length)
            for j, (i, enc) in enumerate(zip(short, retry)):
                if j not in still:
                    encodings[i] = enc
            self.stats["retried"] += len(again) - len(still)
            done_from_prefix += len(again) - len(still)
            self.stats["fallbacks"] += len(short) - len(again)   # these went in full
            short = [short[j] for j in sorted(still)]
        self.stats["texts"] += len(texts)
        self.stats["prefixed"] += done_from_prefix
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

    @staticmethod
    def _prefixes(texts: list[str], budget: int) -> tuple[list[str], list[int]]:
        """The texts to tokenize (a text longer than ``budget`` characters: its prefix, cut at
        a space) and where a prefix stands in for the text."""
        if not budget:
            return texts, []
        inputs, prefixed = texts, []
        for i, t in enumerate(texts):
            if len(t) > budget:
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


def prefix_budgets(max_seq_length: int) -> tuple[int, int]:
    """Characters of a long text tokenized first, then if that falls short: ~5 per kept
    token, what English review text needs (4-5 characters per WordPiece token with its space),
    then ~8; benchmarks/NOTES.md has the measurements that chose them."""
    return max(160, 5 * max_seq_length), max(256, 8 * max_seq_length)


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


class _AsciiEncoder:
    """BERT's normalizer done in Python for ASCII texts: the same ids as the tokenizer, a
    third less time per review (benchmarks/NOTES.md).

    On an ASCII text BERT's normalizer only cleans and lower-cases. Cleaning (``clean_text``)
    removes NUL, DEL and the C0 controls other than tab, LF and CR, and turns those three
    into spaces, which this path leaves as they are: the pre-tokenizer splits at them as at a
    space. Its Chinese-character spacing does nothing to ASCII, and neither does accent
    stripping (NFD leaves ASCII as it is).
    ``str.lower`` and a regular expression do both in C at a fraction of the Rust
    normalizer's cost, which tracks an alignment per byte. The tokenizer then runs without a
    normalizer. One difference remains: the tokenizer matches its non-normalized added
    tokens (``[CLS]``, ``[SEP]``, ...) in the raw text, before normalizing, so a text that
    contains one of them in any case goes through ``fallback``, a copy of the tokenizer
    with BERT's normalizer minus the two steps that cannot change ASCII text."""

    CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

    def __init__(self, tokenizer_json: str, norm):
        from tokenizers import normalizers

        self.clean, self.lower = norm.clean_text, norm.lowercase
        self.bare = _untruncated(tokenizer_json)
        raw = [t.content for t in self.bare.get_added_tokens_decoder().values()
               if not t.normalized]
        self.bare.normalizer = None
        self._batch = _batch_encoder(self.bare)
        self.specials = re.compile("|".join(map(re.escape, raw)), re.IGNORECASE) if raw else None
        # the characters one of them can start with: texts without any skip the search
        self.starts = "".join(sorted({c for t in raw for c in (t[0].lower(), t[0].upper())}))
        fallback = _untruncated(tokenizer_json)
        fallback.normalizer = normalizers.BertNormalizer(
            clean_text=norm.clean_text, handle_chinese_chars=False, strip_accents=False,
            lowercase=norm.lowercase)
        self.fallback = _batch_encoder(fallback)

    def normalize(self, texts: list[str]) -> list[str]:
        """What BERT's normalizer makes of ASCII texts, up to whitespace (see above)."""
        out = [t.lower() for t in texts] if self.lower else list(texts)
        if self.clean and self.CONTROLS.search("".join(out)):
            out = [self.CONTROLS.sub("", t) for t in out]
        return out

    def raw_specials(self, *texts: list[str]) -> list[int]:
        """Where a text (raw or normalized) contains an added token that the tokenizer matches
        before normalizing, in any case."""
        if self.specials is None:
            return []
        found: set[int] = set()
        for batch in texts:
            joined = "".join(batch)
            if any(c in joined for c in self.starts):
                found.update(i for i, t in enumerate(batch) if self.specials.search(t))
        return sorted(found)

    def __call__(self, texts: list[str]) -> list:
        normalized = self.normalize(texts)
        special = self.raw_specials(texts, normalized)
        if not special:
            return self._batch(normalized)
        out: list = [None] * len(texts)
        skip = set(special)
        rest = [i for i in range(len(texts)) if i not in skip]
        for i, e in zip(rest, self._batch([normalized[i] for i in rest])):
            out[i] = e
        for i, e in zip(special, self.fallback([texts[i] for i in special])):
            out[i] = e
        return out


def _ascii_batch_encoder(tokenizer_json: str, tokenizer) -> Callable[[list], list] | None:
    """:class:`_AsciiEncoder` for a tokenizer with BERT's normalizer, else None."""
    from tokenizers import normalizers

    norm = tokenizer.normalizer
    if type(norm) is not normalizers.BertNormalizer:
        return None
    if any(t.normalized and any(c.isspace() for c in t.content)
           for t in tokenizer.get_added_tokens_decoder().values()):
        # an added token matched after normalizing, with whitespace in it: BERT's normalizer
        # turns tabs and line ends into spaces, which this path leaves to the pre-tokenizer
        return None
    return _AsciiEncoder(tokenizer_json, norm)


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
        if clean:
            raw, (texts, changed) = texts, clean_texts(texts)
        ids, mask, n_tokens = enc.encode(texts)
        rows, length = ids.shape
        offsets = pa.array(np.arange(0, rows * length + 1, length, dtype=np.int32))
        columns = [batch.column(i) for i in range(len(names)) if i != text_at]
        columns += [pa.ListArray.from_arrays(offsets, pa.array(ids.reshape(-1))),
                    pa.ListArray.from_arrays(offsets, pa.array(mask.reshape(-1))),
                    pa.array(n_tokens)]
        out_names = [n for n in names if n != text_column] + list(ENCODED_COLUMNS)
        if clean:
            saved = np.zeros(rows, dtype=np.int32)
            at = np.flatnonzero(changed)
            if at.size:   # the changed texts, raw and clean, counted in full
                saved[at] = enc.count([raw[i] for i in at]) - enc.count([texts[i] for i in at])
            columns += [pa.array(changed), pa.array(saved)]
            out_names += list(CLEANING_COLUMNS)
        yield pa.RecordBatch.from_arrays(columns, names=out_names)


def encode_frame(df, text_column: str, tokenizer_json: str, key: str, max_seq_length: int,
                 pad_id: int, sep_id: int, clean: bool = False):
    """``df`` with ``text_column`` replaced by input_ids, input_mask and n_tokens (and, with
    ``clean``, text_changed and tokens_saved) (mapInArrow); returns (DataFrame, the broadcast
    to release when the job is done)."""
    from pyspark.sql.types import (ArrayType, BooleanType, IntegerType, StructField,
                                   StructType)

    broadcast = df.sparkSession.sparkContext.broadcast(tokenizer_json)
    schema = StructType([f for f in df.schema.fields if f.name != text_column] + [
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
