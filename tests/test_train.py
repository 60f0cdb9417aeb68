"""The train stage: real 2-process Horovod runs (Gloo), resume after a kill, predict."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import ROOT, VENV_BIN, config_for_tests, run_cli


@pytest.fixture(scope="module")
def features(tmp_path_factory, spark):
    """Real upstream output: a generated sample, ingested and prepared (balanced, 5 classes)."""
    from reviewlake.features.cli import run as prepare
    from reviewlake.generate import generate
    from reviewlake.ingest.job import run_ingest

    base = tmp_path_factory.mktemp("upstream")
    generate(rows=16000, output=base / "raw", seed=7, files=2)
    run_ingest(spark, [str(base / "raw")], str(base / "lake"))
    cfg = config_for_tests(**{"data.lake": str(base / "lake"), "data.features":
                              str(base / "features"), "prepare.max_seq_length": 32,
                              "prepare.vocab_size": 2000})
    meta = prepare(cfg, spark)
    assert meta["splits"]["train"]["count"] > 2000 and len(meta["splits"]["train"]["files"]) >= 2
    return base / "features"


@pytest.fixture(scope="module")
def trained(features, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    proc = run_cli("train", "--input", str(features), "--output", str(out), "--np", "2",
                   "--epochs", "2", "--batch-size", "32")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


@pytest.mark.slow
def test_two_processes_train_and_agree(trained):
    out, proc = trained
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2
    assert len(m["weight_digests"]) == 2 and m["ranks_consistent"] is True
    for split in ("train", "validation", "test"):
        assert 0 <= m[split]["accuracy"] <= 1 and m[split]["loss"] > 0
    assert set(m["per_class"]) == {"1", "2", "3", "4", "5"}
    assert all({"precision", "recall", "f1", "support"} <= set(c) for c in m["per_class"].values())
    assert np.array(m["confusion_matrix"]).sum() == m["test"]["count"]
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert m["samples_per_second"] > 0 and m["learning_rate"] == pytest.approx(2e-3)
    # samples/s from the training steps alone: validation and the checkpoint are excluded
    assert all(0 < h["train_seconds"] < h["seconds"] for h in m["history"])
    assert m["history"][-1]["samples_per_second"] == pytest.approx(
        m["steps_per_epoch"] * 32 * 2 / m["history"][-1]["train_seconds"], rel=0.01)
    assert m["devices"]["sparse_as_dense"] in (True, False) and m["devices"]["sparse_as_dense_why"]
    assert m["export_check"]["tolerance"] == 1e-4 and m["export_check"]["predictions_differ"] == 0
    for name in ("confusion_matrix.png", "classification_report.txt", "tokenizer/vocab.txt",
                 "saved_model/saved_model.pb", "model_config.json"):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    # Keras's progress format, so the book's metric regexes keep working.
    import re
    assert re.search(r"loss: ([0-9\.]+)", proc.stdout)
    assert re.search(r"val_accuracy: ([0-9\.]+)", proc.stdout)
    assert "test accuracy" in proc.stdout


@pytest.mark.slow
def test_a_baseline_stands_beside_the_model(trained):
    """MLlib hashing TF-IDF + multinomial LR on the same splits: in metrics.json, the summary
    line and the report; the model is flagged when it does not beat it."""
    out, proc = trained
    m = json.loads((out / "metrics.json").read_text())
    b = m["baseline"]
    assert "logistic regression" in b["model"] and b["test"]["count"] == m["test"]["count"]
    assert b["train"]["count"] > b["test"]["count"] > 0 and 0.2 < b["test"]["accuracy"] <= 1
    assert m["beats_baseline"] == (m["test"]["accuracy"] > b["test"]["accuracy"])
    assert f"baseline {b['test']['accuracy']:.2f}" in proc.stdout
    assert "baseline (" in (out / "classification_report.txt").read_text()
    from reviewlake.train.baseline import attach
    from reviewlake.train.cli import summary

    worse = attach(dict(m, test=dict(m["test"], accuracy=0.1)), b)
    assert worse["beats_baseline"] is False
    assert "does not beat its baseline" in summary(dict(worse, output=str(out)))


@pytest.mark.slow
def test_learns_the_generated_reviews(trained):
    out, _ = trained
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"]["accuracy"] >= 0.6, m["test"]   # chance is 0.2


@pytest.mark.slow
def test_saved_model_predicts_like_the_trained_model(trained):
    import tensorflow as tf

    out, _ = trained
    probe = json.loads((out / "export_probe.json").read_text())
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    got = serve(input_ids=tf.constant(probe["input_ids"], tf.int32),
                input_mask=tf.constant(probe["input_mask"], tf.int32))
    np.testing.assert_allclose(got["probabilities"].numpy(), probe["probabilities"], atol=1e-5)
    assert (got["star_rating"].numpy() == np.argmax(probe["probabilities"], axis=1) + 1).all()


@pytest.mark.slow
def test_predict_command(trained):
    out, _ = trained
    proc = run_cli("predict", "--model", str(out), "--json",
                   "This is terrible and useless, it broke after two days. Waste of money.",
                   "Absolutely fantastic, the best purchase this year, highly recommend it.")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 2
    assert abs(sum(rows[0]["probabilities"].values()) - 1) < 1e-3
    assert rows[0]["star_rating"] <= 2 and rows[1]["star_rating"] >= 4


@pytest.mark.slow
def test_resume_after_the_launcher_is_killed(features, tmp_path):
    out = tmp_path / "model"
    args = ["train", "--input", str(features), "--output", str(out), "--np", "2",
            "--epochs", "3", "--batch-size", "32", "--steps-per-epoch", "60",
            "--set", "train.baseline=false"]   # the baseline has its own test
    proc = subprocess.Popen([str(VENV_BIN / "reviewlake"), *args], cwd=ROOT,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    history = out / "checkpoints" / "history.json"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if history.exists() and len(json.loads(history.read_text())) == 1:
                time.sleep(1.0)  # into the second epoch
                break
            time.sleep(0.1)
        assert proc.poll() is None, "training ended before it could be interrupted"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    time.sleep(2)  # horovodrun's helpers stop the workers once it is gone
    assert len(json.loads(history.read_text())) == 1
    assert not (out / "metrics.json").exists()
    done = run_cli(*args, "--resume")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from" in done.stdout
    m = json.loads((out / "metrics.json").read_text())
    assert m["resumed_from_epoch"] == 1
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]
    assert m["epochs"] == 3 and m["ranks_consistent"]


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_runs_weights_on_every_rank(features, tmp_path):
    """Issue 14, defect 3: the state was broadcast only after the first batch, so the first
    update after a resume came from another state, and the data order restarted. Now: two
    epochs straight, or one epoch then a resume for the second, end with the same weights
    on both ranks, bit for bit (dropout off: its random state is not checkpointed).

    Where the two-host harness runs (root, sshd: CI), test_multihost.py proves the same
    across hosts, so this one-host variant stands in only where it cannot."""
    import hosts

    if hosts.unavailable() is None:
        pytest.skip("covered across two hosts by test_multihost.py::"
                    "test_resume_across_hosts_gives_the_uninterrupted_weights")
    common = ["--input", str(features), "--np", "2", "--batch-size", "16",
              "--steps-per-epoch", "6", "--set", "train.baseline=false",
              "--set", "train.tensorboard=false", "--set", "train.dropout=0",
              "--set", "train.tiny.dropout=0", "--set", "train.tiny.attention_dropout=0"]

    def run(out, epochs, *extra):
        proc = run_cli("train", *common, "--output", str(out), "--epochs", str(epochs), *extra)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads((out / "metrics.json").read_text())

    straight = run(tmp_path / "straight", 2)
    run(tmp_path / "resumed", 1)
    resumed = run(tmp_path / "resumed", 2, "--resume")
    assert resumed["resumed_from_epoch"] == 1 and straight["ranks_consistent"]
    assert resumed["weight_digests"] == straight["weight_digests"]
    assert len(set(resumed["weight_digests"])) == 1


def test_user_errors(tmp_path, features):
    def err(*args):
        proc = run_cli("train", *args)
        assert proc.returncode == 2, proc.stderr
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        return lines[0]

    assert "features directory not found" in err("--input", str(tmp_path / "no"), "--output",
                                                 str(tmp_path / "m"))
    (tmp_path / "empty").mkdir()
    assert "_meta.json not found" in err("--input", str(tmp_path / "empty"), "--output",
                                         str(tmp_path / "m"))
    assert "--epochs must be at least 1" in err("--input", str(features), "--output",
                                                 str(tmp_path / "m"), "--epochs", "0")
    assert "--hosts expects" in err("--input", str(features), "--output", str(tmp_path / "m"),
                                    "--hosts", "a:b")
    proc = run_cli("predict", "--model", str(tmp_path), "hello")
    assert proc.returncode == 2 and "is not a trained model" in proc.stderr


def test_evaluation_math():
    from reviewlake.train import evaluate

    cm = evaluate.confusion_matrix([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = evaluate.per_class(cm, ["a", "b", "c"])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["classes"]["a"]["precision"] == pytest.approx(0.5)
    assert s["classes"]["b"]["precision"] == pytest.approx(2 / 3)
    assert s["classes"]["b"]["recall"] == pytest.approx(1.0)
    assert s["classes"]["c"]["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert "accuracy" in evaluate.report_text(s)


def test_horovod_cycle_time(monkeypatch):
    from reviewlake.errors import UserError
    from reviewlake.train.spec import TrainSpec
    from reviewlake.train.worker import CPU_CYCLE_TIME_MS, set_cycle_time

    class NoGpu:
        class config:
            @staticmethod
            def list_physical_devices(kind):
                return []

    class OneGpu(NoGpu):
        class config:
            @staticmethod
            def list_physical_devices(kind):
                return ["GPU:0"]

    spec = TrainSpec(input="f", output="m")
    monkeypatch.delenv("HOROVOD_CYCLE_TIME", raising=False)
    assert set_cycle_time(spec, OneGpu) is None and "HOROVOD_CYCLE_TIME" not in os.environ
    assert set_cycle_time(spec, NoGpu) == CPU_CYCLE_TIME_MS
    assert os.environ["HOROVOD_CYCLE_TIME"] == str(CPU_CYCLE_TIME_MS)
    monkeypatch.setenv("HOROVOD_CYCLE_TIME", "2.5")        # horovodrun --cycle-time-ms wins
    assert set_cycle_time(TrainSpec(input="f", output="m", cycle_time_ms=7), NoGpu) == 2.5
    monkeypatch.delenv("HOROVOD_CYCLE_TIME")
    assert set_cycle_time(TrainSpec(input="f", output="m", cycle_time_ms=7), OneGpu) == 7.0
    assert os.environ["HOROVOD_CYCLE_TIME"] == "7"
    with pytest.raises(UserError, match="cycle_time_ms"):
        TrainSpec(input="f", output="m", cycle_time_ms=0).validate()


def test_sparse_as_dense_is_chosen_by_device_and_world_size():
    from reviewlake.errors import UserError
    from reviewlake.train.spec import TrainSpec
    from reviewlake.train.worker import choose_sparse_as_dense as choose

    assert choose(False, 8, 8, 32, 128, 30522) == (False, "train.sparse_as_dense")
    assert choose(True, 0, 2, 32, 64, 600)[0] is True
    assert choose(None, 0, 1, 32, 128, 30522)[0] is False          # nothing to exchange
    assert choose(None, 8, 8, 32, 128, 30522)[0] is True           # GPUs: fused NCCL
    # CPUs, the fewer rows: distilbert's vocabulary on 2 processes gathers 8,192 rows
    # against 30,522 all-reduced; a small vocabulary or many processes turn it around
    assert choose(None, 0, 2, 32, 128, 30522)[0] is False
    assert choose(None, 0, 2, 32, 64, 600)[0] is True
    assert choose(None, 0, 16, 32, 128, 30522)[0] is True
    with pytest.raises(UserError, match="sparse_as_dense must be true, false or null"):
        TrainSpec(input="f", output="m", sparse_as_dense="yes").validate()


def test_the_export_check_fits_the_precision():
    from reviewlake.train.worker import compare_export, export_tolerance

    assert export_tolerance({"gpus": 0}) == 1e-4
    assert export_tolerance({"gpus": 1}) == export_tolerance({"gpus": 0, "xla": True}) == 2e-3
    assert export_tolerance({"gpus": 1, "mixed_precision": True}) == 2e-2
    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.39995, 0.20005]])
    ok = compare_export(p, p + 5e-5, 1e-4)
    assert ok["predictions_differ"] == 0 and ok["max_abs_diff"] == pytest.approx(5e-5)
    tie = p.copy()
    tie[1] = [0.39996, 0.39999, 0.20005]     # a near tie flips within the tolerance: accepted
    assert compare_export(p, tie, 1e-4)["predictions_differ"] == 0
    with pytest.raises(RuntimeError, match="max probability difference 0.001"):
        compare_export(p, p + np.array([[1e-3, -1e-3, 0], [0, 0, 0]]), 1e-4)
    amp = compare_export(p, p + np.array([[1e-3, -1e-3, 0], [0, 0, 0]]), 2e-2)
    assert amp["max_abs_diff"] == pytest.approx(1e-3)
    flipped = p.copy()
    flipped[0] = [0.2, 0.7, 0.1]             # a clear margin flipped: refused at any tolerance
    with pytest.raises(RuntimeError, match="1 of 2 predicted classes differ"):
        compare_export(p, flipped, 2e-2)


def test_warmup_is_a_whole_number_of_epochs():
    """Horovod's warm-up callback compares the epoch number with its end: a fractional
    warm-up would ramp past the learning rate until that epoch ends."""
    from reviewlake.errors import UserError
    from reviewlake.train.spec import TrainSpec

    for epochs in (0, 1, 2.0):
        assert TrainSpec(input="f", output="m", warmup_epochs=epochs).validate()
    for epochs in (0.5, 1.5, -1):
        with pytest.raises(UserError, match="whole number of epochs") as err:
            TrainSpec(input="f", output="m", warmup_epochs=epochs).validate()
        assert "\n" not in str(err.value)


def test_sharding_and_steps():
    from reviewlake.train.data import record_ranges, steps_for
    from reviewlake.train.launch import parse_hosts

    # 5 files of 10 records on 2 processes: 25 records each, the middle file split
    assert record_ranges([10] * 5, 0, 2) == [(0, 0, 10), (1, 0, 10), (2, 0, 5)]
    assert record_ranges([10] * 5, 1, 2) == [(2, 5, 5), (3, 0, 10), (4, 0, 10)]
    assert record_ranges([7], 1, 2) == [(0, 3, 4)]   # fewer files than processes
    assert steps_for(1000, 32, 2) == 16 and steps_for(1, 32, 4) == 1
    assert parse_hosts("h1:4,h2:4") == 8 and parse_hosts("h1") == 1


@pytest.mark.slow
def test_spark_launcher_runs_the_same_training(features, tmp_path):
    """--launcher spark: horovod.spark.run, one process per Spark task slot."""
    out = tmp_path / "model"
    proc = run_cli("train", "--input", str(features), "--output", str(out), "--np", "2",
                   "--epochs", "1", "--batch-size", "32", "--steps-per-epoch", "10",
                   "--launcher", "spark", "--master", "local[2]", "--set", "train.baseline=false")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["ranks_consistent"]
    assert (out / "saved_model" / "saved_model.pb").exists()
    assert "scope" not in proc.stderr  # Horovod's rendezvous chatter stays quiet
