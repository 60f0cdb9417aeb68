"""Review text as customers write it, cleaned before tokenizing (``prepare.clean_text``).

Real review bodies carry markup: ``<br />`` in about 6% of them, HTML entities in about 3%
(``&#34;`` by far the most, then ``&quot;``, ``&lt;``, ``&#60;``, ``&reg;``, ``&trade;``),
control characters (0x1A, 0x1B, 0x10, 0x1F) in a few, no-break spaces and runs of blanks.
A tokenizer turns ``<br />`` into four tokens and ``&#34;`` into four more, which crowd real
words out of the first max_seq_length tokens. Cleaning, in this order:

1. tags (``<br />``, ``<p>``, ``<a href=...>``...) become a space, before entities are
   unescaped, so that an escaped ``&lt;3&gt;`` stays text;
2. HTML entities are unescaped (``html.unescape``: named, decimal and hex);
3. control characters (Unicode category Cc other than whitespace) are removed;
4. whitespace runs (tabs, newlines, no-break spaces included) collapse to one space, and the
   ends are trimmed.

Emoji, curly quotes, fullwidth punctuation and every other character are kept: the tokenizer
normalizes what it knows. Off (``--no-clean-text``) gives the book's behaviour: raw text.
"""
from __future__ import annotations

import html
import re
import unicodedata

import numpy as np

_TAG = re.compile(r"<\s*/?\s*[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?\s*>")
_SPACE = re.compile(r"\s+")
_MARKUP_HINT = re.compile(r"[<&\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\s\s|[\t\n\r\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]|^\s|\s$")


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" and not ch.isspace()


def clean_text(text: str) -> str:
    """One review's text, cleaned (see the module's docstring)."""
    if not _MARKUP_HINT.search(text):
        return text                      # the common case: nothing to do, no copy
    out = _TAG.sub(" ", text)
    if "&" in out:
        out = html.unescape(out)
    if any(_is_control(ch) for ch in out):
        out = "".join(ch for ch in out if not _is_control(ch))
    return _SPACE.sub(" ", out).strip()


def clean_texts(texts: list) -> tuple[list[str], np.ndarray]:
    """(cleaned texts, whether each changed); non-strings become ""."""
    out = [clean_text(t) if isinstance(t, str) else "" for t in texts]
    changed = np.fromiter((a is not b and a != b for a, b in zip(out, texts)), dtype=bool,
                          count=len(out))
    return out, changed
