"""The quirks of real review text, at the rates measured on the public dataset.

Measured on about 268,000 real rows from dozens of categories: ``<br />`` in about 6% of the
review bodies; HTML entities in about 3% (``&#34;`` by far the most, then ``&quot;``,
``&lt;``, ``&#60;``, ``&reg;``, ``&trade;``); emoji, no-break spaces, curly quotes and
fullwidth punctuation together in about 1%; control characters (0x1A, 0x1B, 0x10, 0x1F) in a
few dozen rows; empty headlines and empty bodies; bare ``"`` inside fields (the files have
no quoting). Every quirk is a well-formed row for ingest: they pass into the lake, and the
later stages (quality, prepare's text cleaning, the tokenizer) see them.

:func:`pick_rows` chooses, by seed, which rows carry each quirk (a row may carry several);
every kind appears at least once in any sample of :data:`MIN_ROWS` rows or more, so small
test samples see them all. The functions here rewrite one field's text.
"""
from __future__ import annotations

import numpy as np

# Share of rows carrying each quirk. Body quirks rewrite review_body, the others the field
# they name.
BODY_RATES: dict[str, float] = {
    "line_break": 0.06,        # <br /> between sentences
    "html_entity": 0.03,       # &#34;word&#34;, &quot;, &lt;3, &#60;, &reg;, &trade;, &amp;
    "emoji": 0.003,
    "no_break_space": 0.0025,
    "curly_quotes": 0.0025,
    "fullwidth": 0.002,        # ！ ？ ， （ ）
    "control_char": 0.00015,   # a few dozen in 268k rows
    "bare_quote": 0.02,        # 10" screen, he said "great"
    "empty_body": 0.0003,
}
HEADLINE_RATES: dict[str, float] = {
    "empty_headline": 0.0008,
    "quoted_headline": 0.01,   # "Great" (bare quotes, no CSV quoting)
}
TITLE_INCHES_RATE = 0.02       # product titles with a bare " (Monitor 24")
EMPTYING = ("empty_body", "empty_headline")   # quirks that leave the field empty
MIN_ROWS = 200                 # from this many rows on, every kind appears

# (entity, weight): &#34; is by far the most common in the real files.
_ENTITIES = (("&#34;", 0.55), ("&quot;", 0.14), ("&amp;", 0.09), ("&lt;", 0.06),
             ("&#60;", 0.05), ("&reg;", 0.06), ("&trade;", 0.05))
_EMOJI = ("\U0001F600", "\U0001F44D", "\u2764\ufe0f", "\U0001F60D", "\U0001F642",
          "\U0001F621", "\U0001F62D", "\u2b50\u2b50\u2b50")
_FULLWIDTH = {"!": "\uff01", "?": "\uff1f", ",": "\uff0c", "(": "\uff08", ")": "\uff09"}
_CONTROL = ("\x1a", "\x1b", "\x10", "\x1f")


def counts(n: int) -> dict[str, int]:
    """How many rows of ``n`` carry each quirk."""
    floor = 1 if n >= MIN_ROWS else 0
    return {k: max(floor, int(round(n * r))) for k, r in {**BODY_RATES, **HEADLINE_RATES}.items()}


def pick_rows(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """For each kind, the sorted rows (of ``n``) that carry it."""
    return {k: np.sort(rng.choice(n, size=c, replace=False)) if c else np.array([], np.int64)
            for k, c in counts(n).items()}


def _at(rng: np.random.Generator, k: int) -> int:
    return int(rng.integers(k)) if k > 1 else 0


def apply(kind: str, text: str, rng: np.random.Generator) -> str:
    """``text`` with one quirk of ``kind``."""
    if kind in EMPTYING:
        return ""
    if kind == "quoted_headline":
        return f'"{text}"'
    words = text.split(" ")
    if kind == "line_break":
        # between two sentences (the usual place), else after a word
        ends = [i for i, w in enumerate(words[:-1]) if w.endswith(".")] or list(range(len(words)))
        i = ends[_at(rng, len(ends))]
        brk = ("<br /><br />", "<br />", "<br/>")[int(rng.choice(3, p=[0.7, 0.25, 0.05]))]
        words[i] = words[i] + brk + (words.pop(i + 1) if i + 1 < len(words) else "")
        return " ".join(words)
    if kind == "html_entity":
        names, weights = zip(*_ENTITIES)
        entity = names[int(rng.choice(len(names), p=np.array(weights) / sum(weights)))]
        i = _at(rng, len(words))
        if entity in ("&#34;", "&quot;"):
            words[i] = f"{entity}{words[i]}{entity}"
        elif entity in ("&lt;", "&#60;"):
            words.insert(i + 1, f"{entity}3")
        elif entity == "&amp;":
            words.insert(i + 1, "&amp;")
        else:
            words[i] = words[i] + entity
        return " ".join(words)
    if kind == "emoji":
        words.append(_EMOJI[_at(rng, len(_EMOJI))])
        return " ".join(words)
    if kind == "no_break_space":
        if len(words) < 2:
            return text + "\u00a0"
        i = _at(rng, len(words) - 1)
        return " ".join(words[:i + 1]) + "\u00a0" + " ".join(words[i + 1:])
    if kind == "curly_quotes":
        i = _at(rng, len(words))
        words[i] = f"\u201c{words[i]}\u201d"
        return " ".join(w.replace("'", "\u2019") for w in words)
    if kind == "fullwidth":
        marks = [j for j, ch in enumerate(text) if ch in _FULLWIDTH]
        if marks:
            j = marks[_at(rng, len(marks))]
            return text[:j] + _FULLWIDTH[text[j]] + text[j + 1:]
        return text + "\uff01"
    if kind == "control_char":
        i = _at(rng, len(words))
        words[i] = words[i] + _CONTROL[_at(rng, len(_CONTROL))]
        return " ".join(words)
    if kind == "bare_quote":
        i = _at(rng, len(words))
        if rng.random() < 0.5:
            words.insert(i, f'{int(rng.integers(2, 70))}"')          # inches
        else:
            words[i] = f'"{words[i]}"'
        return " ".join(words)
    raise ValueError(kind)


def apply_all(kinds: list[str], text: str, rng: np.random.Generator) -> str:
    """``text`` with the quirks of ``kinds`` in order (an emptied text stays empty)."""
    for kind in kinds:
        if kind in EMPTYING:
            return ""
        text = apply(kind, text, rng)
    return text
