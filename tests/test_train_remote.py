"""Training from and to S3 with the Spark launcher (the EMR train step): each host stages
its channels (its share of the train files, the rest in full) from the emulated S3, and
rank 0 uploads the model, and each epoch's checkpoint as it is written (restored only when
complete)."""
import json
import os
import uuid
from pathlib import Path

import pytest

from conftest import run_cli
from reviewlake.errors import UserError
from reviewlake.aws import S3
from reviewlake.train.channels import features_view
from reviewlake.train.remote import download_prefix, stage_host, upload_dir


def upload_features(aws, root, bucket, prefix="features"):
    s3 = aws.client("s3")
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith("_raw"):
            s3.upload_file(str(path), bucket, f"{prefix}/{rel}")
    return f"s3://{bucket}/{prefix}"


def fake_features(root, train_files):
    meta = {"max_seq_length": 16, "tokenizer": {"path": "tokenizer"}, "splits": {}}
    for split, n in (("train", train_files), ("validation", 2), ("test", 1)):
        files = [f"{split}/part-{i:05d}.tfrecord" for i in range(n)]
        meta["splits"][split] = {"count": 10 * n, "files": files}
        for f in files:
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            (root / f).write_bytes(f.encode())
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    (root / "_meta.json").write_text(json.dumps(meta))
    return root


def test_each_host_stages_its_share(aws, tmp_path):
    from reviewlake.train.meta import load_features

    bucket = f"rl-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    uri = upload_features(aws, fake_features(tmp_path / "f", train_files=5), bucket)
    s3 = S3(aws.client("s3"))
    seen = []
    for host in range(2):
        channels = stage_host(s3, uri, str(tmp_path / f"host{host}"), host, 2)
        view = load_features(features_view(channels, str(tmp_path / f"view{host}")))
        seen += [os.path.basename(f) for f in view.files("train")]
        assert view.count("train") == 50 and len(view.files("validation")) == 2
        assert open(view.files("train")[0], "rb").read().startswith(b"train/part-")
        assert os.path.isfile(os.path.join(view.tokenizer_dir, "vocab.txt"))
    assert sorted(seen) == [f"part-{i:05d}.tfrecord" for i in range(5)]  # each file once
    with pytest.raises(UserError, match="_meta.json not found"):
        stage_host(s3, f"s3://{bucket}/nothing", str(tmp_path / "x"), 0, 1)

    # The model directory goes up and checkpoints come back down unchanged.
    (tmp_path / "out" / "saved_model").mkdir(parents=True)
    (tmp_path / "out" / "saved_model" / "saved_model.pb").write_bytes(b"pb")
    (tmp_path / "out" / "metrics.json").write_text("{}")
    assert upload_dir(s3, str(tmp_path / "out"), f"s3://{bucket}/model") == 2
    assert download_prefix(s3, f"s3://{bucket}/model", str(tmp_path / "back")) == 2
    assert (tmp_path / "back" / "saved_model" / "saved_model.pb").read_bytes() == b"pb"


@pytest.mark.slow
def test_spark_launcher_trains_from_and_to_s3(aws, tmp_path, monkeypatch):
    """The EMR train step's command (--launcher spark, S3 input and output) on local[2]."""
    from features_fixture import make_features

    bucket = f"rl-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    features = upload_features(aws, make_features(tmp_path / "f", rows=3000, max_seq_length=16,
                                                  files=4), bucket)
    # Horovod's task services talk HTTP between local addresses: no proxy for this run
    # (every AWS client still goes to the emulator through AWS_ENDPOINT_URL).
    for key in [k for k in os.environ if "proxy" in k.lower()]:
        monkeypatch.delenv(key)
    proc = run_cli("train", "--input", features, "--output", f"s3://{bucket}/model",
                   "--launcher", "spark", "--master", "local[2]", "--np", "2", "--epochs", "1",
                   "--batch-size", "16", "--steps-per-epoch", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train ok: 2 process(es)" in proc.stdout
    s3 = aws.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="model/")["Contents"]}
    assert {"model/saved_model/saved_model.pb", "model/metrics.json",
            "model/tokenizer/vocab.txt"} <= keys
    # The epoch's checkpoint went up as it was written, its manifest last.
    assert {"model/checkpoints/epoch-00001/_manifest.json",
            "model/checkpoints/epoch-00001/ckpt-1.index",
            "model/checkpoints/epoch-00001/history.json"} <= keys
    metrics = json.loads(s3.get_object(Bucket=bucket, Key="model/metrics.json")["Body"].read())
    assert metrics["world_size"] == 2 and metrics["ranks_consistent"] is True
    assert metrics["features"] == features

    bad = run_cli("train", "--input", f"s3://{bucket}/nothing", "--output",
                  f"s3://{bucket}/m2", "--launcher", "spark")
    assert bad.returncode == 2 and "_meta.json not found" in bad.stderr
    mixed = run_cli("train", "--input", features, "--output", str(tmp_path / "m"),
                    "--launcher", "spark")
    assert mixed.returncode == 2 and "both must be S3 prefixes" in mixed.stderr


def write_checkpoint(folder, epoch, payload=b"w"):
    """What rank 0's CheckpointManager and history leave after an epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"ckpt-{epoch}.index").write_bytes(b"index%d" % epoch)
    (folder / f"ckpt-{epoch}.data-00000-of-00001").write_bytes(payload * (100 + epoch))
    (folder / "history.json").write_text(json.dumps([{"epoch": e} for e in range(1, epoch + 1)]))
    (folder / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{epoch}"\n')
    return folder


class RecordingS3(S3):
    """The S3 wrapper, remembering the order of writes (and, optionally, failing one)."""

    def __init__(self, client, fail_on=None):
        super().__init__(client)
        self.writes, self.fail_on = [], fail_on

    def upload(self, path, uri):
        if self.fail_on and uri.endswith(self.fail_on):
            raise UserError(f"uploading to {uri}: connection reset")
        self.writes.append(uri)
        return super().upload(path, uri)

    def write_text(self, uri, text):
        if self.fail_on and uri.endswith(self.fail_on):
            raise UserError(f"writing {uri}: connection reset")
        self.writes.append(uri)
        return super().write_text(uri, text)


def test_each_epochs_checkpoint_goes_up_with_its_manifest_last(aws, tmp_path):
    from reviewlake.train.remote import MANIFEST, fetch_checkpoint, latest_checkpoint, \
        upload_checkpoint

    bucket = f"rl-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    prefix = f"s3://{bucket}/model/checkpoints"
    s3 = RecordingS3(aws.client("s3"))
    local = write_checkpoint(tmp_path / "ckpt", 1)
    manifest = upload_checkpoint(s3, str(local), prefix, 1)
    assert manifest["epoch"] == 1
    assert set(manifest["files"]) == {"ckpt-1.index", "ckpt-1.data-00000-of-00001", "history.json"}
    assert s3.writes[-1] == f"{prefix}/epoch-00001/{MANIFEST}"         # the marker last
    assert len(s3.writes) == 4

    # Epoch 2 fails half-way: files without a marker. Epoch 3: a marker naming a file that
    # is not there. Both are ignored; epoch 1 is the one restored.
    write_checkpoint(local, 2)
    with pytest.raises(UserError):
        upload_checkpoint(RecordingS3(aws.client("s3"), fail_on=MANIFEST), str(local), prefix, 2)
    assert s3.read_text(f"{prefix}/epoch-00002/{MANIFEST}") is None
    write_checkpoint(local, 3)
    upload_checkpoint(s3, str(local), prefix, 3)
    aws.client("s3").delete_object(Bucket=bucket, Key="model/checkpoints/epoch-00003/ckpt-3.index")
    assert latest_checkpoint(s3, prefix)["epoch"] == 1

    dest = tmp_path / "host" / "checkpoints"
    seen = []
    real_download = s3.download

    def download(uri, path):  # nobody can see the destination before it is whole
        seen.append(dest.exists())
        real_download(uri, path)

    s3.download = download
    assert fetch_checkpoint(s3, prefix, str(dest)) == 1
    assert seen and not any(seen)
    assert sorted(os.listdir(dest)) == ["checkpoint", "ckpt-1.data-00000-of-00001",
                                        "ckpt-1.index", "history.json"]
    assert (dest / "ckpt-1.data-00000-of-00001").read_bytes() == b"w" * 101
    assert json.loads((dest / "history.json").read_text()) == [{"epoch": 1}]
    assert 'model_checkpoint_path: "ckpt-1"' in (dest / "checkpoint").read_text()
    assert os.listdir(tmp_path / "host") == ["checkpoints"]            # no temporary left

    # A rerun of an epoch first takes its old marker away (no mix of old and new files),
    # and only the last `keep` complete epochs stay.
    write_checkpoint(local, 3, payload=b"x")
    upload_checkpoint(s3, str(local), prefix, 3)
    assert latest_checkpoint(s3, prefix)["epoch"] == 3
    for epoch in (4, 5):
        write_checkpoint(local, epoch)
        upload_checkpoint(s3, str(local), prefix, epoch, keep=2)
    stored = {uri.split("/")[-2] for uri in s3.list(prefix + "/")}
    assert stored == {"epoch-00004", "epoch-00005"}
    # Nothing complete: an empty directory, epoch 0.
    empty = tmp_path / "none"
    assert fetch_checkpoint(s3, f"s3://{bucket}/other/checkpoints", str(empty)) == 0
    assert os.listdir(empty) == []


def test_a_failed_step_leaves_its_epochs_in_s3_and_resume_restores_them(aws, tmp_path,
                                                                        monkeypatch):
    """train_remote with the training function replaced: rank 0's checkpoint of each epoch
    is in S3 as soon as it is written, so a step failing in epoch 2 leaves epoch 1; the
    resumed run finds it (complete) in its checkpoint directory before training starts."""
    from reviewlake.train import worker
    from reviewlake.train.remote import MANIFEST, train_remote
    from reviewlake.train.spec import TrainSpec

    bucket = f"rl-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=bucket)
    features = upload_features(aws, fake_features(tmp_path / "f", train_files=2), bucket)
    output = f"s3://{bucket}/model"
    s3 = S3(aws.client("s3"))
    import tempfile
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # train_remote's root
    seen = {}

    def failing_train(spec, on_checkpoint=None):
        ckpt = spec.checkpoint_dir
        seen["restored"] = sorted(os.listdir(ckpt)) if os.path.isdir(ckpt) else []
        for epoch in range(2 if seen["restored"] else 1, 3):
            write_checkpoint(Path(ckpt), epoch)
            on_checkpoint(ckpt, epoch)
            if epoch == 1:
                raise RuntimeError("the step failed in epoch 2")
        os.makedirs(spec.output, exist_ok=True)
        return {"epochs": 2}

    monkeypatch.setattr(worker, "train", failing_train)
    spec = TrainSpec(input=features, output=output, epochs=2)
    with pytest.raises(RuntimeError, match="epoch 2"):
        train_remote(spec, uuid.uuid4().hex, s3=s3)
    assert s3.read_text(f"{output}/checkpoints/epoch-00001/{MANIFEST}") is not None
    # A partial epoch 2 (no marker) is in S3 as well: it must not be restored.
    s3.upload(str(write_checkpoint(tmp_path / "partial", 2) / "ckpt-2.index"),
              f"{output}/checkpoints/epoch-00002/ckpt-2.index")

    import dataclasses
    metrics = train_remote(dataclasses.replace(spec, resume=True), uuid.uuid4().hex, s3=s3)
    # the features' lineage rides along (no lake snapshot in these synthetic features)
    assert metrics == {"epochs": 2, "features": features, "lineage": {"features": features}}
    assert seen["restored"] == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index",
                                "history.json"]
    assert s3.read_text(f"{output}/checkpoints/epoch-00002/{MANIFEST}") is not None
    assert s3.read_text(f"{output}/metrics.json") is not None

    # A fresh run (no resume) starts from nothing: the old checkpoints are taken away first.
    monkeypatch.setattr(worker, "train", lambda spec, on_checkpoint=None: (
        seen.update(fresh=s3.list(f"{output}/checkpoints/")), os.makedirs(spec.output),
        {"epochs": 2})[-1])
    train_remote(spec, uuid.uuid4().hex, s3=s3)
    assert seen["fresh"] == []
