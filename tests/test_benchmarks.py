"""The benchmark scripts run and print their tables (tiny sizes; figures come from make bench)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, jar_present
from reviewlake.jars import DEEQU


def run_all_quick(tmp_path, only: str):
    """`run_all.py --quick --only ONLY` with results and RESULTS.md under tmp_path."""
    env = dict(os.environ, REVIEWLAKE_BENCH_DIR=str(tmp_path))
    # transformers sets it in a test process that loaded its TF models; TF 2.15 would then
    # want tf_keras in the benchmarks
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "benchmarks/run_all.py", "--quick", "--only", only,
                           "--output", str(tmp_path / "RESULTS.md")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_run_all_writes_results_with_the_ingest_ratio(tmp_path):
    proc = run_all_quick(tmp_path, "ingest,gzip_ingest")
    out = tmp_path / "RESULTS.md"
    assert "| side" in proc.stdout
    assert "goal: ingest rows/s / plain csv->parquet rows/s >= 0.9" in proc.stdout
    result = json.loads((tmp_path / "results" / "ingest.json").read_text())
    assert result["rows"] == 20000 and result["ratio"] > 0 and result["goals"][0]["target"] == 0.9
    assert result["machine"]["cores"] >= 1 and "pyspark" in result["versions"]
    text = out.read_text()
    assert "## Goals" in text and "| ingest |" in text and "reviewlake ingest" in text
    gz = json.loads((tmp_path / "results" / "gzip_ingest.json").read_text())
    assert gz["rows"] == 20000 and gz["ratio"] > 0 and gz["goals"][0]["target"] == 0.8
    assert set(gz["median_seconds"]) == {"plain", "gz", "gz_spread"}
    assert "ingest of one gzip file" in text and "spread over 2 partitions" in text


@pytest.mark.slow
def test_quality_benchmark_prints_its_ratio(tmp_path):
    env = dict(os.environ, REVIEWLAKE_BENCH_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "benchmarks/quality.py", "--rows", "5000",
                           "--repeats", "1", "--warmup", "0"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| side" in proc.stdout and "goal: quality <= 2.5x one count() scan" in proc.stdout
    result = json.loads((tmp_path / "results" / "quality.json").read_text())
    assert result["rows"] == 5000 and result["ratio"] > 0
    sides = {"quality", "count", "engine", "engine_no_profiles", "read_columns", "group_ids"}
    if jar_present(DEEQU):   # the engines side by side, and whether they agree
        sides |= {"engine_spark", "engine_deequ"}
        assert "| deequ (PyDeequ on the Deequ jar)" in proc.stdout
        assert result["engines_agree"] is True and result["engine_ratio"] > 0
    assert set(result["median_seconds"]) == sides


@pytest.mark.slow
def test_train_and_end_to_end_benchmarks_write_their_tables(tmp_path):
    run_all_quick(tmp_path, "train,end_to_end")
    out = tmp_path / "RESULTS.md"
    train = json.loads((tmp_path / "results" / "train.json").read_text())
    assert set(train["samples_per_second"]) == {"np2", "np2_1ms", "np1", "np1_all_cores"} and train["ceiling"] > 0
    assert all(v > 0 for v in train["samples_per_second"].values())
    assert [g["target"] for g in train["goals"]] == [1.6, 10.0]
    e2e = json.loads((tmp_path / "results" / "end_to_end.json").read_text())
    assert e2e["rows"] == 5000 and e2e["memory"]["driver_jvm_peak_rss_gb"] > 0
    assert e2e["memory"]["python_workers_peak_rss_gb"] > 0
    text = out.read_text()
    assert "## train" in text and "## end_to_end" in text and "Peak memory" in text
    assert "| train | 2 processes samples/s / 1 process samples/s |" in text


@pytest.mark.slow
def test_finetune_benchmark_trains_both_sides_on_the_same_features(tmp_path):
    """run_all --quick --only finetune: the pretrained encoder and its random-init twin, each
    a real `reviewlake train` run, side by side in one table (RESULTS.md under tmp_path)."""
    minilm = Path.home() / ".cache" / "reviewlake" / "models" / "all-MiniLM-L6-v2"
    if not (minilm / "model.safetensors").is_file():
        pytest.skip(f"no pretrained encoder at {minilm} (`make setup` unpacks it)")
    run_all_quick(tmp_path, "finetune")
    out = tmp_path / "RESULTS.md"
    result = json.loads((tmp_path / "results" / "finetune.json").read_text())
    pre, rnd = result["runs"]
    assert (pre["init"], rnd["init"]) == ("pretrained", "random")
    assert pre["encoder"] == {"model": str(minilm), "init": "pretrained", "frozen": False}
    assert rnd["encoder"]["init"] == "random"
    for r in (pre, rnd):   # the same budget on both sides
        assert r["steps_per_epoch"] == 3 and r["world_size"] == 2 and len(r["history"]) == 1
        assert 0 <= r["test_accuracy"] <= 1 and r["test_count"] == result["splits"]["test"] > 0
        assert r["train_seconds"] > 0 and r["macro_f1"] is not None
    assert pre["learning_rate"] == rnd["learning_rate"]
    assert 0 < result["baseline_accuracy"] <= 1
    assert result["accuracy_difference"] == pytest.approx(pre["test_accuracy"] - rnd["test_accuracy"])
    assert "| pretrained - random" in result["table"] and "| random " in result["table"]
    text = out.read_text()
    assert "## finetune" in text and "| init " in text


def test_a_partial_run_keeps_the_tables_of_earlier_runs_in_the_same_mode(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import run_all

    monkeypatch.setattr(run_all, "WORK", tmp_path)
    results = tmp_path / "results"
    results.mkdir()
    for name in ("ingest", "tfrecord", "train"):
        (results / f"{name}.json").write_text(json.dumps({"table": f"### {name} table", "goals": [
            {"name": f"{name} ratio", "op": ">=", "target": 1.0, "value": 2.0, "met": True}]}))
    run_all.record_runs({"ingest": (0, 12.0)}, quick=False)   # an earlier full run
    run_all.record_runs({"train": (0, 5.0)}, quick=True)      # a smoke run: never mixed in
    ran = {"tfrecord": (0, 3.0)}
    out = tmp_path / "RESULTS.md"
    run_all.write_results(ran, out, run_all.record_runs(ran, quick=False), quick=False)
    text = out.read_text()
    assert "### ingest table" in text and "(run time 12s, in an earlier run at " in text
    assert "### tfrecord table" in text and "(run time 3s)" in text
    assert "### train table" not in text and "| train |" not in text
    assert text.index("## ingest") < text.index("## tfrecord")   # the benchmarks' own order
