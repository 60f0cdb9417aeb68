"""Inside a SageMaker training job: the same training function, fed by SageMaker's channels.

The job's launcher (:mod:`reviewlake.launch.sagemaker_mpi`) starts ``processes_per_host``
copies of ``jobs/sagemaker_train.py`` on every instance (``mpirun -np hosts x
processes_per_host ... python sagemaker_train.py --epochs 3 ...``: the hyperparameters as
``--key value`` with JSON values). Each process:

0. checks the image's Horovod (:func:`check_horovod`: it imports with the image's
   TensorFlow, has MPI for a multi-instance job and NCCL on GPU instances) and, right after
   ``hvd.init()``, the world (:func:`check_world`: ``hvd.size() == hosts x
   processes_per_host``, one host's worth of ranks per instance); either fails in one line;

1. reads the hyperparameters (the profile's ``train`` section) from its arguments, or from
   ``SM_HPS`` when started another way;
2. assembles a features directory in prepare's contract from the channels
   (:func:`reviewlake.train.channels.features_view`): ``train`` is sharded by S3 key, so
   this host holds only its share of the train files; ``meta`` (``_meta.json``),
   ``tokenizer``, ``validation`` and ``test`` are fully replicated. The view's ``_meta.json``
   lists the train files this host has and keeps the global counts;
3. runs :func:`reviewlake.train.worker.train` with ``shard="host"`` (its processes split the
   host's files by local rank), the model written to ``SM_MODEL_DIR`` (``/opt/ml/model``,
   uploaded as model.tar.gz) and checkpoints in ``/opt/ml/checkpoints`` (synced with the
   job's checkpoint S3 URI; a spot interruption resumes from the last epoch).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from typing import Any, Mapping, Sequence

from ..errors import UserError
from ..train.channels import CHANNELS, features_view
from .sagemaker_mpi import (HOSTS_ENV, IMAGE_ENV, PROCESSES_ENV, hosts_of, processes_per_host,
                            write_failure)

DEFAULT_CHECKPOINTS = "/opt/ml/checkpoints"
DEFAULT_MODEL_DIR = "/opt/ml/model"
# Set by the launcher, not TrainSpec fields.
_LAUNCH_KEYS = ("checkpoint_dir",)


def parse_hyperparameters(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """``--key value`` pairs (values JSON where they parse as JSON); SM_HPS if there are none."""
    if not argv and env.get("SM_HPS"):
        return dict(json.loads(env["SM_HPS"]))
    out: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        key = args[i]
        if not key.startswith("--") or i + 1 >= len(args):
            raise UserError(f"expected --key value hyperparameters, got {' '.join(args)!r}")
        value = args[i + 1]
        try:
            out[key[2:].replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key[2:].replace("-", "_")] = value
        i += 2
    return out


def channel_dir(name: str, env: Mapping[str, str]) -> str:
    return env.get(f"SM_CHANNEL_{name.upper()}") or f"/opt/ml/input/data/{name}"


def train_spec(hyperparameters: Mapping[str, Any], features: str, model_dir: str,
               checkpoint_dir: str):
    """The TrainSpec of a SageMaker process: the profile's options, host-sharded input,
    always resuming from the job's checkpoints (that is how a spot restart continues)."""
    from ..train.spec import TrainSpec

    known = {f.name for f in dataclasses.fields(TrainSpec)}
    options = {k: v for k, v in hyperparameters.items() if k not in _LAUNCH_KEYS}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"unknown hyperparameter(s) {', '.join(unknown)}")
    options.update(input=features, output=model_dir, checkpoint_dir=checkpoint_dir,
                   shard="host", resume=True)
    return TrainSpec.from_dict(options).validate()


_FIX_IMAGE = ("build the training image of docker/ (Horovod with MPI and NCCL against the "
              "image's TensorFlow) and set sagemaker.train.image_uri to it (README, SageMaker)")


def check_horovod(env: Mapping[str, str]) -> None:
    """The image's Horovod can run this job: it imports with the image's TensorFlow, it has
    the controller the job's launcher uses (MPI for several instances; Gloo under
    ``horovodrun --gloo``) and NCCL on GPU instances."""
    import importlib

    image = env.get(IMAGE_ENV) or "the training image"
    try:
        hvd = importlib.import_module("horovod.tensorflow")
    except Exception as exc:  # ImportError, or TF's NotFoundError for a mismatched build
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{image} has no usable Horovod (import horovod.tensorflow: "
                        f"{first}): {_FIX_IMAGE}") from None
    hosts = hosts_of(env)
    if "HOROVOD_GLOO_RENDEZVOUS_ADDR" in env:  # horovodrun --gloo
        if not hvd.gloo_built():
            raise UserError(f"{image}'s Horovod was built without Gloo, which horovodrun "
                            f"--gloo needs: {_FIX_IMAGE}")
    elif len(hosts) > 1 and not hvd.mpi_built():
        raise UserError(f"{image}'s Horovod was built without MPI, which a {len(hosts)}-instance "
                        f"job needs: {_FIX_IMAGE}")
    if int(env.get("SM_NUM_GPUS") or 0) > 0 and not hvd.nccl_built():
        raise UserError(f"{image}'s Horovod was built without NCCL, which GPU instances "
                        f"({env.get('SM_CURRENT_INSTANCE_TYPE') or 'this job'}) need: "
                        f"{_FIX_IMAGE}")


def check_world(hvd, env: Mapping[str, str]) -> None:
    """After ``hvd.init()``: the ranks are the job's hosts x processes_per_host, P of them on
    each instance, this one on the instance mpirun placed it on. Only for processes the
    job's launcher started (it sets REVIEWLAKE_PROCESSES_PER_HOST)."""
    if not env.get(PROCESSES_ENV):
        return
    hosts = hosts_of(env)
    per_host = processes_per_host(env)
    want = (len(hosts) * per_host, per_host, len(hosts))
    got = (hvd.size(), hvd.local_size(), hvd.cross_size())
    if got != want:
        raise UserError(
            f"rank {hvd.rank()}: Horovod has {got[0]} process(es), {got[1]} on this instance, "
            f"{got[2]} instance(s); the job has {len(hosts)} instance(s) x {per_host} "
            f"processes_per_host = {want[0]}: every instance's train files must be read and the "
            "learning rate scaled by that total, so the launch is wrong (the mpirun -np)")
    order = json.loads(env[HOSTS_ENV]) if env.get(HOSTS_ENV) else None
    current = env.get("SM_CURRENT_HOST")
    if order and current and len(order) == len(hosts) and order[hvd.cross_rank()] != current:
        raise UserError(f"rank {hvd.rank()} runs on {current}, but mpirun's host order "
                        f"puts it on {order[hvd.cross_rank()]}")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        check_horovod(env)
        hps = parse_hyperparameters(argv, env)
        channels = {name: channel_dir(name, env) for name in CHANNELS}
        view = features_view(channels, tempfile.mkdtemp(prefix="reviewlake-features-"))
        checkpoint_dir = str(hps.get("checkpoint_dir") or DEFAULT_CHECKPOINTS)
        spec = train_spec(hps, view, env.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR), checkpoint_dir)
        from ..train.worker import train

        train(spec, on_init=lambda hvd: check_world(hvd, env))
    except UserError as exc:
        print(f"reviewlake train (sagemaker): error: {exc}", file=sys.stderr)
        write_failure(str(exc))
        return exc.exit_code
    return 0
