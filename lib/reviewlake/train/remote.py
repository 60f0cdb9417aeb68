"""Training on features in S3 and a model going to S3 (``--launcher spark`` on EMR).

``horovod.spark.run`` starts the processes in Spark tasks on the executors, which reach S3
but share no filesystem. Each host therefore stages what a SageMaker job's channels would
give it, into a local directory: ``_meta.json``, the tokenizer, the validation and test
splits in full, and its share of the train files (every ``hosts``-th file in key order, as
ShardedByS3Key does). The processes then train exactly as in a SageMaker job
(:func:`reviewlake.train.channels.features_view`, ``shard="host"``). Rank 0 writes the model
locally and uploads it, with the checkpoints, under the output prefix; with ``resume`` it
first fetches the checkpoints from there.

S3 is reached with boto3 and the nodes' credentials (the EMR instance profile).
"""
from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import shutil
import tempfile
import time

from ..errors import UserError
from .channels import REPLICATED_SPLITS, features_view, split_dir, tokenizer_dir

S3_SCHEMES = ("s3://", "s3a://", "s3n://")
CHECKPOINTS = "checkpoints"


def is_s3(path: str) -> bool:
    return str(path).startswith(S3_SCHEMES)


def _s3():
    import boto3

    from ..launch.aws import S3

    return S3(boto3.client("s3"))


def _join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts]])


def read_meta(s3, features: str) -> dict:
    text = s3.read_text(_join(features, "_meta.json"))
    if text is None:
        raise UserError(f"{_join(features, '_meta.json')} not found: {features} is not the "
                        "output of reviewlake prepare")
    return json.loads(text)


def stage_host(s3, features: str, dest: str, host: int, hosts: int) -> dict[str, str]:
    """Download this host's channels under ``dest``; returns channel -> local directory."""
    meta = read_meta(s3, features)
    channels = {name: os.path.join(dest, name) for name in
                ("meta", "tokenizer", "train", *REPLICATED_SPLITS)}
    for name, path in channels.items():
        os.makedirs(path, exist_ok=True)
    with open(os.path.join(channels["meta"], "_meta.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    tokenizer = _join(features, tokenizer_dir(meta))
    for uri in s3.list(tokenizer + "/"):
        s3.download(uri, os.path.join(channels["tokenizer"], uri[len(tokenizer) + 1:]))
    for split in ("train", *REPLICATED_SPLITS):
        folder = split_dir(meta, split)
        files = sorted(meta["splits"][split]["files"])
        if split == "train":
            files = files[host::hosts]
        for rel in files:
            s3.download(_join(features, rel),
                        os.path.join(channels[split], posixpath.relpath(rel, folder)))
    return channels


def upload_dir(s3, local: str, uri: str) -> int:
    count = 0
    for folder, _, files in os.walk(local):
        for name in files:
            path = os.path.join(folder, name)
            s3.upload(path, _join(uri, os.path.relpath(path, local).replace(os.sep, "/")))
            count += 1
    return count


def download_prefix(s3, uri: str, local: str) -> int:
    uris = s3.list(uri.rstrip("/") + "/")
    for item in uris:
        s3.download(item, os.path.join(local, item[len(uri.rstrip("/")) + 1:]))
    return len(uris)


def _wait_for(path: str, failed: str, poll: float = 0.5) -> None:
    """Block until the host's leader has staged the channels (or failed to)."""
    while not os.path.exists(path):
        if os.path.exists(failed):
            with open(failed, encoding="utf-8") as fh:
                raise UserError(fh.read().strip())
        time.sleep(poll)


def train_remote(spec, run_id: str, s3=None) -> dict:
    """One process of a training whose input and output are S3 prefixes. ``run_id`` is the
    same for every process of one run (the launcher makes it)."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from .worker import set_cycle_time, train

    s3 = s3 or _s3()
    set_cycle_time(spec, tf)   # before the first hvd.init(), which reads it
    hvd.init()  # rank queries only: TensorFlow must stay unconfigured until train()
    root = os.path.join(tempfile.gettempdir(), f"reviewlake-train-{run_id}")
    channels_dir = os.path.join(root, "channels")
    staged, failed = os.path.join(root, "staged"), os.path.join(root, "failed")
    if hvd.local_rank() == 0:  # one download per host; hosts numbered by cross rank
        try:
            stage_host(s3, spec.input, channels_dir, hvd.cross_rank(), hvd.cross_size())
        except UserError as exc:
            with open(failed, "w", encoding="utf-8") as fh:
                fh.write(str(exc))
            raise
        open(staged, "w").close()
    else:
        _wait_for(staged, failed)
    channels = {name: os.path.join(channels_dir, name) for name in
                ("meta", "tokenizer", "train", *REPLICATED_SPLITS)}
    view = features_view(channels, tempfile.mkdtemp(prefix="view-", dir=root))
    out, ckpt = os.path.join(root, "model"), os.path.join(root, CHECKPOINTS)
    if hvd.rank() == 0 and spec.resume:
        os.makedirs(ckpt, exist_ok=True)
        download_prefix(s3, _join(spec.output, CHECKPOINTS), ckpt)
    local = dataclasses.replace(spec, input=view, output=out, checkpoint_dir=ckpt, shard="host")
    metrics = train(local)
    if hvd.rank() == 0:
        metrics["features"] = spec.input
        with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=2)
        upload_dir(s3, out, spec.output)
        upload_dir(s3, ckpt, _join(spec.output, CHECKPOINTS))
    hvd.allgather_object(None)  # nobody leaves before the model is in S3
    if hvd.local_rank() == 0:
        shutil.rmtree(root, ignore_errors=True)
    return metrics
