"""The ingest job on generated data: accounting, idempotence, append-new, failures."""
import json

import pytest
from pyspark.sql import functions as F

from reviewlake.errors import UserError
from reviewlake.fs import HadoopFS
from reviewlake.generate import MANIFEST_NAME, generate
from reviewlake.ingest import commit as commit_mod
from reviewlake.ingest import job as job_mod
from reviewlake.ingest.job import IngestOptions, read_quarantine, run_ingest


def lake_rows(spark, lake):
    df = spark.read.parquet(str(lake / "reviews"))
    rows = df.select("review_id", "source_file", "star_rating", "review_body",
                     "product_category").collect()
    return sorted((tuple("" if v is None else str(v) for v in r) for r in rows))


@pytest.fixture(scope="module")
def ingested(spark, defects_sample, tmp_path_factory):
    raw, _ = defects_sample
    lake = tmp_path_factory.mktemp("lake")
    report = run_ingest(spark, [str(raw)], str(lake))
    return lake, report


def test_accounting_matches_the_generator(ingested, defects_sample):
    raw, gen = defects_sample
    lake, report = ingested
    manifest = json.loads((raw / MANIFEST_NAME).read_text())
    assert report["rows_read"] == manifest["lines"] == 6000
    assert report["rows_written"] == manifest["good_rows"]
    assert report["rows_quarantined"] == len(manifest["malformed_lines"])
    assert report["by_reason"] == manifest["malformed_counts"]
    assert report["headers"] == 3
    for f in report["files"]:
        assert f["rows_read"] == f["rows_written"] + f["rows_quarantined"] > 0
    assert sum(f["rows_read"] for f in report["files"]) == report["rows_read"]


def test_quarantine_points_at_the_generated_lines(spark, ingested, defects_sample):
    raw, _ = defects_sample
    lake, _ = ingested
    manifest = json.loads((raw / MANIFEST_NAME).read_text())
    expected = {(m["file"], m["line"], m["kind"]) for m in manifest["malformed_lines"]}
    q = read_quarantine(spark, str(lake / "_quarantine")).collect()
    found = {(r.source_file.rsplit("/", 1)[-1], r.line_number, r.reason) for r in q}
    assert found == expected


def test_semantic_defects_pass_through(spark, ingested):
    lake, _ = ingested
    df = spark.read.parquet(str(lake / "reviews"))
    assert df.where("star_rating = 0").count() > 0 and df.where("star_rating = 6").count() > 0
    assert df.where("marketplace = 'XX'").count() > 0
    assert df.where("review_id IS NULL").count() > 0
    dupes = df.groupBy("review_id").count().where("review_id IS NOT NULL AND count > 1")
    assert dupes.count() > 0


def test_parquet_layout(ingested):
    import pyarrow.parquet as pq

    lake, report = ingested
    parts = [p for p in (lake / "reviews").iterdir() if p.is_dir()]
    assert len(parts) == len(report["rows_by_category"]) >= 30
    assert all(p.name.startswith("product_category=") for p in parts)
    assert not any("__reviewlake" in p.name for p in parts)
    some = next(parts[0].glob("*.parquet"))
    meta = pq.ParquetFile(some).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    assert "product_category" not in names and "year" in names and "source_file" in names
    col = meta.row_group(0).column(names.index("review_body"))
    assert col.compression == "SNAPPY"
    assert "PLAIN_DICTIONARY" not in col.encodings and "RLE_DICTIONARY" not in col.encodings
    mk = meta.row_group(0).column(names.index("marketplace"))
    assert "RLE_DICTIONARY" in mk.encodings or "PLAIN_DICTIONARY" in mk.encodings
    assert not (lake / "_staging").exists() and not (lake / "_commit.json").exists()


def test_rerun_gives_the_same_lake(spark, defects_sample, tmp_path):
    raw, _ = defects_sample
    lake = tmp_path / "lake"
    first = run_ingest(spark, [str(raw)], str(lake))
    before = lake_rows(spark, lake)
    second = run_ingest(spark, [str(raw)], str(lake))
    assert lake_rows(spark, lake) == before
    assert second["rows_written"] == first["rows_written"] == len(before)
    assert read_quarantine(spark, str(lake / "_quarantine")).count() == first["rows_quarantined"]
    runs = sorted(p.name for p in (lake / "_reports" / "runs").iterdir())
    assert len(runs) == 2


def test_append_new_ingests_only_new_files(spark, tmp_path):
    raw = tmp_path / "raw"
    generate(rows=1500, output=raw / "a", seed=1, files=2)
    lake = tmp_path / "lake"
    first = run_ingest(spark, [str(raw / "*" / "*.tsv")], str(lake),
                       IngestOptions(mode="append-new"))
    assert first["mode"] == "overwrite" and first["rows_written"] == 1500
    generate(rows=700, output=raw / "b", seed=2, files=1, defects=False)
    second = run_ingest(spark, [str(raw / "*" / "*.tsv")], str(lake),
                        IngestOptions(mode="append-new"))
    assert second["mode"] == "append"
    assert [f["path"].rsplit("/", 2)[-2] for f in second["files"]] == ["b"]
    assert len(second["skipped_files"]) == 2
    assert spark.read.parquet(str(lake / "reviews")).count() == 2200
    third = run_ingest(spark, [str(raw / "*" / "*.tsv")], str(lake),
                       IngestOptions(mode="append-new"))
    assert third["status"] == "nothing_new"
    assert spark.read.parquet(str(lake / "reviews")).count() == 2200
    manifest = json.loads((lake / "_reports" / "ingested_files.json").read_text())
    assert len(manifest["files"]) == 3


def test_failure_inside_the_write_leaves_the_previous_lake(spark, defects_sample, tmp_path,
                                                           monkeypatch):
    raw, _ = defects_sample
    lake = tmp_path / "lake"
    run_ingest(spark, [str(raw)], str(lake))
    before = lake_rows(spark, lake)

    real = job_mod._output_frame

    def failing(classified):
        # Fail from inside one task after some of its rows are written.
        out = real(classified)
        bomb = F.when(F.col("source_file").endswith("_01.tsv.gz") & (F.rand(1) < 0.01),
                      F.raise_error(F.lit("injected task failure")))
        return out.withColumn("review_body", F.coalesce(bomb.cast("string"), F.col("review_body")))

    monkeypatch.setattr(job_mod, "_output_frame", failing)
    with pytest.raises(Exception, match="injected task failure"):
        run_ingest(spark, [str(raw)], str(lake))
    monkeypatch.undo()
    assert lake_rows(spark, lake) == before  # previous lake readable and complete
    assert list((lake / "_staging").iterdir())  # the dead run's leftovers
    run_ingest(spark, [str(raw)], str(lake))
    assert not (lake / "_staging").exists()   # cleaned by the next run
    assert lake_rows(spark, lake) == before


def test_interrupted_commit_is_rolled_forward(spark, defects_sample, tmp_path, monkeypatch):
    raw, _ = defects_sample
    lake = tmp_path / "lake"
    run_ingest(spark, [str(raw)], str(lake))
    before = lake_rows(spark, lake)
    fs = HadoopFS(spark)
    real_rename = fs.rename
    calls = {"n": 0}

    def dying_rename(self, src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # after parking the old reviews, before moving the new ones in
            raise KeyboardInterrupt("killed")
        return real_rename(src, dst)

    monkeypatch.setattr(HadoopFS, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(spark, [str(raw)], str(lake))
    monkeypatch.undo()
    assert (lake / "_commit.json").exists()
    assert commit_mod.recover(HadoopFS(spark), str(lake)) is not None
    assert not (lake / "_commit.json").exists() and not (lake / "_previous").exists()
    assert lake_rows(spark, lake) == before
    report = json.loads((lake / "_reports" / "ingest.json").read_text())
    assert report["rows_written"] == len(before)


def test_accounting_mismatch_fails_without_committing(spark, defects_sample, tmp_path,
                                                     monkeypatch):
    raw, _ = defects_sample
    lake = tmp_path / "lake"
    real = job_mod._output_frame
    # Lose rows between the scan and the write: the check must catch it.
    monkeypatch.setattr(job_mod, "_output_frame",
                        lambda c: real(c).where(F.col("star_rating").isNull() | (F.col("star_rating") != 3)))
    with pytest.raises(job_mod.AccountingError, match="row accounting failed"):
        run_ingest(spark, [str(raw)], str(lake))
    assert not (lake / "reviews").exists()


def test_user_errors(spark, tmp_path):
    with pytest.raises(UserError, match="no input files matched"):
        run_ingest(spark, [str(tmp_path / "nothing*.tsv")], str(tmp_path / "lake"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no input files matched"):
        run_ingest(spark, [str(empty)], str(tmp_path / "lake"))
    (tmp_path / "file").write_text("x")
    generate(rows=10, output=tmp_path / "raw")
    with pytest.raises(UserError, match="not writable"):
        run_ingest(spark, [str(tmp_path / "raw")], str(tmp_path / "file" / "lake"))
    with pytest.raises(UserError, match="--mode"):
        run_ingest(spark, [str(tmp_path / "raw")], str(tmp_path / "lake"),
                   IngestOptions(mode="upsert"))


def test_ingest_from_and_to_s3a(spark, s3a, tmp_path):
    """s3a:// in and out, against a local S3 API (moto server)."""
    raw = tmp_path / "raw"
    gen = generate(rows=1200, output=raw, seed=3, defects=True, files=2, gzip=True)
    s3 = s3a["client"]
    s3.create_bucket(Bucket="lake-test")
    for name in gen.files:
        s3.upload_file(str(raw / name), "lake-test", f"raw/{name}")
    report = run_ingest(spark, ["s3a://lake-test/raw/"], "s3a://lake-test/lake")
    assert report["rows_read"] == 1200 == report["rows_written"] + report["rows_quarantined"]
    assert report["rows_quarantined"] == len(gen.malformed)
    assert spark.read.parquet("s3a://lake-test/lake/reviews").count() == report["rows_written"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lake-test", Prefix="lake/")["Contents"]}
    assert "lake/_reports/ingest.json" in keys
    assert not any(k.startswith(("lake/_staging/", "lake/_commit")) for k in keys)
    again = run_ingest(spark, ["s3a://lake-test/raw/*.tsv.gz"], "s3a://lake-test/lake")
    assert spark.read.parquet("s3a://lake-test/lake/reviews").count() == again["rows_written"]


@pytest.mark.parametrize("gz", [False, True])
def test_crlf_and_bom_file_is_ingested_like_its_lf_twin(spark, tmp_path, gz):
    """A Windows export: CRLF line ends and a UTF-8 BOM before the header. The CR of CRLF is
    part of the terminator and the BOM is not part of the first field; a CR inside a line is
    still quarantined (and the quarantine keeps the line exactly as read)."""
    import gzip as gzip_mod

    generate(rows=300, output=tmp_path / "gen", seed=3, defects=False, files=1)
    lf = next((tmp_path / "gen").glob("*.tsv")).read_bytes()
    lines = lf.split(b"\n")
    assert lines[-1] == b"" and b"\r" not in lf
    broken = lines[5].replace(b"\t", b"\tin\rside", 1)         # a CR inside a line
    twin = lines[:5] + [broken] + lines[6:]
    crlf = b"\xef\xbb\xbf" + b"\r\n".join(twin[:-1]) + b"\r\n"
    lf_twin = b"\n".join(twin)
    for name, data in (("lf", lf_twin), ("crlf", crlf)):
        d = tmp_path / name
        d.mkdir()
        target = d / ("reviews.tsv.gz" if gz else "reviews.tsv")
        target.write_bytes(gzip_mod.compress(data) if gz else data)
    a = run_ingest(spark, [str(tmp_path / "lf")], str(tmp_path / "lake_lf"))
    b = run_ingest(spark, [str(tmp_path / "crlf")], str(tmp_path / "lake_crlf"))
    assert (b["rows_read"], b["rows_written"], b["rows_quarantined"], b["headers"]) == \
        (a["rows_read"], a["rows_written"], a["rows_quarantined"], a["headers"]) == (300, 299, 1, 1)
    assert b["by_reason"] == {"carriage_return": 1}

    def rows(lake):
        df = spark.read.parquet(str(lake / "reviews")).drop("source_file")
        return sorted(tuple(r) for r in df.collect())
    assert rows(tmp_path / "lake_crlf") == rows(tmp_path / "lake_lf")
    marketplaces = {r[0] for r in spark.read.parquet(str(tmp_path / "lake_crlf" / "reviews"))
                    .select("marketplace").distinct().collect()}
    assert marketplaces <= {"US", "UK", "DE", "JP", "FR"}       # no BOM, no CR in any field
    q = read_quarantine(spark, str(tmp_path / "lake_crlf" / "_quarantine")).collect()
    assert len(q) == 1 and q[0].line_number == 6 and bytes(q[0].raw_bytes) == broken + b"\r"


def _info(path, size):
    from reviewlake.fs import FileInfo

    return FileInfo(path=path, size=size, mtime=0, uri=path)


def test_spread_partitions_rules():
    mb = 1 << 20
    one_gz = [_info("s3://b/reviews.tsv.gz", 2500 * mb)]
    assert job_mod.spread_partitions(one_gz, 64) == 64            # the published layout
    assert job_mod.spread_partitions(one_gz, 4) == 4
    assert job_mod.spread_partitions(one_gz, 2) == 0              # 2 cores: the shuffle costs more
    plain = [_info(f"s3://b/part-{i}.tsv", 500 * mb) for i in range(4)]
    assert job_mod.spread_partitions(plain, 64) == 0              # Spark splits plain files
    small = [_info("d/x.tsv.gz", 5 * mb)]
    assert job_mod.spread_partitions(small, 8) == 0               # not worth a shuffle
    even = [_info(f"d/{i}.tsv.gz", 100 * mb) for i in range(8)]
    assert job_mod.spread_partitions(even, 8) == 0                # one file per core already
    mixed = [_info("d/big.tsv.gz", 400 * mb)] + [_info(f"d/{i}.tsv", 100 * mb) for i in range(4)]
    assert job_mod.spread_partitions(mixed, 8) == 8               # 1600 of 2000 text MB in one task
    assert job_mod.spread_partitions(even[:2] + plain, 8) == 0    # 400 text MB each: < 1.5 x 350
    assert job_mod.spread_partitions(one_gz, 64, "off") == 0
    assert job_mod.spread_partitions(small, 8, 3) == 3
    assert job_mod.spread_partitions(small, 8, "12") == 12
    for bad in ("many", -2, "1.5"):
        with pytest.raises(UserError, match="ingest.spread must be auto, off or a number"):
            job_mod.spread_partitions(one_gz, 8, bad)


def test_spread_gzip_lines_give_the_same_lake(spark, ingested, defects_sample, tmp_path):
    """The 3 gzip files read in at most 3 tasks, spread over 5 partitions after decompression: the
    same rows, the same quarantine (exact line numbers), the same accounting."""
    from reviewlake.ingest import parse as P

    raw, _ = defects_sample
    lake, report = ingested
    paths = sorted(str(p) for p in raw.glob("*.tsv.gz"))
    assert P.read_lines(spark, paths).rdd.getNumPartitions() <= 3   # one task per gz at most
    assert P.read_lines(spark, paths, 5).rdd.getNumPartitions() == 5
    spread_lake = tmp_path / "lake"
    spread = run_ingest(spark, [str(raw)], str(spread_lake), IngestOptions(spread=5))
    assert spread["spread_partitions"] == 5 and report["spread_partitions"] == 0
    assert lake_rows(spark, spread_lake) == lake_rows(spark, lake)
    for key in ("rows_read", "rows_written", "rows_quarantined", "by_reason",
                "rows_by_category"):
        assert spread[key] == report[key]

    def quarantine(path):
        return sorted((r.source_file, r.line_number, r.reason, r.raw)
                      for r in read_quarantine(spark, str(path / "_quarantine")).collect())
    assert quarantine(spread_lake) == quarantine(lake)
    with pytest.raises(UserError, match="ingest.spread"):
        run_ingest(spark, [str(raw)], str(tmp_path / "bad"), IngestOptions(spread="lots"))
