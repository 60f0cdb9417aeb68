"""Faults at every step of ingest's plain-Parquet commit and of prepare's commit, on S3
(moto's S3 on loopback, s3a:// through the shared session).

Each test starts from the same state (an old output and a new run fully staged, copied to a
fresh prefix with S3 copies), runs the commit through a file system that fails at one step
(a failed PUT, a process killed before an object operation, or killed between an object's
copy and its delete), then recovers and checks: the old output or the new one, complete (its
exact files and sizes), counts equal to its report; never a mix, never a missing row.
"""
from __future__ import annotations

import io
import json
import uuid

import pytest

from conftest import point_s3a_at
from reviewlake import commit as C
from reviewlake.features import job as J
from reviewlake.features import tfrecord as T
from reviewlake.fs import HadoopFS
from reviewlake.generate import generate
from reviewlake.ingest import commit as ingest_commit
from reviewlake.ingest.job import IngestOptions, read_quarantine, run_ingest

BUCKET = "commit-faults"
OPTS = IngestOptions(files_per_category=1)


class Killed(BaseException):
    """The process dies here."""


class FaultyFS(HadoopFS):
    """HadoopFS that fails at one step: the ``nth`` call of ``op`` (write_text, rename,
    delete) whose path contains ``where``. ``how``: ``before`` (killed or the PUT fails
    before the operation), ``half`` (a rename: the object is copied, then the process dies
    before deleting the source, as S3's copy-and-delete leaves it; a recursive delete: some
    objects deleted, then the process dies)."""

    def __init__(self, spark, op: str, where: str, nth: int, how: str = "before"):
        super().__init__(spark)
        self.op, self.where, self.nth, self.how = op, where, nth, how
        self.seen = 0
        self.fired = False

    def _hit(self, op: str, path: str) -> bool:
        if self.fired or op != self.op or self.where not in path:
            return False
        self.seen += 1
        self.fired = self.seen == self.nth
        return self.fired

    def write_text(self, path, text):
        if self._hit("write_text", path):
            raise Killed(f"PUT {path} failed")
        return super().write_text(path, text)

    def rename(self, src, dst):
        if self._hit("rename", f"{src} -> {dst}"):
            if self.how == "half":
                jvm = self._jvm
                s, d = self._path(src), self._path(dst)
                jvm.org.apache.hadoop.fs.FileUtil.copy(self._fs(src), s, self._fs(dst), d,
                                                       False, True, self._conf)
            raise Killed(f"killed renaming {src}")
        return super().rename(src, dst)

    def delete(self, path, recursive=True):
        if self._hit("delete", path):
            if self.how == "half":
                files = sorted(self.list_files(path))
                for rel in files[: max(1, len(files) // 2)]:
                    super().delete(path.rstrip("/") + "/" + rel if rel else path, False)
            raise Killed(f"killed deleting {path}")
        return super().delete(path, recursive)


def copy_prefix(s3, src: str, dst: str) -> None:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=src)
    for page in pages:
        for obj in page.get("Contents", []):
            s3.copy_object(Bucket=BUCKET, Key=dst + obj["Key"][len(src):],
                           CopySource={"Bucket": BUCKET, "Key": obj["Key"]})


def objects(s3, prefix: str) -> dict[str, int]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                out[obj["Key"][len(prefix):]] = obj["Size"]
    return out


def retarget(obj, old: str, new: str):
    return json.loads(json.dumps(obj).replace(old, new))


def two_categories(src, dst) -> None:
    """The generated lines with product_category Books or Toys only (few objects)."""
    for f in src.glob("*.tsv"):
        lines = f.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
        col = lines[0].split("\t").index("product_category")
        for i in range(1, len(lines)):
            fields = lines[i].split("\t")
            if len(fields) > col and fields[col]:
                fields[col] = ("Books", "Toys")[i % 2]
                lines[i] = "\t".join(fields)
        (dst / f.name).write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")


# --------------------------------------------------------------------------- ingest


@pytest.fixture(scope="module")
def ingest_base(spark, moto_s3, tmp_path_factory):
    """s3a://BUCKET/base/lake: the old lake (v1) and run v2 fully staged, its marker captured
    at the moment the commit would start."""
    point_s3a_at(spark, moto_s3)
    root = tmp_path_factory.mktemp("s3commit")
    s3 = moto_s3["client"]
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    for name, rows, seed in (("v1", 60, 21), ("v2", 90, 22)):
        generate(rows=rows, output=root / f"{name}-raw", seed=seed, defects=True, files=1)
        (root / name).mkdir()
        two_categories(root / f"{name}-raw", root / name)
        for f in (root / name).iterdir():
            s3.upload_file(str(f), BUCKET, f"raw/{name}/{f.name}")
    lake = f"s3a://{BUCKET}/base/lake"
    run_ingest(spark, [f"s3a://{BUCKET}/raw/v1/"], lake, OPTS)
    old = {t: objects(s3, f"base/lake/{t}/") for t in ("reviews", "_quarantine")}
    old_report = json.loads(s3.get_object(Bucket=BUCKET, Key="base/lake/_reports/ingest.json")
                            ["Body"].read())
    captured = {}
    real = ingest_commit.commit

    def capture(fs, where, marker):
        captured.update(root=where, marker=marker)
        raise Killed("stopped before the commit")

    ingest_commit.commit = capture
    try:
        with pytest.raises(Killed):
            run_ingest(spark, [f"s3a://{BUCKET}/raw/v2/"], lake, OPTS)
    finally:
        ingest_commit.commit = real
    marker = captured["marker"]
    new = {t: objects(s3, f"base/lake/_staging/{marker['run_id']}/{t}/")
           for t in ("reviews", "_quarantine")}
    return old, old_report, marker, new


def lake_is_one_output(spark, s3, prefix: str, old, old_report, new, new_run_id) -> str:
    """Which output the lake holds ('old' or 'new'); fails unless it is exactly one of them,
    complete, with counts equal to its report."""
    assert objects(s3, prefix + "_commit.json") == {}
    assert objects(s3, prefix + "_previous/") == {} and objects(s3, prefix + "_staging/") == {}
    found = {t: {k: v for k, v in objects(s3, f"{prefix}{t}/").items()}
             for t in ("reviews", "_quarantine")}
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "_reports/ingest.json")
                        ["Body"].read())
    if report["run_id"] == old_report["run_id"]:
        which, expected = "old", old
    else:
        which, expected = "new", new
        assert report["run_id"] == new_run_id
    assert found == expected, f"the lake is not the {which} output exactly"
    lake = f"s3a://{BUCKET}/{prefix}"
    assert spark.read.parquet(lake + "reviews").count() == report["rows_written"]
    assert read_quarantine(spark, lake + "_quarantine").count() == report["rows_quarantined"]
    assert report["rows_read"] == report["rows_written"] + report["rows_quarantined"]
    return which


INGEST_STEPS = {   # step -> (op, path part, nth, how, the output recovery must give)
    "marker-put-fails": ("write_text", "/_commit.json", 1, "before", "old"),
    "killed-copying-first-old-object-to-park": ("rename", "/_previous/", 1, "half", "new"),
    "killed-before-second-park": ("rename", "/_previous/", 2, "before", "new"),
    "parked-state-put-fails": ("write_text", "/_commit.json", 2, "before", "new"),
    "killed-copying-first-new-object": ("rename", "/_staging/", 1, "half", "new"),
    "killed-before-third-new-object": ("rename", "/_staging/", 3, "before", "new"),
    "verified-state-put-fails": ("write_text", "/_commit.json", 3, "before", "new"),
    "report-put-fails": ("write_text", "/ingest.json", 1, "before", "new"),
    "killed-deleting-the-park": ("delete", "/_previous/", 1, "half", "new"),
    "killed-deleting-the-staging-area": ("delete", "/_staging/", 1, "half", "new"),
    "marker-delete-fails": ("delete", "/_commit.json", 1, "before", "new"),
}


def _prepare_case(s3, marker, name):
    prefix = f"t-{name}-{uuid.uuid4().hex[:6]}/lake/"
    copy_prefix(s3, "base/lake/", prefix)
    return prefix, retarget(marker, f"s3a://{BUCKET}/base/lake", f"s3a://{BUCKET}/{prefix[:-1]}")


@pytest.mark.parametrize("step", list(INGEST_STEPS))
def test_ingest_commit_fault_at_every_step(spark, s3a, ingest_base, step):
    old, old_report, marker, new = ingest_base
    s3 = s3a["client"]
    prefix, case = _prepare_case(s3, marker, step)
    root = f"s3a://{BUCKET}/{prefix[:-1]}"
    op, where, nth, how, expected = INGEST_STEPS[step]
    faulty = FaultyFS(spark, op, where, nth, how)
    with pytest.raises(Killed):
        C.commit(faulty, root, case)
    assert faulty.fired
    fs = HadoopFS(spark)
    C.recover(fs, root)
    C.clean_stale_staging(fs, root)   # what the next run does first, holding the lock
    assert lake_is_one_output(spark, s3, prefix, old, old_report, new,
                              marker["run_id"]) == expected


def test_ingest_staging_lost_after_a_kill_rolls_back_to_the_old_lake(spark, s3a, ingest_base):
    """Killed halfway through moving the new files in, then the staging area loses an object
    (or a run removes it): the new output cannot be completed, so the old one comes back,
    complete, from the park; its report stays."""
    old, old_report, marker, new = ingest_base
    s3 = s3a["client"]
    prefix, case = _prepare_case(s3, marker, "staging-lost")
    root = f"s3a://{BUCKET}/{prefix[:-1]}"
    with pytest.raises(Killed):
        C.commit(FaultyFS(spark, "rename", "/_staging/", 2, "before"), root, case)
    staged = objects(s3, f"{prefix}_staging/")
    victim = sorted(k for k in staged if k.endswith(".parquet"))[-1]
    s3.delete_object(Bucket=BUCKET, Key=f"{prefix}_staging/{victim}")
    assert C.recover(HadoopFS(spark), root) is None     # undone, not finished
    assert lake_is_one_output(spark, s3, prefix, old, old_report, new, marker["run_id"]) == "old"


def test_next_ingest_run_recovers_an_interrupted_commit(spark, s3a, ingest_base):
    old, old_report, marker, new = ingest_base
    s3 = s3a["client"]
    prefix, case = _prepare_case(s3, marker, "next-run")
    root = f"s3a://{BUCKET}/{prefix[:-1]}"
    with pytest.raises(Killed):
        C.commit(FaultyFS(spark, "rename", "/_staging/", 1, "half"), root, case)
    report = run_ingest(spark, [f"s3a://{BUCKET}/raw/v2/"], root, IngestOptions(
        files_per_category=1, mode="append-new"))
    assert report["recovered_run"] == marker["run_id"] and report["status"] == "nothing_new"
    lake = root + "/"
    got = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "_reports/ingest.json")
                     ["Body"].read())
    runs = objects(s3, prefix + "_reports/runs/")
    assert f"ingest-{marker['run_id']}.json" in runs and got["run_id"] == report["run_id"]
    assert spark.read.parquet(lake + "reviews").count() == \
        case["files"][f"{root}/_reports/ingest.json"]["rows_written"]


# --------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def prepare_base(spark, moto_s3, tmp_path_factory):
    """s3a://BUCKET/pbase/features: an old run (committed, _meta.json points at it) and a new
    run fully written under its prefix, its _meta.json captured before the commit."""
    point_s3a_at(spark, moto_s3)
    root = tmp_path_factory.mktemp("s3prepare")
    generate(rows=400, output=root / "raw", seed=23, files=1)
    run_ingest(spark, [str(root / "raw")], str(root / "lake"))
    s3 = moto_s3["client"]
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    out = f"s3a://{BUCKET}/pbase/features"
    captured = {}
    real = J.commit_features

    def capture(fs, output, meta, lock, legacy=False):
        captured.update(meta=meta)
        raise Killed("stopped before the commit")

    J.commit_features = capture
    try:
        with pytest.raises(Killed):
            run_prepare_small(spark, str(root / "lake"), out)
    finally:
        J.commit_features = real
    new = captured["meta"]
    # the old run: the same files under an older run's prefix, committed
    old_id = "20000101T000000Z-old000"
    old_dir = f"runs/{old_id}"
    copy_prefix(s3, f"pbase/features/{new['run_dir']}/", f"pbase/features/{old_dir}/")
    old = retarget(new, new["run_dir"], old_dir)
    old.update(run_id=old_id, previous_runs=[])
    s3.put_object(Bucket=BUCKET, Key="pbase/features/_meta.json", Body=json.dumps(old).encode())
    new["previous_runs"] = []    # keep_runs 1: the old run expires after the commit
    return old, new


def run_prepare_small(spark, lake, out):
    return J.run_prepare(spark, lake, out, J.PrepareOptions(
        vocab_size=200, tokenizer_sample_rows=300, profile_sample_rows=200, keep_runs=1,
        writer="python", min_files=1, balance=False))


def features_are_one_run(s3, prefix: str, old, new) -> str:
    meta = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "_meta.json")["Body"].read())
    which = "old" if meta["run_id"] == old["run_id"] else "new"
    assert meta == (old if which == "old" else new)
    present = objects(s3, prefix)
    assert {f: present.get(f) for f in meta["files"]} == meta["files"]
    for split, s in meta["splits"].items():      # every record the counts say
        n = 0
        for f in s["files"]:
            body = s3.get_object(Bucket=BUCKET, Key=prefix + f)["Body"].read()
            n += sum(1 for _ in T.read_records(io.BytesIO(body), meta["compression"]))
        assert n == s["count"], split
    return which


PREPARE_STEPS = {
    "meta-put-fails": ("write_text", "/_meta.json", 1, "before", "old"),
    "killed-before-expiring-the-old-run": ("delete", "/runs/", 1, "before", "new"),
    "killed-halfway-through-expiring": ("delete", "/runs/", 1, "half", "new"),
}


@pytest.mark.parametrize("step", list(PREPARE_STEPS))
def test_prepare_commit_fault_at_every_step(spark, s3a, prepare_base, step):
    old, new = prepare_base
    s3 = s3a["client"]
    prefix = f"p-{step}-{uuid.uuid4().hex[:6]}/features/"
    copy_prefix(s3, "pbase/features/", prefix)
    out = f"s3a://{BUCKET}/{prefix[:-1]}"
    op, where, nth, how, expected = PREPARE_STEPS[step]
    faulty = FaultyFS(spark, op, where, nth, how)
    lock = C.OutputLock(faulty, out, new["run_id"], "prepare", settle=0.05).acquire()
    try:
        try:
            J.commit_features(faulty, out, new, lock)
        except Killed:
            pass
    finally:
        lock.release()
    assert faulty.fired
    assert features_are_one_run(s3, prefix, old, new) == expected
    if expected == "new":   # the next commit expires what the killed one left
        later = dict(new, run_id="99991231T000000Z-zzzzzz", run_dir="runs/99991231T000000Z-zzzzzz",
                     previous_runs=[new["run_dir"]])
        J.expire_runs(HadoopFS(spark), out, later)
        assert not objects(s3, f"{prefix}{old['run_dir']}/")
        assert features_are_one_run(s3, prefix, old, new) == "new"
