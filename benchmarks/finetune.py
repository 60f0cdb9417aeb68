"""Fine-tuning: a pretrained encoder against the same architecture from random init.

    python benchmarks/finetune.py [--rows 20000] [--epochs 2] [--steps 40] [--batch-size 16]
                                  [--learning-rate 5e-5] [--max-seq-length 64] [--np 2]

Features come from the real upstream stages (generate -> ingest -> prepare with the encoder's
own tokenizer, ``--tokenizer MODEL``; cached under benchmarks/_work), split 80/10/10 so the
test split is not tiny. Then two fresh `reviewlake train` processes on those same features,
with the same processes, epochs, steps, batch, learning rate, warm-up and seed:

* ``--model MODEL`` (``init: pretrained``): the encoder's weights, fine-tuned;
* ``--model MODEL --init random``: the same architecture (its config.json), freshly
  initialised from the seed, trained the same way.

MODEL defaults to all-MiniLM-L6-v2 as `make setup` unpacks it (6 layers, hidden 384). The
table gives each side's test accuracy and macro F1 (metrics.json, the whole test split), the
Spark MLlib baseline's test accuracy on the same split (fitted once, by the first run: both
runs share the features, so it is the same model), the training time (the epochs, validation
included, from metrics.json's history), the command's wall time (start-up, evaluation,
export and, for the first run, the baseline), and the difference in accuracy. One run per
side: the comparison is of accuracy after a fixed budget, not of speed (the two sides do the
same arithmetic per step).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, WORK, machine, prepared_features, save, table

MINILM = Path.home() / ".cache" / "reviewlake" / "models" / "all-MiniLM-L6-v2"
SPLIT = [0.8, 0.1, 0.1]


def features_dir(rows: int, max_seq_length: int, model: Path) -> str:
    """Prepared features of `rows` generated reviews, tokenized with the encoder's
    vocabulary (cached)."""
    return prepared_features(f"finetune_{rows}_{max_seq_length}_{model.name}", rows, seed=5,
                             files=2, settings=[f"prepare.tokenizer={model}",
                                                f"prepare.max_seq_length={max_seq_length}",
                                                f"prepare.split={json.dumps(SPLIT)}"])


def child_env() -> dict[str, str]:
    """The training processes import this checkout's reviewlake (lib/), whatever is installed."""
    path = os.pathsep.join(filter(None, [str(ROOT / "lib"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    # transformers sets TF_USE_LEGACY_KERAS in a process that loaded its TF models; TF 2.15
    # would then want tf_keras in the children
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def train_run(features: str, model: Path, init: str, args, baseline: bool) -> dict:
    out = WORK / f"finetune_out_{init}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "reviewlake.cli", "train", "--input", features,
           "--output", str(out), "--np", str(args.np), "--epochs", str(args.epochs),
           "--steps-per-epoch", str(args.steps), "--batch-size", str(args.batch_size),
           "--learning-rate", str(args.learning_rate), "--seed", str(args.seed),
           "--model", str(model), "--init", init,
           "--set", f"train.warmup_epochs={args.warmup_epochs}",
           "--set", "train.tensorboard=false", "--set", f"train.baseline={str(baseline).lower()}",
           "--set", "spark.log_level=ERROR"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env())
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"train run failed (--init {init}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    if (m.get("encoder") or {}).get("init") != init:
        sys.exit(f"the run recorded encoder {m.get('encoder')}, not init {init}: is another "
                 f"reviewlake than {ROOT / 'lib'} on the path?")
    return {"init": init, "test_accuracy": m["test"]["accuracy"], "test_count": m["test"]["count"],
            "macro_f1": (m.get("macro_avg") or {}).get("f1"),
            "validation_accuracy": m["validation"]["accuracy"],
            "train_accuracy": m["train"]["accuracy"],
            "baseline_accuracy": ((m.get("baseline") or {}).get("test") or {}).get("accuracy"),
            "baseline_model": (m.get("baseline") or {}).get("model"),
            "train_seconds": sum(h["seconds"] for h in m["history"]), "wall_seconds": wall,
            "history": m["history"], "world_size": m["world_size"],
            "steps_per_epoch": m["steps_per_epoch"], "learning_rate": m["learning_rate"],
            "encoder": m["encoder"]}


def fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000,
                    help="generated reviews (about a quarter survive class balancing)")
    ap.add_argument("--model", type=Path, default=MINILM, help="pretrained encoder directory")
    ap.add_argument("--max-seq-length", type=int, default=64)
    ap.add_argument("--np", type=int, default=2, help="training processes")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40, help="steps per epoch")
    ap.add_argument("--batch-size", type=int, default=16, help="per process")
    ap.add_argument("--learning-rate", type=float, default=5e-5,
                    help="per process (scaled by --np), the same for both sides")
    ap.add_argument("--warmup-epochs", type=int, default=1,
                    help="the learning rate's warm-up (whole epochs), the same for both")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if not (args.model / "config.json").is_file():
        sys.exit(f"no pretrained encoder at {args.model}: `make setup` unpacks all-MiniLM-L6-v2 "
                 "(or pass --model DIR)")
    import reviewlake

    print(f"reviewlake from {Path(reviewlake.__file__).parent}", flush=True)

    features = features_dir(args.rows, args.max_seq_length, args.model)
    meta = json.loads((Path(features) / "_meta.json").read_text())
    counts = {k: v["count"] for k, v in meta["splits"].items()}
    runs = [train_run(features, args.model, "pretrained", args, baseline=True),
            train_run(features, args.model, "random", args, baseline=False)]
    pre, rnd = runs
    baseline = pre["baseline_accuracy"]
    for r in runs:   # one baseline for both: the same features, so the same fit
        r["baseline_accuracy"] = baseline
    rows = [[r["init"], fmt(r["test_accuracy"]), fmt(r["macro_f1"]), fmt(baseline),
             f"{r['train_seconds']:.1f}", f"{r['wall_seconds']:.1f}",
             f"{r['train_seconds'] / pre['train_seconds']:.2f}"] for r in runs]
    diff = pre["test_accuracy"] - rnd["test_accuracy"]
    f1_diff = None if pre["macro_f1"] is None or rnd["macro_f1"] is None \
        else pre["macro_f1"] - rnd["macro_f1"]
    rows.append(["pretrained - random", f"{diff:+.3f}", fmt(f1_diff, "+.3f"), "-", "-", "-", "-"])
    mc = machine()
    seen = args.epochs * args.steps * args.batch_size * args.np
    text = table(f"finetune: {args.model.name} pretrained vs the same architecture from random "
                 f"init; {counts['train']:,} train / {counts['test']:,} test reviews (5 classes, "
                 f"balanced), max_seq_length {args.max_seq_length}, {args.np} processes x batch "
                 f"{args.batch_size}, {args.epochs} epochs x {args.steps} steps ({seen:,} "
                 f"samples), learning rate {args.learning_rate:g} per process, seed {args.seed}; "
                 f"one run each, {mc['cores']} cores",
                 ["init", "test accuracy", "macro F1", "baseline accuracy", "train s (epochs)",
                  "wall s (command)", "time ratio"], rows)
    text += (f"\n\nThe baseline is {pre['baseline_model'] or 'the MLlib baseline'} on the same "
             f"splits. Chance is 0.200. Validation accuracy after the last epoch: pretrained "
             f"{fmt(pre['validation_accuracy'])}, random {fmt(rnd['validation_accuracy'])}.")
    print(text)
    save("finetune", {"rows": args.rows, "splits": counts, "settings": vars(args) | {
        "model": str(args.model)}, "runs": runs, "accuracy_difference": diff,
        "macro_f1_difference": f1_diff, "baseline_accuracy": baseline, "table": text,
        "goals": []})


if __name__ == "__main__":
    main()
