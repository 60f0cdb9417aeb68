"""A realistic sample of the Amazon Customer Reviews dataset, in its exact public layout.

Header line, 15 tab-separated columns, no quoting, ``.tsv`` or ``.tsv.gz``. Ratings are skewed
like the public set (about 60% fives); the wording of a review depends on its rating, so a
classifier can learn it; lengths have a long tail (median ~30 words, some in the thousands).

``defects="all"`` (or ``True``) adds the problems later stages must catch; ``"malformed"`` adds
only the structural ones (ingest quarantines them and the quality gate passes, as the demo
wants); ``"none"`` (or ``False``) adds nothing:

* semantic (pass ingest, the quality stage judges them): duplicate review_ids, empty
  review_ids, star ratings 0 and 6, an unknown marketplace, empty review bodies;
* structural (ingest quarantines them): too few fields, too many fields, a non-integer number,
  an unparseable date, an empty line, invalid UTF-8, a stray carriage return.

Everything is vectorised with numpy and deterministic by seed. Beside the data files, a
``_generated.json`` manifest records what was written, including the file and line number of
every malformed line (files starting with ``_`` are ignored by Spark and by ingest).
"""
from __future__ import annotations

import gzip as gzip_mod
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..schema import HEADER_LINE, N_COLUMNS, PRODUCT_CATEGORIES
from . import quirks as Q
from . import vocab

MANIFEST_NAME = "_generated.json"
MALFORMED_KINDS = ("too_few_fields", "too_many_fields", "bad_integer", "bad_date",
                   "empty_line", "invalid_utf8", "carriage_return")
SEMANTIC_KINDS = ("duplicate_review_id", "empty_review_id", "star_rating_0",
                  "star_rating_6", "unknown_marketplace", "empty_review_body")
_B36 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_INVALID_BYTE = "\udcff"  # encodes to the single byte 0xFF with surrogateescape


@dataclass
class GenerateResult:
    output: str
    files: list[str]
    rows: int
    good_rows: int
    malformed: list[dict] = field(default_factory=list)
    semantic: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "output": self.output, "files": self.files, "lines": self.rows,
            "good_rows": self.good_rows, "malformed_lines": self.malformed,
            "malformed_counts": _count(m["kind"] for m in self.malformed),
            "semantic_defects": self.semantic, "seconds": round(self.seconds, 3),
        }


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _fill(template: str, rng: np.random.Generator, slots: dict[str, list[str]]) -> str:
    out = template
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        name = out[start + 1:end]
        if name == "n":
            value = str(int(rng.integers(2, 13)))
        else:
            choices = slots[name]
            value = choices[int(rng.integers(len(choices)))]
        out = out[:start] + value + out[end + 1:]
    return out


def _phrase_pools(rng: np.random.Generator, per_level: int = 400, neutral: int = 2000):
    """Distinct filled phrases: one pool per sentiment level and one neutral pool."""
    nouns = sorted({n for ns in vocab.CATEGORY_NOUNS.values() for n in ns} | set(vocab.GENERIC_NOUNS))
    pools: dict[int, list[str]] = {}
    for level, templates in vocab.SENTIMENT_TEMPLATES.items():
        slots = dict(vocab.FILLERS, adj=vocab.SENTIMENT_ADJECTIVES[level], noun=nouns)
        found: set[str] = set()
        for _ in range(per_level * 4):
            found.add(_fill(templates[int(rng.integers(len(templates)))], rng, slots))
            if len(found) >= per_level:
                break
        pools[level] = sorted(found)
    slots = dict(vocab.FILLERS, noun=nouns)
    found = set()
    for _ in range(neutral * 4):
        found.add(_fill(vocab.NEUTRAL_TEMPLATES[int(rng.integers(len(vocab.NEUTRAL_TEMPLATES)))], rng, slots))
        if len(found) >= neutral:
            break
    return pools, sorted(found)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _base36(values: np.ndarray, width: int) -> np.ndarray:
    digits = np.empty((len(values), width), dtype="<U1")
    v = values.astype(np.int64).copy()
    for i in range(width - 1, -1, -1):
        digits[:, i] = _B36[v % 36]
        v //= 36
    return digits.view(f"<U{width}").ravel()


def _level_kernel(sharpness: float = 1.5) -> np.ndarray:
    """P(sentiment level | star rating): most mass on the rating, some on its neighbours."""
    levels = np.arange(1, 6)
    k = np.exp(-sharpness * np.abs(levels[None, :] - levels[:, None]))
    return k / k.sum(axis=1, keepdims=True)


def _dates(rng: np.random.Generator, n: int) -> np.ndarray:
    years = np.arange(1995, 2016)
    weights = np.exp(0.33 * (years - 2015))  # the public set grows roughly exponentially
    year = rng.choice(years, size=n, p=weights / weights.sum())
    start = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    length = ((year + 1 - 1970).astype("datetime64[Y]").astype("datetime64[D]") - start).astype(int)
    day = start + (rng.random(n) * length).astype(int).astype("timedelta64[D]")
    return np.datetime_as_string(day, unit="D")


class _Catalog:
    def __init__(self, rng: np.random.Generator, n_products: int):
        cats = list(PRODUCT_CATEGORIES)
        w = np.array([vocab.CATEGORY_WEIGHTS[c] for c in cats])
        self.category = np.array(cats, dtype=object)[rng.choice(len(cats), n_products, p=w / w.sum())]
        ids = rng.choice(36 ** 7, size=n_products, replace=False)
        self.product_id = np.char.add("B00", _base36(ids, 7)).astype(object)
        self.parent = rng.integers(100_000_000, 999_999_999, n_products).astype(str).astype(object)
        titles = []
        for cat in self.category:
            nouns = vocab.CATEGORY_NOUNS.get(cat, vocab.GENERIC_NOUNS)
            noun = nouns[int(rng.integers(len(nouns)))]
            titles.append(
                f"{vocab.BRANDS[int(rng.integers(len(vocab.BRANDS)))]} "
                f"{vocab.TITLE_ADJECTIVES[int(rng.integers(len(vocab.TITLE_ADJECTIVES)))]} "
                f"{noun.title()} {int(rng.integers(1, 900))}")
        self.title = np.array(titles, dtype=object)
        # Popularity: a few products collect most reviews.
        pop = 1.0 / np.arange(1, n_products + 1) ** 0.8
        self.popularity = pop / pop.sum()
        self.noun = np.array([vocab.CATEGORY_NOUNS.get(c, vocab.GENERIC_NOUNS)[0] for c in self.category],
                             dtype=object)


def _defect_counts(n: int) -> tuple[dict[str, int], dict[str, int]]:
    semantic_rate, malformed_rate = 0.002, 0.0005
    sem = {k: max(1, int(n * semantic_rate)) for k in SEMANTIC_KINDS}
    mal = {k: max(1, int(n * malformed_rate)) for k in MALFORMED_KINDS}
    return sem, mal


def _malformed_line(kind: str, fields: list[str], rng: np.random.Generator) -> str:
    f = list(fields)
    if kind == "too_few_fields":
        return "\t".join(f[: int(rng.integers(3, N_COLUMNS - 1))])
    if kind == "too_many_fields":
        f[13] = f[13] + "\tan extra tab splits this review"
        return "\t".join(f)
    if kind == "bad_integer":
        col = (7, 8, 9)[int(rng.integers(3))]
        f[col] = ("five", "3.5", "12a", "99999999999")[int(rng.integers(4))]
        return "\t".join(f)
    if kind == "bad_date":
        f[14] = ("2015-13-45", "31/08/2015", "yesterday", "2015-02-30")[int(rng.integers(4))]
        return "\t".join(f)
    if kind == "empty_line":
        return ""
    if kind == "invalid_utf8":
        f[13] = f[13][:20] + _INVALID_BYTE + f[13][20:]
        return "\t".join(f)
    if kind == "carriage_return":
        f[13] = f[13][:15] + "\r" + f[13][15:]
        return "\t".join(f)
    raise ValueError(kind)


DEFECTS = ("none", "malformed", "all")


def defects_kind(value) -> str:
    """``all`` | ``malformed`` | ``none`` from a profile value (booleans: all / none)."""
    if value is None or value is False:
        return "none"
    if value is True:
        return "all"
    kind = str(value).strip().lower()
    kind = {"true": "all", "yes": "all", "false": "none", "no": "none"}.get(kind, kind)
    if kind not in DEFECTS:
        raise UserError(f"generate.defects must be one of {', '.join(DEFECTS)} "
                        f"(or true/false), got {value!r}")
    return kind


def generate(rows: int, output: str | os.PathLike, seed: int = 42, defects: bool | str = False,
             files: int = 1, gzip: bool = False, compresslevel: int = 3,
             quirks: bool = True) -> GenerateResult:
    """Write ``rows`` data lines (malformed ones included) into ``files`` TSV files.

    ``quirks`` (the default) gives the text the quirks of real reviews (see
    :mod:`.quirks`: markup, entities, emoji, control characters, bare quotes, empty fields);
    they come from their own random stream, so the rest of a sample does not depend on it."""
    defects = defects_kind(defects)
    if rows < 1:
        raise UserError("--rows must be at least 1")
    if files < 1 or files > rows:
        raise UserError(f"--files must be between 1 and --rows ({rows}), got {files}")
    started = time.perf_counter()
    out_dir = Path(output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {out_dir}: {exc.strerror}") from None
    for old in list(out_dir.glob("amazon_reviews_us_sample_*.tsv*")):
        old.unlink()

    rng = np.random.default_rng(seed)
    sent_pools, neutral_pool = _phrase_pools(rng)
    catalog = _Catalog(rng, max(20, rows // 8))
    n = rows

    star = rng.choice(np.arange(1, 6), size=n, p=np.array(vocab.STAR_SHARES))
    product = rng.choice(len(catalog.popularity), size=n, p=catalog.popularity)
    total_votes = np.minimum(rng.geometric(0.35, n) - 1, 5000)
    total_votes[rng.random(n) < 0.01] *= 20
    helpful_votes = rng.binomial(total_votes, 0.7)
    vine = np.where(rng.random(n) < 0.01, "Y", "N").astype(object)
    verified = np.where(rng.random(n) < 0.78, "Y", "N").astype(object)
    customer = rng.integers(10_000, 53_100_000, n).astype(str).astype(object)
    # Unique review ids like the public ones: "R", a digit 1-3, 12 base-36 characters.
    unique = rng.choice(36 ** 12, size=n, replace=False)
    lead = rng.integers(1, 4, n).astype(str)
    review_id = np.char.add(np.char.add("R", lead), _base36(unique, 12)).astype(object)
    marketplace = np.full(n, "US", dtype=object)
    headline_pool = {lvl: np.array(h, dtype=object) for lvl, h in vocab.HEADLINES.items()}
    headline = np.empty(n, dtype=object)
    for lvl in range(1, 6):
        idx = np.nonzero(star == lvl)[0]
        headline[idx] = headline_pool[lvl][rng.integers(len(headline_pool[lvl]), size=len(idx))]
    date = _dates(rng, n).astype(object)
    qrng = np.random.default_rng([seed, 1])
    quirk_rows = Q.pick_rows(qrng, n) if quirks else {}
    if quirks:
        titled = qrng.random(len(catalog.title)) < Q.TITLE_INCHES_RATE
        catalog.title[titled] = [f'{t} {int(qrng.integers(2, 80))}"' for t in catalog.title[titled]]
        for kind in Q.HEADLINE_RATES:
            for row in quirk_rows[kind]:
                headline[row] = Q.apply(kind, headline[row], qrng)

    # Review text: a long-tailed number of phrases (~6 words each), a share of them carrying
    # the rating's sentiment (levels drawn around the rating), the rest neutral.
    words = np.clip(rng.lognormal(np.log(30.0), 1.15, n), 1, 6000)
    k = np.maximum(1, np.round(words / 6.0)).astype(np.int64)
    total = int(k.sum())
    row_of = np.repeat(np.arange(n), k)
    first = np.zeros(total, dtype=bool)
    starts = np.concatenate([[0], np.cumsum(k)[:-1]])
    first[starts] = True
    is_sent = first | (rng.random(total) < 0.4)
    noisy = rng.random(n) < 0.05  # some reviews' words disagree with their stars
    kernel = _level_kernel()
    u = rng.random(total)
    cdf = np.cumsum(kernel, axis=1)[star[row_of] - 1]
    level = (u[:, None] > cdf).sum(axis=1) + 1
    level = np.where(noisy[row_of], rng.integers(1, 6, total), level)
    level = np.minimum(level, 5)

    pool_strings: list[str] = [_sentence(p) for p in neutral_pool]
    offsets = {}
    for lvl in range(1, 6):
        offsets[lvl] = len(pool_strings)
        pool_strings.extend(_sentence(p) for p in sent_pools[lvl])
    pool_arr = np.array(pool_strings, dtype=object)
    sizes = np.array([len(sent_pools[lvl]) for lvl in range(1, 6)])
    offs = np.array([offsets[lvl] for lvl in range(1, 6)])
    sent_idx = offs[level - 1] + (rng.random(total) * sizes[level - 1]).astype(np.int64)
    neut_idx = rng.integers(len(neutral_pool), size=total)
    phrase = pool_arr[np.where(is_sent, sent_idx, neut_idx)]

    # Defects (positions chosen without overlap).
    sem_counts, mal_counts = _defect_counts(n) if defects != "none" else ({}, {})
    if defects == "malformed":
        sem_counts = {}
    need = sum(sem_counts.values()) + sum(mal_counts.values())
    if need > n // 2:
        raise UserError(f"--defects needs more rows (at least {2 * need})")
    victims = rng.choice(n, size=need, replace=False) if need else np.array([], dtype=np.int64)
    cursor = 0
    empty_body = np.zeros(n, dtype=bool)
    for kind, count in sem_counts.items():
        pick = victims[cursor:cursor + count]
        cursor += count
        if kind == "duplicate_review_id":
            others = rng.choice(n, size=count)
            review_id[pick] = review_id[np.where(others == pick, (others + 1) % n, others)]
        elif kind == "empty_review_id":
            review_id[pick] = ""
        elif kind == "star_rating_0":
            star[pick] = 0
        elif kind == "star_rating_6":
            star[pick] = 6
        elif kind == "unknown_marketplace":
            marketplace[pick] = "XX"
        elif kind == "empty_review_body":
            empty_body[pick] = True
    malformed_rows: dict[int, str] = {}
    for kind, count in mal_counts.items():
        for row in victims[cursor:cursor + count]:
            malformed_rows[int(row)] = kind
        cursor += count

    cat = catalog.category[product]
    prefix = [
        f"{a}\t{b}\t{c}\t{d}\t{e}\t{f}\t{g}\t{h}\t{i}\t{j}\t{kk}\t{l}\t{m}\t"
        for a, b, c, d, e, f, g, h, i, j, kk, l, m in zip(
            marketplace, customer, review_id, catalog.product_id[product], catalog.parent[product],
            catalog.title[product], cat, star, helpful_votes, total_votes, vine, verified, headline)
    ]

    # Lay every row out as [prefix, phrase, " ", phrase, ..., phrase, "\t" date "\n"] and join once.
    slots = 2 * k + 1
    row_start = np.concatenate([[0], np.cumsum(slots)[:-1]])
    parts = np.full(int(slots.sum()), " ", dtype=object)
    parts[row_start] = prefix
    within = np.arange(total) - np.repeat(starts, k)
    parts[np.repeat(row_start, k) + 1 + 2 * within] = phrase
    end_pos = row_start + slots - 1
    parts[end_pos] = np.char.add(np.char.add("\t", date.astype(str)), "\n").astype(object)
    body_quirks: dict[int, list[str]] = {}
    for kind, at in quirk_rows.items():
        if kind in Q.BODY_RATES:
            for row in at:
                body_quirks.setdefault(int(row), []).append(kind)
    for row, kinds in body_quirks.items():
        s, e = row_start[row], end_pos[row]
        parts[s + 1] = Q.apply_all(kinds, "".join(parts[s + 1:e]), qrng)
        parts[s + 2:e] = ""
    if empty_body.any():
        for row in np.nonzero(empty_body)[0]:
            s, e = row_start[row], end_pos[row]
            parts[s + 1:e] = ""
    for row, kind in malformed_rows.items():
        s, e = row_start[row], end_pos[row]
        body = "".join(parts[s + 1:e])
        fields = parts[s][:-1].split("\t") + [body, date[row]]
        parts[s] = _malformed_line(kind, fields, rng) + "\n"
        parts[s + 1:e + 1] = ""

    # Split into files of contiguous rows; each file starts with the header.
    bounds = np.linspace(0, n, files + 1).astype(np.int64)
    suffix = ".tsv.gz" if gzip else ".tsv"
    written, malformed = [], []
    for fi in range(files):
        name = f"amazon_reviews_us_sample_v1_{fi:02d}{suffix}"
        a, b = int(bounds[fi]), int(bounds[fi + 1])
        lo = int(row_start[a])
        hi = int(row_start[b]) if b < n else len(parts)
        data = (HEADER_LINE + "\n" + "".join(parts[lo:hi])).encode("utf-8", "surrogateescape")
        path = out_dir / name
        if gzip:
            with gzip_mod.open(path, "wb", compresslevel=compresslevel) as fh:
                fh.write(data)
        else:
            path.write_bytes(data)
        written.append(name)
        for row in sorted(r for r in malformed_rows if a <= r < b):
            malformed.append({"file": name, "line": row - a + 2, "kind": malformed_rows[row]})

    result = GenerateResult(
        output=str(out_dir), files=written, rows=n, good_rows=n - len(malformed_rows),
        malformed=malformed, semantic=sem_counts, seconds=time.perf_counter() - started)
    manifest = dict(result.to_dict(), seed=seed, defects=defects, gzip=gzip,
                    quirks={k: len(v) for k, v in quirk_rows.items()})
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return result
