"""The training function every Horovod process runs.

``train(spec)`` is launched once per GPU (or CPU slot) by horovodrun, horovod.spark.run,
the SageMaker job's mpirun (jobs/sagemaker_launch.py), or runs alone. Each process:

* pins the GPU of its local rank (when there are GPUs) and turns on mixed precision / XLA
  when asked;
* reads its own shard of the TFRecords (whole files when there are enough of them; with
  ``shard="host"`` its share of the files its host holds, as SageMaker's sharded channels
  deliver them);
* trains with ``hvd.DistributedOptimizer`` (gradients averaged by all-reduce), the learning
  rate scaled by the number of processes with a warm-up, the initial state broadcast from
  rank 0 and metrics averaged over processes.

Rank 0 alone checkpoints after every epoch (weights, optimizer state, epoch and history),
so ``resume=True`` continues an interrupted run to the same number of epochs, and writes the
outputs: ``saved_model/``, ``tokenizer/``, ``metrics.json``, ``confusion_matrix.png``,
``classification_report.txt`` and TensorBoard logs.

``python -m reviewlake.train.worker --spec SPEC.json`` is the process entry point.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("reviewlake.train")

CHECKPOINTS = "checkpoints"
HISTORY = "history.json"
LABEL_NAMES = ["1", "2", "3", "4", "5"]


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


# Horovod's background thread wakes every cycle time to negotiate and fuse the all-reduces.
# Its default (1 ms) suits GPUs, where the thread has a core of its own; where the training
# processes share the CPU cores, 1 ms polling takes cycles from the steps: on 2 cores, 2
# processes made 1.54x one at 1 ms, 1.59x at 5, 1.67x at 10 (medians of 3 runs) and 1.43x
# at 25 (a longer wait for every negotiation); benchmarks/NOTES.md.
CPU_CYCLE_TIME_MS = 10.0


def set_cycle_time(spec, tf) -> float | None:
    """Set HOROVOD_CYCLE_TIME for this process before ``hvd.init()`` (which reads it), unless
    the environment already has it (horovodrun --cycle-time-ms, a user's export); returns the
    value in force, None for Horovod's default."""
    given = os.environ.get("HOROVOD_CYCLE_TIME")
    if given:
        return float(given)
    value = spec.cycle_time_ms
    if value is None:
        if tf.config.list_physical_devices("GPU"):
            return None
        value = CPU_CYCLE_TIME_MS
    os.environ["HOROVOD_CYCLE_TIME"] = str(value)
    return float(value)


def _setup_devices(spec, hvd, tf) -> dict:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        # Processes sharing a machine's cores: give each its share instead of letting every
        # process start one thread per core (oversubscription slows all of them down).
        cores = os.cpu_count() or 1
        threads = spec.intra_op_threads or max(1, cores // hvd.local_size())
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(
            spec.inter_op_threads or max(1, min(2, threads)))
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if gpus:
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
    amp = bool(spec.use_amp and gpus)
    if amp:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    elif spec.use_amp and hvd.rank() == 0:
        log.warning("--use-amp: no GPU here, training in float32")
    if spec.use_xla:
        tf.config.optimizer.set_jit(True)
    return {"gpus": len(gpus), "mixed_precision": amp, "xla": bool(spec.use_xla),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()}


def choose_sparse_as_dense(setting: bool | None, gpus: int, size: int, batch: int,
                           length: int, vocab: int) -> tuple[bool, str]:
    """Whether the embedding gradients (IndexedSlices) are all-reduced dense, fused with the
    other gradients (True), or allgathered as slices (False); and why.

    ``train.sparse_as_dense`` wins when set. Otherwise: with GPUs, dense (NCCL's all-reduce
    runs in Horovod's fusion buffer with every other gradient; an allgather of slices is
    not fused, exchanges its sizes first and moves values and indices separately). On CPUs,
    the fewer rows moved: an allgather brings each rank ``size x batch x length`` embedding
    rows, a ring all-reduce moves about ``2 x vocab x (size - 1) / size`` rows through it
    (on 2 CPU cores either was within noise for the tiny model, benchmarks/NOTES.md)."""
    if setting is not None:
        return bool(setting), "train.sparse_as_dense"
    if size <= 1:
        return False, "one process: nothing is exchanged"
    if gpus:
        return True, "GPUs: one fused NCCL all-reduce instead of unfused allgathers"
    gathered = size * batch * length
    reduced = 2 * vocab * (size - 1) / size
    if gathered >= reduced:
        return True, f"CPU: an allgather would move {gathered} rows, the all-reduce {reduced:.0f}"
    return False, f"CPU: an allgather moves {gathered} rows, the all-reduce would move {reduced:.0f}"


def export_tolerance(devices: dict) -> float:
    """How far the reloaded SavedModel's probabilities may be from the in-memory model's:
    float32 on CPUs agrees to ~1e-6; GPUs compute float32 matmuls in TF32 by default (Ampere
    and later) and XLA reorders sums, ~1e-3; mixed float16 keeps ~3 significant digits."""
    if devices.get("mixed_precision"):
        return 2e-2
    if devices.get("gpus") or devices.get("xla"):
        return 2e-3
    return 1e-4


def compare_export(expected, got, tolerance: float) -> dict:
    """The export check: the predicted classes agree (but where the trained model's top two
    probabilities are within 2 x tolerance, a tie the precision cannot order) and every
    probability is within the tolerance. Raises when either fails."""
    import numpy as np

    expected, got = np.asarray(expected, dtype=np.float64), np.asarray(got, dtype=np.float64)
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    top2 = np.sort(expected, axis=1)[:, -2:] if expected.shape[-1] > 1 else None
    margin = (top2[:, 1] - top2[:, 0]) if top2 is not None else np.full(len(expected), np.inf)
    flipped = (expected.argmax(axis=1) != got.argmax(axis=1)) & (margin > 2 * tolerance)
    result = {"max_abs_diff": diff, "tolerance": tolerance, "rows": int(len(expected)),
              "predictions_differ": int(flipped.sum())}
    if flipped.any() or diff > tolerance:
        raise RuntimeError(
            f"the exported SavedModel disagrees with the trained model: {result['predictions_differ']} "
            f"of {len(expected)} predicted classes differ, max probability difference {diff:.3g} "
            f"(tolerance {tolerance:g} for this precision)")
    return result


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.numpy().tobytes())
    return h.hexdigest()


def train(spec, on_checkpoint=None, on_init=None) -> dict:
    """Run one process of a (possibly distributed) training; returns rank 0's metrics.

    ``on_init(hvd)``, when given, runs right after ``hvd.init()`` (a launcher's check of the
    world it started, before anything is read or built). ``on_checkpoint(checkpoint_dir,
    epoch)`` is called on rank 0 after each epoch's checkpoint (``ckpt-<epoch>.*`` and
    ``history.json``) is written, before the next epoch (the Spark launcher uploads it to S3
    there)."""
    import numpy as np
    import tensorflow as tf

    _ = tf.keras.layers  # Keras 2 bound before transformers is imported
    import horovod.tensorflow as hvd_core
    import horovod.tensorflow.keras as hvd
    from transformers import DistilBertTokenizerFast

    from . import data, evaluate
    from .meta import load_features
    from .model import build_model, loss

    tf.get_logger().setLevel("ERROR")
    cycle_time = set_cycle_time(spec, tf)
    hvd.init()
    if on_init is not None:
        on_init(hvd)
    rank, size = hvd.rank(), hvd.size()
    devices = _setup_devices(spec, hvd, tf)
    devices["cycle_time_ms"] = cycle_time
    tf.keras.utils.set_random_seed(spec.seed)
    features = load_features(spec.input)
    length = features.max_seq_length
    tokenizer = DistilBertTokenizerFast.from_pretrained(features.tokenizer_dir)
    out = spec.output
    ckpt_dir = spec.checkpoint_dir or os.path.join(out, CHECKPOINTS)
    if rank == 0:
        os.makedirs(ckpt_dir, exist_ok=True)
        if not spec.resume:
            for name in os.listdir(ckpt_dir):
                path = os.path.join(ckpt_dir, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

    steps = spec.steps_per_epoch or data.steps_for(features.count("train"), spec.batch_size, size)
    val_steps = spec.validation_steps or data.steps_for(
        max(1, features.count("validation")), spec.batch_size, size)
    if features.count("train") < size:
        from ..errors import UserError

        raise UserError(f"the train split has {features.count('train')} records for {size} "
                        f"processes: prepare more data or start fewer processes")
    # Steps come from the global count: every process reads an exact share of count/size
    # records (within one), and an epoch of steps x batch is one pass over it plus at most
    # one batch (less than one per rank on average).
    shard_index, shard_count = data.shard_position(spec.shard, rank, size, hvd.local_rank(),
                                                   hvd.local_size())

    model = build_model(spec, len(tokenizer), length, features.num_labels)
    lr = spec.learning_rate * size
    dense, why = choose_sparse_as_dense(spec.sparse_as_dense, devices["gpus"], size,
                                        spec.batch_size, length, len(tokenizer))
    devices["sparse_as_dense"], devices["sparse_as_dense_why"] = dense, why
    optimizer = hvd.DistributedOptimizer(
        tf.keras.optimizers.legacy.Adam(learning_rate=lr, epsilon=spec.epsilon),
        sparse_as_dense=dense)
    model.compile(optimizer=optimizer, loss=loss(), metrics=["accuracy"])

    # Checkpoint state: weights, optimizer slots, epochs done. The slots exist before the
    # restore (so it fills them now, not at the first step), every rank that sees the
    # checkpoint restores it, and rank 0's whole state is broadcast before the first step:
    # no update is computed from another state than the checkpoint's.
    optimizer._create_all_weights(model.trainable_variables)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epochs_done=epoch_var)
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=3)
    history: list[dict] = []
    initial_epoch = 0
    if spec.resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        initial_epoch = int(epoch_var.numpy())
        hist_path = os.path.join(ckpt_dir, HISTORY)
        if os.path.exists(hist_path):
            with open(hist_path, encoding="utf-8") as fh:
                history = json.load(fh)[:initial_epoch]
        if rank == 0:
            print(f"resuming from {manager.latest_checkpoint} after epoch {initial_epoch}",
                  flush=True)
    if spec.resume and size > 1:
        # Hosts need not share a checkpoint directory (SageMaker restores one per host):
        # every rank continues from rank 0's epoch; its weights follow with the broadcast.
        initial_epoch, history = hvd_core.broadcast_object((initial_epoch, history), 0)
    if size > 1:
        hvd_core.broadcast_variables(model.variables + optimizer.variables(), root_rank=0)
    # Epoch e's order is a function of (seed, rank, e): a resumed run reads what the
    # uninterrupted run would have read.
    train_ds = data.make_dataset(features, "train", spec.batch_size, shard_index, shard_count,
                                 shuffle=True, repeat=True, seed=spec.seed,
                                 shuffle_buffer=spec.shuffle_buffer,
                                 epoch_records=steps * spec.batch_size, first_epoch=initial_epoch)
    val_ds = data.make_dataset(features, "validation", spec.batch_size, rank, size, repeat=True,
                               epoch_records=val_steps * spec.batch_size)

    timings: list[float] = []

    class EpochEnd(tf.keras.callbacks.Callback):
        """Rank 0: record the (averaged) epoch metrics and checkpoint everything."""

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._trained = None

        def on_test_begin(self, logs=None):   # fit's validation pass starts: training ends
            if self._trained is None:
                self._trained = time.perf_counter() - self._start

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self._start
            trained = self._trained if self._trained is not None else seconds
            timings.append(seconds)
            # samples/s counts the training steps only (not validation or the checkpoint)
            row = {"epoch": epoch + 1, "seconds": round(seconds, 3),
                   "train_seconds": round(trained, 3),
                   "samples_per_second": round(steps * spec.batch_size * size / trained, 1)}
            row.update({k: float(v) for k, v in (logs or {}).items()})
            history.append(row)
            if rank == 0:
                epoch_var.assign(epoch + 1)
                manager.save(checkpoint_number=epoch + 1)
                _atomic_write(os.path.join(ckpt_dir, HISTORY), json.dumps(history, indent=2))
                if on_checkpoint is not None:
                    on_checkpoint(ckpt_dir, epoch + 1)

    callbacks = [hvd.callbacks.MetricAverageCallback()]   # the state was broadcast above
    if spec.warmup_epochs > 0 and initial_epoch < spec.warmup_epochs:
        callbacks.append(hvd.callbacks.LearningRateWarmupCallback(
            initial_lr=lr, warmup_epochs=spec.warmup_epochs, steps_per_epoch=steps, verbose=0))
    callbacks.append(EpochEnd())
    if rank == 0 and spec.tensorboard:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=os.path.join(out, "tensorboard"),
                                                        update_freq="epoch"))

    if rank == 0:
        print(f"training on {size} process(es): {features.count('train')} train / "
              f"{features.count('validation')} validation records, batch {spec.batch_size} per "
              f"process, {steps} steps per epoch, learning rate {lr:g}, devices {devices}",
              flush=True)
    if initial_epoch < spec.epochs:
        model.fit(train_ds, epochs=spec.epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, validation_data=val_ds, validation_steps=val_steps,
                  callbacks=callbacks, verbose=2 if rank == 0 else 0)

    digests = hvd_core.allgather_object(weights_digest(model))
    if rank != 0:
        return {}

    # Evaluation on the whole test split, on rank 0.
    y_true, y_prob = [], []
    for inputs, labels in data.make_dataset(features, "test", 256, shard=False):
        y_prob.append(model(inputs, training=False).numpy())
        y_true.append(labels.numpy())
    y_true = np.concatenate(y_true) if y_true else np.zeros(0, dtype=np.int64)
    y_prob = np.concatenate(y_prob) if y_prob else np.zeros((0, features.num_labels))
    y_pred = y_prob.argmax(axis=1)
    test_loss = float(loss()(y_true, y_prob).numpy()) if len(y_true) else float("nan")
    cm = evaluate.confusion_matrix(y_true, y_pred, features.num_labels)
    stats = evaluate.per_class(cm, LABEL_NAMES[:features.num_labels])

    last = history[-1] if history else {}
    steady = [h["samples_per_second"] for h in history[1:]] or \
        [h["samples_per_second"] for h in history]
    metrics = {
        "train": {"loss": last.get("loss"), "accuracy": last.get("accuracy")},
        "validation": {"loss": last.get("val_loss"), "accuracy": last.get("val_accuracy")},
        "test": {"loss": test_loss, "accuracy": stats["accuracy"], "count": int(len(y_true))},
        "per_class": stats["classes"], "macro_avg": stats["macro_avg"],
        "weighted_avg": stats["weighted_avg"], "confusion_matrix": cm.tolist(),
        "labels": LABEL_NAMES[:features.num_labels],
        "world_size": size, "epochs": spec.epochs, "resumed_from_epoch": initial_epoch,
        "steps_per_epoch": steps, "batch_size_per_process": spec.batch_size,
        "learning_rate": lr, "samples_per_second": float(np.mean(steady)) if steady else None,
        "history": history, "weight_digests": digests,
        "ranks_consistent": len(set(digests)) == 1, "devices": devices,
        "model": spec.model, "max_seq_length": length, "features": os.path.abspath(spec.input),
        "encoder": {"model": spec.model, "init": spec.encoder_init, "frozen": spec.freeze_bert},
        "tokenizer_vocab_size": len(tokenizer),
        "lineage": features.lineage(),   # model -> features run -> lake table snapshot
    }
    probe_inputs = next(iter(data.make_dataset(features, "test", 8, shard=False)))[0]
    _export(model, tokenizer, features, spec, metrics, cm, stats, evaluate)
    metrics["export_check"] = _verify_export(model, probe_inputs, spec.output,
                                             export_tolerance(devices))
    metrics["export_max_abs_diff"] = metrics["export_check"]["max_abs_diff"]
    _atomic_write(os.path.join(spec.output, "metrics.json"), json.dumps(metrics, indent=2))
    print(f"test accuracy: {stats['accuracy']:.4f} ({len(y_true)} reviews); "
          f"test loss: {test_loss:.4f}", flush=True)
    return metrics


def _export(model, tokenizer, features, spec, metrics, cm, stats, evaluate) -> None:
    import tensorflow as tf

    out = spec.output
    length = features.max_seq_length

    @tf.function(input_signature=[tf.TensorSpec([None, length], tf.int32, name="input_ids"),
                                  tf.TensorSpec([None, length], tf.int32, name="input_mask")])
    def serve(input_ids, input_mask):
        probs = model({"input_ids": input_ids, "input_mask": input_mask}, training=False)
        return {"probabilities": probs, "star_rating": tf.argmax(probs, axis=1) + 1}

    saved = os.path.join(out, "saved_model")
    tmp = saved + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp, save_format="tf", save_traces=False, signatures={"serving_default": serve})
    shutil.rmtree(saved, ignore_errors=True)
    os.replace(tmp, saved)
    tok = os.path.join(out, "tokenizer")
    shutil.rmtree(tok, ignore_errors=True)
    tokenizer.save_pretrained(tok)
    _atomic_write(os.path.join(out, "model_config.json"), json.dumps({
        "max_seq_length": length, "labels": metrics["labels"], "label_offset": features.label_offset,
        "spec": json.loads(spec.to_json())}, indent=2))
    _atomic_write(os.path.join(out, "metrics.json"), json.dumps(metrics, indent=2))
    _atomic_write(os.path.join(out, "classification_report.txt"), evaluate.report_text(stats))
    evaluate.plot_confusion_matrix(cm, metrics["labels"], os.path.join(out, "confusion_matrix.png"),
                                   f"test accuracy {stats['accuracy']:.3f}")


def _verify_export(model, inputs, out: str, tolerance: float) -> dict:
    """Reload the SavedModel and compare it with the in-memory model on a few test reviews
    (:func:`compare_export`); the probe is kept (export_probe.json) so the check can be
    repeated anywhere."""
    import tensorflow as tf

    expected = model(inputs, training=False).numpy()
    serve = tf.saved_model.load(os.path.join(out, "saved_model")).signatures["serving_default"]
    got = serve(input_ids=inputs["input_ids"], input_mask=inputs["input_mask"])["probabilities"]
    result = compare_export(expected, got.numpy(), tolerance)
    _atomic_write(os.path.join(out, "export_probe.json"), json.dumps({
        "input_ids": inputs["input_ids"].numpy().tolist(),
        "input_mask": inputs["input_mask"].numpy().tolist(),
        "probabilities": expected.tolist()}))
    return result


def main(argv=None) -> int:
    from .spec import TrainSpec

    parser = argparse.ArgumentParser(prog="python -m reviewlake.train.worker")
    parser.add_argument("--spec", required=True, help="TrainSpec JSON written by the launcher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="reviewlake: %(message)s", stream=sys.stderr)
    logging.getLogger("reviewlake").setLevel(logging.INFO)
    with open(args.spec, encoding="utf-8") as fh:
        spec = TrainSpec.from_json(fh.read())
    from ..errors import UserError
    try:
        train(spec)
    except UserError as exc:
        print(f"reviewlake train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
