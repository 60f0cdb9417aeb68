"""The lake as Apache Iceberg tables (ingest.format iceberg, the embedded JDBC/SQLite catalog):
one snapshot per run, exact counts, no duplicates, failed runs leave the previous snapshot,
quality and prepare at a pinned snapshot, the lineage in _meta.json, and the one-line error
without the jar."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, VENV_BIN, jars_hidden, need_jar
from reviewlake import lake as L
from reviewlake.errors import UserError
from reviewlake.generate import generate
from reviewlake.ingest import cli as ingest_cli
from reviewlake.ingest import iceberg as ice
from reviewlake.ingest.job import AccountingError, IngestOptions, run_ingest
from reviewlake.jars import ICEBERG
from reviewlake.schema import lake_ddl
from reviewlake.session import ICEBERG_CATALOG_CLASS, iceberg_catalog

ICEBERG_OPTS = dict(format="iceberg")


@pytest.fixture()
def iceberg(spark):
    need_jar(spark, ICEBERG_CATALOG_CLASS, ICEBERG)
    return spark


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Two TSV files (with malformed lines), and a third file from another sample."""
    base = tmp_path_factory.mktemp("ice_raw")
    generate(rows=900, output=base / "a", seed=11, defects="malformed", files=2)
    generate(rows=300, output=base / "b", seed=12, defects="malformed", files=1)
    extra = next((base / "b").glob("*.tsv"))
    return base / "a", extra


def _tables(spark, lake):
    return L.tables(spark, {}, str(lake))


def _ingest(spark, inputs, lake, mode="overwrite"):
    return run_ingest(spark, [str(i) for i in inputs], str(lake),
                      IngestOptions(mode=mode, **ICEBERG_OPTS))


@pytest.fixture(scope="module")
def grown(spark, raw, tmp_path_factory):
    """A lake ingested (overwrite, two files), overwritten again with the same files, then
    grown by one file (append-new): three snapshots."""
    need_jar(spark, ICEBERG_CATALOG_CLASS, ICEBERG)
    files, extra = raw
    inputs = tmp_path_factory.mktemp("ice_in")
    for f in files.glob("*.tsv"):
        shutil.copy(f, inputs / f.name)
    lake = tmp_path_factory.mktemp("ice_grown") / "lake"
    first = _ingest(spark, [inputs], lake)
    snaps_after_first = L.snapshots(spark, _tables(spark, lake).reviews)
    again = _ingest(spark, [inputs], lake)
    shutil.copy(extra, inputs / "extra.tsv")
    second = _ingest(spark, [inputs], lake, "append-new")
    return lake, inputs, first, second, again, snaps_after_first


def test_overwrite_is_one_replace_snapshot_with_the_reported_counts(iceberg, grown):
    spark = iceberg
    lake, _, report, _, again, snaps = grown
    t = _tables(spark, lake)
    assert len(snaps) == 1 and report["format"] == "iceberg"
    assert report["snapshots"]["reviews"] == snaps[0]["snapshot_id"]
    assert report["tables"] == {"reviews": "reviewlake.reviews", "quarantine": "reviewlake.quarantine"}
    assert report["rows_read"] == report["rows_written"] + report["rows_quarantined"] == 900
    assert report["rows_quarantined"] > 0
    assert int(snaps[0]["summary"]["added-records"]) == report["rows_written"]
    first = L.read_at(spark, t.reviews, report["snapshots"]["reviews"])
    assert first.count() == report["rows_written"]
    assert L.read_at(spark, t.quarantine, report["snapshots"]["quarantine"]).count() == \
        report["rows_quarantined"]
    # the same typed columns as the Parquet layout, partitioned by identity(product_category)
    want = [c.split()[0].strip("`") for c in lake_ddl().split(", ")]
    assert first.columns == want and dict(first.dtypes)["review_date"] == "date"
    spec = spark.sql(f"SELECT partition FROM {t.reviews}.files").schema["partition"].dataType
    assert [f.name for f in spec.fields] == ["product_category"]
    by_cat = {r[0]: r[1] for r in first.groupBy("product_category").count().collect()}
    assert by_cat == report["rows_by_category"]
    # every run's report on disk has its snapshot ids, and `reviewlake ingest` prints them
    on_disk = json.loads((lake / "_reports" / "runs" / f"ingest-{report['run_id']}.json").read_text())
    assert on_disk["snapshots"] == report["snapshots"]
    printed = ingest_cli.summary(report)
    assert f"reviewlake.reviews (" in printed and f"snapshot {report['snapshots']['reviews']}" in printed
    assert not (lake / "_staging").exists() and (lake / "_catalog.db").is_file()

    # overwrite again: one more snapshot (a replace), the same content, the old one readable
    snaps = L.snapshots(spark, t.reviews)
    assert len(snaps) == 3 and again["snapshots"]["reviews"] == snaps[1]["snapshot_id"]
    assert snaps[1]["summary"][ice.MODE] == "overwrite"
    assert L.read_at(spark, t.reviews, snaps[1]["snapshot_id"]).count() == report["rows_written"]
    assert L.read_at(spark, t.quarantine, again["snapshots"]["quarantine"]).count() == \
        report["rows_quarantined"]


def test_append_new_is_one_append_snapshot_and_reruns_add_nothing(iceberg, grown):
    spark = iceberg
    lake, inputs, first, second, again, _ = grown
    t = _tables(spark, lake)
    assert second["mode"] == "append" and len(second["files"]) == 1
    snaps = L.snapshots(spark, t.reviews)
    assert [s["snapshot_id"] for s in snaps] == [first["snapshots"]["reviews"],
                                                 again["snapshots"]["reviews"],
                                                 second["snapshots"]["reviews"]]
    assert snaps[-1]["parent_id"] == again["snapshots"]["reviews"]
    assert snaps[-1]["operation"] == "append"
    assert int(snaps[-1]["summary"]["added-records"]) == second["rows_written"]
    assert json.loads(snaps[-1]["summary"][ice.FILES]) == {second["files"][0]["path"]:
                                                           second["files"][0]["bytes"]}
    total = first["rows_written"] + second["rows_written"]
    assert spark.table(t.reviews).count() == total
    assert spark.table(t.quarantine).count() == first["rows_quarantined"] + second["rows_quarantined"]
    # the run's files are known from the table's history: a re-run adds no snapshot, no row
    exists, known = ice.ingested_files(spark, t)
    assert exists and len(known) == 3
    third = _ingest(spark, [inputs], lake, "append-new")
    assert third["status"] == "nothing_new" and len(third["skipped_files"]) == 3
    assert third["snapshots"] == second["snapshots"]
    assert len(L.snapshots(spark, t.reviews)) == 3 and spark.table(t.reviews).count() == total
    assert spark.table(t.reviews).select("review_id").distinct().count() == total


def test_a_failed_run_leaves_the_previous_snapshot_current(iceberg, grown, raw, tmp_path,
                                                           monkeypatch):
    spark = iceberg
    lake, inputs, _, before, _, _ = grown
    t = _tables(spark, lake)
    rows = spark.table(t.reviews).count()
    quarantined = spark.table(t.quarantine).count()
    known = ice.ingested_files(spark, t)[1]
    report_before = (lake / "_reports" / "ingest.json").read_text()

    def wrong_counts(spark_, tables, pending):   # both tables were written: roll them back
        raise AccountingError("row accounting failed: injected")

    monkeypatch.setattr(ice, "verify", wrong_counts)
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(raw[1], more / "more.tsv")
    with pytest.raises(AccountingError, match="injected"):   # an overwrite (a replace) ...
        _ingest(spark, [more], lake)
    with pytest.raises(AccountingError, match="injected"):   # ... and an append
        _ingest(spark, [inputs, more], lake, "append-new")
    for full, name in ((t.reviews, "reviews"), (t.quarantine, "quarantine")):
        assert L.current_snapshot(spark, full) == before["snapshots"][name]
    assert spark.table(t.reviews).count() == rows
    assert spark.table(t.quarantine).count() == quarantined
    assert ice.ingested_files(spark, t)[1] == known
    assert (lake / "_reports" / "ingest.json").read_text() == report_before
    assert not (lake / "_staging").exists() or not list((lake / "_staging").iterdir())


def test_a_run_killed_between_its_two_commits_is_finished_by_the_next(iceberg, raw, tmp_path,
                                                                      monkeypatch):
    spark = iceberg
    lake = tmp_path / "lake"
    real_write = ice._write

    class Killed(BaseException):
        pass

    def die_on_quarantine(df, full, mode, props, partitioned):
        if full.endswith(".quarantine"):
            raise Killed()   # as if the process died: no rollback runs for a kill
        real_write(df, full, mode, props, partitioned)

    monkeypatch.setattr(ice, "_write", die_on_quarantine)
    monkeypatch.setattr(ice, "_rollback", lambda *a: None)
    with pytest.raises(Killed):
        _ingest(spark, [raw[0]], lake)
    monkeypatch.undo()
    t = _tables(spark, lake)
    assert not L.table_exists(spark, t.quarantine)
    nothing = _ingest(spark, [raw[0]], lake, "append-new")   # recovers, then finds nothing new
    assert nothing["status"] == "nothing_new" and nothing["recovered_run"]
    report = json.loads((lake / "_reports" / "ingest.json").read_text())
    assert report["status"] == "nothing_new"
    run = json.loads((lake / "_reports" / "runs" / f"ingest-{nothing['recovered_run']}.json").read_text())
    assert run["recovered"] and run["rows_read"] == 900
    assert spark.table(t.quarantine).count() == run["rows_quarantined"] > 0
    assert spark.table(t.reviews).count() == run["rows_written"]


def test_quality_and_prepare_read_a_pinned_snapshot(iceberg, grown, tmp_path):
    from reviewlake.features.job import PrepareOptions, run_prepare
    from reviewlake.quality.job import QualityOptions, run_quality
    from reviewlake.quality.suite import load_suite
    from reviewlake.train.meta import load_features

    spark = iceberg
    lake, _, first, second, _, _ = grown
    old, new = first["snapshots"]["reviews"], second["snapshots"]["reviews"]
    small = {"min_size": 10}

    latest = run_quality(spark, str(lake), str(tmp_path / "q1"),
                         QualityOptions(load_suite(None, small), engine="spark"))
    assert latest["lake"]["snapshot_id"] == new and latest["rows"] == (
        first["rows_written"] + second["rows_written"])
    pinned = run_quality(spark, str(lake), str(tmp_path / "q2"),
                         QualityOptions(load_suite(None, small), engine="spark",
                                        snapshot=old))
    assert pinned["rows"] == first["rows_written"]
    assert pinned["lake"] == {"format": "iceberg", "table": "reviewlake.reviews",
                              "snapshot_id": old, "lake": str(lake), "catalog": "embedded"}
    assert pinned["input"] == f"reviewlake.reviews@{old}"
    saved = json.loads((tmp_path / "q2" / "summary.json").read_text())
    assert saved["lake"]["snapshot_id"] == old

    out = tmp_path / "features"
    meta = run_prepare(spark, str(lake), str(out), PrepareOptions(
        snapshot=old, vocab_size=200, tokenizer_sample_rows=500, profile_sample_rows=200,
        min_files=1, writer="python", balance=False))
    assert meta["rows"]["read"] == first["rows_written"]
    assert meta["lake"]["snapshot_id"] == old and meta["lake"]["table"] == "reviewlake.reviews"
    on_disk = json.loads((out / "_meta.json").read_text())
    assert on_disk["lake"] == meta["lake"]
    # train's metrics.json carries this: model -> features run -> lake snapshot
    lineage = load_features(str(out)).lineage()
    assert lineage["features_run"] == meta["run_id"] and lineage["lake"]["snapshot_id"] == old


def test_snapshot_resolution(iceberg, grown):
    spark = iceberg
    lake, _, first, second, _, _ = grown
    t = _tables(spark, lake)
    old, new = first["snapshots"]["reviews"], second["snapshots"]["reviews"]
    made = dict((sid, when) for when, sid in L.history(spark, t.reviews))
    assert L.resolve_snapshot(spark, t.reviews) == new
    assert L.resolve_snapshot(spark, t.reviews, as_of=made[old].isoformat()) == old
    assert L.resolve_snapshot(spark, t.reviews, as_of=made[new].isoformat()) == new
    with pytest.raises(UserError, match="no snapshot at or before"):
        L.resolve_snapshot(spark, t.reviews, as_of="2001-01-01T00:00:00Z")
    with pytest.raises(UserError, match="has no snapshot 12345"):
        L.resolve_snapshot(spark, t.reviews, snapshot=12345)
    with pytest.raises(UserError, match="ISO timestamp"):
        L.resolve_snapshot(spark, t.reviews, as_of="yesterday")
    # the table by name, as a Glue user would give it
    source = L.locate(spark, str(lake), {}, table="reviewlake.quarantine")
    assert source["table"] == "reviewlake.quarantine"


def test_catalog_options_per_profile(tmp_path):
    name, opts = iceberg_catalog({}, str(tmp_path / "lake"))
    assert name.startswith("lake_") and opts[f"spark.sql.catalog.{name}.type"] == "jdbc"
    assert opts[f"spark.sql.catalog.{name}.uri"] == f"jdbc:sqlite:{tmp_path}/lake/_catalog.db"
    assert iceberg_catalog({}, f"file://{tmp_path}/lake")[0] == name   # one lake, one name
    assert iceberg_catalog({}, str(tmp_path / "other"))[0] != name
    import yaml

    for profile in ("emr", "sagemaker"):
        section = yaml.safe_load((ROOT / "conf" / f"{profile}.yaml").read_text())["catalog"]
        name, opts = iceberg_catalog(section, "s3://my-bucket/reviewlake/lake")
        assert name == "lake"
        assert opts["spark.sql.catalog.lake.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
        assert opts["spark.sql.catalog.lake.warehouse"].startswith("s3://")
    with pytest.raises(UserError, match="embedded Iceberg catalog needs a local lake"):
        iceberg_catalog({}, "s3a://bucket/lake")
    with pytest.raises(UserError, match="catalog.uri"):
        iceberg_catalog({"type": "hive"}, "/x")


@pytest.mark.jarfree
def test_without_the_jar_iceberg_is_one_line_and_auto_is_parquet(spark, monkeypatch, tmp_path):
    if not jars_hidden():   # simulate the jar-free classpath in the suite's first pass
        monkeypatch.setattr(L, "has_class", lambda s, c: False)
    assert L.choose_format(spark, "auto") == "parquet"
    with pytest.raises(L.IcebergUnavailable) as e:
        L.choose_format(spark, "iceberg")
    assert "\n" not in str(e.value) and "jars/fetch.sh iceberg" in str(e.value)
    assert ICEBERG in str(e.value)
    with pytest.raises(UserError, match="ingest.format must be one of"):
        L.choose_format(spark, "delta")


@pytest.mark.slow
def test_cli_without_the_jar_says_so_in_one_line(raw, tmp_path):
    empty = tmp_path / "nojars"
    empty.mkdir()
    env = dict(os.environ, REVIEWLAKE_JARS_DIR=str(empty), PYTHONPATH=str(ROOT / "lib"))
    proc = subprocess.run([str(VENV_BIN / "reviewlake"), "ingest", "--input", str(raw[0]),
                           "--output", str(tmp_path / "lake"), "--format", "iceberg",
                           "--master", "local[1]"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("reviewlake ingest:")]
    assert lines == [lines[0]] and "Iceberg is not on the classpath" in lines[0]
    assert "Traceback" not in proc.stderr
