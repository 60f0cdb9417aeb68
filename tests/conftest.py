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
    config.addinivalue_line("markers", "jarfree: a jar-free path; `make test` runs these again "
                            "with jars/ hidden (REVIEWLAKE_JARS_DIR=an empty directory)")


def config_for_tests(**extra) -> Config:
    cfg = Config.load(ROOT / "conf" / "local.yaml", [
        "spark.master=local[2]", "spark.shuffle_partitions=4", "spark.driver_memory=2g",
        "spark.log_level=ERROR",
    ])
    for key, value in extra.items():
        cfg.set(key, value)
    return cfg


def jars_hidden() -> bool:
    """The jar-free pass of the suite (``make test`` runs it second): jars/ is hidden."""
    from reviewlake.session import local_jars

    return "REVIEWLAKE_JARS_DIR" in os.environ and not local_jars()


def jar_present(coordinate: str) -> bool:
    """Whether jars/ (as this run sees it) holds the jar of a coordinate of jars/jars.txt."""
    from reviewlake.jars import jar_name
    from reviewlake.session import local_jars

    return any(Path(j).name == jar_name(coordinate) for j in local_jars())


def need_jar(spark, class_name: str, coordinate: str) -> None:
    """Skip (saying why) where a jar of jars/jars.txt is not on the classpath."""
    from reviewlake.session import has_class

    if has_class(spark, class_name):
        return
    if jars_hidden():
        pytest.skip(f"jar-free pass: {coordinate} is hidden")
    pytest.skip(f"{coordinate} is not in jars/: `make setup` (jars/fetch.sh) could not fetch it "
                f"with mvn; see its one-line message")


# The shared session's JVM: its process, its log file and the last test after which it was
# seen alive. Its stdout and stderr go to build/test-jvm.log (not into pytest's per-test
# capture, where they were lost), and every test's teardown checks it still runs, so a test
# run that loses it says when and how (exit code or signal) instead of failing every later
# Spark test with "Connection refused".
_JVM: dict = {}
JVM_LOG = ROOT / "build" / "test-jvm.log"


@pytest.fixture(scope="session")
def spark():
    from reviewlake.session import get_spark

    JVM_LOG.parent.mkdir(exist_ok=True)
    with open(JVM_LOG, "ab") as log:
        log.write(f"--- test session of pid {os.getpid()}\n".encode())
        log.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            session = get_spark(config_for_tests(), "tests")
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    proc = session.sparkContext._gateway.proc
    _JVM.update(proc=proc, alive_after="(its start)")
    yield session
    _JVM.clear()
    if proc.poll() is None:   # a dead one was reported already
        session.stop()


@pytest.fixture(autouse=True)
def _shared_jvm_still_runs(request):
    yield
    proc = _JVM.get("proc")
    if proc is None:
        return
    code = proc.poll()
    if code is None:
        _JVM["alive_after"] = request.node.nodeid
        return
    after = _JVM.get("alive_after", "?")
    _JVM.clear()   # report it once
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    tail = "\n".join(JVM_LOG.read_text(errors="replace").splitlines()[-30:])
    pytest.fail(f"the shared Spark JVM (pid {proc.pid}) {how}, after "
                f"{after} and before this test ended; the end of "
                f"{JVM_LOG}:\n{tail}", pytrace=False)


AWS_REGION = "us-east-1"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a service a test starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """A local AWS API emulator (moto in server mode on 127.0.0.1: S3, EMR, SageMaker, STS,
    IAM, ...), one per test run; never real AWS."""
    import socket
    import time

    port = free_port()
    proc = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def emulator_env(endpoint: str, home: Path) -> dict[str, str]:
    """Environment that sends every AWS client to the emulator with fake credentials.

    Explicit endpoint (AWS_ENDPOINT_URL, honoured by botocore for every service), fake keys,
    no shared config or credential files, no instance-metadata lookups, no SageMaker SDK
    defaults of the user's, and a dead proxy for anything else (telemetry, a stray https://*.
    amazonaws.com call): only 127.0.0.1 is reachable."""
    sm_config = home / "sagemaker-config.yaml"  # the SDK's defaults: none
    sm_config.parent.mkdir(parents=True, exist_ok=True)
    sm_config.write_text("SchemaVersion: '1.0'\n")
    return {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_REGION": AWS_REGION, "AWS_ENDPOINT_URL": endpoint,
        "AWS_CONFIG_FILE": str(home / "aws-config-absent"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials-absent"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sm_config),
        "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(sm_config),
        "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }


@pytest.fixture()
def aws(moto_server, monkeypatch, tmp_path):
    """This test's process talks to the emulator only; ``clients`` are boto3 clients on it."""
    import boto3

    env = emulator_env(moto_server, tmp_path / "home")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    class Emulator:
        endpoint = moto_server
        region = AWS_REGION
        environ = env

        @staticmethod
        def client(service: str):
            return boto3.client(service, endpoint_url=moto_server, region_name=AWS_REGION,
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    return Emulator


@pytest.fixture(scope="session")
def moto_s3(moto_server):
    """The emulator's S3 (kept for the s3a tests): endpoint and a client."""
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server, region_name=AWS_REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return {"endpoint": moto_server, "client": client}


@pytest.fixture()
def s3a(spark, moto_s3):
    """The shared session pointed at the local S3 (s3a://, path-style, fake credentials)."""
    return point_s3a_at(spark, moto_s3)


def point_s3a_at(spark, moto_s3):
    """Point the session's s3a:// at the local S3 (for module-scoped fixtures too)."""
    from reviewlake.jars import HADOOP_AWS

    need_jar(spark, "org.apache.hadoop.fs.s3a.S3AFileSystem", HADOOP_AWS)
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in {
        "fs.s3a.endpoint": moto_s3["endpoint"], "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false", "fs.s3a.access.key": "testing",
        "fs.s3a.secret.key": "testing", "fs.s3a.change.detection.mode": "none",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
    }.items():
        hconf.set(key, value)
    return moto_s3


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
    # transformers sets TF_USE_LEGACY_KERAS=1 in the process that imports its TF models (the
    # pretrained-encoder tests do); TF 2.15 then wants the tf_keras package in every child
    if "TF_USE_LEGACY_KERAS" not in (env or {}):
        full_env.pop("TF_USE_LEGACY_KERAS", None)
    return subprocess.run([str(VENV_BIN / "reviewlake"), *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, env=full_env)
