"""Training from and to S3 with the Spark launcher (the EMR train step): each host stages
its channels (its share of the train files, the rest in full) from the emulated S3, and
rank 0 uploads the model and checkpoints."""
import json
import os
import uuid

import pytest

from conftest import run_cli
from reviewlake.errors import UserError
from reviewlake.launch.aws import S3
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
    assert any(k.startswith("model/checkpoints/ckpt-1") for k in keys)
    metrics = json.loads(s3.get_object(Bucket=bucket, Key="model/metrics.json")["Body"].read())
    assert metrics["world_size"] == 2 and metrics["ranks_consistent"] is True
    assert metrics["features"] == features

    bad = run_cli("train", "--input", f"s3://{bucket}/nothing", "--output",
                  f"s3://{bucket}/m2", "--launcher", "spark")
    assert bad.returncode == 2 and "_meta.json not found" in bad.stderr
    mixed = run_cli("train", "--input", features, "--output", str(tmp_path / "m"),
                    "--launcher", "spark")
    assert mixed.returncode == 2 and "both must be S3 prefixes" in mixed.stderr
