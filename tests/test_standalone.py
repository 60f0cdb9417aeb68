"""The stages on a real Spark standalone cluster: a master and two workers, each its own JVM
on 127.0.0.1 (tests/spark_cluster.py), one core and 1 GiB each.

ingest, quality and prepare go through ``./spark-submit.sh --master spark://...``
(``jobs/pipeline.py``, one application), as on any cluster: the packaged library travels as
the ``--py-files`` zip, and the executor check
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

ROWS = 2000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with standalone_cluster(tmp_path_factory.mktemp("standalone")) as running:
        yield running


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("standalone-data")


def app_conf(events: Path) -> dict[str, str]:
    """The application waits for both executors (2 cores) before its first job and writes
    its event log under ``events``."""
    events.mkdir(parents=True, exist_ok=True)
    return {"spark.cores.max": "2", "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
            "spark.eventLog.enabled": "true", "spark.eventLog.dir": str(events)}


def child_env(**extra) -> dict[str, str]:
    env = dict(os.environ, REVIEWLAKE_VENV=str(VENV_BIN.parent), **extra)
    for key in ("PYSPARK_GATEWAY_PORT", "TF_USE_LEGACY_KERAS", "PYSPARK_PYTHON"):
        env.pop(key, None)
    env.update(extra)
    return env


def submit(cluster, events: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """./spark-submit.sh on the cluster."""
    conf = [a for k, v in app_conf(events).items() for a in ("--conf", f"{k}={v}")]
    return subprocess.run([str(ROOT / "spark-submit.sh"), "--master", cluster.master, *conf,
                           *args], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=timeout)


def console(cluster, events: Path, *args: str, timeout: int = 480) -> subprocess.CompletedProcess:
    """The ``reviewlake`` console script with ``--master spark://...`` (it starts the driver
    JVM itself). As on any standalone cluster the user names the nodes' Python
    (PYSPARK_PYTHON: the venv's, which every worker of this machine has) and the address."""
    conf = json.dumps(app_conf(events))
    return subprocess.run([str(VENV_BIN / "reviewlake"), *args, "--master", cluster.master,
                           "--set", f"spark.conf={conf}"], cwd=ROOT,
                          env=child_env(PYSPARK_PYTHON=str(VENV_BIN / "python"),
                                        SPARK_LOCAL_IP="127.0.0.1"),
                          capture_output=True, text=True, timeout=timeout)


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
    """ingest -> quality -> prepare in one application (jobs/pipeline.py: each stage's
    own code, one driver and one pair of executors instead of three; on 2 busy cores an
    application's start is most of a small stage's time)."""
    from reviewlake.generate import generate

    raw, lake, qdir, features = (work / n for n in ("raw", "lake", "quality", "features"))
    generate(rows=ROWS, output=raw, seed=11, files=2, gzip=True)
    out = ok(submit(cluster, work / "events-prepare", "jobs/pipeline.py",
                    "--stages", "ingest,quality,prepare",
                    "--set", f"data.raw={raw}", "--set", f"data.lake={lake}",
                    "--set", f"data.quality={qdir}", "--set", f"data.features={features}",
                    "--set", "prepare.vocab_size=600", "--set", "prepare.max_seq_length=32",
                    "--set", "prepare.profile_sample_rows=500",
                    "--set", "spark.check_executors=true"), cluster)
    for line in ("ingest ok", "quality PASSED", "prepare ok", "pipeline summary"):
        assert line in out, (line, out[-3000:])

    # the executor check: a task on each executor imported reviewlake from the shipped zip
    assert "executor check passed: 2 task(s) on 2 executor(s)" in out, out[-3000:]
    lines = [l for l in out.splitlines() if "reviewlake: executor " in l and " from " in l]
    assert len(lines) == 2, out[-3000:]
    for line in lines:
        path = line.split(" from ", 1)[1].split(" (python", 1)[0]
        assert "/reviewlake-0.1.0.zip/reviewlake/__init__.py" in path, line
        assert any(str(w) in path for w in cluster.work_dirs), line   # the executor's copy
    # tasks ran on both workers
    _, per_worker = placement(cluster, work / "events-prepare")
    assert sorted(per_worker) == [0, 1] and min(per_worker.values()) > 2, per_worker

    report = json.loads((lake / "_reports" / "ingest.json").read_text())
    assert report["rows_read"] == ROWS
    assert report["rows_written"] + report["rows_quarantined"] == ROWS
    assert sum(report["rows_by_category"].values()) == report["rows_written"]
    assert json.loads((qdir / "summary.json").read_text())["status"] == "passed"
    meta = json.loads((features / "_meta.json").read_text())
    rows = meta["rows"]
    assert rows["read"] == report["rows_written"]
    assert rows["read"] == sum(meta["dropped"].values()) + rows["kept"]
    total = 0
    for name, split in meta["splits"].items():
        assert len(split["files"]) >= 2, name
        assert all((features / f).is_file() for f in split["files"])
        assert sum(split["file_records"].values()) == split["count"], name
        total += split["count"]
    assert total == rows["kept"] > 0
    # balanced: every star rating the same number of reviews
    assert len(set(_labels(meta).values())) == 1, _labels(meta)

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
    """``reviewlake train --launcher spark --master spark://...`` on the features prepare
    wrote on the cluster (both workers share this file system, so local paths serve):
    horovod.spark.run starts one rank per executor, and each rank runs the zip the console
    script shipped (as ./spark-submit.sh would), not an installed copy."""
    features, model = work / "features", work / "model"
    if not (features / "_meta.json").is_file():
        pytest.skip("needs the features of test_ingest_quality_prepare_on_the_cluster")
    out = ok(console(cluster, work / "events-train", "train", "--launcher", "spark",
                     "--np", "2", "--input", str(features), "--output", str(model),
                     "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "16", *TINY),
             cluster)
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
