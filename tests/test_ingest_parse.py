"""Every structural problem ingest must catch, on a hand-written TSV, through the real job."""
import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from reviewlake.ingest import parse as P
from reviewlake.ingest.job import read_quarantine, run_ingest
from reviewlake.schema import HEADER_LINE


def good(review_id="R1", stars="5", helpful="1", total="2", date="2015-08-31",
         category="Books", body="Great book, loved it.", marketplace="US", headline="Five Stars"):
    return "\t".join([marketplace, "12345678", review_id, "B00ABCDEFG", "123456789",
                      "A Title", category, stars, helpful, total, "N", "Y", headline, body, date])


# (line, expected reason or None for a good row)
CASES = [
    (good("R1"), None),
    (good("R2", stars="1", body="Terrible.", category="Video DVD", date="1995-06-24"), None),
    (good("R3", helpful="", total="", headline="", body=""), None),   # empty fields -> null
    (good("R4", stars="7", marketplace="XX"), None),                    # semantic: passes
    (good("R1"), None),                                                 # duplicate id: passes
    (good("R5", category="Health & Personal Care", body='He said "wow" \\ ok'), None),
    ("", "empty_line"),
    ("US\t1\tR6\tonly\tfour", "too_few_fields"),
    (good("R7") + "\textra", "too_many_fields"),
    (good("R8", stars="five"), "bad_integer"),
    (good("R9", helpful="3.5"), "bad_integer"),
    (good("R10", total="99999999999"), "bad_integer"),
    (good("R11", date="2015-02-30"), "bad_date"),
    (good("R12", date="31/08/2015"), "bad_date"),
    (good("R13", body="caf\udcff au lait"), "invalid_utf8"),
    (good("R14", body="stray\rreturn"), "carriage_return"),
    (good("R15") + "\r", None),            # CRLF line ending: the CR is part of the terminator
    (good("R22", body="two\r") + "\r", "carriage_return"),             # ...one CR only
    (good("R16", stars=" 5"), "bad_integer"),
    (good("R17", helpful="+3"), "bad_integer"),
    (good("R18", total="007"), "bad_integer"),
    (good("R19", date="2015-8-5"), "bad_date"),
    (good("R20", date="2015-08-05 "), "bad_date"),
    (good("R21", helpful="-1", total="0"), None),                      # negative: semantic
    # characters Spark escapes in partition paths; control characters, bare quotes, markup
    (good("R23", category='Books: 50% "Deals"/Misc', headline='"Wow"',
          body='A 24" screen\x1a, &#34;ok&#34;<br /><br />\u00a0fine \U0001F44D'), None),
]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, spark):
    raw = tmp_path_factory.mktemp("mixed_raw")
    text = HEADER_LINE + "\n" + "\n".join(line for line, _ in CASES) + "\n"
    (raw / "mixed.tsv").write_bytes(text.encode("utf-8", "surrogateescape"))
    lake = tmp_path_factory.mktemp("mixed_lake")
    report = run_ingest(spark, [str(raw / "mixed.tsv")], str(lake))
    return raw, lake, report


def test_accounting_holds(mixed):
    _, _, report = mixed
    n_bad = sum(1 for _, reason in CASES if reason)
    assert report["rows_read"] == len(CASES)
    assert report["headers"] == 1
    assert report["rows_quarantined"] == n_bad
    assert report["rows_written"] == len(CASES) - n_bad
    assert report["rows_read"] == report["rows_written"] + report["rows_quarantined"]


def test_every_bad_line_is_in_quarantine_with_reason_and_line_number(mixed, spark):
    raw, lake, _ = mixed
    q = read_quarantine(spark, str(lake / "_quarantine")).collect()
    found = {r.line_number: r for r in q}
    raw_lines = (raw / "mixed.tsv").read_bytes().split(b"\n")
    for i, (line, reason) in enumerate(CASES):
        line_number = i + 2  # header is line 1
        if reason is None:
            assert line_number not in found
            continue
        row = found[line_number]
        assert row.reason == reason, (line_number, row.reason, row.detail)
        assert bytes(row.raw_bytes) == raw_lines[line_number - 1]  # the exact bytes
        assert row.source_file.endswith("mixed.tsv")
        assert row.detail
    assert {r.reason for r in q} == set(P.REASONS)


def test_details_name_the_problem(mixed, spark):
    _, lake, _ = mixed
    details = {r.detail for r in read_quarantine(spark, str(lake / "_quarantine")).collect()}
    assert "5 fields, expected 15" in details
    assert "16 fields, expected 15" in details
    assert "star_rating not an integer: 'five'" in details
    assert "review_date not a yyyy-MM-dd date: '2015-02-30'" in details


def test_good_lines_are_typed(mixed, spark):
    _, lake, _ = mixed
    df = spark.read.parquet(str(lake / "reviews"))
    types = dict(df.dtypes)
    assert types["star_rating"] == types["helpful_votes"] == types["total_votes"] == "int"
    assert types["review_date"] == "date" and types["year"] == "int"
    assert types["customer_id"] == types["product_parent"] == "string"
    rows = {r.review_id + "/" + str(r.star_rating): r for r in df.collect()}
    r2 = rows["R2/1"]
    assert r2.review_date == dt.date(1995, 6, 24) and r2.year == 1995
    assert r2.product_category == "Video DVD" and r2.review_body == "Terrible."
    r3 = rows["R3/5"]
    assert r3.helpful_votes is None and r3.total_votes is None
    assert r3.review_headline is None and r3.review_body is None
    assert rows["R4/7"].marketplace == "XX"
    assert rows["R5/5"].product_category == "Health & Personal Care"
    assert rows["R5/5"].review_body == 'He said "wow" \\ ok'   # no quoting, no escaping
    assert df.where(F.col("review_id") == "R1").count() == 2
    r23 = rows["R23/5"]
    assert r23.product_category == 'Books: 50% "Deals"/Misc' and r23.review_headline == '"Wow"'
    assert r23.review_body == 'A 24" screen\x1a, &#34;ok&#34;<br /><br />\u00a0fine \U0001F44D'
    assert sorted(c.name for c in (lake / "reviews").iterdir() if c.is_dir()) == [
        "product_category=Books", "product_category=Books%3A 50%25 %22Deals%22%2FMisc",
        "product_category=Health & Personal Care", "product_category=Video DVD"]


def test_partition_names_round_trip(mixed, spark):
    """Category values with spaces, '&' and the characters Spark escapes in paths come back as
    they were: from the partition directories (prepare lists them) and by value."""
    from reviewlake.features.job import lake_categories, read_reviews
    from reviewlake.fs import HadoopFS

    _, lake, _ = mixed
    cats = lake_categories(HadoopFS(spark), str(lake / "reviews"))
    assert cats == sorted(["Books", 'Books: 50% "Deals"/Misc', "Health & Personal Care",
                           "Video DVD"])
    df = read_reviews(spark, str(lake / "reviews"), ['Books: 50% "Deals"/Misc'])
    assert [r.review_id for r in df.select("review_id").collect()] == ["R23"]


def test_report_is_written(mixed):
    _, lake, report = mixed
    saved = json.loads((lake / "_reports" / "ingest.json").read_text())
    assert saved["run_id"] == report["run_id"]
    assert (lake / "_reports" / "runs" / f"ingest-{report['run_id']}.json").exists()
    assert saved["by_reason"]["bad_integer"] == 6 and saved["by_reason"]["bad_date"] == 4
    assert saved["files"][0]["rows_read"] == len(CASES)


def test_parse_and_rejected_functions(spark, mixed):
    raw, _, _ = mixed
    lines = P.read_lines(spark, [str(raw / "mixed.tsv")])
    n_bad = sum(1 for _, reason in CASES if reason)
    assert P.parse(lines).count() == len(CASES) - n_bad
    assert P.rejected(lines).count() == n_bad
