"""The SageMaker training entry (jobs/sagemaker_train.py) in a simulated container: the
channels as SageMaker lays them out for one host of a multi-instance job (train sharded by
S3 key, the rest fully replicated), SM_* variables, hyperparameters as --key value."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import VENV_BIN
from reviewlake import __version__
from reviewlake.errors import UserError
from reviewlake.launch.sagemaker_jobs import train_source_dir
from reviewlake.launch.sagemaker_train import parse_hyperparameters, train_spec
from reviewlake.train.channels import features_view


def fake_features(root: Path, train_files=4) -> Path:
    meta = {"max_seq_length": 16, "num_labels": 5, "tokenizer": {"path": "tokenizer"},
            "splits": {}}
    for split, n in (("train", train_files), ("validation", 2), ("test", 1)):
        files = [f"{split}/part-{i:05d}.tfrecord" for i in range(n)]
        meta["splits"][split] = {"count": 10 * n, "files": files}
        for f in files:
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            (root / f).write_bytes(b"")
    (root / "tokenizer").mkdir(parents=True, exist_ok=True)
    (root / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    (root / "_meta.json").write_text(json.dumps(meta))
    return root


def sagemaker_channels(features: Path, data: Path, host: int, hosts: int) -> dict[str, str]:
    """/opt/ml/input/data/<channel> of host `host`: ShardedByS3Key gives it every hosts-th
    train object (in key order); the other channels are complete copies."""
    channels = {}
    for name, src in (("meta", None), ("tokenizer", features / "tokenizer"),
                      ("validation", features / "validation"), ("test", features / "test")):
        dest = data / name
        if src is None:
            dest.mkdir(parents=True)
            shutil.copy2(features / "_meta.json", dest / "_meta.json")
        else:
            shutil.copytree(src, dest)
        channels[name] = str(dest)
    train = data / "train"
    train.mkdir(parents=True)
    for f in sorted((features / "train").iterdir())[host::hosts]:
        shutil.copy2(f, train / f.name)
    channels["train"] = str(train)
    return channels


def test_hyperparameters_from_arguments_or_sm_hps():
    hps = parse_hyperparameters(["--epochs", "3", "--model", "tiny", "--freeze_bert", "false",
                                 "--learning_rate", "3e-05", "--tiny", '{"dim": 32}'], {})
    assert hps == {"epochs": 3, "model": "tiny", "freeze_bert": False, "learning_rate": 3e-05,
                   "tiny": {"dim": 32}}
    assert parse_hyperparameters([], {"SM_HPS": '{"epochs": 2}'}) == {"epochs": 2}
    with pytest.raises(UserError, match="expected --key value"):
        parse_hyperparameters(["--epochs"], {})


def test_features_view_holds_this_hosts_share(tmp_path):
    from reviewlake.train.meta import load_features

    features = fake_features(tmp_path / "features", train_files=5)
    channels = sagemaker_channels(features, tmp_path / "host1", host=1, hosts=2)
    view = features_view(channels, str(tmp_path / "view"))
    loaded = load_features(view)  # prepare's contract: every listed file is there
    assert [os.path.basename(f) for f in loaded.files("train")] == [
        "part-00001.tfrecord", "part-00003.tfrecord"]
    assert loaded.count("train") == 50  # the global count: steps per epoch come from it
    assert loaded.meta["splits"]["train"]["files_total"] == 5
    assert len(loaded.files("validation")) == 2 and len(loaded.files("test")) == 1
    assert loaded.tokenizer_dir == channels["tokenizer"]
    assert os.path.realpath(loaded.files("train")[0]) == os.path.join(channels["train"],
                                                                       "part-00001.tfrecord")


def test_features_view_errors(tmp_path):
    features = fake_features(tmp_path / "features", train_files=2)
    channels = sagemaker_channels(features, tmp_path / "host", host=0, hosts=1)
    os.remove(os.path.join(channels["validation"], "part-00001.tfrecord"))
    with pytest.raises(UserError, match="validation file validation/part-00001.tfrecord "
                                        "missing .* must be fully replicated"):
        features_view(channels, str(tmp_path / "v1"))
    empty = sagemaker_channels(features, tmp_path / "host2", host=2, hosts=3)
    with pytest.raises(UserError, match="this host received none of the 2 train files"):
        features_view(empty, str(tmp_path / "v2"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no _meta.json in the meta channel"):
        features_view(dict(channels, meta=str(tmp_path / "empty")), str(tmp_path / "v3"))


def test_code_channel_imports_the_packaged_library(tmp_path):
    code = train_source_dir(tmp_path / "build")
    assert sorted(p.name for p in code.iterdir()) == sorted(
        ["requirements.txt", "sagemaker_launch.py", "sagemaker_train.py",
         f"reviewlake-{__version__}.zip"])
    probe = ("import runpy, sys; sys.argv = ['sagemaker_train.py']; "
             "ns = runpy.run_path('sagemaker_train.py'); import reviewlake; "
             "print(reviewlake.__file__)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=code, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"reviewlake-{__version__}.zip/reviewlake/__init__.py")


def test_train_spec_for_sagemaker():
    spec = train_spec({"epochs": 2, "batch_size": 16, "checkpoint_dir": "/ckpt"}, "/view",
                      "/opt/ml/model", "/ckpt")
    assert (spec.input, spec.output, spec.checkpoint_dir) == ("/view", "/opt/ml/model", "/ckpt")
    assert spec.shard == "host" and spec.resume is True and spec.epochs == 2
    with pytest.raises(UserError, match="unknown hyperparameter.s. hosts"):
        train_spec({"hosts": "a:1"}, "/v", "/m", "/c")


@pytest.mark.slow
def test_entry_trains_on_this_hosts_share_with_two_processes(tmp_path):
    """Host 0 of a 2-instance job, 2 processes on it (horovodrun standing in for SageMaker's
    mpirun): the processes split the host's train files by local rank, write the model to
    SM_MODEL_DIR and checkpoints to the checkpoint directory (SageMaker syncs it with S3 and
    restores it after a spot interruption; resuming itself is test_train's kill-and-resume)."""
    from features_fixture import make_features

    features = make_features(tmp_path / "features", rows=3000, max_seq_length=16, files=4)
    channels = sagemaker_channels(features, tmp_path / "input" / "data", host=0, hosts=2)
    model_dir, ckpt = tmp_path / "model", tmp_path / "checkpoints"
    code = train_source_dir(tmp_path / "build")  # what the job's code channel holds
    env = dict(os.environ, SM_MODEL_DIR=str(model_dir), TF_CPP_MIN_LOG_LEVEL="2",
               **{f"SM_CHANNEL_{name.upper()}": path for name, path in channels.items()})
    hps = ["--epochs", "1", "--batch_size", "16", "--model", "tiny", "--learning_rate", "0.001",
           "--steps_per_epoch", "6", "--checkpoint_dir", str(ckpt)]
    cmd = [str(VENV_BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo",
           sys.executable, str(code / "sagemaker_train.py"), *hps]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["ranks_consistent"] is True
    assert metrics["steps_per_epoch"] == 6 and [h["epoch"] for h in metrics["history"]] == [1]
    meta = json.loads((features / "_meta.json").read_text())
    assert metrics["test"]["count"] == meta["splits"]["test"]["count"]
    assert (model_dir / "saved_model" / "saved_model.pb").is_file()
    assert any(p.name.startswith("ckpt-1") for p in ckpt.iterdir())
    assert not (model_dir / "checkpoints").exists()


@pytest.mark.slow
def test_two_instances_emulated(tmp_path):
    """A 2-instance job, 1 process an instance, emulated on this machine: each process gets
    its instance's SageMaker environment (SM_HOSTS, SM_CURRENT_HOST, its ShardedByS3Key share
    of the train files: every 2nd file in key order; the rest in full) through
    tests/sagemaker_hosts.py under horovodrun --gloo with two host names (Horovod here has
    Gloo, not MPI). Both instances' files are read, once; the learning rate is scaled by 2;
    and with processes_per_host 2 the world check stops every rank in one line."""
    from features_fixture import make_features

    features = make_features(tmp_path / "features", rows=1500, max_seq_length=16, files=4,
                             vocab_size=500)
    hosts = ["algo-1", "algo-2"]
    envs = []
    for i, host in enumerate(hosts):
        channels = sagemaker_channels(features, tmp_path / host / "data", host=i, hosts=2)
        envs.append({"SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": host,
                     "SM_MODEL_DIR": str(tmp_path / host / "model"),
                     "REVIEWLAKE_PROCESSES_PER_HOST": "1", "REVIEWLAKE_HOSTS": json.dumps(hosts),
                     **{f"SM_CHANNEL_{n.upper()}": p for n, p in channels.items()}})
    # the job as launched, and the same job with processes_per_host 2 (4 processes expected,
    # 2 started), side by side
    wrong = [dict(e, REVIEWLAKE_PROCESSES_PER_HOST="2") for e in envs]
    here = Path(__file__).resolve().parent
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(here.parent / "lib"))
    hps = ["--epochs", "1", "--batch_size", "16", "--model", "tiny", "--learning_rate", "0.001",
           "--steps_per_epoch", "2", "--checkpoint_dir", str(tmp_path / "ckpt")]
    runs = {}
    for name, host_envs in (("right", envs), ("wrong", wrong)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "hosts.json").write_text(json.dumps(host_envs))
        cmd = [str(VENV_BIN / "horovodrun"), "-np", "2", "-H", "localhost:1,127.0.0.1:1",
               "--gloo", sys.executable, str(here / "sagemaker_hosts.py"),
               str(tmp_path / name / "hosts.json"), str(tmp_path / name),
               str(here.parent / "jobs" / "sagemaker_train.py"), *hps]
        runs[name] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
    output = {name: p.communicate(timeout=600)[0] for name, p in runs.items()}

    assert runs["right"].returncode == 0, output["right"][-3000:]
    out = tmp_path / "right"
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    meta = json.loads((features / "_meta.json").read_text())
    for r, rec in enumerate(ranks):
        assert (rec["host"], rec["size"], rec["cross_rank"], rec["cross_size"],
                rec["local_size"]) == (hosts[r], 2, r, 2, 1)
        assert rec["shard"] == [0, 1]                   # the whole of its instance's share
        names = [os.path.basename(p) for p, _, _ in rec["read"]]
        assert names == [f"part-{k:05d}.tfrecord" for k in range(4)][r::2]
        assert all(p.startswith(str(tmp_path / hosts[r] / "data" / "train"))
                   for p, _, _ in rec["read"])
        assert [n for _, _, n in rec["read"]] == [
            meta["splits"]["train"]["file_records"][f"train/{n}"] for n in names]
    metrics = json.loads((tmp_path / "algo-1" / "model" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["learning_rate"] == pytest.approx(0.002)
    assert metrics["ranks_consistent"] is True
    assert not (tmp_path / "algo-2" / "model" / "metrics.json").exists()

    assert runs["wrong"].returncode != 0
    errors = [line for line in output["wrong"].splitlines()
              if "reviewlake train (sagemaker): error:" in line]
    assert len(errors) == 2, output["wrong"][-3000:]
    for r in (0, 1):
        assert any(f"error: rank {r}: Horovod has 2 process(es), 1 on this instance, 2 "
                   "instance(s); the job has 2 instance(s) x 2 processes_per_host = 4" in line
                   for line in errors)
    assert not list((tmp_path / "wrong").glob("rank*.json"))  # stopped before reading
