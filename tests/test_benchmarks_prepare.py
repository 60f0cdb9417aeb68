"""The prepare stage's benchmark scripts run and print their tables (tiny sizes)."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT


def run_bench(tmp_path, *args):
    env = dict(os.environ, REVIEWLAKE_BENCH_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_tokenization_benchmark_prints_its_ratios(tmp_path):
    out = run_bench(tmp_path, "benchmarks/tokenization.py", "--rows", "1500", "--row-udf-rows",
                    "100", "--long-rows", "1200", "--slow-rows", "1000", "--repeats", "1",
                    "--warmup", "0")
    assert "| side" in out and "(b) row UDF: encode_plus" in out
    assert "(a0) bare: the tokenizer's own batch encode, full text" in out
    assert "the stage on 400 texts: Spark's fixed cost per job" in out
    assert "goal: stage rows/s / the fastest bare tokenizer's rows/s" in out
    assert "goal: stage rows/s / the book's row-at-a-time UDF rows/s >= 10" in out
    assert "### tokenize, long tail: 1,200 reviews" in out
    assert "goal: long tail: stage rows/s / the fastest bare full-text tokenizer's rows/s >= 1.5" in out
    result = json.loads((tmp_path / "results" / "tokenization.json").read_text())
    assert result["rows"] == 1500 and result["row_udf_rows"] == 100 and result["long_rows"] == 1200
    assert result["ratio_vs_bare"] > 0 and result["ratio_vs_row_udf"] > 0
    assert result["ratio_long_vs_bare_full"] > 0 and result["prefix_stats"]["prefixed"] > 0
    # the slower bare sides on the first --slow-rows texts, the others on all
    assert re.search(r"\| \(a0\) bare: the tokenizer's own batch encode, 1 process/core +\| 1,000 ", out)
    assert re.search(r"\| \(a1\) bare: the stage's encoder, 1 process/core +\| 1,500 ", out)
    assert [g["target"] for g in result["goals"]] == [0.8, 10, 1.5] and "| side" in result["table"]


def test_tfrecord_benchmark_prints_its_ratio(tmp_path):
    out = run_bench(tmp_path, "benchmarks/tfrecord.py", "--records", "3000", "--e2e-records",
                    "500", "--repeats", "1")
    assert "| side" in out
    assert "goal: Python TFRecord writer bytes/s / tf.io.TFRecordWriter bytes/s >= 0.8" in out
    result = json.loads((tmp_path / "results" / "tfrecord.json").read_text())
    assert result["records"] == 3000 and result["ratio"] > 0
    assert result["goals"][0]["target"] == 0.8 and "| side" in result["table"]
    assert not list((tmp_path / "tfrecord_out").iterdir())
