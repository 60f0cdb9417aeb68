import collections
import gzip
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from reviewlake.errors import UserError
from reviewlake.generate import MALFORMED_KINDS, MANIFEST_NAME, generate
from reviewlake.schema import HEADER_LINE, PRODUCT_CATEGORIES


def _lines(path):
    data = gzip.open(path).read() if str(path).endswith(".gz") else path.read_bytes()
    return data.split(b"\n")[:-1]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    result = generate(rows=40000, output=out, seed=3, files=2)
    rows = []
    for name in result.files:
        lines = _lines(out / name)
        assert lines[0].decode() == HEADER_LINE
        rows += [line.decode().split("\t") for line in lines[1:]]
    return result, rows


def test_layout_is_the_public_one(clean):
    result, rows = clean
    assert len(rows) == 40000 == result.rows == result.good_rows
    assert all(len(r) == 15 for r in rows)
    r = rows[0]
    assert r[0] == "US" and r[1].isdigit() and r[4].isdigit()
    assert r[2].startswith("R") and len(r[2]) == 14 and r[3].startswith("B00") and len(r[3]) == 10
    assert r[10] in ("Y", "N") and r[11] in ("Y", "N")


def test_distributions_are_realistic(clean):
    _, rows = clean
    stars = np.array([int(r[7]) for r in rows])
    assert 0.55 < (stars == 5).mean() < 0.67
    assert set(stars) == {1, 2, 3, 4, 5}
    cats = {r[6] for r in rows}
    assert len(cats) >= 40 and cats <= set(PRODUCT_CATEGORIES)
    years = {int(r[14][:4]) for r in rows}
    assert min(years) >= 1995 and max(years) <= 2015 and len(years) > 15
    words = [len(r[13].split()) for r in rows]
    assert 22 <= statistics.median(words) <= 40
    assert max(words) > 1000
    assert np.percentile(words, 10) <= 8
    helpful = np.array([int(r[8]) for r in rows])
    total = np.array([int(r[9]) for r in rows])
    assert (helpful <= total).all()
    assert len({r[2] for r in rows}) == len(rows)  # review ids unique without defects


def test_wording_depends_on_rating(clean):
    _, rows = clean
    def share(word, star):
        texts = [r[13].lower() for r in rows if int(r[7]) == star]
        return sum(word in t for t in texts) / len(texts)
    assert share("terrible", 1) > 5 * share("terrible", 5)
    assert share("excellent", 5) > 5 * share("excellent", 1)


def test_deterministic_by_seed(tmp_path):
    a = generate(rows=2000, output=tmp_path / "a", seed=11, defects=True, files=2, gzip=True)
    generate(rows=2000, output=tmp_path / "b", seed=11, defects=True, files=2, gzip=True)
    c = generate(rows=2000, output=tmp_path / "c", seed=12, defects=True, files=2, gzip=True)
    for name in a.files:
        assert _lines(tmp_path / "a" / name) == _lines(tmp_path / "b" / name)
    assert _lines(tmp_path / "a" / a.files[0]) != _lines(tmp_path / "c" / c.files[0])


def test_defects_are_where_the_manifest_says(tmp_path):
    result = generate(rows=5000, output=tmp_path, seed=5, defects=True, files=2)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["lines"] == 5000
    assert set(manifest["malformed_counts"]) == set(MALFORMED_KINDS)
    assert manifest["good_rows"] == 5000 - len(manifest["malformed_lines"])
    files = {name: _lines(tmp_path / name) for name in result.files}
    assert sum(len(v) - 1 for v in files.values()) == 5000
    for m in manifest["malformed_lines"]:
        line = files[m["file"]][m["line"] - 1]  # line numbers count the header as line 1
        kind = m["kind"]
        if kind == "empty_line":
            assert line == b""
        elif kind == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                line.decode("utf-8")
        elif kind == "carriage_return":
            assert b"\r" in line
        elif kind == "too_few_fields":
            assert line.count(b"\t") < 14
        elif kind == "too_many_fields":
            assert line.count(b"\t") > 14
        else:
            assert line.count(b"\t") == 14
    rows = [l.split(b"\t") for v in files.values() for l in v[1:] if l.count(b"\t") == 14]
    assert any(r[7] == b"0" for r in rows) and any(r[7] == b"6" for r in rows)
    assert any(r[0] == b"XX" for r in rows) and any(r[2] == b"" for r in rows)
    ids = [r[2] for r in rows if r[2]]
    assert len(ids) > len(set(ids))  # duplicates


def test_malformed_only_defects_leave_the_semantics_clean(tmp_path):
    result = generate(rows=5000, output=tmp_path, seed=5, defects="malformed", files=1)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["defects"] == "malformed" and result.semantic == {}
    assert set(manifest["malformed_counts"]) == set(MALFORMED_KINDS)
    lines = _lines(tmp_path / result.files[0])[1:]
    rows = [l.split(b"\t") for l in lines if l.count(b"\t") == 14 and b"\r" not in l]
    ids = [r[2] for r in rows]
    assert all(ids) and len(ids) == len(set(ids))
    assert {r[0] for r in rows} == {b"US"}
    assert {r[7] for r in rows} <= {b"1", b"2", b"3", b"4", b"5", b"five", b"3.5", b"12a",
                                    b"99999999999"}


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError):
        generate(rows=0, output=tmp_path)
    with pytest.raises(UserError):
        generate(rows=10, output=tmp_path, files=11)
    with pytest.raises(UserError, match="needs more rows"):
        generate(rows=20, output=tmp_path, defects=True)


def test_real_text_quirks_at_their_rates(clean, tmp_path):
    from reviewlake.generate import quirks as Q

    result, rows = clean
    manifest = json.loads((Path(result.output) / MANIFEST_NAME).read_text())
    assert manifest["quirks"] == Q.counts(40000)
    bodies = [r[13] for r in rows]
    share = lambda pred: sum(map(pred, bodies)) / len(bodies)   # noqa: E731
    assert 0.055 <= share(lambda t: "<br" in t) <= 0.065            # ~6% of bodies
    assert 0.025 <= share(lambda t: re.search(r"&(#\d+|[a-z]+);", t) is not None) <= 0.035
    entities = collections.Counter(e for t in bodies for e in re.findall(r"&#?\w+;", t))
    assert entities.most_common(1)[0][0] == "&#34;"
    assert {"&quot;", "&lt;", "&#60;", "&reg;", "&trade;"} <= set(entities)
    other = share(lambda t: re.search("[\u00a0\u201c\u201d\u2019\uff01\uff1f\uff0c\uff08\uff09"
                                      "\U0001F300-\U0001FAFF\u2764\u2b50]", t) is not None)
    assert 0.007 <= other <= 0.013                                   # ~1%
    controls = [t for t in bodies if re.search("[\x10\x1a\x1b\x1f]", t)]
    assert 1 <= len(controls) <= 20                                  # a few per 100k
    assert share(lambda t: '"' in t) >= 0.015
    assert any('"' in r[5] for r in rows) and any('"' in r[12] for r in rows)
    assert sum(r[12] == "" for r in rows) == Q.counts(40000)["empty_headline"]
    assert sum(r[13] == "" for r in rows) == Q.counts(40000)["empty_body"]
    # every quirk is a well-formed row: 15 fields, no line break or tab inside a field
    assert all(len(r) == 15 and "\r" not in "".join(r) for r in rows)


def test_every_quirk_appears_in_a_small_sample(tmp_path):
    from reviewlake.generate import quirks as Q

    generate(rows=Q.MIN_ROWS, output=tmp_path, seed=1)
    assert all(v >= 1 for v in json.loads((tmp_path / MANIFEST_NAME).read_text())["quirks"].values())


def test_quirks_have_their_own_random_stream(tmp_path):
    """Without quirks, a sample is what it was before they existed, field for field, except
    the fields the quirks rewrite."""
    a = generate(rows=3000, output=tmp_path / "a", seed=4, defects=True)
    b = generate(rows=3000, output=tmp_path / "b", seed=4, defects=True, quirks=False)
    la, lb = _lines(tmp_path / "a" / a.files[0]), _lines(tmp_path / "b" / b.files[0])
    assert len(la) == len(lb) and a.malformed == b.malformed
    assert json.loads((tmp_path / "b" / MANIFEST_NAME).read_text())["quirks"] == {}
    same = [x == y for x, y in zip(la, lb)]
    assert 0.8 < sum(same) / len(same) < 1.0
    for x, y in zip(la, lb):
        fx, fy = x.split(b"\t"), y.split(b"\t")
        if len(fx) == len(fy) == 15:   # ids, ratings, votes, dates are untouched
            assert [fx[i] for i in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 14)] == \
                   [fy[i] for i in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 14)]
