"""reviewlake launch sagemaker against the local AWS API emulator (moto server): the Spark
processing job and the MPI training job requests, what lands in S3, --dry-run, errors."""
import json
import os
import uuid

import pytest
import yaml

from conftest import ROOT, run_cli
from reviewlake import __version__
from reviewlake.config import Config
from reviewlake.errors import UserError
from reviewlake.launch.sagemaker_jobs import gpus_per_instance, launch_sagemaker

ROLE = "arn:aws:iam::123456789012:role/ReviewlakeSageMaker"
SPARK_IMAGE = "173754725891.dkr.ecr.us-east-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312-v1"
TF_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.14.1-gpu-py310"


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("build")


def new_bucket(aws):
    name = f"rl-{uuid.uuid4().hex[:12]}"
    aws.client("s3").create_bucket(Bucket=name)
    return name


def sm_config(aws, bucket, *sets):
    return Config.load(ROOT / "conf" / "sagemaker.yaml", [
        f"aws.endpoint_url={aws.endpoint}", f"sagemaker.role={ROLE}",
        f"sagemaker.code_prefix=s3://{bucket}/sm", f"data.raw=s3://{bucket}/raw",
        f"data.lake=s3://{bucket}/lake", f"data.quality=s3://{bucket}/quality",
        f"data.features=s3://{bucket}/features", f"data.model=s3://{bucket}/model",
        # the emulator cannot simulate IAM policies (iam:SimulatePrincipalPolicy)
        "sagemaker.validate_role=false", *sets])


def keys(aws, bucket, prefix=""):
    pages = aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                       Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def read(aws, uri):
    bucket, key = uri[len("s3://"):].split("/", 1)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def put_features(aws, bucket, train_files=4):
    """prepare's contract in S3: _meta.json, tokenizer/, train/validation/test part files."""
    s3 = aws.client("s3")
    meta = {"max_seq_length": 64, "num_labels": 5, "compression": "none",
            "tokenizer": {"path": "tokenizer"}, "splits": {}}
    for split, n in (("train", train_files), ("validation", 1), ("test", 1)):
        files = [f"{split}/part-{i:05d}.tfrecord" for i in range(n)]
        meta["splits"][split] = {"count": 100 * n, "files": files}
        for f in files:
            s3.put_object(Bucket=bucket, Key=f"features/{f}", Body=b"records")
    s3.put_object(Bucket=bucket, Key="features/tokenizer/vocab.txt", Body=b"[PAD]\n")
    s3.put_object(Bucket=bucket, Key="features/_meta.json", Body=json.dumps(meta).encode())


def test_processing_job(aws, build_dir):
    bucket = new_bucket(aws)
    cfg = sm_config(aws, bucket, f"sagemaker.processing.spark_event_logs=s3://{bucket}/events")
    lines = []
    result = launch_sagemaker(cfg, stage="ingest", build_dir=build_dir, out=lines.append)
    request = result["request"]
    name = request["ProcessingJobName"]
    assert name.startswith("reviewlake-ingest-") and f"processing job {name}" in lines[0]
    job = aws.client("sagemaker").describe_processing_job(ProcessingJobName=name)
    app = job["AppSpecification"]
    assert app["ImageUri"] == SPARK_IMAGE
    entry = app["ContainerEntrypoint"]
    assert entry[0] == "smspark-submit" and entry[-1] == "/opt/ml/processing/input/code/ingest.py"
    assert entry[entry.index("--py-files") + 1] == "/opt/ml/processing/input/py-files"
    assert entry[entry.index("--files") + 1] == "/opt/ml/processing/input/files"
    assert app["ContainerArguments"] == [
        "--config", "/opt/ml/processing/input/files/sagemaker.yaml",
        "--input", f"s3://{bucket}/raw", "--output", f"s3://{bucket}/lake"]
    assert job["RoleArn"] == ROLE
    inputs = {i["InputName"]: i["S3Input"] for i in job["ProcessingInputs"]}
    assert set(inputs) == {"code", "py-files", "files", "conf"}
    for input_name, s3_input in inputs.items():
        assert s3_input["LocalPath"] == f"/opt/ml/processing/input/{input_name}"
        assert s3_input["S3Uri"].startswith(f"s3://{bucket}/sm/{name}/input/{input_name}")
    # What the SDK staged is in S3: the job, the library, the profile, the Spark config.
    assert read(aws, inputs["code"]["S3Uri"]) == (ROOT / "jobs" / "ingest.py").read_bytes()
    staged = keys(aws, bucket, f"sm/{name}/")
    assert f"sm/{name}/input/py-files/reviewlake-{__version__}.zip" in staged
    profile = yaml.safe_load(read(aws, inputs["files"]["S3Uri"] + "/sagemaker.yaml"))
    assert "extends" not in profile and profile["data"]["lake"] == f"s3://{bucket}/lake"
    assert json.loads(read(aws, inputs["conf"]["S3Uri"])) == [{
        "Classification": "spark-defaults",
        "Properties": {"spark.jars.packages": "com.amazon.deequ:deequ:2.1.0-spark-3.5,"
                                              "com.linkedin.sparktfrecord:spark-tfrecord_2.12:0.7.0,"
                                              "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.1,"
                                              "org.apache.iceberg:iceberg-aws-bundle:1.10.1"}}]
    outputs = job["ProcessingOutputConfig"]["Outputs"]
    assert [(o["OutputName"], o["S3Output"]) for o in outputs] == [("spark-event-logs", {
        "S3Uri": f"s3://{bucket}/events", "LocalPath": "/opt/ml/processing/spark-events/",
        "S3UploadMode": "Continuous"})]
    assert "--local-spark-event-logs-dir" in entry
    # The emulator keeps no resources or environment: the request as sent has them.
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceType": "ml.m5.4xlarge", "InstanceCount": 2, "VolumeSizeInGB": 100}
    assert request["Environment"]["SPARK_VERSION"] == "3.5"
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}


def test_training_job(aws, build_dir):
    bucket = new_bucket(aws)
    put_features(aws, bucket)
    result = launch_sagemaker(sm_config(aws, bucket), stage="train", build_dir=build_dir,
                              out=lambda line: None)
    name = result["request"]["TrainingJobName"]
    job = aws.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert job["AlgorithmSpecification"]["TrainingImage"] == TF_IMAGE
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["ResourceConfig"] == {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 2,
                                     "VolumeSizeInGB": 100}
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400,
                                        "MaxWaitTimeInSeconds": 172800}
    assert job["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{bucket}/sm/reviewlake-train/")
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{bucket}/model"
    hps = job["HyperParameters"]
    assert hps["epochs"] == "3" and hps["model"] == "tiny"
    assert hps["checkpoint_dir"] == "/opt/ml/checkpoints"
    assert not {"np", "launcher", "hosts", "controller"} & set(hps)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"] for c in job["InputDataConfig"]}
    features = f"s3://{bucket}/features"
    assert channels["train"] == {"S3DataType": "S3Prefix", "S3Uri": f"{features}/train/",
                                 "S3DataDistributionType": "ShardedByS3Key"}
    for channel, uri in (("meta", f"{features}/_meta.json"), ("tokenizer", f"{features}/tokenizer/"),
                         ("validation", f"{features}/validation/"), ("test", f"{features}/test/")):
        assert channels[channel]["S3Uri"] == uri
        assert channels[channel]["S3DataDistributionType"] == "FullyReplicated"
    # The code channel: our launcher, the entry script, the packaged library, the requirements.
    code = channels["code"]["S3Uri"]
    code_keys = keys(aws, bucket, code.split("/", 3)[3] + "/")
    assert {k.rsplit("/", 1)[1] for k in code_keys} >= {
        "sagemaker_launch.py", "sagemaker_train.py", f"reviewlake-{__version__}.zip",
        "requirements.txt"}
    requirements = read(aws, f"{code}/requirements.txt").decode().split()
    assert "transformers==4.57.6" in requirements and "tokenizers==0.22.2" in requirements
    # Not the SDK's MPI driver (it runs `mpirun -np <per node>`): its basic driver runs our
    # launcher, which runs mpirun -np hosts x processes_per_host (4 GPUs -> 4 a host).
    drivers = channels["sm_drivers"]["S3Uri"]
    assert json.loads(read(aws, f"{drivers}/distributed.json")) == {}
    assert json.loads(read(aws, f"{drivers}/sourcecode.json"))["entry_script"] == \
        "sagemaker_launch.py"
    train_sh = read(aws, f"{drivers}/sm_train.sh").decode()
    assert "basic_script_driver.py" in train_sh and "mpi_driver.py" not in train_sh
    env = result["request"]["Environment"]
    assert env["REVIEWLAKE_PROCESSES_PER_HOST"] == "4" and env["REVIEWLAKE_IMAGE"] == TF_IMAGE
    assert json.loads(env["REVIEWLAKE_MPI_OPTIONS"]) == []
    mpi = result["distribution"]["mpi"]
    assert {k: mpi[k] for k in ("hosts", "processes_per_host", "processes", "mpi_options",
                                "launcher")} == {
        "hosts": 2, "processes_per_host": 4, "processes": 8, "mpi_options": [],
        "launcher": "sagemaker_launch.py"}
    assert mpi["mpirun"][:5] == ["mpirun", "--host", "algo-1:4,algo-2:4", "-np", "8"]
    assert "NCCL_DEBUG=WARN" in mpi["mpirun"]
    assert result["request"]["Environment"]["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_training_job_on_our_image_and_cpu_instances(aws, build_dir):
    """sagemaker.train.image_uri (the image of docker/) is the job's image; on CPU instances
    processes_per_host from the profile, and mpirun without the NCCL settings."""
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/reviewlake-train:2.14.1-gpu-py310"
    cfg = sm_config(aws, new_bucket(aws), f"sagemaker.train.image_uri={image}",
                    "sagemaker.train.instance_type=ml.c5.4xlarge",
                    "sagemaker.train.processes_per_host=2", "sagemaker.train.instance_count=3")
    result = launch_sagemaker(cfg, stage="train", dry_run=True, build_dir=build_dir,
                              out=lambda line: None)
    request = result["request"]
    assert request["AlgorithmSpecification"]["TrainingImage"] == image
    assert request["Environment"]["REVIEWLAKE_IMAGE"] == image
    assert request["Environment"]["REVIEWLAKE_PROCESSES_PER_HOST"] == "2"
    mpirun = result["distribution"]["mpi"]["mpirun"]
    assert mpirun[:5] == ["mpirun", "--host", "algo-1:2,algo-2:2,algo-3:2", "-np", "6"]
    assert not [a for a in mpirun if a.startswith("NCCL_")]
    with pytest.raises(UserError, match="processes_per_host must be at least 1"):
        launch_sagemaker(sm_config(aws, new_bucket(aws), "sagemaker.train.processes_per_host=0"),
                         stage="train", dry_run=True, build_dir=build_dir, out=lambda line: None)


def test_gpus_per_instance():
    assert gpus_per_instance("ml.p4d.24xlarge", "us-east-1") == 8
    assert gpus_per_instance("ml.g5.12xlarge", "eu-west-1") == 4
    assert gpus_per_instance("ml.c5.2xlarge", "us-east-1") == 0


def test_training_needs_features_and_a_file_per_instance(aws, build_dir):
    bucket = new_bucket(aws)
    with pytest.raises(UserError, match=r"no features at s3://.*/features .*run the prepare"):
        launch_sagemaker(sm_config(aws, bucket), stage="train", build_dir=build_dir)
    put_features(aws, bucket, train_files=3)
    with pytest.raises(UserError, match="has 3 train file.s. for 4 instances"):
        launch_sagemaker(sm_config(aws, bucket, "sagemaker.train.instance_count=4"),
                         stage="train", build_dir=build_dir)
    with pytest.raises(UserError, match="max_wait_seconds .60. must be at least"):
        launch_sagemaker(sm_config(aws, bucket, "sagemaker.train.max_wait_seconds=60"),
                         stage="train", build_dir=build_dir)


@pytest.mark.parametrize("stage", ["ingest", "train"])
def test_dry_run_sends_and_uploads_nothing(aws, build_dir, stage):
    bucket = new_bucket(aws)
    sm = aws.client("sagemaker")
    before = (len(sm.list_processing_jobs()["ProcessingJobSummaries"]),
              len(sm.list_training_jobs()["TrainingJobSummaries"]))
    lines = []
    result = launch_sagemaker(sm_config(aws, bucket), stage=stage, dry_run=True,
                              build_dir=build_dir, out=lines.append)
    printed = json.loads("\n".join(lines))
    assert printed["request"] == json.loads(json.dumps(result["request"], default=str))
    assert printed["would_upload"] and all(u.startswith(f"s3://{bucket}/sm/")
                                           for u in printed["would_upload"])
    assert keys(aws, bucket) == []
    assert (len(sm.list_processing_jobs()["ProcessingJobSummaries"]),
            len(sm.list_training_jobs()["TrainingJobSummaries"])) == before
    if stage == "train":
        assert printed["operation"] == "CreateTrainingJob"
        assert printed["distribution"]["mpi"]["processes_per_host"] == 4
        channels = {c["ChannelName"]: c for c in printed["request"]["InputDataConfig"]}
        assert channels["train"]["DataSource"]["S3DataSource"]["S3DataDistributionType"] == \
            "ShardedByS3Key"
    else:
        assert printed["operation"] == "CreateProcessingJob"
        assert printed["request"]["AppSpecification"]["ImageUri"] == SPARK_IMAGE


def test_cli_dry_run_without_aws(tmp_path):
    """The README's dry run: no credentials, no endpoint; nothing leaves the machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1")
    proc = run_cli("launch", "sagemaker", "--stage", "train", "--dry-run", "--role", ROLE,
                   "--instance-type", "ml.p4d.24xlarge", "--no-spot", env=env)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    request = printed["request"]
    assert request["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"
    assert printed["distribution"]["mpi"]["processes_per_host"] == 8
    assert printed["distribution"]["mpi"]["mpirun"][:5] == [  # 2 instances x 8 GPUs
        "mpirun", "--host", "algo-1:8,algo-2:8", "-np", "16"]
    # EFA, as the SDK's MPI driver sets it on these instances
    assert json.loads(request["Environment"]["REVIEWLAKE_MPI_OPTIONS"]) == [
        "-x", "FI_PROVIDER=efa", "-x", "NCCL_PROTO=simple", "-x", "FI_EFA_USE_DEVICE_RDMA=1"]
    assert request["EnableManagedSpotTraining"] is False
    assert "MaxWaitTimeInSeconds" not in request["StoppingCondition"]


@pytest.mark.parametrize("args, message", [
    (["--stage", "train", "--dry-run", "--set", "sagemaker.role=null"],
     "no SageMaker execution role: set sagemaker.role"),
    (["--stage", "ingest", "--dry-run", "--role", "SageMakerRole"],
     "sagemaker.role must be an IAM role ARN"),
    (["--stage", "publish", "--role", ROLE], "unknown stage 'publish'"),
    (["--stage", "ingest", "--role", ROLE, "--dry-run", "--wait"], "exclude each other"),
    (["--stage", "prepare", "--role", ROLE, "--set", "data.features=data/features"],
     "a cluster needs an s3:// path"),
])
def test_one_line_errors(aws, args, message):
    proc = run_cli("launch", "sagemaker", "--set", f"aws.endpoint_url={aws.endpoint}", *args,
                   env=aws.environ)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("reviewlake launch: error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_quality_job_ships_its_suite(aws, build_dir, tmp_path, monkeypatch):
    import reviewlake.launch.sagemaker_jobs as jobs

    suite = tmp_path / "my-suite.yaml"
    suite.write_text("checks: []\n")
    # this checkout may not have jobs/quality.py yet: any job file stands in for it
    monkeypatch.setattr(jobs, "job_file", lambda stage: ROOT / "jobs" / "ingest.py")
    bucket = new_bucket(aws)
    result = launch_sagemaker(sm_config(aws, bucket, f"quality.suite={suite}"), stage="quality",
                              dry_run=True, build_dir=build_dir, out=lambda line: None)
    assert result["request"]["AppSpecification"]["ContainerArguments"][-2:] == [
        "--suite", "/opt/ml/processing/input/files/my-suite.yaml"]
    assert any(u.endswith("/input/files/my-suite.yaml") for u in result["uploads"])


def test_wait_follows_the_training_job(aws, build_dir):
    """The emulator reports a created training job as completed: --wait returns."""
    bucket = new_bucket(aws)
    put_features(aws, bucket)
    lines = []
    launch_sagemaker(sm_config(aws, bucket), stage="train", wait=True, build_dir=build_dir,
                     out=lines.append)
    assert lines[0].startswith("started training job reviewlake-train-")
    assert lines[-1].endswith("completed")


def test_a_failed_job_is_one_line_and_exit_1():
    from sagemaker.core.utils.exceptions import FailedStatusError

    from reviewlake.launch.sagemaker_jobs import _wait

    def follow():
        raise FailedStatusError(resource_type="TrainingJob", status="Failed",
                                reason="AlgorithmError: ExecuteUserScriptError")

    with pytest.raises(UserError) as err:
        _wait(follow, "training", "reviewlake-train-1")
    assert err.value.exit_code == 1 and "\n" not in str(err.value)
    assert str(err.value).startswith("SageMaker training job reviewlake-train-1 did not complete")
    assert "ExecuteUserScriptError" in str(err.value)
    with pytest.raises(KeyError):  # anything else is a bug and keeps its traceback
        _wait(lambda: {}["x"], "training", "reviewlake-train-1")
