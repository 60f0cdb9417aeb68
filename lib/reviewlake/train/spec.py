"""Every option of a training run, in one serialisable object shared by all processes."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

MODEL_SIZES = ("tiny", "distilbert-base")
# How the train split's files reach the processes: "global": every process sees every file
# and takes its share by rank; "host": each host holds only its own share of the files
# (SageMaker's ShardedByS3Key channel) and its processes split that share by local rank.
SHARD_MODES = ("global", "host")
# The encoder's weights with --model DIR: "pretrained": the directory's weights; "random": the
# same architecture (its config.json) freshly initialised from the run's seed, the weights file
# unread (the from-scratch side of a fine-tuning comparison). tiny and distilbert-base are
# random either way.
INIT_MODES = ("pretrained", "random")


# train section keys of a profile that are not TrainSpec fields: how to launch the workers,
# and the baseline the driver fits after them (``reviewlake train``, the pipeline)
LAUNCH_OPTIONS = ("np", "hosts", "launcher", "controller", "baseline", "baseline_options")


@dataclass
class TrainSpec:
    input: str                        # FEATURES directory written by prepare
    output: str                       # MODEL directory
    epochs: int = 3
    batch_size: int = 64              # per process
    learning_rate: float = 3e-5       # per process; scaled by the number of processes
    epsilon: float = 1e-8
    warmup_epochs: float = 1.0        # learning-rate warm-up (Goyal et al.), in epochs
    steps_per_epoch: int | None = None    # default: one pass over the training split
    validation_steps: int | None = None   # default: one pass over the validation split
    model: str = "tiny"               # tiny | distilbert-base | a pretrained directory
    init: str = "pretrained"          # see INIT_MODES
    freeze_bert: bool = False
    use_amp: bool = False             # mixed precision (float16) on GPUs
    use_xla: bool = False             # XLA JIT compilation
    resume: bool = False              # continue from the checkpoints if present
    checkpoint_dir: str | None = None     # default: OUTPUT/checkpoints
    shard: str = "global"             # see SHARD_MODES
    seed: int = 42
    shuffle_buffer: int = 10000
    lstm_units: int = 50              # the book's head: BiLSTM -> max pool -> dense -> dropout
    dense_units: int = 50
    dropout: float = 0.1
    tiny: dict[str, Any] = field(default_factory=lambda: {
        "dim": 64, "n_layers": 2, "n_heads": 2, "hidden_dim": 256,
        "dropout": 0.1, "attention_dropout": 0.1})
    tensorboard: bool = True
    intra_op_threads: int = 0         # CPU threads per process; 0: cores / local processes
    inter_op_threads: int = 0         # 0: min(2, intra_op_threads)
    sparse_as_dense: bool | None = None   # embedding gradients all-reduced dense (True) or
                                          # allgathered (False); null: chosen by device and
                                          # world size (worker.choose_sparse_as_dense)
    cycle_time_ms: float | None = None    # Horovod's cycle time; null: 10 ms on CPU-only hosts
                                          # (measured), Horovod's own default (1 ms) with GPUs

    def validate(self) -> "TrainSpec":
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise UserError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.init not in INIT_MODES:
            raise UserError(f"--init must be one of {', '.join(INIT_MODES)}, got {self.init!r}")
        if self.shard not in SHARD_MODES:
            raise UserError(f"shard must be one of {', '.join(SHARD_MODES)}, got {self.shard!r}")
        if self.cycle_time_ms is not None and not self.cycle_time_ms > 0:
            raise UserError(f"train.cycle_time_ms must be positive, got {self.cycle_time_ms}")
        if self.warmup_epochs < 0 or self.warmup_epochs != int(self.warmup_epochs):
            # Horovod's LearningRateWarmupCallback tests the whole epoch against its end, so a
            # fractional warm-up ramps on to the end of that epoch and leaves the rate above
            # the target (0.5 epochs, 2 processes: 1.5x, measured in metrics.json's history).
            raise UserError(f"train.warmup_epochs must be a whole number of epochs (0: none), "
                            f"got {self.warmup_epochs}")
        if self.sparse_as_dense not in (None, True, False):
            raise UserError(f"train.sparse_as_dense must be true, false or null (chosen by "
                            f"device and world size), got {self.sparse_as_dense!r}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise UserError(f"--steps-per-epoch must be at least 1, got {self.steps_per_epoch}")
        return self

    @property
    def encoder_init(self) -> str:
        """How the encoder's weights start: "random" for the sizes built from a config."""
        return "random" if self.model in MODEL_SIZES else self.init

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainSpec":
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown train option(s) {', '.join(unknown)} in the profile's train section")
        if isinstance(data.get("tiny"), dict):   # keys given (e.g. tiny.dropout) over the defaults
            data = dict(data, tiny={**cls.__dataclass_fields__["tiny"].default_factory(),
                                    **data["tiny"]})
        return cls(**data)
