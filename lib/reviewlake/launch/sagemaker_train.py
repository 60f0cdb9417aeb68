"""Inside a SageMaker training job: the same training function, fed by SageMaker's channels.

SageMaker's MPI driver starts ``processes_per_host`` copies of ``jobs/sagemaker_train.py`` on
every instance (``mpirun ... python -m mpi4py sagemaker_train.py --epochs 3 ...``: the
hyperparameters as ``--key value`` with JSON values). Each process:

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


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        hps = parse_hyperparameters(argv, env)
        channels = {name: channel_dir(name, env) for name in CHANNELS}
        view = features_view(channels, tempfile.mkdtemp(prefix="reviewlake-features-"))
        checkpoint_dir = str(hps.get("checkpoint_dir") or DEFAULT_CHECKPOINTS)
        spec = train_spec(hps, view, env.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR), checkpoint_dir)
        from ..train.worker import train

        train(spec)
    except UserError as exc:
        print(f"reviewlake train (sagemaker): error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
