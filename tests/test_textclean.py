"""prepare.clean_text: markup out before tokenizing, counted in _meta.json; off = raw text."""
import numpy as np
import pytest

from reviewlake.features.textclean import clean_text, clean_texts


@pytest.mark.parametrize("raw,clean", [
    ("Great product!<br />Works as described.", "Great product! Works as described."),
    ("Line one<br>line two<BR/>three<p>four</p>", "Line one line two three four"),
    ("They said &#34;best ever&#34; &quot;really&quot;", 'They said "best ever" "really"'),
    ("Sony&reg; Walkman&trade; &#60;3 &lt;b&gt; &amp;", "Sony\u00ae Walkman\u2122 <3 <b> &"),
    ("bad\x1a\x1bchars\x10 here\x1f", "badchars here"),
    ("no\u00a0break \t tabs\nand  newlines ", "no break tabs and newlines"),
    ("I \u2764\ufe0f it \u201cso\u201d much\uff01", "I \u2764\ufe0f it \u201cso\u201d much\uff01"),
    ("1 < 2 and 3 > 2, AT&T", "1 < 2 and 3 > 2, AT&T"),
    ("<a href=\"http://x\">link</a>", "link"),
    ("plain words", "plain words"), ("", ""),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_clean_texts_says_what_changed():
    texts, changed = clean_texts(["a<br />b", "plain", None, "x&#34;"])
    assert texts == ["a b", "plain", "", 'x"'] and changed.tolist() == [True, False, True, True]


def test_prepare_cleans_counts_and_can_be_turned_off(spark, tmp_path):
    """Through prepare on a lake with markup: the TFRecords hold the cleaned text's ids,
    _meta.json counts the reviews changed and the tokens saved; --no-clean-text keeps raw."""
    from reviewlake.features.job import PrepareOptions, run_prepare
    from reviewlake.generate import generate
    from reviewlake.ingest.job import run_ingest

    # without the sample's own quirks: this test counts the markup it adds itself
    generate(rows=2000, output=tmp_path / "raw", seed=9, defects=False, files=1, quirks=False)
    src = next((tmp_path / "raw").glob("*.tsv"))
    lines = src.read_text(encoding="utf-8").split("\n")
    marked = 0
    for i in range(1, len(lines) - 1, 5):     # every fifth review: markup in its body
        f = lines[i].split("\t")
        f[13] = f[13] + "<br /><br />&#34;Really&#34; &amp; truly\x1a"
        lines[i] = "\t".join(f)
        marked += 1
    src.write_text("\n".join(lines), encoding="utf-8")
    run_ingest(spark, [str(tmp_path / "raw")], str(tmp_path / "lake"))
    on = run_prepare(spark, str(tmp_path / "lake"), str(tmp_path / "on"),
                     PrepareOptions(balance=False))
    tok = str(tmp_path / "on")   # a features directory: its _meta.json names the tokenizer
    off = run_prepare(spark, str(tmp_path / "lake"), str(tmp_path / "off"),
                      PrepareOptions(balance=False, clean_text=False, tokenizer=tok))
    c = on["text_cleaning"]
    assert c["enabled"] is True and c["reviews_changed"] == marked
    assert c["tokens_saved"] >= 8 * marked and c["reviews_emptied"] == 0
    assert off["text_cleaning"] == {"enabled": False}
    fon = spark.read.parquet(str(tmp_path / "on" / on["parquet"]["path"]))
    foff = spark.read.parquet(str(tmp_path / "off" / off["parquet"]["path"]))
    from transformers import DistilBertTokenizerFast

    from reviewlake.features.textclean import clean_texts

    t = DistilBertTokenizerFast.from_pretrained(str(tmp_path / "on" / on["tokenizer"]["path"]))
    # the tokens saved are of the full texts (the features count only up to 65)
    bodies = [r.review_body for r in spark.read.parquet(str(tmp_path / "lake" / "reviews"))
              .join(fon.select("review_id"), "review_id").select("review_body").collect()]
    full = sum(len(x) for x in t(bodies)["input_ids"])
    assert full - sum(len(x) for x in t(clean_texts(bodies)[0])["input_ids"]) == c["tokens_saved"]
    assert fon.agg({"n_tokens": "max"}).first()[0] <= 65
    lt = t.convert_tokens_to_ids("<")
    ids_on = np.array([r.input_ids for r in fon.select("input_ids").collect()])
    ids_off = np.array([r.input_ids for r in foff.select("input_ids").collect()])
    assert not (ids_on == lt).any() and (ids_off == lt).any()
