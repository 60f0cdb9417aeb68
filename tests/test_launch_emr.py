"""reviewlake launch emr against the local AWS API emulator (moto server): the code in S3,
the steps on a cluster made with run_job_flow, --dry-run, --wait, one-line errors."""
import io
import json
import os
import subprocess
import uuid
import zipfile

import pytest

from conftest import ROOT, run_cli
from reviewlake import __version__
from reviewlake.config import Config
from reviewlake.errors import UserError
from reviewlake.launch.emr import follow_steps, launch_emr

STAGES = ["ingest", "train"]  # the jobs this checkout has (quality/prepare land separately)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("build")  # the wheel is built once for the module


def emr_config(aws, bucket, *sets):
    return Config.load(ROOT / "conf" / "emr.yaml", [
        f"aws.endpoint_url={aws.endpoint}", f"emr.code_prefix=s3://{bucket}/code",
        f"data.raw=s3://{bucket}/raw", f"data.lake=s3://{bucket}/lake",
        f"data.quality=s3://{bucket}/quality", f"data.features=s3://{bucket}/features",
        f"data.model=s3://{bucket}/model", *sets])


def new_bucket(aws):
    name = f"rl-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


def new_cluster(aws):
    return aws.client("emr").run_job_flow(
        Name="reviewlake-test", ReleaseLabel="emr-7.2.0",
        Instances={"MasterInstanceType": "m5.xlarge", "SlaveInstanceType": "m5.xlarge",
                   "InstanceCount": 3, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]


def keys(aws, bucket):
    resp = aws.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in resp.get("Contents", []))


def expected_args(bucket, stage, code):
    inputs = {"ingest": ("raw", "lake"), "train": ("features", "model"),
              "quality": ("lake", "quality"), "prepare": ("lake", "features")}[stage]
    args = [f"{code}/jobs/{stage}.py", "--config", "emr.yaml",
            "--input", f"s3://{bucket}/{inputs[0]}", "--output", f"s3://{bucket}/{inputs[1]}"]
    return args + (["--launcher", "spark", "--np", "2"] if stage == "train" else [])


def test_steps_on_the_cluster_and_code_in_s3(aws, build_dir):
    bucket, cluster = new_bucket(aws), new_cluster(aws)
    lines = []
    result = launch_emr(emr_config(aws, bucket), cluster_id=cluster, stages=STAGES,
                        action="CONTINUE", build_dir=build_dir, out=lines.append)
    code = f"s3://{bucket}/code/{__version__}"
    stored = keys(aws, bucket)
    for key in (f"reviewlake-{__version__}.zip", f"reviewlake-{__version__}-py3-none-any.whl",
                "jobs/ingest.py", "jobs/train.py", "conf/emr.yaml",
                "bootstrap/emr_bootstrap.sh"):
        assert f"code/{__version__}/{key}" in stored, key
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=bucket, Key=f"code/{__version__}/reviewlake-{__version__}.zip")
    names = zipfile.ZipFile(io.BytesIO(body["Body"].read())).namelist()
    assert "reviewlake/launch/emr.py" in names and "reviewlake/conf/local.yaml" in names
    wheel = s3.get_object(Bucket=bucket,
                          Key=f"code/{__version__}/reviewlake-{__version__}-py3-none-any.whl")
    wheel_names = zipfile.ZipFile(io.BytesIO(wheel["Body"].read())).namelist()
    assert "reviewlake/cli.py" in wheel_names and "reviewlake/conf/emr.yaml" in wheel_names
    assert "reviewlake/launch/emr_bootstrap.sh" in wheel_names
    # The profile the jobs read: self-contained, the launcher's values.
    profile = s3.get_object(Bucket=bucket, Key=f"code/{__version__}/conf/emr.yaml")
    import yaml
    shipped = yaml.safe_load(profile["Body"].read())
    assert "extends" not in shipped and shipped["data"]["lake"] == f"s3://{bucket}/lake"
    assert shipped["spark"]["shuffle_partitions"] == 400  # emr.yaml over local.yaml

    steps = aws.client("emr").list_steps(ClusterId=cluster)["Steps"]
    by_name = {s["Name"]: s for s in steps}
    assert sorted(by_name) == ["reviewlake ingest", "reviewlake train"]
    assert [s["Id"] for s in steps][::-1] == result["step_ids"]  # list_steps: newest first
    for stage in STAGES:
        step = by_name[f"reviewlake {stage}"]
        assert step["ActionOnFailure"] == "CONTINUE"
        assert step["Config"]["Jar"] == "command-runner.jar"
        args = step["Config"]["Args"]
        assert args[:5] == ["spark-submit", "--master", "yarn", "--deploy-mode", "cluster"]
        assert args[args.index("--py-files") + 1] == f"{code}/reviewlake-{__version__}.zip"
        assert args[args.index("--files") + 1] == f"{code}/conf/emr.yaml"
        assert args[args.index("--packages") + 1].split(",") == [
            "com.amazon.deequ:deequ:2.1.0-spark-3.5",
            "com.linkedin.sparktfrecord:spark-tfrecord_2.12:0.7.0",
            "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.1",
            "org.apache.iceberg:iceberg-aws-bundle:1.10.1"]   # the lake's tables, in Glue
        assert "spark.pyspark.python=/opt/reviewlake/venv/bin/python" in args
        tail = expected_args(bucket, stage, code)
        assert args[-len(tail):] == tail
    train_args = by_name["reviewlake train"]["Config"]["Args"]
    assert "spark.task.maxFailures=1" in train_args  # emr.submit_options.train
    assert "spark.task.maxFailures=1" not in by_name["reviewlake ingest"]["Config"]["Args"]
    assert any(cluster in line and "reviewlake train" in line for line in lines)
    assert not list((build_dir / "launch").glob("profile-*"))  # this launch's copy is gone


def test_dry_run_prints_add_steps_json_and_ships_nothing(aws, build_dir):
    bucket = new_bucket(aws)
    lines = []
    result = launch_emr(emr_config(aws, bucket), cluster_id=None, stages="ingest,train",
                        dry_run=True, build_dir=build_dir / "dry", out=lines.append)
    steps = json.loads("\n".join(lines))  # exactly the JSON, nothing else on stdout
    assert [s["Name"] for s in steps] == ["reviewlake ingest", "reviewlake train"]
    for step, api in zip(steps, result["steps"]):
        # the AWS CLI's shape for `aws emr add-steps --steps file://steps.json`
        assert set(step) == {"Type", "Name", "ActionOnFailure", "Jar", "Args"}
        assert step["Type"] == "CUSTOM_JAR" and step["Jar"] == "command-runner.jar"
        assert step["ActionOnFailure"] == "CANCEL_AND_WAIT"  # emr.yaml's default
        assert step["Args"] == api["HadoopJarStep"]["Args"]
    code = f"s3://{bucket}/code/{__version__}"
    tail = expected_args(bucket, "train", code)
    assert steps[1]["Args"][-len(tail):] == tail
    assert keys(aws, bucket) == []
    assert not (build_dir / "dry").exists()  # nothing built either


def test_cli_dry_run_without_aws(tmp_path):
    """The README's dry run: no credentials, no endpoint, no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    proc = run_cli("launch", "emr", "--cluster-id", "j-EXAMPLE", "--dry-run",
                   "--stages", "ingest,quality,prepare,train", env=env)
    assert proc.returncode == 0, proc.stderr
    steps = json.loads(proc.stdout)
    assert [s["Name"].split()[-1] for s in steps] == ["ingest", "quality", "prepare", "train"]
    assert steps[1]["Args"][-4:] == ["--input", "s3://my-bucket/reviewlake/lake",
                                     "--output", "s3://my-bucket/reviewlake/quality"]


def test_upload_only_prints_the_bootstrap_action(aws, build_dir):
    bucket = new_bucket(aws)
    lines = []
    result = launch_emr(emr_config(aws, bucket), cluster_id=None, upload_only=True,
                        build_dir=build_dir, out=lines.append)
    action = result["bootstrap_action"]
    code = f"s3://{bucket}/code/{__version__}"
    assert action["Path"] == f"{code}/bootstrap/emr_bootstrap.sh"
    assert action["Args"][0] == f"{code}/reviewlake-{__version__}-py3-none-any.whl"
    assert action["Args"][1:] == ["--python", "python3.11", "--venv", "/opt/reviewlake/venv",
                                  "--tensorflow", "2.15.1", "--horovod", "0.28.1", "--gpu", "auto"]
    assert f"code/{__version__}/bootstrap/emr_bootstrap.sh" in keys(aws, bucket)
    assert any(line.strip().startswith(f"--bootstrap-actions Path={action['Path']},"
                                       "Name=reviewlake,Args=[") for line in lines)
    assert result["step_ids"] == []


class ScriptedEMR:
    """describe_step answers from a script of states per step (an EMR that runs steps)."""

    def __init__(self, script):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls = 0

    def describe_step(self, ClusterId, StepId):
        self.calls += 1
        states = self.script[StepId]
        state = states.pop(0) if len(states) > 1 else states[0]
        status = {"State": state}
        if state == "FAILED":
            status["FailureDetails"] = {"Reason": "Unknown Error.",
                                        "Message": "Exception in thread main: gate failed",
                                        "LogFile": "s3://logs/j-1/steps/s-2/"}
        return {"Step": {"Id": StepId, "Status": status}}


def test_wait_follows_steps_and_names_the_failed_one():
    lines = []
    ok = ScriptedEMR({"s-1": ["PENDING", "RUNNING", "COMPLETED"], "s-2": ["PENDING", "COMPLETED"]})
    follow_steps(ok, "j-1", [("s-1", "reviewlake ingest"), ("s-2", "reviewlake quality")],
                 0, lines.append, sleep=lambda s: None)
    assert lines[-1] == "reviewlake quality (s-2): COMPLETED"
    failing = ScriptedEMR({"s-1": ["RUNNING", "COMPLETED"], "s-2": ["RUNNING", "FAILED"],
                           "s-3": ["CANCELLED"]})
    with pytest.raises(UserError) as err:
        follow_steps(failing, "j-1", [("s-1", "reviewlake ingest"), ("s-2", "reviewlake quality"),
                                      ("s-3", "reviewlake prepare")], 0, lines.append,
                     sleep=lambda s: None)
    assert err.value.exit_code == 1
    message = str(err.value)
    assert "'reviewlake quality' (s-2) FAILED" in message and "gate failed" in message
    assert "s3://logs/j-1/steps/s-2/" in message and "\n" not in message


def test_wait_against_the_emulator_reports_running_steps(aws, build_dir):
    """moto never finishes a step: --wait reports the states it sees and keeps polling."""
    bucket, cluster = new_bucket(aws), new_cluster(aws)
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            raise KeyboardInterrupt  # stop following, as a user would

    lines = []
    with pytest.raises(KeyboardInterrupt):
        launch_emr(emr_config(aws, bucket, "emr.poll_seconds=7"), cluster_id=cluster,
                   stages="ingest", wait=True, build_dir=build_dir, out=lines.append,
                   sleep=sleep)
    assert polls == [7, 7]
    assert any(line.startswith("reviewlake ingest (s-") and line.endswith("RUNNING")
               for line in lines)


@pytest.mark.parametrize("args, message", [
    (["--dry-run", "--stages", "ingest,publish"], "unknown stage 'publish' (known: ingest"),
    ([], "no EMR cluster: pass --cluster-id"),
    (["--cluster-id", "j-NOSUCHCLUSTER", "--stages", "ingest"], "EMR cluster j-NOSUCHCLUSTER not found in us-east-1"),
    (["--cluster-id", "j-X", "--set", "emr.code_prefix=my-bucket/code"], "not an S3 URI"),
    (["--cluster-id", "j-X", "--dry-run", "--set", "data.lake=data/lake"],
     "a cluster needs an s3:// path"),
    (["--cluster-id", "j-X", "--dry-run", "--set", "train.np=5"],
     "train.np 5 does not match emr.train: 2 executors x 1 rank = 2 processes"),
    (["--cluster-id", "j-X", "--dry-run", "--set", "emr.train.executors=two"],
     "emr.train.executors must be an integer of at least 1, got 'two'"),
])
def test_one_line_errors(aws, args, message):
    proc = run_cli("launch", "emr", "--set", f"aws.endpoint_url={aws.endpoint}", *args,
                   env=aws.environ)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("reviewlake launch: error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bootstrap_script_picks_tensorflow_and_horovod_per_node(tmp_path):
    script = ROOT / "lib" / "reviewlake" / "launch" / "emr_bootstrap.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    wheel = f"s3://b/code/{__version__}/reviewlake-{__version__}-py3-none-any.whl"
    base = dict(os.environ, REVIEWLAKE_BOOTSTRAP_DRY_RUN="1", TMPDIR=str(tmp_path))

    cpu = subprocess.run(["bash", str(script), wheel, "--gpu", "no"], env=base,
                         capture_output=True, text=True)
    assert cpu.returncode == 0, cpu.stderr
    assert "tensorflow-cpu==2.15.1" in cpu.stdout and "[features,quality]" in cpu.stdout
    assert f"aws s3 cp --only-show-errors {wheel}" in cpu.stdout
    assert "HOROVOD_WITH_GLOO=1" in cpu.stdout and "HOROVOD_GPU_OPERATIONS" not in cpu.stdout
    assert "horovod==0.28.1" in cpu.stdout and "/opt/reviewlake/venv/bin/horovodrun --check-build" \
        in cpu.stdout

    # A GPU node: nvidia-smi lists a GPU and the CUDA toolkit (with NCCL) is there.
    cuda, gpu_env = _gpu_node(tmp_path)
    gpu = subprocess.run(["bash", str(script), wheel, "--tensorflow", "2.15.1"],
                         env=gpu_env, capture_output=True, text=True)
    assert gpu.returncode == 0, gpu.stderr
    assert "tensorflow[and-cuda]==2.15.1" in gpu.stdout
    assert "HOROVOD_GPU_OPERATIONS=NCCL" in gpu.stdout and f"HOROVOD_CUDA_HOME={cuda}" in gpu.stdout

    bad = subprocess.run(["bash", str(script), "reviewlake.tar.gz"], env=base,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "must be an s3:// (or local) path to a .whl" in bad.stderr


def test_quality_step_ships_its_suite(tmp_path):
    suite = tmp_path / "my-suite.yaml"
    suite.write_text("checks: []\n")
    cfg = Config.load(ROOT / "conf" / "emr.yaml", [f"quality.suite={suite}"])
    lines = []
    result = launch_emr(cfg, cluster_id=None, stages="quality", dry_run=True,
                        build_dir=tmp_path / "build", out=lines.append)
    args = result["steps"][0]["HadoopJarStep"]["Args"]
    code = f"s3://my-bucket/reviewlake/code/{__version__}"
    assert args[args.index("--files") + 1] == f"{code}/conf/emr.yaml,{code}/conf/my-suite.yaml"
    assert args[-2:] == ["--suite", "my-suite.yaml"]


def _confs(args):
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")


def _train_and_ingest(tmp_path, *sets):
    cfg = Config.load(ROOT / "conf" / "emr.yaml", list(sets))
    result = launch_emr(cfg, cluster_id=None, stages="ingest,train", dry_run=True,
                        build_dir=tmp_path / "build", out=lambda line: None)
    return [s["HadoopJarStep"]["Args"] for s in result["steps"]]


TRAIN_ONLY = ("spark.executor.", "spark.task.cpus", "spark.task.resource.",
              "spark.dynamicAllocation.")


def test_train_step_has_its_own_resources(tmp_path):
    """The train step sizes its executors for Horovod ranks (a fixed number of executors,
    one task per GPU or one per CPU executor, memory overhead for the TF process); the
    Spark stages keep the cluster's defaults."""
    ingest, train = _train_and_ingest(tmp_path)
    conf = _confs(train)
    assert conf["spark.dynamicAllocation.enabled"] == "false"
    executors = int(conf["spark.executor.instances"])
    assert conf["spark.task.cpus"] == conf["spark.executor.cores"]  # CPU: one rank per executor
    assert conf["spark.executor.memoryOverhead"] and conf["spark.executor.memory"]
    assert not any(k.startswith("spark.executor.resource.gpu") for k in conf)
    assert train[train.index("--np") + 1] == str(executors)
    assert train.index("--np") > train.index("--launcher")      # a job argument
    assert not any(k.startswith(TRAIN_ONLY) for k in _confs(ingest))
    assert "--np" not in ingest

    _, gpu = _train_and_ingest(tmp_path, "emr.train.executors=3", "emr.train.gpus_per_executor=4",
                               "emr.train.executor_cores=16", "emr.train.memory_overhead=12g")
    conf = _confs(gpu)
    assert conf["spark.executor.resource.gpu.amount"] == "4"
    assert conf["spark.task.resource.gpu.amount"] == "1"
    assert conf["spark.executor.resource.gpu.discoveryScript"] == \
        "/usr/lib/spark/scripts/gpu/getGpusResources.sh"
    assert conf["spark.task.cpus"] == "4" and conf["spark.executor.cores"] == "16"
    assert conf["spark.executor.instances"] == "3"
    assert conf["spark.executor.memoryOverhead"] == "12g"
    assert gpu[gpu.index("--np") + 1] == "12"                  # 3 executors x 4 GPUs

    with pytest.raises(UserError, match="train.np 5 .* 3 executors x 4"):
        _train_and_ingest(tmp_path, "emr.train.executors=3", "emr.train.gpus_per_executor=4",
                          "emr.train.executor_cores=16", "train.np=5")
    with pytest.raises(UserError, match="executor_cores 2 .* 4 GPUs"):
        _train_and_ingest(tmp_path, "emr.train.gpus_per_executor=4", "emr.train.executor_cores=2")


def _gpu_node(tmp_path, nccl_in_cuda=True):
    """A GPU node as the bootstrap sees it: nvidia-smi lists a GPU, CUDA_HOME has nvcc (and,
    where asked, NCCL as NVIDIA's packages lay it out: include/nccl.h, lib64/libnccl.so)."""
    fake = tmp_path / "bin"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A10G (UUID: GPU-1)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    cuda = tmp_path / "cuda"
    (cuda / "bin").mkdir(parents=True, exist_ok=True)
    (cuda / "bin" / "nvcc").write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.2, V12.2.140'\n")
    (cuda / "bin" / "nvcc").chmod(0o755)
    if nccl_in_cuda:
        (cuda / "include").mkdir(exist_ok=True)
        (cuda / "include" / "nccl.h").write_text("/* nccl */\n")
        (cuda / "lib64").mkdir(exist_ok=True)
        (cuda / "lib64" / "libnccl.so.2").write_text("")
        (cuda / "lib64" / "libnccl.so").symlink_to("libnccl.so.2")
    env = dict(os.environ, REVIEWLAKE_BOOTSTRAP_DRY_RUN="1", TMPDIR=str(tmp_path),
               PATH=f"{fake}:{os.environ['PATH']}", CUDA_HOME=str(cuda),
               REVIEWLAKE_BOOTSTRAP_SYSROOT=str(tmp_path / "root"))
    env.pop("NCCL_HOME", None)
    return cuda, env


def _bootstrap(env, *args):
    script = ROOT / "lib" / "reviewlake" / "launch" / "emr_bootstrap.sh"
    wheel = f"s3://b/code/{__version__}/reviewlake-{__version__}-py3-none-any.whl"
    return subprocess.run(["bash", str(script), wheel, *args], env=env, capture_output=True,
                          text=True)


def _hvd_env(stdout):
    line = next(l for l in stdout.splitlines() if "pip install" in l and "horovod==" in l)
    return dict(w.split("=", 1) for w in line.split() if w.startswith("HOROVOD_"))


def test_bootstrap_builds_horovod_against_an_nccl_with_header_and_library(tmp_path):
    cuda, env = _gpu_node(tmp_path)
    proc = _bootstrap(env)
    assert proc.returncode == 0, proc.stderr
    hvd = _hvd_env(proc.stdout)
    assert hvd["HOROVOD_GPU_OPERATIONS"] == "NCCL"
    assert os.path.isfile(os.path.join(hvd["HOROVOD_NCCL_INCLUDE"], "nccl.h"))
    assert os.path.exists(os.path.join(hvd["HOROVOD_NCCL_LIB"], "libnccl.so"))
    assert hvd["HOROVOD_NCCL_HOME"] == str(cuda) and hvd["HOROVOD_NCCL_LINK"] == "SHARED"
    assert "libnccl-devel" not in proc.stdout            # found: nothing to install

    # pip's nvidia-nccl layout (libnccl.so.2 only, no header) given as NCCL_HOME: refused,
    # in one line naming what is missing.
    pip_nccl = tmp_path / "site-packages" / "nvidia" / "nccl"
    (pip_nccl / "lib").mkdir(parents=True)
    (pip_nccl / "lib" / "libnccl.so.2").write_text("")
    bad = _bootstrap(dict(env, NCCL_HOME=str(pip_nccl)))
    assert bad.returncode != 0
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("emr_bootstrap.sh: ") and "nccl.h" in last and "libnccl.so" in last
    assert "horovod==" not in bad.stdout

    # No NCCL anywhere: the NCCL packages (runtime and headers) come from NVIDIA's CUDA
    # repository for RHEL 9 (Amazon Linux 2023's base), matching CUDA 12; in a dry run
    # nothing is installed, so the check after it fails and names what is missing.
    _, bare = _gpu_node(tmp_path / "bare", nccl_in_cuda=False)
    none = _bootstrap(bare)
    assert "cuda/repos/rhel9/" in none.stdout
    assert "libnccl-devel-" in none.stdout and "+cuda12" in none.stdout
    assert none.returncode != 0 and "horovod==" not in none.stdout
    last = none.stderr.strip().splitlines()[-1]
    assert last.startswith("emr_bootstrap.sh: ") and "nccl.h" in last and "libnccl.so" in last
