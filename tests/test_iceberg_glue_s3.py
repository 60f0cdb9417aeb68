"""The lake as the EMR and SageMaker profiles run it: Iceberg tables in the AWS Glue Data
Catalog (Iceberg's GlueCatalog), their files on S3 through Iceberg's S3FileIO, the raw input,
ingest's reports and prepare's features on s3a://. Glue and S3 are the local emulator (moto in
server mode); the catalog section is the profiles' (``type: glue``, an s3:// warehouse) plus the
endpoint options a user sets for a private endpoint.

What the embedded-catalog tests (test_iceberg_lake.py) show on a local disk, shown here against
the services: every commit is one snapshot whose metadata file Glue points to (no renames: the
table's files are written once under the warehouse), a rerun appends only new files, a failed
run leaves Glue's pointer where it was, and quality and prepare read a pinned snapshot through
the catalog and record it."""
import json

import pytest

from conftest import AWS_REGION, need_jar, point_s3a_at
from reviewlake import lake as L
from reviewlake.generate import generate
from reviewlake.ingest import iceberg as ice
from reviewlake.ingest.job import AccountingError, IngestOptions, run_ingest
from reviewlake.jars import HADOOP_AWS, ICEBERG, ICEBERG_AWS
from reviewlake.session import ICEBERG_CATALOG_CLASS

BUCKET = "reviewlake-glue"
GLUE_CATALOG_CLASS = "org.apache.iceberg.aws.glue.GlueCatalog"
# the AWS SDK v2 (in iceberg-aws-bundle) takes these from the JVM's system properties first
AWS_PROPERTIES = {"aws.accessKeyId": "testing", "aws.secretAccessKey": "testing",
                  "aws.region": AWS_REGION}


def glue_catalog(endpoint: str) -> dict:
    """conf/emr.yaml's catalog section, on the emulator."""
    return {"type": "glue", "name": "moto_glue", "warehouse": f"s3://{BUCKET}/warehouse",
            "options": {"glue.endpoint": endpoint, "s3.endpoint": endpoint,
                        "s3.path-style-access": "true", "client.region": AWS_REGION}}


def keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def pointed_metadata(glue, name: str) -> dict:
    """The Iceberg metadata file the Glue table points to (read from S3 as Athena would)."""
    pointer = glue.table(name)["Parameters"]["metadata_location"]
    bucket, key = pointer[len("s3://"):].split("/", 1)
    return json.loads(glue.s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture(scope="module")
def glue(spark, moto_s3, tmp_path_factory):
    """The shared session on the emulator's S3 (s3a://) and Glue; a bucket with two raw TSV
    files under raw/ and a third, from another sample, under more/."""
    import boto3

    need_jar(spark, ICEBERG_CATALOG_CLASS, ICEBERG)
    need_jar(spark, GLUE_CATALOG_CLASS, ICEBERG_AWS)
    point_s3a_at(spark, moto_s3)
    need_jar(spark, "org.apache.hadoop.fs.s3a.S3AFileSystem", HADOOP_AWS)
    system = spark.sparkContext._jvm.java.lang.System
    saved = {k: system.getProperty(k) for k in AWS_PROPERTIES}
    for key, value in AWS_PROPERTIES.items():
        system.setProperty(key, value)
    s3 = moto_s3["client"]
    s3.create_bucket(Bucket=BUCKET)
    local = tmp_path_factory.mktemp("glue_raw")
    generate(rows=700, output=local / "a", seed=21, defects="malformed", files=2)
    generate(rows=250, output=local / "b", seed=22, defects="malformed", files=1)
    for f in sorted((local / "a").glob("*.tsv")):
        s3.upload_file(str(f), BUCKET, f"raw/{f.name}")
    s3.upload_file(str(next((local / "b").glob("*.tsv"))), BUCKET, "more/extra.tsv")
    client = boto3.client("glue", endpoint_url=moto_s3["endpoint"], region_name=AWS_REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")

    class Glue:
        catalog = glue_catalog(moto_s3["endpoint"])
        lake = f"s3a://{BUCKET}/lake"
        raw = f"s3a://{BUCKET}/raw"
        s3_client = s3
        glue_client = client

        @staticmethod
        def ingest(inputs, mode="overwrite"):
            return run_ingest(spark, inputs, Glue.lake,
                              IngestOptions(mode=mode, format="iceberg", catalog=Glue.catalog))

        @staticmethod
        def table(name="reviews") -> dict:
            return client.get_table(DatabaseName="reviewlake", Name=name)["Table"]

        @staticmethod
        def full(name="reviews") -> str:
            return f"{Glue.catalog['name']}.reviewlake.{name}"

    Glue.first = Glue.ingest([Glue.raw])
    Glue.first_pointer = Glue.table()["Parameters"]["metadata_location"]
    yield Glue
    for key, value in saved.items():
        if value is None:
            system.clearProperty(key)
        else:
            system.setProperty(key, value)


def test_ingest_commits_one_snapshot_that_glue_points_to(spark, glue):
    report = glue.first
    assert report["format"] == "iceberg"
    assert report["rows_read"] == report["rows_written"] + report["rows_quarantined"] == 700
    assert report["rows_quarantined"] > 0
    assert report["tables"] == {"reviews": "reviewlake.reviews",
                                "quarantine": "reviewlake.quarantine"}
    for name in ("reviews", "quarantine"):
        table = glue.table(name)
        params = table["Parameters"]
        # the Glue table is an Iceberg table whose pointer is the one metadata file of the commit
        assert params["table_type"].upper() == "ICEBERG"
        assert params["metadata_location"].startswith(
            f"s3://{BUCKET}/warehouse/reviewlake.db/{name}/metadata/")
        snaps = L.snapshots(spark, glue.full(name))
        assert [s["snapshot_id"] for s in snaps] == [report["snapshots"][name]]
    snap = L.snapshots(spark, glue.full())[0]
    assert int(snap["summary"]["added-records"]) == report["rows_written"]
    assert L.read_at(spark, glue.full(), report["snapshots"]["reviews"]).count() == \
        report["rows_written"]
    # the tables' files were written once, where they stay: data/ and metadata/ under the
    # warehouse, nothing staged or renamed under the lake prefix (only the reports)
    data = keys(glue.s3_client, "warehouse/reviewlake.db/reviews/data/")
    assert data and all(k.endswith(".parquet") and "/product_category=" in k for k in data)
    files = spark.sql(f"SELECT file_path FROM {glue.full()}.files").collect()
    assert sorted(r[0] for r in files) == sorted(f"s3://{BUCKET}/{k}" for k in data)
    lake_keys = keys(glue.s3_client, "lake/")
    assert lake_keys and all(k.startswith("lake/_reports/") for k in lake_keys), lake_keys
    on_s3 = json.loads(glue.s3_client.get_object(
        Bucket=BUCKET, Key="lake/_reports/ingest.json")["Body"].read())
    assert on_s3["snapshots"] == report["snapshots"] and on_s3["format"] == "iceberg"


def test_a_failed_run_leaves_glue_pointing_at_the_previous_metadata(spark, glue, monkeypatch):
    before = glue.table()["Parameters"]["metadata_location"]
    quarantine_before = glue.table("quarantine")["Parameters"]["metadata_location"]
    rows = spark.table(glue.full()).count()

    def wrong_counts(spark_, tables, pending):   # both tables committed: both roll back
        raise AccountingError("row accounting failed: injected")

    monkeypatch.setattr(ice, "verify", wrong_counts)
    with pytest.raises(AccountingError, match="injected"):
        glue.ingest([glue.raw, f"s3a://{BUCKET}/more"], "append-new")
    monkeypatch.undo()
    assert L.current_snapshot(spark, glue.full()) == glue.first["snapshots"]["reviews"]
    assert L.current_snapshot(spark, glue.full("quarantine")) == \
        glue.first["snapshots"]["quarantine"]
    assert spark.table(glue.full()).count() == rows
    # what any other engine (Athena, EMR) sees: the metadata file Glue points to has the
    # first run's snapshot current (a rollback is one more metadata file, not a rewrite)
    for name, old in (("reviews", before), ("quarantine", quarantine_before)):
        pointer = glue.table(name)["Parameters"]["metadata_location"]
        assert pointer != old
        assert pointed_metadata(glue, name)["current-snapshot-id"] == \
            glue.first["snapshots"][name]


def test_append_new_adds_only_the_new_file_as_one_snapshot(spark, glue):
    first = glue.first
    pointer = glue.table()["Parameters"]["metadata_location"]
    grown = glue.ingest([glue.raw, f"s3a://{BUCKET}/more"], "append-new")
    assert grown["mode"] == "append" and [f["path"].rsplit("/", 1)[1]
                                          for f in grown["files"]] == ["extra.tsv"]
    assert grown["rows_read"] == 250
    params = glue.table()["Parameters"]
    assert params["metadata_location"] != pointer
    assert params["previous_metadata_location"] == pointer
    assert pointed_metadata(glue, "reviews")["current-snapshot-id"] == \
        grown["snapshots"]["reviews"]
    snap = L.snapshots(spark, glue.full())[-1]
    assert snap["snapshot_id"] == grown["snapshots"]["reviews"] and snap["operation"] == "append"
    assert int(snap["summary"]["added-records"]) == grown["rows_written"]
    total = first["rows_written"] + grown["rows_written"]
    assert spark.table(glue.full()).count() == total
    assert spark.table(glue.full()).dropDuplicates(["review_id"]).count() == total
    # again: nothing new, no snapshot
    again = glue.ingest([glue.raw, f"s3a://{BUCKET}/more"], "append-new")
    assert again["rows_read"] == 0
    assert L.current_snapshot(spark, glue.full()) == grown["snapshots"]["reviews"]


def test_quality_and_prepare_read_a_pinned_snapshot_through_glue(spark, glue, tmp_path):
    from reviewlake.features.job import PrepareOptions, run_prepare
    from reviewlake.quality.job import QualityOptions, run_quality
    from reviewlake.quality.suite import load_suite
    from reviewlake.aws import S3
    from reviewlake.train.remote import read_meta

    first = glue.first["snapshots"]["reviews"]
    # the lake directory (its ingest.json says iceberg), at the first snapshot
    q = run_quality(spark, glue.lake, f"s3a://{BUCKET}/quality", QualityOptions(
        load_suite(None, {"min_size": 10}), engine="spark", catalog=glue.catalog,
        snapshot=first))
    assert q["rows"] == glue.first["rows_written"]
    assert q["lake"] == {"format": "iceberg", "table": "reviewlake.reviews",
                         "snapshot_id": first, "lake": glue.lake, "catalog": "glue"}
    saved = json.loads(glue.s3_client.get_object(
        Bucket=BUCKET, Key="quality/summary.json")["Body"].read())
    assert saved["lake"]["snapshot_id"] == first
    # a table of the catalog by name (what Athena and EMR query), at its current snapshot
    current = L.current_snapshot(spark, glue.full())
    features = f"s3a://{BUCKET}/features"
    meta = run_prepare(spark, glue.lake, features, PrepareOptions(
        catalog=glue.catalog, table="reviewlake.reviews", vocab_size=200,
        tokenizer_sample_rows=400, profile_sample_rows=200, min_files=1, writer="python",
        balance=False))
    assert meta["lake"]["snapshot_id"] == current and meta["lake"]["catalog"] == "glue"
    assert meta["rows"]["read"] == spark.table(glue.full()).count()
    # train reads this _meta.json from S3 (train/remote.py): its lineage is the snapshot read
    on_s3 = read_meta(S3(glue.s3_client), features)
    assert on_s3["run_id"] == meta["run_id"] and on_s3["lake"] == meta["lake"]
    assert all(f.startswith(f"runs/{meta['run_id']}/")
               for f in on_s3["splits"]["train"]["files"])
