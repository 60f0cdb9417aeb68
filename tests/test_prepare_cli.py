"""`reviewlake prepare` on the command line: one-line errors before Spark starts, help."""
import pytest

from conftest import run_cli
from reviewlake.cli import main
from test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def fake_lake(tmp_path_factory):
    lake = tmp_path_factory.mktemp("cli_lake")
    (lake / "reviews").mkdir()
    return lake


@pytest.mark.parametrize("args,needle", [
    (["--input", "/no/such/lake", "--output", "/tmp/f"], "no lake at /no/such/lake"),
    (["--split", "0.9,0.2"], "--split expects three fractions >= 0"),
    (["--split", "0.8,0.3,0.1"], "--split fractions must sum to 1"),
    (["--max-seq-length", "1000"], "--max-seq-length must be an integer between 3 and 512"),
    (["--max-seq-length", "sixty"], "invalid int value: 'sixty'"),
    (["--tokenizer", "/no/such/tokenizer"], "tokenizer directory not found: /no/such/tokenizer"),
    (["--tokenizer", "/tmp", "--vocab-size", "100"], "not allowed with argument"),
    (["--vocab-size", "3"], "--vocab-size must be larger than 5"),
    (["--compression", "zip"], "invalid choice: 'zip'"),
    (["--writer", "scala"], "invalid choice: 'scala'"),
    (["--set", "prepare.records_per_file=0"], "prepare.records_per_file and prepare.min_files"),
])
def test_prepare_user_errors_are_one_line(fake_lake, tmp_path, capsys, args, needle):
    """In process (the same main() the console script runs; one case below runs the script)."""
    base = ["prepare", "--input", str(fake_lake), "--output", str(tmp_path / "features")]
    code = main([*base, *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("reviewlake prepare: error: ") and needle in lines[0]


def test_console_script_error_is_one_line(tmp_path):
    proc = run_cli("prepare", "--input", str(tmp_path / "nolake"), "--output", str(tmp_path / "f"))
    assert_one_line_error(proc, f"no lake at {tmp_path / 'nolake'}")


def test_unwritable_output(fake_lake, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run_cli("prepare", "--input", str(fake_lake), "--output", str(blocker / "features"))
    assert_one_line_error(proc, "is not writable")


def test_help_lists_prepare_and_its_options(capsys):
    assert main(["--help"]) == 0
    assert "prepare" in capsys.readouterr().out
    assert main(["prepare", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--max-seq-length", "--split", "--balance", "--no-balance", "--tokenizer",
                 "--vocab-size", "--categories", "--seed", "--compression"):
        assert flag in out
