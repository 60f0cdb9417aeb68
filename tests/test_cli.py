"""The command line: one-line errors with exit code 2, no tracebacks; help; generate."""
import json

import pytest

from conftest import run_cli
from reviewlake.cli import main


def assert_one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in lines[0]
    assert lines[0].startswith("reviewlake ")


@pytest.mark.parametrize("args,needle", [
    (["ingest", "--input", "/no/such/dir", "--output", "/tmp/x"], "input not found: /no/such/dir"),
    (["ingest", "--input", "/tmp/nothing-here-*.tsv", "--output", "/tmp/x"], "no input files matched"),
    (["ingest", "--bogus"], "unrecognized arguments: --bogus"),
    (["ingest", "--mode", "upsert"], "invalid choice: 'upsert'"),
    (["nosuchstage"], "invalid choice: 'nosuchstage'"),
    (["generate", "--rows", "0", "--output", "/tmp/x-gen"], "--rows must be at least 1"),
    (["generate", "--rows", "ten"], "invalid int value: 'ten'"),
    (["ingest", "--config", "/no/profile.yaml"], "config profile not found"),
    (["ingest", "--set", "novalue"], "--set expects key=value"),
])
def test_user_errors_are_one_line(args, needle):
    assert_one_line_error(run_cli(*args), needle)


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    raw = tmp_path / "raw"
    assert run_cli("generate", "--rows", "50", "--output", str(raw), "--no-defects").returncode == 0
    proc = run_cli("ingest", "--input", str(raw), "--output", str(blocker / "lake"))
    assert_one_line_error(proc, "is not writable")


def test_help_lists_the_stages(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for stage in ("generate", "ingest"):
        assert stage in out


def test_generate_command_uses_profile_and_flags(tmp_path, capsys):
    out = tmp_path / "raw"
    assert main(["generate", "--rows", "300", "--output", str(out), "--files", "2",
                 "--no-gzip", "--seed", "9"]) == 0
    assert "generated 300 lines" in capsys.readouterr().out
    manifest = json.loads((out / "_generated.json").read_text())
    assert manifest["seed"] == 9 and manifest["defects"] == "malformed"  # profile default
    assert sorted(p.name for p in out.glob("*.tsv")) == [
        "amazon_reviews_us_sample_v1_00.tsv", "amazon_reviews_us_sample_v1_01.tsv"]


def test_generate_defects_flag(tmp_path, capsys):
    assert main(["generate", "--rows", "3000", "--output", str(tmp_path / "a"), "--defects"]) == 0
    assert json.loads((tmp_path / "a" / "_generated.json").read_text())["defects"] == "all"
    assert main(["generate", "--rows", "300", "--output", str(tmp_path / "b"), "--no-defects"]) == 0
    assert json.loads((tmp_path / "b" / "_generated.json").read_text())["defects"] == "none"
    assert main(["generate", "--rows", "300", "--output", str(tmp_path / "c"),
                 "--set", "generate.defects=sometimes"]) == 2
    assert "generate.defects must be one of none, malformed, all" in capsys.readouterr().err
