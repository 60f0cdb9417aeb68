"""The staged commit (lib/reviewlake/commit.py) under faults, the output lock, and exact
accounting when Spark re-runs a map stage (local file system; the S3 twins of the fault
tests are in test_commit_s3.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from reviewlake.errors import UserError
from reviewlake.fs import HadoopFS
from reviewlake.generate import generate
from reviewlake.ingest import commit as commit_mod
from reviewlake.ingest.job import IngestOptions, read_quarantine, run_ingest

OPTS = IngestOptions(files_per_category=1)
LOCK = "_lock.json"


def _local(path: str) -> str:
    return path[len("file:"):] if path.startswith("file:") else path


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("commit_inputs")
    generate(rows=300, output=root / "v1", seed=11, defects=True, files=1)
    generate(rows=420, output=root / "v2", seed=12, defects=True, files=1)
    return root / "v1", root / "v2"


@pytest.fixture(scope="module")
def lake_v1(spark, two_inputs, tmp_path_factory):
    lake = tmp_path_factory.mktemp("commit_lake") / "lake"
    run_ingest(spark, [str(two_inputs[0])], str(lake), OPTS)
    return lake


def lake_state(spark, lake: Path) -> tuple[list, int, dict]:
    """(sorted review ids, one per row; rows quarantined; the report)."""
    ids = sorted((r[0] or "" for r in spark.read.parquet(str(lake / "reviews"))
                  .select("review_id").collect()))
    quarantined = read_quarantine(spark, str(lake / "_quarantine")).count()
    report = json.loads((lake / "_reports" / "ingest.json").read_text())
    return ids, quarantined, report


class Killed(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


def s3_like_rename(monkeypatch, where: str, kill_after: int):
    """HadoopFS.rename as S3 does it: a directory moves object by object (copy, delete), so a
    kill leaves it half moved. The process is killed once ``kill_after`` objects have moved
    out of ``where`` (``_staging``: the new output; ``lake``: old files being parked)."""
    moved = {"n": 0}

    def counts(src: str) -> bool:
        inside_staging = "/_staging/" in src
        return inside_staging if where == "_staging" else (
            not inside_staging and "/_previous/" not in src)

    def move_object(src: Path, dst: Path) -> None:
        if counts(str(src)) and not src.name.startswith(("_", ".")):  # data files
            if moved["n"] >= kill_after:
                raise Killed(f"killed after {moved['n']} objects")
            moved["n"] += 1
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)

    def rename(self, src, dst):
        s, d = Path(_local(src)), Path(_local(dst))
        if s.is_dir():
            for f in sorted(p for p in s.rglob("*") if p.is_file()):
                move_object(f, d / f.relative_to(s))
            shutil.rmtree(s)
        else:
            move_object(s, d)
            crc = s.parent / f".{s.name}.crc"
            if crc.exists():
                os.replace(crc, d.parent / f".{d.name}.crc")

    monkeypatch.setattr(HadoopFS, "rename", rename)


@pytest.mark.parametrize("where,kill_after", [("lake", 1), ("_staging", 1)],
                         ids=["parking-old", "first-new-object"])
def test_half_moved_commit_recovers_old_or_new_never_a_mix(spark, two_inputs, lake_v1,
                                                          tmp_path, monkeypatch, where,
                                                          kill_after):
    """Issue 13: killed while the commit's objects are moved, recovery keeps one output,
    complete, with a report that describes it (the old recover() kept a partial new lake
    and deleted the old one)."""
    lake = tmp_path / "lake"
    shutil.copytree(lake_v1, lake)
    old = lake_state(spark, lake)
    s3_like_rename(monkeypatch, where, kill_after)
    with pytest.raises(Killed):
        run_ingest(spark, [str(two_inputs[1])], str(lake), OPTS)
    monkeypatch.undo()
    (lake / LOCK).unlink(missing_ok=True)   # the killed process's lock
    commit_mod.recover(HadoopFS(spark), str(lake))
    ids, quarantined, report = lake_state(spark, lake)
    assert not (lake / "_commit.json").exists() and not (lake / "_previous").exists()
    assert len(ids) == report["rows_written"] and quarantined == report["rows_quarantined"]
    if report["run_id"] == old[2]["run_id"]:
        assert (ids, quarantined) == old[:2]
    else:   # the new lake: every row of the new input, none of the old
        new_ids = {r[0] for r in spark.read.option("sep", "\t").option("header", True)
                   .csv(str(two_inputs[1])).select("review_id").collect()}
        assert set(ids) - {""} <= new_ids and not (set(ids) & set(old[0])) - {""}
        assert report["rows_read"] == report["rows_written"] + report["rows_quarantined"]


def test_two_runs_at_once_one_wins(spark, two_inputs, lake_v1, tmp_path, monkeypatch):
    """While a run works on a lake, a second run on it fails with one line and removes
    nothing of the first (the old clean_stale_staging deleted the live run's staging)."""
    lake = tmp_path / "lake"
    shutil.copytree(lake_v1, lake)
    results: dict = {}
    go = threading.Event()
    real_commit = commit_mod.commit

    def held_commit(*args, **kwargs):   # the first run waits, staged, until the test is done
        if threading.current_thread() is worker:
            go.wait(300)
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(commit_mod, "commit", held_commit)

    def first():
        try:
            results["first"] = run_ingest(spark, [str(two_inputs[1])], str(lake), OPTS)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions
            results["first"] = exc

    worker = threading.Thread(target=first)
    worker.start()
    try:
        deadline = time.time() + 120
        staging = lake / "_staging"
        while time.time() < deadline and worker.is_alive() and not (
                staging.exists() and any(staging.iterdir())):
            time.sleep(0.02)
        staged_before = sorted(p.name for p in staging.iterdir())
        assert staged_before, "the first run never staged anything"
        with pytest.raises(UserError, match="in use by ingest run .* wait for it") as err:
            run_ingest(spark, [str(two_inputs[0])], str(lake), OPTS)
        assert "\n" not in str(err.value)
        assert sorted(p.name for p in staging.iterdir()) == staged_before   # nothing removed
    finally:
        go.set()
        worker.join(300)
    assert isinstance(results["first"], dict), results["first"]
    ids, quarantined, report = lake_state(spark, lake)
    assert report["run_id"] == results["first"]["run_id"] and len(ids) == report["rows_written"]
    assert not (lake / LOCK).exists()


def test_lock_is_exclusive_and_stale_locks_are_taken_over(spark, tmp_path):
    fs = HadoopFS(spark)
    root = str(tmp_path / "out")
    got, errors = [], []
    barrier = threading.Barrier(4)

    def take(i):
        barrier.wait()
        try:
            got.append(commit_mod.lock_output(fs, root, f"run{i}", "test"))
        except UserError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(got) == 1 and len(errors) == 3
    got[0].release()
    assert not (tmp_path / "out" / LOCK).exists()
    # a lock left by a process that is gone (same host) and an expired one are taken over
    dead = json.loads(json.dumps({"run_id": "dead", "host": os.uname().nodename, "pid": 2 ** 22 + 7,
                                  "expires_at": time.time() + 600, "token": "x"}))
    (tmp_path / "out" / LOCK).write_text(json.dumps(dead))
    commit_mod.lock_output(fs, root, "next", "test").release()
    expired = dict(dead, host="elsewhere", pid=1, expires_at=time.time() - 1)
    (tmp_path / "out" / LOCK).write_text(json.dumps(expired))
    commit_mod.lock_output(fs, root, "next", "test").release()


@pytest.mark.slow
def test_a_recomputed_map_stage_counts_rows_once(tmp_path):
    """Issue 13: Spark re-runs a map stage when its shuffle output is lost (a lost executor,
    a fetch failure). The shuffle files of the first map task are deleted while the stage
    runs, the write's fetch fails, Spark re-runs that map task: the rows read must still be
    counted once (the observation used to sit before the shuffle and failed the run). In a
    session of its own (tests/stage_retry.py says why)."""
    proc = subprocess.run([sys.executable, str(Path(__file__).parent / "stage_retry.py"),
                           str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYSPARK_PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert out["deleted"], "the map output was never deleted: no stage was re-run"
    report = out["report"]
    assert report["rows_read"] == 600 == report["rows_written"] + report["rows_quarantined"]
    assert out["lake_rows"] == report["rows_written"]


def test_old_feature_runs_expire_keep_runs_deep(spark, tmp_path):
    """prepare keeps the current run and the ones its _meta.json keeps (keep_runs), deletes
    older runs (and dead runs' leftovers), never a run newer than the current one."""
    from reviewlake.features import job as J

    out = tmp_path / "features"
    for name in ("20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb",
                 "20260103T000000Z-cccccc", "20260104T000000Z-dddddd"):
        (out / "runs" / name / "train").mkdir(parents=True)
        (out / "runs" / name / "train" / "part-0.tfrecord").write_bytes(b"x")
    previous = {"run_dir": "runs/20260102T000000Z-bbbbbb",
                "previous_runs": ["runs/20260101T000000Z-aaaaaa"]}
    meta = {"run_id": "20260103T000000Z-cccccc", "run_dir": "runs/20260103T000000Z-cccccc",
            "previous_runs": J.previous_runs(previous, keep_runs=2)}
    assert meta["previous_runs"] == ["runs/20260102T000000Z-bbbbbb"]
    assert J.expire_runs(HadoopFS(spark), str(out), meta) == ["runs/20260101T000000Z-aaaaaa"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "20260102T000000Z-bbbbbb", "20260103T000000Z-cccccc", "20260104T000000Z-dddddd"]
    assert J.previous_runs(previous, keep_runs=1) == []


def test_train_reads_only_listed_files_of_the_listed_sizes(tmp_path):
    from reviewlake.train.meta import load_features

    root = tmp_path / "features"
    run = root / "runs" / "r1"
    files = {}
    for split in ("train", "validation", "test"):
        (run / split).mkdir(parents=True)
        (run / split / "part-0.tfrecord").write_bytes(b"abc")
        files[f"runs/r1/{split}/part-0.tfrecord"] = 3
    (run / "tokenizer").mkdir()
    (run / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    meta = {"max_seq_length": 8, "run_dir": "runs/r1", "files": files,
            "tokenizer": {"path": "runs/r1/tokenizer", "files": {"vocab.txt": 6}},
            "splits": {s: {"count": 1, "files": [f"runs/r1/{s}/part-0.tfrecord"]}
                       for s in ("train", "validation", "test")}}
    (root / "_meta.json").write_text(json.dumps(meta))
    (run / "train" / "part-1.tfrecord").write_bytes(b"not listed: never read")
    features = load_features(str(root))
    assert features.files("train") == [str(run / "train" / "part-0.tfrecord")]
    (run / "validation" / "part-0.tfrecord").write_bytes(b"abcd")
    with pytest.raises(UserError, match="listed in .* with 3 bytes but it has 4") as err:
        load_features(str(root))
    assert "\n" not in str(err.value)
    (run / "validation" / "part-0.tfrecord").write_bytes(b"abc")
    (run / "tokenizer" / "vocab.txt").unlink()
    with pytest.raises(UserError, match="vocab.txt is listed .* but it is missing"):
        load_features(str(root))


def test_local_listings_and_sizes_are_hadoops(spark, tmp_path):
    """A commit lists and sizes local files through the operating system (Hadoop forks a
    process per local file for its owner and permissions): the same files and sizes as
    Hadoop's local listing, checksum files hidden, on a tree Spark wrote (partition names it
    escapes, _SUCCESS, .crc files) plus hidden, odd and empty entries."""
    fs = HadoopFS(spark)
    root = tmp_path / "out dir"
    spark.createDataFrame([(1, "Books: 50% \"Deals\"/Misc"), (2, "Gift Card"), (3, "Caf\u00e9")],
                          "i int, c string").write.partitionBy("c").parquet(str(root / "t"))
    (root / "t" / ".hidden").write_text("x")
    (root / "t" / "_meta.json").write_text("{}")
    (root / "empty" / "deeper").mkdir(parents=True)
    (root / "a b#c%20d").write_bytes(b"12345")
    assert any(p.name.endswith(".crc") for p in (root / "t").rglob("*"))
    for path in (str(root), "file://" + str(root), str(root / "t"), str(root / "a b#c%20d"),
                 str(root / "nothing here"), str(root / "empty")):
        got = fs.list_files(path)
        assert got == fs._list_files_hadoop(path), path
    listed = fs.list_files(str(root))
    assert "a b#c%20d" in listed and "t/.hidden" in listed and "t/_SUCCESS" in listed
    assert not any(name.endswith(".crc") for name in listed)
    assert any("%25" in name for name in listed)   # Spark's escaped partition directory
    for rel, size in listed.items():
        assert fs.file_size(str(root / rel)) == size
    assert fs.file_size(str(root / "empty")) is None and fs.file_size(str(root / "no")) is None
    assert fs._local("s3a://bucket/key") is None


def test_a_local_rename_moves_the_checksum_and_keeps_hadoops_cases(spark, tmp_path):
    """A local file moved to a free name goes by the operating system, its checksum with it
    (Spark still reads it, verified); a name that is taken, or a directory, stays Hadoop's."""
    fs = HadoopFS(spark)
    spark.range(5).coalesce(1).write.parquet(str(tmp_path / "src"))
    part = next((tmp_path / "src").glob("part-*.parquet"))
    assert (tmp_path / "src" / f".{part.name}.crc").exists()
    dst = tmp_path / "new dir" / "x=1" / part.name
    fs.rename("file://" + str(part), str(dst))
    assert not part.exists() and not (tmp_path / "src" / f".{part.name}.crc").exists()
    assert dst.exists() and (dst.parent / f".{part.name}.crc").exists()
    assert sorted(r.id for r in spark.read.parquet(str(dst)).collect()) == list(range(5))
    # the directory case: Hadoop's rename (the directory moves as a whole)
    fs.rename(str(tmp_path / "src"), str(tmp_path / "moved"))
    assert (tmp_path / "moved" / "_SUCCESS").exists() and not (tmp_path / "src").exists()
    # a taken name: Hadoop's rename, which refuses to replace a file
    (tmp_path / "taken").write_text("x")
    with pytest.raises(OSError, match="rename failed"):
        fs.rename(str(dst), str(tmp_path / "taken"))
    assert dst.exists() and (tmp_path / "taken").read_text() == "x"


def test_a_local_rename_to_another_device_is_left_to_hadoop(spark, tmp_path, monkeypatch):
    """os.rename cannot cross devices (EXDEV); Hadoop's rename copies there."""
    import errno

    fs = HadoopFS(spark)
    (tmp_path / "a").write_text("payload")
    real = os.rename

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", cross_device)
    fs.rename(str(tmp_path / "a"), str(tmp_path / "b" / "a"))
    monkeypatch.setattr(os, "rename", real)
    assert (tmp_path / "b" / "a").read_text() == "payload" and not (tmp_path / "a").exists()
