"""The pinned jars: one list (jars/jars.txt, reviewlake.jars, the cluster profiles) and the
set-up's fetch (jars/fetch.sh with mvn: checksums, offline reuse, one line when it cannot)."""
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from reviewlake import jars as J

FETCH = ROOT / "jars" / "fetch.sh"


def pinned() -> dict[str, str]:
    out = {}
    for line in (ROOT / "jars" / "jars.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            coord, sha = line.split()[:2]
            out[coord] = sha
    return out


def test_one_list_of_coordinates():
    assert set(pinned()) == set(J.ALL)
    for profile in ("emr", "sagemaker"):
        cfg = yaml.safe_load((ROOT / "conf" / f"{profile}.yaml").read_text())
        assert cfg["spark"]["packages"] == list(J.CLUSTER_PACKAGES), profile
    assert all(len(s) == 64 or s == "-" for s in pinned().values())
    assert J.jar_name(J.DEEQU) == "deequ-2.1.0-spark-3.5.jar"


def fake_mvn(tmp_path: Path, body: str) -> dict[str, str]:
    """A `mvn` on PATH that logs its arguments and runs ``body`` (bash)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    mvn = bindir / "mvn"
    mvn.write_text("#!/usr/bin/env bash\necho \"$@\" >> \"$MVN_LOG\"\n" + body + "\n")
    mvn.chmod(0o755)
    return dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}",
                MVN_LOG=str(tmp_path / "mvn.log"), JARS_DIR=str(tmp_path / "jars"))


def run_fetch(env, *args):
    return subprocess.run([str(FETCH), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_unreachable_maven_is_one_line_per_jar_and_optional_goes_on(tmp_path):
    env = fake_mvn(tmp_path, 'echo "[ERROR] Could not transfer artifact x: Unknown host" ; exit 1')
    proc = run_fetch(env, "deequ")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"jars: cannot fetch {J.DEEQU} (Maven Central unreachable); the stages "
                     f"that need it use their jar-free path (on a cluster: --packages {J.DEEQU})"]
    assert run_fetch(env, "--optional").returncode == 0
    assert len(run_fetch(env, "--optional").stderr.strip().splitlines()) == len(J.ALL)


def test_checksums_are_verified_and_a_good_jar_is_not_fetched_again(tmp_path):
    # mvn "fetches" a jar whose bytes are not the pinned ones
    env = fake_mvn(tmp_path, 'for a in "$@"; do case $a in -DoutputDirectory=*) d=${a#*=};; '
                             '-Dartifact=*) c=${a#*=};; esac; done; IFS=: read g art v <<<"$c"; '
                             'mkdir -p "$d"; echo tampered > "$d/$art-$v.jar"')
    proc = run_fetch(env, "deequ")
    assert proc.returncode == 1 and "checksum mismatch for " + J.DEEQU in proc.stderr
    assert not (tmp_path / "jars" / J.jar_name(J.DEEQU)).exists()
    # a jar already there with the pinned checksum: no mvn call at all
    real = ROOT / "jars" / J.jar_name(J.DEEQU)
    if not real.exists():
        pytest.skip(f"{J.DEEQU} is not in jars/ (the set-up could not fetch it)")
    assert hashlib.sha256(real.read_bytes()).hexdigest() == pinned()[J.DEEQU]
    (tmp_path / "jars").mkdir(exist_ok=True)
    os.symlink(real, tmp_path / "jars" / real.name)
    (tmp_path / "mvn.log").unlink(missing_ok=True)
    proc = run_fetch(env, "deequ")
    assert proc.returncode == 0 and not (tmp_path / "mvn.log").exists()


def test_without_mvn_it_says_what_to_install(tmp_path):
    env = dict(os.environ, MVN=str(tmp_path / "no-mvn"), JARS_DIR=str(tmp_path / "j"))
    proc = run_fetch(env, "deequ")
    assert proc.returncode == 1 and "no-mvn not found" in proc.stderr
    assert "apt-get install maven" in proc.stderr
