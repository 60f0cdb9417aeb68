"""The stages on a real Spark standalone cluster: a master and two workers, each its own JVM
on 127.0.0.1 (tests/spark_cluster.py), one core and 1 GiB each.

ingest, quality and prepare go through ``./spark-submit.sh --master spark://...``, as on any
cluster: the packaged library travels as the ``--py-files`` zip, and the executor check
(``spark.check_executors``) has a task on every executor import reviewlake from that zip,
not from the venv's editable install. Training runs ``--launcher spark``: horovod.spark.run,
one Horovod rank per executor. Where each task ran comes from the application's event log
(task -> executor id) and the workers' work directories (executor id -> worker).
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN
from spark_cluster import standalone_cluster

pytestmark = pytest.mark.slow

ROWS = 3000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with standalone_cluster(tmp_path_factory.mktemp("standalone")) as running:
        yield running


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("standalone-data")


def submit(cluster, events: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """./spark-submit.sh on the cluster; the application waits for both executors (2 cores)
    before its first job and writes its event log under ``events``."""
    events.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, REVIEWLAKE_VENV=str(VENV_BIN.parent))
    env.pop("PYSPARK_GATEWAY_PORT", None)
    env.pop("TF_USE_LEGACY_KERAS", None)
    cmd = [str(ROOT / "spark-submit.sh"), "--master", cluster.master,
           "--conf", "spark.cores.max=2",
           "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
           "--conf", "spark.scheduler.maxRegisteredResourcesWaitingTime=60s",
           "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events}",
           *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def placement(cluster, events: Path) -> tuple[str, dict[int, int]]:
    """(application id, worker index -> tasks that ran there) from the event log."""
    logs = [p for p in events.iterdir() if not p.name.endswith(".inprogress")]
    assert len(logs) == 1, logs
    app_id, tasks = None, {}
    for line in logs[0].read_text().splitlines():
        event = json.loads(line)
        if event["Event"] == "SparkListenerApplicationStart":
            app_id = event["App ID"]
        elif event["Event"] == "SparkListenerTaskEnd":
            executor = event["Task Info"]["Executor ID"]
            tasks[executor] = tasks.get(executor, 0) + 1
    workers = cluster.executor_dirs(app_id)
    per_worker = {}
    for executor, n in tasks.items():
        owner = [w for w, ids in workers.items() if executor in ids]
        assert len(owner) == 1, (executor, workers)
        per_worker[owner[0]] = per_worker.get(owner[0], 0) + n
    return app_id, per_worker


def ok(proc: subprocess.CompletedProcess, cluster) -> str:
    both = proc.stdout + proc.stderr
    assert proc.returncode == 0, both[-4000:] + "\n" + cluster.tail(20)
    return both


def test_ingest_quality_prepare_on_the_cluster(cluster, work):
    from reviewlake.generate import generate

    raw, lake, qdir, features = (work / n for n in ("raw", "lake", "quality", "features"))
    generate(rows=ROWS, output=raw, seed=11, files=2, gzip=True)

    out = ok(submit(cluster, work / "events-ingest", "jobs/ingest.py", "--input", str(raw),
                    "--output", str(lake), "--set", "spark.check_executors=true"), cluster)
    assert "ingest ok" in out
    # the executor check: a task on each executor imported reviewlake from the shipped zip
    assert "executor check passed: 2 task(s) on 2 executor(s)" in out, out[-3000:]
    zip_name = "reviewlake-0.1.0.zip"
    lines = [l for l in out.splitlines() if "reviewlake: executor " in l and " from " in l]
    assert len(lines) == 2, out[-3000:]
    for line in lines:
        path = line.split(" from ", 1)[1].split(" (python", 1)[0]
        assert f"/{zip_name}/reviewlake/__init__.py" in path, line
        assert not path.startswith(str(ROOT / "lib")), line
    _, per_worker = placement(cluster, work / "events-ingest")
    assert sorted(per_worker) == [0, 1], per_worker
    report = json.loads((lake / "_reports" / "ingest.json").read_text())
    assert report["rows_read"] == ROWS
    assert report["rows_written"] + report["rows_quarantined"] == ROWS

    out = ok(submit(cluster, work / "events-quality", "jobs/quality.py", "--input", str(lake),
                    "--output", str(qdir)), cluster)
    assert "quality PASSED" in out
    summary = json.loads((qdir / "summary.json").read_text())
    assert summary["status"] == "passed"
    _, per_worker = placement(cluster, work / "events-quality")
    assert sorted(per_worker) == [0, 1], per_worker

    out = ok(submit(cluster, work / "events-prepare", "jobs/prepare.py", "--input", str(lake),
                    "--output", str(features), "--vocab-size", "600",
                    "--max-seq-length", "32", "--set", "prepare.profile_sample_rows=500"),
             cluster)
    assert "prepare ok" in out
    meta = json.loads((features / "_meta.json").read_text())
    assert meta["rows"]["read"] == report["rows_written"]
    total = 0
    for name, split in meta["splits"].items():
        assert len(split["files"]) >= 2, name
        assert all((features / f).is_file() for f in split["files"])
        assert sum(split["file_records"].values()) == split["count"], name
        total += split["count"]
    rows = meta["rows"]
    assert total == rows["kept"] > 0
    assert rows["read"] == sum(meta["dropped"].values()) + rows["kept"]
    # balanced: every star rating the same number of reviews
    assert len({int(n) for n in _labels(meta).values()}) == 1, _labels(meta)
    _, per_worker = placement(cluster, work / "events-prepare")
    assert sorted(per_worker) == [0, 1], per_worker


def _labels(meta: dict) -> dict:
    out = {}
    for split in meta["splits"].values():
        for label, n in split["labels"].items():
            out[label] = out.get(label, 0) + n
    return out


# the smallest model that still trains (as tests/test_multihost.py)
TINY = ["--set", "train.baseline=false", "--set", "train.tensorboard=false",
        "--set", "train.tiny.n_layers=1", "--set", "train.tiny.dim=32",
        "--set", "train.tiny.hidden_dim=64", "--set", "train.lstm_units=16",
        "--set", "train.dense_units=16"]


def test_train_with_the_spark_launcher_one_rank_per_executor(cluster, work):
    """The EMR train step's command (spark-submit jobs/train.py --launcher spark) on the
    cluster, on the features prepare wrote there (both workers share this file system, so
    local paths serve): horovod.spark.run starts one rank per executor, and each rank runs
    the shipped zip's reviewlake, not an installed copy."""
    features, model = work / "features", work / "model"
    if not (features / "_meta.json").is_file():
        pytest.skip("needs the features of test_ingest_quality_prepare_on_the_cluster")
    out = ok(submit(cluster, work / "events-train", "jobs/train.py", "--launcher", "spark",
                    "--np", "2", "--input", str(features), "--output", str(model),
                    "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16", *TINY,
                    timeout=480), cluster)
    assert "train ok: 2 process(es)" in out, out[-3000:]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ranks_consistent"] is True
    assert metrics["test"]["count"] == json.loads(
        (features / "_meta.json").read_text())["splits"]["test"]["count"]
    assert (model / "saved_model" / "saved_model.pb").is_file()
    # one task, hence one rank, on each worker's executor
    _, per_worker = placement(cluster, work / "events-train")
    assert per_worker == {0: 1, 1: 1}, per_worker
    # each rank imported reviewlake from the zip in its executor's directory
    ranks = [l for l in out.splitlines() if "horovod.spark rank " in l]
    assert len(ranks) == 2, out[-3000:]
    for line in ranks:
        path = line.split(" from ", 1)[1].split()[0]
        assert "/reviewlake-0.1.0.zip/reviewlake/" in path, line
        assert any(str(w) in path for w in cluster.work_dirs), line
