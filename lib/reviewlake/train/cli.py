"""``reviewlake train`` and ``reviewlake predict``."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..cli import add_common, load_config
from ..errors import UserError
from ..fs import is_remote
from .remote import is_s3
from .spec import INIT_MODES, LAUNCH_OPTIONS, TrainSpec

# train.<key> in the profile <- flag
FLAGS = {
    "epochs": "epochs", "batch_size": "batch_size", "learning_rate": "learning_rate",
    "epsilon": "epsilon", "steps_per_epoch": "steps_per_epoch", "model": "model", "init": "init",
    "freeze_bert": "freeze_bert", "use_amp": "use_amp", "use_xla": "use_xla",
    "resume": "resume", "seed": "seed",
}


def register(sub) -> None:
    p = sub.add_parser("train", help="DistilBERT classifier of star_rating with Horovod")
    add_common(p)
    p.add_argument("--input", metavar="FEATURES", help="prepare's output (default: data.features)")
    p.add_argument("--output", metavar="MODEL", help="model directory (default: data.model)")
    p.add_argument("--np", type=int, help="training processes (default: train.np)")
    p.add_argument("--hosts", help="horovodrun hosts, e.g. h1:4,h2:4 (default: this machine)")
    p.add_argument("--launcher", choices=["horovodrun", "spark"],
                   help="horovodrun (default) or horovod.spark.run on the Spark cluster")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--learning-rate", type=float, help="per process, scaled by processes")
    p.add_argument("--epsilon", type=float, help="Adam epsilon")
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the train split")
    p.add_argument("--model", help="tiny | distilbert-base | a pretrained directory")
    p.add_argument("--init", choices=INIT_MODES,
                   help="with --model DIR: its weights (pretrained, the default) or the same "
                        "architecture from random init, seeded by --seed")
    p.add_argument("--freeze-bert", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--use-amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision on GPUs")
    p.add_argument("--use-xla", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="continue from MODEL/checkpoints")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="star ratings for texts with a trained model")
    add_common(q)
    q.add_argument("--model", metavar="MODEL", help="trained model directory (default: data.model)")
    q.add_argument("--json", action="store_true", help="one JSON object per text")
    q.add_argument("texts", nargs="*", metavar="TEXT", help="review texts (default: stdin lines)")
    q.set_defaults(func=cmd_predict)


def spec_from_config(cfg, allow_s3: bool = False) -> TrainSpec:
    """With ``allow_s3`` (the Spark launcher) input and output may be S3 prefixes."""
    section = dict(cfg.section("train"))
    for key in LAUNCH_OPTIONS:
        section.pop(key, None)
    section["input"] = cfg.get("data.features")
    section["output"] = cfg.get("data.model")
    if not section["input"]:
        raise UserError("no input given: pass --input FEATURES or set data.features")
    if not section["output"]:
        raise UserError("no output given: pass --output MODEL or set data.model")
    for key in ("input", "output"):
        if allow_s3 and is_s3(str(section[key])):
            continue
        if is_remote(str(section[key])):
            raise UserError(f"train reads and writes local (or mounted) paths, or S3 with "
                            f"--launcher spark, got {section[key]}; on SageMaker use "
                            "reviewlake launch sagemaker --stage train")
        section[key] = os.path.abspath(str(section[key]))
    model = str(section.get("model") or "")
    if is_remote(model):
        raise UserError(f"--model {model}: train does not stage a remote encoder; copy the "
                        "directory to local disk on every training host (on EMR, a bootstrap "
                        "action running aws s3 cp --recursive) and pass that path")
    return TrainSpec.from_dict(section).validate()


def train_config(args: argparse.Namespace):
    """The profile with ``reviewlake train``'s flags applied."""
    flags = {f"train.{key}": getattr(args, attr) for key, attr in FLAGS.items()}
    flags.update({"data.features": args.input, "data.model": args.output, "train.np": args.np,
                  "train.hosts": args.hosts, "train.launcher": args.launcher})
    return load_config(args, flags)


def cmd_train(args: argparse.Namespace) -> int:
    print(summary(run(train_config(args))))
    return 0


def run(cfg, spark=None) -> dict:
    """The stage from a loaded profile; returns metrics.json (also used by the pipeline)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before Horovod loads TensorFlow
    from .launch import run_horovodrun, run_spark
    from .meta import load_features

    launcher = cfg.get("train.launcher") or "horovodrun"
    spec = spec_from_config(cfg, allow_s3=launcher == "spark")
    in_s3 = is_s3(spec.input) or is_s3(spec.output)
    if in_s3 and not (is_s3(spec.input) and is_s3(spec.output)):
        raise UserError(f"--input {spec.input} and --output {spec.output}: with S3, both must "
                        "be S3 prefixes")
    if in_s3:
        from ..aws import aws_errors
        from .remote import _s3, read_meta

        with aws_errors(f"reading {spec.input}"):
            read_meta(_s3(), spec.input)  # one-line errors before any process starts
    else:
        load_features(spec.input)
    np = int(cfg.get("train.np") or 1)
    if np < 1:
        raise UserError(f"--np must be at least 1, got {np}")
    if launcher == "spark":
        from ..session import get_spark

        metrics = run_spark(spark or get_spark(cfg, "train"), spec, np)
    else:
        code = run_horovodrun(spec, np, cfg.get("train.hosts"), cfg.get("train.controller", "auto"))
        if code != 0:
            raise UserError(f"training failed (exit {code}); the log above says why", exit_code=1)
    if not in_s3:  # with S3 the metrics come back from rank 0 (run_spark)
        with open(os.path.join(spec.output, "metrics.json"), encoding="utf-8") as fh:
            metrics = json.load(fh)
        if cfg.get("train.baseline", True):
            metrics = with_baseline(cfg, spark, spec, metrics)
    metrics["output"] = spec.output
    return metrics


def with_baseline(cfg, spark, spec, metrics: dict) -> dict:
    """Fit the MLlib baseline on the same splits; metrics.json and the report show both."""
    from ..session import get_spark
    from .baseline import attach, fit_baseline
    from .meta import load_features

    features = load_features(spec.input)
    baseline = fit_baseline(spark or get_spark(cfg, "train-baseline"), spec.input,
                            features.meta, cfg.get("train.baseline_options") or None)
    metrics = attach(metrics, baseline)
    with open(os.path.join(spec.output, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(metrics, fh, indent=2)
    report = os.path.join(spec.output, "classification_report.txt")
    if os.path.exists(report):
        with open(report, "a", encoding="utf-8") as fh:
            fh.write(f"\nbaseline ({baseline['model']}): test accuracy "
                     f"{baseline['test']['accuracy']:.4f} on {baseline['test']['count']} "
                     f"reviews{'' if metrics['beats_baseline'] else '; THE MODEL DOES NOT BEAT IT'}\n")
    return metrics


def summary(m: dict) -> str:
    out = m["output"]
    enc = m.get("encoder") or {}
    init = f", encoder {enc['init']}" if enc.get("init") else ""
    return (f"train ok: {m['world_size']} process(es), {m['epochs']} epochs{init}, "
            f"{m['samples_per_second']:.0f} samples/s\n"
            f"  train      loss {m['train']['loss']:.4f}  accuracy {m['train']['accuracy']:.4f}\n"
            f"  validation loss {m['validation']['loss']:.4f}  accuracy {m['validation']['accuracy']:.4f}\n"
            f"  test       loss {m['test']['loss']:.4f}  accuracy {m['test']['accuracy']:.4f}"
            f"  ({m['test']['count']} reviews)\n"
            + _baseline_line(m) +
            f"  model {out}/saved_model, report {out}/classification_report.txt")


def _baseline_line(m: dict) -> str:
    b = m.get("baseline")
    if not b:
        return ""
    line = (f"  test accuracy {m['test']['accuracy']:.2f}, baseline {b['test']['accuracy']:.2f} "
            f"({b['model']})")
    if not m.get("beats_baseline", True):
        line += "  WARNING: the model does not beat its baseline"
    return line + "\n"


def cmd_predict(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .predict import Predictor

    cfg = load_config(args, {"data.model": args.model})
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise UserError("no texts given: pass them as arguments or one per line on stdin")
    predictor = Predictor(str(cfg.get("data.model")))
    for row in predictor.predict(texts):
        if args.json:
            print(json.dumps(row))
        else:
            probs = " ".join(f"{k}:{v:.3f}" for k, v in row["probabilities"].items())
            text = row["text"] if len(row["text"]) <= 60 else row["text"][:57] + "..."
            print(f"{row['star_rating']}\t{probs}\t{text}")
    return 0
