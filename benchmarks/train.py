"""Horovod scaling and the input pipeline of the train stage.

    python benchmarks/train.py [--records 20000] [--epochs 3] [--steps 40] [--repeats 3]

Features come from the real upstream stages (generate -> ingest -> prepare, cached under
benchmarks/_work). Every training run is a fresh `reviewlake train` process (`--np 1` or
`--np 2`, Gloo), the tiny model, batch 64 per process; the figure is the steady-state
samples/s of metrics.json (the epochs after the first, which carries graph tracing).

Sides:
* 2 processes, one core each (Horovod all-reduce over Gloo): the goal's numerator; and the
  same at Horovod's default cycle time (1 ms; the train stage uses 10 ms on CPU-only hosts,
  train.cycle_time_ms), the before/after of that setting;
* 1 process on one core: the goal's denominator. Horovod's scaling is per worker (one GPU, or
  one CPU slot): a second worker brings its own device, so each process gets one core
  (train.intra_op_threads=1), as it gets one GPU on a GPU machine;
* 1 process on both cores (reference): what a single process makes of the whole machine;
* the tf.data input pipeline alone (one process, one core, the training pipeline: interleaved
  TFRecord reads, shuffle, batch, parse) against the 1-process training step rate.

Goals: 2 processes >= 1.6x one; input pipeline >= 10x the training step rate.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from common import ROOT, WORK, goal, goal_lines, machine, med, prepared_features, save, table

GOAL_SCALING = 1.6
GOAL_INPUT = 10.0
BATCH = 64


def features_dir(records: int) -> str:
    """Prepared features with about `records` train records (cached)."""
    # Balanced classes keep about 25% of generated reviews; 90% of those train.
    rows = int(records / 0.9 / 0.24) + 1000
    return prepared_features(f"train_{records}", rows, seed=3, files=4,
                             settings=["prepare.vocab_size=8000", "prepare.min_files=4"])


def train_command(features: str, out, np: int, threads: int, epochs: int, steps: int,
                  extra: list[str] = ()) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(ROOT / ".venv" / "bin" / "reviewlake"), "train", "--input", features,
           "--output", str(out), "--np", str(np), "--epochs", str(epochs),
           "--batch-size", str(BATCH), "--steps-per-epoch", str(steps),
           "--set", f"train.intra_op_threads={threads}", "--set", "train.tensorboard=false"]
    for item in extra:
        cmd += ["--set", item]
    if not os.path.exists(cmd[0]):
        cmd[0:1] = [sys.executable, "-m", "reviewlake.cli"]
    return cmd


def train_run(features: str, np: int, threads: int, epochs: int, steps: int,
              extra: list[str] = ()) -> dict:
    out = WORK / "train_out"
    cmd = train_command(features, out, np, threads, epochs, steps, extra)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"train run failed (np {np}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"samples_per_second": metrics["samples_per_second"], "wall_seconds": wall,
            "test_accuracy": metrics["test"]["accuracy"]}


def independent_pair(features: str, epochs: int, steps: int, extra: list[str] = ()) -> dict:
    """Two single-process runs at once, one core each, no Horovod: the most two processes can
    make of this machine (the ceiling of the 2-process side, communication aside)."""
    outs = [WORK / f"train_pair_{i}" for i in range(2)]
    cmds = [train_command(features, out, 1, 1, epochs, steps, extra) for out in outs]
    procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for c in cmds]
    logs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit("independent train runs failed:\n" + "\n".join(l[-2000:] for l in logs))
    sps = [json.loads((out / "metrics.json").read_text())["samples_per_second"] for out in outs]
    return {"samples_per_second": sum(sps), "each": sps}


def input_pipeline_rate(features: str, batches: int) -> float:
    """Records/s of the training input pipeline alone, one process pinned to one core's
    worth of TensorFlow threads (a fresh interpreter, like a training process)."""
    code = f"""
import os, time, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from reviewlake.train.data import make_dataset
from reviewlake.train.meta import load_features
f = load_features({features!r})
ds = make_dataset(f, "train", {BATCH}, shuffle=True, repeat=True, seed=1)
it = iter(ds)
for _ in range(20):
    next(it)
start = time.perf_counter()
for _ in range({batches}):
    next(it)
print(json.dumps({{"records_per_second": {batches} * {BATCH} / (time.perf_counter() - start)}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT / "lib")))
    if proc.returncode != 0:
        sys.exit(f"input pipeline run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["records_per_second"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20000, help="train records (about)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="steps per epoch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=400, help="input pipeline batches timed")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (file caches)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="train settings for every run, e.g. train.sparse_as_dense=false")
    args = ap.parse_args()
    if args.epochs < 2:
        args.epochs = 2   # the first epoch traces the graph; the figure is the later ones

    features = features_dir(args.records)
    # (processes, threads per process, extra settings)
    sides = {"np2": (2, 1, []), "np2_1ms": (2, 1, ["train.cycle_time_ms=1"]),
             "np1": (1, 1, []), "np1_all_cores": (1, os.cpu_count() or 2, [])}
    runs: dict[str, list[dict]] = {k: [] for k in sides}
    pipeline: list[float] = []
    pairs: list[float] = []
    for _ in range(args.warmup):      # file caches, compiled kernels on disk
        train_run(features, 1, 1, 2, 5)
    for _ in range(args.repeats):     # alternate the sides
        for name, (np, threads, extra) in sides.items():
            runs[name].append(train_run(features, np, threads, args.epochs, args.steps,
                                        args.extra + extra))
        pairs.append(independent_pair(features, args.epochs, args.steps, args.extra)
                     ["samples_per_second"])
        pipeline.append(input_pipeline_rate(features, args.batches))
    sps = {k: med([r["samples_per_second"] for r in v]) for k, v in runs.items()}
    wall = {k: med([r["wall_seconds"] for r in v]) for k, v in runs.items()}
    feed = med(pipeline)
    ceiling = med(pairs)
    scaling = sps["np2"] / sps["np1"]
    input_ratio = feed / sps["np1"]
    labels = {"np2": "2 Horovod processes (Gloo), 1 core each",
              "np2_1ms": "the same at Horovod's default 1 ms cycle time (before)",
              "np1": "1 process, 1 core (the goal's baseline)",
              "np1_all_cores": f"1 process, {sides['np1_all_cores'][1]} cores (reference)"}
    rows = [[labels[k], f"{sps[k]:,.0f}", f"{wall[k]:.1f}", f"{sps[k] / sps['np1']:.2f}"]
            for k in labels]
    rows.append(["2 independent 1-process runs at once, 1 core each, no Horovod (ceiling)",
                 f"{ceiling:,.0f}", "-", f"{ceiling / sps['np1']:.2f}"])
    rows.append(["tf.data input pipeline alone, 1 core (records/s)", f"{feed:,.0f}", "-",
                 f"{feed / sps['np1']:.2f}"])
    mc = machine()
    text = table(f"train: tiny DistilBERT + BiLSTM head, batch {BATCH}/process, "
                 f"{args.epochs} epochs x {args.steps} steps, steady-state samples/s, median of "
                 f"{args.repeats}, {mc['cores']} cores",
                 ["side", "samples/s", "wall s (incl. start-up)", "vs 1 process"], rows)
    goals = [goal("2 processes samples/s / 1 process samples/s", scaling, GOAL_SCALING),
             goal("input pipeline records/s / training samples/s (1 process)", input_ratio,
                  GOAL_INPUT)]
    text += (f"\n\nHorovod efficiency on this machine: 2 processes make {sps['np2'] / ceiling:.0%} "
             f"of what two independent processes make ({scaling:.2f}x of one process against "
             f"a ceiling of {ceiling / sps['np1']:.2f}x).")
    print(text)
    print(goal_lines(goals))
    save("train", {"independent_pair_samples_per_second": pairs, "ceiling": ceiling / sps["np1"],"records": args.records, "settings": args.extra, "runs": runs, "samples_per_second": sps,
                   "input_pipeline_records_per_second": pipeline, "scaling": scaling,
                   "input_ratio": input_ratio, "table": text, "goals": goals})


if __name__ == "__main__":
    main()
