"""Training on features in S3 and a model going to S3 (``--launcher spark`` on EMR).

``horovod.spark.run`` starts the processes in Spark tasks on the executors, which reach S3
but share no filesystem. Each host therefore stages what a SageMaker job's channels would
give it, into a local directory: ``_meta.json``, the tokenizer, the validation and test
splits in full, and its share of the train files (every ``hosts``-th file in key order, as
ShardedByS3Key does). The processes then train exactly as in a SageMaker job
(:func:`reviewlake.train.channels.features_view`, ``shard="host"``). Rank 0 writes the model
locally and uploads it under the output prefix.

Checkpoints go up as they are written, so a step that fails keeps its finished epochs: after
each epoch's save rank 0 uploads ``ckpt-N.*`` and ``history.json`` to
``<output>/checkpoints/epoch-NNNNN/`` and then, last, ``_manifest.json`` (the epoch, each
file and its size). An epoch counts only when its manifest is there and every file it lists
is, at that size. With ``resume``, rank 0's host leader downloads the newest complete epoch
into a temporary directory and renames it into place before the host's other processes go
on (they wait for the host's staging marker), so no process sees a partial checkpoint; the
other hosts start from rank 0's state by the worker's broadcast. Without ``resume`` the old
checkpoints under the output are deleted first (manifests before files).

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
MANIFEST = "_manifest.json"
HISTORY = "history.json"
KEEP_CHECKPOINTS = 3  # as the worker's CheckpointManager(max_to_keep=3)


def is_s3(path: str) -> bool:
    return str(path).startswith(S3_SCHEMES)


def _s3():
    import boto3

    from ..aws import S3

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


def _epoch_prefix(prefix: str, epoch: int) -> str:
    return _join(prefix, f"epoch-{epoch:05d}")


def _epochs(uris) -> dict[int, list[str]]:
    """epoch -> the URIs under its ``epoch-NNNNN/`` folder."""
    out: dict[int, list[str]] = {}
    for uri in uris:
        folder = uri.rstrip("/").split("/")[-2]
        if folder.startswith("epoch-") and folder[6:].isdigit():
            out.setdefault(int(folder[6:]), []).append(uri)
    return out


def _delete_epochs(s3, epochs: dict[int, list[str]]) -> None:
    for epoch, uris in sorted(epochs.items()):
        manifests = [u for u in uris if u.endswith("/" + MANIFEST)]
        s3.delete(manifests + [u for u in uris if u not in manifests])  # invalid first


def upload_checkpoint(s3, local: str, prefix: str, epoch: int,
                      keep: int = KEEP_CHECKPOINTS) -> dict:
    """Rank 0, after saving epoch ``epoch``: its files, then the manifest; then the epochs
    older than the last ``keep`` go. Returns the manifest."""
    target = _epoch_prefix(prefix, epoch)
    s3.delete([_join(target, MANIFEST)])  # a rerun epoch: not complete until all is new
    names = sorted(n for n in os.listdir(local) if n.startswith(f"ckpt-{epoch}."))
    if not any(n.endswith(".index") for n in names):
        raise UserError(f"no checkpoint ckpt-{epoch} in {local} to upload")
    if os.path.exists(os.path.join(local, HISTORY)):
        names.append(HISTORY)
    files = {}
    for name in names:
        path = os.path.join(local, name)
        files[name] = os.path.getsize(path)
        s3.upload(path, _join(target, name))
    manifest = {"epoch": epoch, "checkpoint": f"ckpt-{epoch}", "files": files}
    s3.write_text(_join(target, MANIFEST), json.dumps(manifest, indent=2))
    old = {e: uris for e, uris in _epochs(s3.list(prefix.rstrip("/") + "/")).items()
           if e <= epoch - keep}
    _delete_epochs(s3, old)
    return manifest


def latest_checkpoint(s3, prefix: str) -> dict | None:
    """The manifest of the newest complete epoch under ``prefix`` (with ``uri``, its
    folder), or None: an epoch without a manifest, or whose manifest lists a file that is
    missing or of another size, is skipped."""
    sizes = s3.sizes(prefix.rstrip("/") + "/")
    for epoch in sorted(_epochs(sizes), reverse=True):
        folder = _epoch_prefix(prefix, epoch)
        if _join(folder, MANIFEST) not in sizes:
            continue
        try:
            manifest = json.loads(s3.read_text(_join(folder, MANIFEST)) or "")
            files = dict(manifest["files"])
        except (ValueError, KeyError, TypeError):
            continue
        if manifest.get("epoch") != epoch or not files:
            continue
        if all(sizes.get(_join(folder, name)) == size for name, size in files.items()):
            return dict(manifest, uri=folder)
    return None


def fetch_checkpoint(s3, prefix: str, dest: str) -> int:
    """Make ``dest`` the newest complete checkpoint under ``prefix`` (empty when there is
    none): downloaded beside it, then renamed into place. Returns its epoch (0: none)."""
    found = latest_checkpoint(s3, prefix)
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}-", dir=parent)
    try:
        if found:
            for name in found["files"]:
                s3.download(_join(found["uri"], name), os.path.join(tmp, name))
            name = found["checkpoint"]
            with open(os.path.join(tmp, "checkpoint"), "w", encoding="utf-8") as fh:
                # tf.train.CheckpointManager's state file: this checkpoint alone
                fh.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return int(found["epoch"]) if found else 0


def clear_checkpoints(s3, prefix: str) -> None:
    """A run that does not resume: no checkpoint of an earlier run may be restored later."""
    uris = s3.list(prefix.rstrip("/") + "/")
    _delete_epochs(s3, _epochs(uris))
    epochs = {u for us in _epochs(uris).values() for u in us}
    s3.delete([u for u in uris if u not in epochs])


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

    from . import worker
    from .worker import set_cycle_time

    train = worker.train

    s3 = s3 or _s3()
    set_cycle_time(spec, tf)   # before the first hvd.init(), which reads it
    hvd.init()  # rank queries only: TensorFlow must stay unconfigured until train()
    root = os.path.join(tempfile.gettempdir(), f"reviewlake-train-{run_id}")
    channels_dir = os.path.join(root, "channels")
    staged, failed = os.path.join(root, "staged"), os.path.join(root, "failed")
    out, ckpt = os.path.join(root, "model"), os.path.join(root, CHECKPOINTS)
    ckpt_prefix = _join(spec.output, CHECKPOINTS)
    if hvd.local_rank() == 0:  # one download per host; hosts numbered by cross rank
        try:
            os.makedirs(root, exist_ok=True)
            stage_host(s3, spec.input, channels_dir, hvd.cross_rank(), hvd.cross_size())
            if hvd.rank() == 0:  # before the host's other processes look at ckpt
                if spec.resume:
                    fetch_checkpoint(s3, ckpt_prefix, ckpt)
                else:
                    clear_checkpoints(s3, ckpt_prefix)
        except Exception as exc:  # the host's other processes stop waiting, with the reason
            with open(failed, "w", encoding="utf-8") as fh:
                fh.write(str(exc) if isinstance(exc, UserError) else
                         f"staging on this host failed: {type(exc).__name__}: {exc}")
            raise
        open(staged, "w").close()
    else:
        _wait_for(staged, failed)
    channels = {name: os.path.join(channels_dir, name) for name in
                ("meta", "tokenizer", "train", *REPLICATED_SPLITS)}
    view = features_view(channels, tempfile.mkdtemp(prefix="view-", dir=root))
    local = dataclasses.replace(spec, input=view, output=out, checkpoint_dir=ckpt, shard="host")

    def on_checkpoint(folder: str, epoch: int) -> None:  # rank 0, after each epoch's save
        upload_checkpoint(s3, folder, ckpt_prefix, epoch)

    metrics = train(local, on_checkpoint=on_checkpoint if hvd.rank() == 0 else None)
    if hvd.rank() == 0:
        metrics["features"] = spec.input
        metrics["lineage"] = dict(metrics.get("lineage") or {}, features=spec.input)
        with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as fh:
            json.dump(metrics, fh, indent=2)
        upload_dir(s3, out, spec.output)
    hvd.allgather_object(None)  # nobody leaves before the model is in S3
    if hvd.local_rank() == 0:
        shutil.rmtree(root, ignore_errors=True)
    return metrics
