"""Every shell command in the README's code blocks runs as written (with small data and
temporary paths). `make demo` is `make setup` (which every test run goes through) and `make
demo-run`, which runs here after the README's own `pipeline --config conf/local.yaml`: the
same pipeline, so every stage must be skipped. `make test` is CI itself."""
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, jar_present
from reviewlake.jars import ICEBERG

VENV = str(VENV_BIN.parent)
# conf/minilm.yaml's encoder, which `make setup` unpacks (when PyPI could be reached)
MINILM = Path.home() / ".cache" / "reviewlake" / "models" / "all-MiniLM-L6-v2"


def readme_commands(with_exit_codes=False):
    """Command lines of the README's untagged code blocks (blocks with a language tag, e.g.
    ```bash for commands that need an AWS account, are documentation only). A trailing comment
    ``# exit N`` says the command is expected to exit with N (the quality gate's 3), else 0."""
    text = (ROOT / "README.md").read_text()
    blocks = [body for tag, body in re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
              if not tag]
    cmds = []
    for block in blocks:
        for line in block.splitlines():
            command, _, comment = line.partition("  #")
            command = command.strip()
            if command.startswith((".venv/bin/reviewlake", "./spark-submit.sh", "make ")):
                m = re.match(r"\s*exit (\d+)", comment)
                cmds.append((command, int(m.group(1)) if m else 0))
    return cmds if with_exit_codes else [c for c, _ in cmds]


def test_readme_has_the_two_setup_commands():
    cmds = readme_commands()
    assert "make demo" in cmds and "make test" in cmds


def test_readme_runs_the_pretrained_encoders_profile():
    assert ".venv/bin/reviewlake pipeline --config minilm" in readme_commands()
    assert (ROOT / "conf" / "minilm.yaml").is_file()


@pytest.mark.slow
def test_readme_commands_run(tmp_path):
    cmds = [(c, code) for c, code in readme_commands(True) if not c.startswith("make ")]
    assert any("generate" in c for c, _ in cmds) and any("spark-submit" in c for c, _ in cmds)
    env = dict(os.environ, REVIEWLAKE_VENV=VENV)
    iceberg_jar = jar_present(ICEBERG)
    for cmd, expected in cmds:
        if "iceberg-" in cmd and not iceberg_jar:
            continue   # the Iceberg examples need its jar (the set-up could not fetch it)
        args = shlex.split(cmd)
        args = [a.replace("data/", f"{tmp_path}/data/") for a in args]
        if args[0] == ".venv/bin/reviewlake":
            args[0] = str(VENV_BIN / "reviewlake")
        if "--rows" in args:
            args[args.index("--rows") + 1] = "2000"
        if "pipeline" in args or "jobs/pipeline.py" in args:
            # the profile's data/ paths and sizes, made small and put under tmp_path
            for key in ("raw", "lake", "quality", "features", "model"):
                args += ["--set", f"data.{key}={tmp_path}/data/{key}"]
            args += ["--set", "generate.rows=3000", "--set", "train.epochs=1",
                     "--set", "prepare.vocab_size=600"]
            if "minilm" in args:   # the pretrained encoder's profile: a few steps of it
                if not (MINILM / "model.safetensors").is_file():
                    continue           # not unpacked here (test_pretrained.py skips too)
                args += ["--set", "train.steps_per_epoch=5"]
        if args[1] == "train":
            args += ["--epochs", "1"]
        args = [str(ROOT / "spark-submit.sh") if a == "./spark-submit.sh" else a for a in args]
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == expected, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
        if cmd == ".venv/bin/reviewlake pipeline --config conf/local.yaml":
            demo_run_is_the_same_pipeline(tmp_path / "data", args[args.index("--set"):], proc)
    lake = tmp_path / "data" / "lake"
    report = json.loads((lake / "_reports" / "ingest.json").read_text())
    if report["format"] == "iceberg":   # ingest.format auto with the Iceberg jar in jars/
        assert (lake / "_catalog.db").is_file() and report["snapshots"]["reviews"]
        assert (lake / "reviewlake" / "reviews" / "metadata").is_dir()
    else:
        assert (lake / "reviews").is_dir()
    if not iceberg_jar:
        return
    iceberg = json.loads((tmp_path / "data" / "iceberg-features" / "_meta.json").read_text())
    assert iceberg["lake"]["table"] == "reviewlake.reviews" and iceberg["lake"]["snapshot_id"]


def demo_run_is_the_same_pipeline(data: Path, flags: list[str], ran: subprocess.CompletedProcess):
    """The README's demo pipeline ran or skipped (the README's commands before it made the same
    outputs) every stage, trained with 2 processes and wrote consistent outputs; `make demo-run` (what `make demo` runs after the set-up) with the same
    settings is that pipeline: it skips every stage."""
    summary = ran.stdout[ran.stdout.index("pipeline summary"):]
    for stage in ("generate", "ingest", "quality", "prepare"):   # the README's earlier commands
        assert re.search(rf"^  {stage} +(ran|skipped) ", summary, re.M), summary  # made some
    assert re.search(r"^  train +ran .*2 processes", summary, re.M), summary
    report = json.loads((data / "lake" / "_reports" / "ingest.json").read_text())
    assert report["rows_read"] == 3000 and report["rows_quarantined"] > 0
    assert report["rows_written"] + report["rows_quarantined"] == 3000
    assert json.loads((data / "quality" / "summary.json").read_text())["status"] == "passed"
    meta = json.loads((data / "features" / "_meta.json").read_text())
    assert meta["rows"]["read"] == report["rows_written"]
    metrics = json.loads((data / "model" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["test"]["count"] == meta["splits"]["test"]["count"]
    assert (data / "model" / "saved_model" / "saved_model.pb").is_file()
    again = subprocess.run(["make", "-s", "demo-run", f"VENV={VENV}",
                            f"DEMO_FLAGS={shlex.join(flags)}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    summary = again.stdout[again.stdout.index("pipeline summary"):]
    for stage in ("generate", "ingest", "quality", "prepare", "train"):
        assert re.search(rf"^  {stage} +skipped ", summary, re.M), summary
