"""One local SparkSession for the whole test run, plus shared sample data.

Spark start-up (~7 s) and the first query (~8 s) dominate small tests, so every test that
needs Spark takes the session-scoped ``spark`` fixture; tests that start their own JVM
(command-line and spark-submit paths) are marked ``slow``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lib"))

from reviewlake.config import Config  # noqa: E402

VENV_BIN = Path(sys.executable).parent


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: starts its own JVM or runs a stage end to end")


def test_config(**extra) -> Config:
    cfg = Config.load(ROOT / "conf" / "local.yaml", [
        "spark.master=local[2]", "spark.shuffle_partitions=4", "spark.driver_memory=2g",
        "spark.log_level=ERROR",
    ])
    for key, value in extra.items():
        cfg.set(key, value)
    return cfg


@pytest.fixture(scope="session")
def spark():
    from reviewlake.session import get_spark

    session = get_spark(test_config(), "tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def defects_sample(tmp_path_factory):
    """3 gzip files, 6000 lines, every defect kind (generated once per run)."""
    from reviewlake.generate import generate

    out = tmp_path_factory.mktemp("defects_raw")
    result = generate(rows=6000, output=out, seed=7, defects=True, files=3, gzip=True)
    return out, result


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``reviewlake`` console script."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(VENV_BIN / "reviewlake"), *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)
