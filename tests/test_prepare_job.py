"""The prepare job on a generated lake: balance, splits, records, tokenizer, commit rules."""
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter

import numpy as np
import pytest
from pyspark.sql import functions as F

from conftest import ROOT, VENV_BIN, jar_present, need_jar
from reviewlake.jars import TFRECORD
from reviewlake.errors import UserError
from reviewlake.features import job as J
from reviewlake.features import splits as S
from reviewlake.features import write as W
from reviewlake.features.job import PrepareOptions, run_prepare
from reviewlake.fs import HadoopFS
from reviewlake.generate import MANIFEST_NAME
from reviewlake.ingest.job import run_ingest
from reviewlake.session import spark_conf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
CONTRACT_KEYS = {"format", "compression", "max_seq_length", "num_labels", "label_offset",
                 "features", "splits", "tokenizer", "token_lengths", "source_lake", "seed",
                 "split_fractions", "balance", "categories", "dropped", "created_at"}


@pytest.fixture(scope="module")
def lake(spark, defects_sample, tmp_path_factory):
    raw, _ = defects_sample
    path = tmp_path_factory.mktemp("prep_lake")
    report = run_ingest(spark, [str(raw)], str(path))
    return path, report


@pytest.fixture(scope="module")
def first(spark, lake, tmp_path_factory):
    out = tmp_path_factory.mktemp("features") / "a"
    meta = run_prepare(spark, str(lake[0]), str(out), PrepareOptions())
    return out, meta


@pytest.fixture(scope="module")
def second(spark, lake, first, tmp_path_factory):
    """Same lake and seed, other partitioning everywhere, the first run's tokenizer, gzip."""
    out = tmp_path_factory.mktemp("features") / "b"
    conf = {"spark.sql.shuffle.partitions": "7", "spark.sql.files.maxPartitionBytes": "65536",
            "spark.sql.files.openCostInBytes": "1024"}
    with spark_conf(spark, conf):
        meta = run_prepare(spark, str(lake[0]), str(out), PrepareOptions(
            tokenizer=str(first[0]), compression="gzip", min_files=3))
    return out, meta


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


def book_spec(tf, length):
    return {"input_ids": tf.io.FixedLenFeature([length], tf.int64),
            "input_mask": tf.io.FixedLenFeature([length], tf.int64),
            "segment_ids": tf.io.FixedLenFeature([length], tf.int64),
            "label_ids": tf.io.FixedLenFeature([], tf.int64)}


def read_split(tf, out, meta, split):
    """Every record of a split, parsed with the book's spec, as numpy arrays."""
    files = [str(out / f) for f in meta["splits"][split]["files"]]
    comp = "GZIP" if meta["compression"] == "gzip" else ""
    spec = book_spec(tf, meta["max_seq_length"])
    ds = tf.data.TFRecordDataset(files, compression_type=comp).map(
        lambda r: tf.io.parse_single_example(r, spec))
    rows = {k: [] for k in spec}
    for ex in ds:
        for k in spec:
            rows[k].append(ex[k].numpy())
    return {k: np.array(v) for k, v in rows.items()}


def _records_in(path) -> int:
    """Records in an uncompressed TFRecord file, by walking its length-prefixed frames."""
    import struct

    data, at, n = path.read_bytes(), 0, 0
    while at < len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        at += 8 + 4 + length + 4
        n += 1
    assert at == len(data)
    return n


def record_multiset(recs):
    return Counter((int(l), tuple(i), tuple(m)) for l, i, m in
                   zip(recs["label_ids"], recs["input_ids"], recs["input_mask"]))


def run_dir(out):
    """The run prefix the features' _meta.json points at (FEATURES/runs/<run_id>)."""
    return out / json.loads((out / "_meta.json").read_text())["run_dir"]


def parquet(spark, out):
    return spark.read.parquet(str(run_dir(out) / "parquet"))


# --------------------------------------------------------------------------- output and counts


def test_output_layout_and_meta_contract(first):
    out, meta = first
    on_disk = json.loads((out / "_meta.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert CONTRACT_KEYS <= set(meta)
    assert (meta["format"], meta["compression"], meta["max_seq_length"], meta["num_labels"],
            meta["label_offset"]) == ("tfrecord", "none", 64, 5, 1)
    assert meta["features"] == {
        "input_ids": {"dtype": "int64", "shape": [64]},
        "input_mask": {"dtype": "int64", "shape": [64]},
        "segment_ids": {"dtype": "int64", "shape": [64]},
        "label_ids": {"dtype": "int64", "shape": []}}
    assert meta["split_fractions"] == [0.9, 0.05, 0.05] and meta["seed"] == 42
    assert meta["balance"] is True and meta["categories"] is None
    dt.datetime.fromisoformat(meta["created_at"])
    for split in ("train", "validation", "test"):
        s = meta["splits"][split]
        assert (run_dir(out) / split / "_SUCCESS").is_file()
        assert s["files"] and all(f.startswith(f"{meta['run_dir']}/{split}/part-") and
                                  f.endswith(".tfrecord") for f in s["files"])
        assert sorted(p.name for p in (run_dir(out) / split).glob("part-*")) == \
            sorted(f.rsplit("/", 1)[1] for f in s["files"])
        assert not (run_dir(out) / split / "_temporary").exists()
        assert all(meta["files"][f] == (out / f).stat().st_size for f in s["files"])
        assert s["bytes"] == sum((out / f).stat().st_size for f in s["files"])
        # records per file (train's exact per-rank shares come from these), as read back
        assert list(s["file_records"]) == s["files"]
        assert sum(s["file_records"].values()) == s["count"]
        for f, n in s["file_records"].items():
            assert n == _records_in(out / f)
    assert len(meta["splits"]["train"]["files"]) == 2  # min_files, so 2 ranks can shard
    t = meta["tokenizer"]
    assert t["path"] == f"{meta['run_dir']}/tokenizer" and t["kind"] == "trained-wordpiece"
    assert t["source"] is None and t["files"] and "tokenizer.json" in t["files"]
    assert meta["run_dir"] == f"runs/{meta['run_id']}" and meta["previous_runs"] == []
    assert set(os.listdir(out)) == {"_meta.json", "runs"}
    assert os.listdir(out / "runs") == [meta["run_id"]]
    assert set(os.listdir(run_dir(out))) == {"train", "validation", "test", "tokenizer",
                                             "parquet"}
    # the pointer lists every file of the run with its size
    assert meta["files"] == {str(p.relative_to(out)): p.stat().st_size
                             for p in run_dir(out).rglob("*") if p.is_file()
                             and not p.name.endswith(".crc")}
    from reviewlake.features.cli import summary

    text = summary(on_disk)
    assert text.startswith(f"prepare ok: run {meta['run_id']}")
    assert "p10=" in text and text.index("p90=") < text.index("p100=")
    assert f"train{meta['splits']['train']['count']:>15}" in text


def test_balance_is_exact(first):
    """Every split holds the same number of reviews of each class (the smallest class's
    size in that split)."""
    _, meta = first
    before = meta["star_ratings_before_balance"]
    total = 0
    for s in meta["splits"].values():
        assert len(set(s["labels"].values())) == 1      # every class the same size
        assert s["count"] == sum(s["labels"].values())
        total += s["count"]
    assert 0 < total == meta["rows"]["kept"] <= 5 * min(before.values())
    assert meta["dropped"]["balance"] == sum(before.values()) - total


def test_a_reviews_split_comes_from_its_id_and_the_seed(spark, first):
    """xxhash64(review_id, seed) against the fractions, nothing else (so the split of a
    review never moves as the lake grows: test_features_units.py); the split sizes follow
    the fractions as a binomial draw does."""
    out, meta = first
    key = F.xxhash64("review_id", F.lit(meta["seed"]).cast("long")).alias("k")
    rows = parquet(spark, out).select("split", key).collect()
    f = meta["split_fractions"]
    assert rows and all(S.py_split_of_key(r.k, f) == r.split for r in rows)
    for split, frac in zip(S.SPLITS, f):
        share = sum(r.split == split for r in rows) / len(rows)
        assert abs(share - frac) < 5 * (frac * (1 - frac) / len(rows)) ** 0.5 + 0.02, split


def test_dropped_rows_are_accounted_for(first, lake, defects_sample):
    _, meta = first
    _, report = lake
    manifest = json.loads((defects_sample[0] / MANIFEST_NAME).read_text())
    gen = manifest["semantic_defects"]
    d = meta["dropped"]
    assert meta["rows"]["read"] == report["rows_written"]
    assert meta["rows"]["read"] == sum(d.values()) + meta["rows"]["kept"]
    assert d["invalid_star_rating"] == gen["star_rating_0"] + gen["star_rating_6"]
    assert meta["dropped_detail"]["invalid_star_rating"] == {
        "null": 0, "below_1": gen["star_rating_0"], "above_5": gen["star_rating_6"]}
    # the semantic defect, and the empty bodies of real text (a quirk of the sample)
    assert d["blank_review_body"] == gen["empty_review_body"] + manifest["quirks"]["empty_body"]
    assert d["missing_review_id"] == gen["empty_review_id"]
    # duplicated ids are different reviews in the sample: every copy is ambiguous
    assert 0 < d["conflicting_review_id"] <= 2 * gen["duplicate_review_id"]
    assert d["duplicate_review_id"] == 0


def test_every_record_parses_with_the_books_spec(tf, first, spark):
    out, meta = first
    length = meta["max_seq_length"]
    pad, cls, sep = (meta["tokenizer"]["special_tokens"][k] for k in ("pad", "cls", "sep"))
    feats = parquet(spark, out)
    for split, s in meta["splits"].items():
        recs = read_split(tf, out, meta, split)
        assert len(recs["label_ids"]) == s["count"]
        assert dict(Counter(str(int(x)) for x in recs["label_ids"])) == \
            {k: v for k, v in s["labels"].items() if v}
        ids, mask = recs["input_ids"], recs["input_mask"]
        real = mask.sum(axis=1)
        # the mask is 1 exactly on the real tokens, which come first
        assert (mask == (np.arange(length) < real[:, None])).all()
        assert (ids[mask == 0] == pad).all() and (ids[mask == 1] != pad).all()
        assert (ids[:, 0] == cls).all() and (ids[np.arange(len(ids)), real - 1] == sep).all()
        assert (recs["segment_ids"] == 0).all()
        rows = feats.where(F.col("split") == split).select(
            "label_ids", "input_ids", "input_mask").collect()
        from_parquet = Counter((r.label_ids, tuple(r.input_ids), tuple(r.input_mask)) for r in rows)
        assert record_multiset(recs) == from_parquet


def test_parquet_features_and_token_profile(first, spark):
    out, meta = first
    feats = parquet(spark, out)
    assert set(feats.columns) == {"review_id", "product_category", "label_ids", "input_ids",
                                  "input_mask", "segment_ids", "n_tokens", "split"}
    assert sorted(p.name for p in (run_dir(out) / "parquet").iterdir() if p.is_dir()) == [
        "split=test", "split=train", "split=validation"]
    assert feats.count() == feats.select("review_id").distinct().count() == meta["rows"]["kept"]
    p = meta["token_lengths"]
    pct = [p["percentiles"][str(k)] for k in range(10, 101, 10)]
    assert pct == sorted(pct) and pct[0] >= 2
    s = p["suggested_max_seq_length"]
    assert s >= pct[7] and (s == 1 or s // 2 < pct[7]) and s & (s - 1) == 0
    longer = feats.where(F.col("n_tokens") > meta["max_seq_length"]).count()
    assert p["truncated_fraction"] == pytest.approx(longer / meta["rows"]["kept"], abs=1e-6)
    # n_tokens counts up to max_seq_length + 1; the profile is of full lengths, from a
    # sample that here (fewer kept reviews than prepare.profile_sample_rows) is all of them
    assert feats.agg(F.max("n_tokens")).first()[0] == meta["max_seq_length"] + 1
    assert p["sample"]["rows"] == p["counted"] == p["reviews"] == meta["rows"]["kept"]
    assert p["percentiles"]["100"] > meta["max_seq_length"] + 1
    clipped = feats.select(F.aggregate("input_mask", F.lit(0), lambda a, x: a + x).alias("real"),
                           "n_tokens").where(F.col("real") != F.least("n_tokens", F.lit(64)))
    assert clipped.count() == 0


def test_saved_tokenizer_reproduces_the_features(first, lake, spark):
    from transformers import DistilBertTokenizerFast

    from reviewlake.features.textclean import clean_texts

    out, meta = first
    tok = DistilBertTokenizerFast.from_pretrained(str(run_dir(out) / "tokenizer"))
    assert len(tok.get_vocab()) == meta["tokenizer"]["vocab_size"]
    reviews = spark.read.parquet(str(lake[0] / "reviews")).select("review_id", "review_body")
    rows = parquet(spark, out).join(reviews, "review_id").orderBy("review_id").limit(40).collect()
    # prepare.clean_text is on by default: the features are those of the cleaned text
    assert meta["text_cleaning"]["enabled"] and any("<br" in r.review_body for r in rows)
    texts = clean_texts([r.review_body for r in rows])[0]
    enc = tok(texts, max_length=64, truncation=True, padding="max_length")
    assert [list(r.input_ids) for r in rows] == enc["input_ids"]
    assert [list(r.input_mask) for r in rows] == enc["attention_mask"]


# --------------------------------------------------------------------------- reproducibility


def test_splits_are_disjoint_and_identical_across_runs(first, second, spark, tf):
    (out_a, meta_a), (out_b, meta_b) = first, second
    a = {r.review_id: r.split for r in parquet(spark, out_a).select("review_id", "split").collect()}
    b = {r.review_id: r.split for r in parquet(spark, out_b).select("review_id", "split").collect()}
    assert len(a) == meta_a["rows"]["kept"]   # one split per review id
    assert a == b
    assert meta_b["tokenizer"]["kind"] == "pretrained"
    assert meta_b["tokenizer"]["source"] == str(run_dir(out_a) / "tokenizer")
    assert meta_b["tokenizer"]["vocab_sha256"] == meta_a["tokenizer"]["vocab_sha256"]
    assert meta_b["compression"] == "gzip"
    for split in ("train", "validation", "test"):
        assert meta_a["splits"][split]["labels"] == meta_b["splits"][split]["labels"]
        assert all(f.endswith(".tfrecord.gz") for f in meta_b["splits"][split]["files"])
        # the same tokenizer gives the very same records (in other files)
        assert record_multiset(read_split(tf, out_a, meta_a, split)) == \
            record_multiset(read_split(tf, out_b, meta_b, split))
    assert len(meta_b["splits"]["train"]["files"]) == 3


def test_categories_prune_partitions_and_unknown_ones_fail(spark, lake, tmp_path):
    reviews = str(lake[0] / "reviews")
    df = J.read_reviews(spark, reviews, ["Books", "Video Games"])
    plan = df._jdf.queryExecution().executedPlan().toString()
    assert "PartitionFilters: [product_category#" in plan and "IN (Books,Video Games)" in plan
    assert {r[0] for r in df.select("product_category").distinct().collect()} <= {"Books", "Video Games"}
    with pytest.raises(UserError, match="no product_category 'Nope'"):
        run_prepare(spark, str(lake[0]), str(tmp_path / "f"), PrepareOptions(categories=["Nope"]))
    with pytest.raises(UserError, match="no lake at"):
        run_prepare(spark, str(tmp_path / "nolake"), str(tmp_path / "f"))
    with pytest.raises(UserError, match="must not be inside the lake"):
        run_prepare(spark, str(lake[0]), str(lake[0] / "features"))


def test_without_balance_every_clean_review_is_kept(spark, lake):
    clean, _, _ = J.clean_reviews(spark.read.parquet(str(lake[0] / "reviews")), "t")
    assigned, plan = S.balance_and_split(clean, (0.8, 0.1, 0.1), balance=False, seed=5)
    counts = {(r.star_rating, r.split): r["count"]
              for r in assigned.groupBy("star_rating", "split").count().collect()}
    for rating, n in plan["class_counts"].items():
        sizes = [counts.get((rating, s), 0) for s in ("train", "validation", "test")]
        assert sum(sizes) == n
        assert sizes == [plan["split_counts"][s].get(rating, 0) for s in S.SPLITS]
    assert all(plan["kept"][s][r] == plan["split_counts"][s].get(r, 0)
               for s in S.SPLITS for r in range(1, 6))


# --------------------------------------------------------------------------- failures


def snapshot(path):
    """What readers of the features see: _meta.json and every file it lists."""
    meta = json.loads((path / "_meta.json").read_text())
    return {"_meta.json": (path / "_meta.json").read_bytes(),
            **{f: (path / f).read_bytes() for f in meta["files"]}}


def test_failed_write_leaves_the_previous_output(spark, lake, first, tmp_path, monkeypatch):
    out = tmp_path / "features"
    shutil.copytree(first[0], out)
    before = snapshot(out)
    real = W.partition_writer

    def failing(split_dir, *args, **kwargs):
        fn = real(split_dir, *args, **kwargs)

        def write(batches):
            yield from fn(batches)
            if split_dir.rstrip("/").endswith("/validation"):
                raise RuntimeError("injected writer failure")
        return write

    monkeypatch.setattr(W, "partition_writer", failing)
    with pytest.raises(Exception, match="injected writer failure"):
        run_prepare(spark, str(lake[0]), str(out), PrepareOptions())
    monkeypatch.undo()
    assert snapshot(out) == before          # the previous output, complete and unchanged
    assert not (out / "_lock.json").exists()
    meta = json.loads((out / "_meta.json").read_text())
    dead = [p for p in (out / "runs").iterdir() if p.name != meta["run_id"]]
    assert len(dead) == 1 and (dead[0] / "train" / "_SUCCESS").exists()
    # the next run's commit expires it (older than that run, not kept by its _meta.json)
    later = dict(meta, run_id="99991231T000000Z-zzzzzz", previous_runs=[meta["run_dir"]],
                 run_dir="runs/99991231T000000Z-zzzzzz")
    assert J.expire_runs(HadoopFS(spark), str(out), later) == [f"runs/{dead[0].name}"]
    assert snapshot(out) == before


class FakeTask:
    def __init__(self, partition, attempt):
        self._p, self._a = partition, attempt

    def partitionId(self):
        return self._p

    def taskAttemptId(self):
        return self._a


def arrow_batch(n, length=8, bad=False):
    import pyarrow as pa

    ids = [[2] + [7] * (length - 2) + [3] for _ in range(n)]
    if bad:
        ids[-1] = ids[-1][:-1]
    arr = lambda rows: pa.array(rows, type=pa.list_(pa.int32()))  # noqa: E731
    return pa.RecordBatch.from_pydict({
        "input_ids": arr(ids), "input_mask": arr([[1] * length] * n),
        "segment_ids": arr([[0] * length] * n), "label_ids": pa.array([i % 5 for i in range(n)], pa.int32())})


def test_python_writer_commits_each_file_once(tmp_path, monkeypatch):
    import pyspark

    from reviewlake.features import tfrecord as T

    split_dir = tmp_path / "train"
    fn = W.partition_writer(str(split_dir), "run1", "none", 8, {})

    def attempt(partition, attempt_id, batches):
        monkeypatch.setattr(pyspark.TaskContext, "get", classmethod(
            lambda cls: FakeTask(partition, attempt_id)))
        return list(fn(iter(batches)))

    # a task that dies half way leaves no file behind (and no partial one under its name)
    with pytest.raises(ValueError, match="list of 8 integers"):
        attempt(3, 100, [arrow_batch(5), arrow_batch(4, bad=True)])
    assert not list(split_dir.glob("part-*")) and not list((split_dir / "_temporary").iterdir())
    # the retry commits; a second (speculative) attempt finds the file and adds nothing
    stats = attempt(3, 101, [arrow_batch(5), arrow_batch(4)])
    again = attempt(3, 102, [arrow_batch(5), arrow_batch(4)])
    files = sorted(p.name for p in split_dir.glob("part-*"))
    assert files == ["part-00003-run1.tfrecord"]
    assert stats[0].to_pydict()["records"] == [9] == again[0].to_pydict()["records"]
    assert stats[0].to_pydict()["labels"] == [[2, 2, 2, 2, 1]]
    assert len(list(T.read_records(str(split_dir / files[0])))) == 9
    assert not list((split_dir / "_temporary").iterdir())
    assert attempt(4, 103, []) == [] and not (split_dir / "part-00004-run1.tfrecord").exists()


@pytest.mark.jarfree
def test_writer_choice(spark):
    """auto takes the jar where it is on the classpath, the Python writer otherwise."""
    assert W.choose_writer(spark, "python", "s3a://bucket/x") == "python"
    if jar_present(TFRECORD):
        assert W.choose_writer(spark, "auto", "/tmp/x") == "jar"
        assert W.choose_writer(spark, "auto", "hdfs://nn/x") == "jar"
    else:
        assert W.choose_writer(spark, "auto", "/tmp/x") == "python"
        with pytest.raises(UserError, match="spark-tfrecord jar is not on the classpath") as e:
            W.choose_writer(spark, "jar", "/tmp/x")
        assert TFRECORD in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(UserError, match="local paths and S3 only"):
            W.choose_writer(spark, "auto", "hdfs://nn/x")
    assert W.files_for(0, 100, 2) == 1 and W.files_for(1, 100, 2) == 1
    assert W.files_for(50, 100, 2) == 2 and W.files_for(1001, 100, 2) == 11


# --------------------------------------------------------------------------- other ways to run


@pytest.mark.slow
def test_spark_submit_prepare_matches_the_library(first, lake, tmp_path, spark):
    env = dict(os.environ, REVIEWLAKE_VENV=str(VENV_BIN.parent))
    env.pop("PYSPARK_GATEWAY_PORT", None)
    out = tmp_path / "features"
    proc = subprocess.run([str(ROOT / "spark-submit.sh"), "jobs/prepare.py", "--input",
                           str(lake[0]), "--output", str(out), "--tokenizer",
                           str(first[0]), "--set", "spark.master=local[2]"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "prepare ok" in proc.stdout and "max_seq_length 64" in proc.stdout
    meta = json.loads((out / "_meta.json").read_text())
    for split in ("train", "validation", "test"):
        assert meta["splits"][split]["labels"] == first[1]["splits"][split]["labels"]
    a = parquet(spark, first[0]).select("review_id", "split", "input_ids")
    b = parquet(spark, out).select("review_id", "split", "input_ids")
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0


@pytest.mark.slow
def test_killed_run_leaves_the_previous_output(first, lake, tmp_path):
    out = tmp_path / "features"
    shutil.copytree(first[0], out)
    before = snapshot(out)
    proc = subprocess.Popen([str(VENV_BIN / "reviewlake"), "prepare", "--input", str(lake[0]),
                             "--output", str(out), "-q", "--set", "spark.master=local[2]"],
                            cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        # kill while the run is writing under its own prefix
        while time.time() < deadline:
            staged = [p for p in (out / "runs").iterdir() if p.name != first[1]["run_id"]]
            if staged and any(p.suffix == ".parquet" for p in staged[0].rglob("*")):
                break
            if proc.poll() is not None:
                pytest.fail("prepare finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("the run never started writing")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert snapshot(out) == before
    assert not (out / "_commit.json").exists()


def test_prepare_from_and_to_s3a(spark, s3a, lake, first, tmp_path):
    """Tokenizer from s3a://, features to s3a:// with the Python writer (pyarrow's S3 client
    configured from the session's s3a settings), against a local S3 API."""
    from reviewlake.features import tfrecord as T

    s3 = s3a["client"]
    s3.create_bucket(Bucket="features-test")
    for p in (run_dir(first[0]) / "tokenizer").iterdir():
        s3.upload_file(str(p), "features-test", f"tok/{p.name}")
    meta = run_prepare(spark, str(lake[0]), "s3a://features-test/out", PrepareOptions(
        tokenizer="s3a://features-test/tok", compression="gzip", writer="python"))
    stored = json.loads(s3.get_object(Bucket="features-test", Key="out/_meta.json")["Body"].read())
    assert stored["splits"] == meta["splits"] and meta["tokenizer"]["kind"] == "pretrained"
    assert meta["tokenizer"]["vocab_sha256"] == first[1]["tokenizer"]["vocab_sha256"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="features-test", Prefix="out/")["Contents"]}
    assert not any("_staging" in k or "_temporary" in k for k in keys)
    assert set(meta["files"]) == {k[len("out/"):] for k in keys if k.startswith("out/runs/")}
    for split, s in meta["splits"].items():
        assert f"out/{meta['run_dir']}/{split}/_SUCCESS" in keys and s["labels"] == first[1]["splits"][split]["labels"]
        n = 0
        for f in s["files"]:
            body = s3.get_object(Bucket="features-test", Key=f"out/{f}")["Body"].read()
            local = tmp_path / f.replace("/", "_")
            local.write_bytes(body)
            n += sum(1 for _ in T.read_records(str(local), "gzip"))
        assert n == s["count"]
    assert f"out/{meta['run_dir']}/tokenizer/tokenizer.json" in keys
    a = parquet(spark, first[0]).select("review_id", "split", "input_ids")
    b = spark.read.parquet("s3a://features-test/out/" + meta["parquet"]["path"]).select("review_id", "split", "input_ids")
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0


# ---------------------------------------------------------------------------- the jar writer
# Where spark-tfrecord is in jars/ (jars/jars.txt; `make setup` fetches it with mvn).


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_jar_writer_writes_the_python_writers_examples(spark, lake, first, tmp_path, tf,
                                                       compression):
    """--writer jar: the same Examples per split as the Python writer's, parsed with the book's
    spec, in the same layout; read back by spark.read.format("tfrecord")."""
    from reviewlake.features.write import JAR_CLASS

    need_jar(spark, JAR_CLASS, TFRECORD)
    tok = str(first[0])
    out_py, out_jar = tmp_path / "py", tmp_path / "jar"
    py = run_prepare(spark, str(lake[0]), str(out_py), PrepareOptions(
        tokenizer=tok, writer="python", compression=compression))
    jar = run_prepare(spark, str(lake[0]), str(out_jar), PrepareOptions(
        tokenizer=tok, writer="jar", compression=compression))
    assert jar["writer"] == "spark-tfrecord" and py["writer"] == "python"
    assert set(jar) == set(py)
    for split in S.SPLITS:
        assert jar["splits"][split]["count"] == py["splits"][split]["count"]
        assert jar["splits"][split]["labels"] == py["splits"][split]["labels"]
        assert all(f.startswith(f"{jar['run_dir']}/{split}/") for f in jar["splits"][split]["files"])
        assert record_multiset(read_split(tf, out_jar, jar, split)) == \
            record_multiset(read_split(tf, out_py, py, split))
        back = spark.read.format("tfrecord").option("recordType", "Example").load(
            [str(out_jar / f) for f in jar["splits"][split]["files"]])
        assert back.count() == jar["splits"][split]["count"]


def test_jar_count_check_reads_back_what_was_written(spark, lake, first, tmp_path, monkeypatch):
    """The jar path's count check reads the written files: a lost file fails the run."""
    from reviewlake.features.write import JAR_CLASS

    need_jar(spark, JAR_CLASS, TFRECORD)
    real = W.write_split_jar

    def lossy(df, split_dir, compression):
        real(df, split_dir, compression)
        victim = sorted(p for p in os.listdir(split_dir) if p.startswith("part-"))[0]
        os.remove(os.path.join(split_dir, victim))

    monkeypatch.setattr(W, "write_split_jar", lossy)
    with pytest.raises(J.CountMismatch, match="TFRecords hold"):
        run_prepare(spark, str(lake[0]), str(tmp_path / "f"), PrepareOptions(
            tokenizer=str(first[0]), writer="jar", min_files=2))
