"""``reviewlake launch sagemaker``: a stage as a SageMaker job (sagemaker SDK v3).

* ingest, quality, prepare: Spark processing jobs (``PySparkProcessor``). The job file of
  ``jobs/`` is the application; the packaged library goes with ``submit_py_files``, the
  resolved profile with ``submit_files``, the profile's Maven packages as
  ``spark.jars.packages`` (an EMR-style configuration) or jars with ``submit_jars``. The SDK
  stages those into the container's ``/opt/ml/processing/input/{code,py-files,files,jars,
  conf}`` and ``smspark-submit`` runs the job in YARN client mode on the first instance, so
  the job reads its profile from ``/opt/ml/processing/input/files/<profile>.yaml``. Data is
  read from and written to S3 directly (executors on every instance write their own part
  files), and Spark's event logs go to ``/opt/ml/processing/spark-events`` -> S3.
* train: a training job (``ModelTrainer``) on the training image of ``docker/`` (the
  TensorFlow training image plus Horovod with MPI and NCCL: ``sagemaker.train.image_uri``)
  whose entry is our own MPI launcher, ``jobs/sagemaker_launch.py``
  (:mod:`reviewlake.launch.sagemaker_mpi`: the SDK's ``MPI`` distribution starts only
  ``processes_per_host`` ranks in all): the leader runs ``mpirun -np hosts x
  processes_per_host`` (``processes_per_host`` = GPUs per instance) on
  ``jobs/sagemaker_train.py`` -> :mod:`reviewlake.launch.sagemaker_train` -> the training
  function every launcher runs. Channels: ``train`` sharded by S3 key (each instance gets
  its share of the TFRecord files), ``meta``/``tokenizer``/``validation``/``test`` fully
  replicated; checkpoints to S3 (``/opt/ml/checkpoints``), optionally on spot capacity.

Every create request goes through one boto3 session (the profile's region, profile and
endpoint) and is recorded; ``--dry-run`` answers every AWS call locally, so nothing is
uploaded or created, and prints the request that would have been sent.
"""
from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..errors import UserError
from ..train.spec import LAUNCH_OPTIONS
from ..aws import S3, Aws, aws_errors, parse_s3_uri, s3_join
from .bundle import JOBS_DIR, build_zip, job_file, profile_name, write_profile
from .stages import SPARK_STAGES, STAGES, stage_args, stage_files, stage_paths
from .submit import profile_jars, profile_packages

log = logging.getLogger("reviewlake.launch")

PROCESSING_INPUT = "/opt/ml/processing/input"
SPARK_EVENTS_LOCAL = "/opt/ml/processing/spark-events/"
CHECKPOINTS_LOCAL = "/opt/ml/checkpoints"
TRAIN_ENTRY = "sagemaker_train.py"      # what every rank runs
TRAIN_LAUNCHER = "sagemaker_launch.py"  # the job's entry, once per instance
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+")
# train section keys that are launcher settings, not hyperparameters of the training function
# (the baseline needs Spark, which the training image has not: it is fitted by `reviewlake
# train` and the pipeline, not by the SageMaker job)
_NOT_HYPERPARAMETERS = {*LAUNCH_OPTIONS, "input", "output", "checkpoint_dir", "shard", "resume"}
METRICS = [("train:loss", r" loss: ([0-9\.]+)"), ("train:accuracy", r" accuracy: ([0-9\.]+)"),
           ("validation:loss", r"val_loss: ([0-9\.]+)"),
           ("validation:accuracy", r"val_accuracy: ([0-9\.]+)"),
           ("test:accuracy", r"test accuracy: ([0-9\.]+)")]


# --------------------------------------------------------------------------- session

class Recorder:
    """Sees every call the session's clients make: records the create requests (and, in a
    dry run, the uploads) and, in a dry run, answers every call itself so nothing reaches
    AWS."""

    def __init__(self, dry_run: bool, region: str):
        self.dry_run = dry_run
        self.region = region
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.uploads: list[str] = []

    def attach(self, boto_session) -> None:
        events = boto_session.events
        for op in ("CreateProcessingJob", "CreateTrainingJob"):
            events.register(f"provide-client-params.sagemaker.{op}", self._record)
        if self.dry_run:
            for op in ("PutObject", "CreateMultipartUpload"):
                events.register(f"provide-client-params.s3.{op}", self._record_upload)
            events.register("before-call", self._answer)

    def _record(self, params, model, **_):
        self.requests.append((model.name, copy.deepcopy(params)))

    def _record_upload(self, params, **_):
        self.uploads.append(f"s3://{params['Bucket']}/{params['Key']}")

    def last(self, operation: str) -> dict[str, Any]:
        found = [p for op, p in self.requests if op == operation]
        if not found:
            raise RuntimeError(f"no {operation} request was made")
        return found[-1]

    def _answer(self, model, **_):
        from botocore.awsrequest import AWSResponse

        op = model.name
        arn = f"arn:aws:sagemaker:{self.region}:000000000000"
        if op in ("PutObject", "UploadPart"):
            body: dict[str, Any] = {"ETag": '"dry-run"'}
        elif op == "CreateMultipartUpload":
            body = {"UploadId": "dry-run"}
        elif op in ("CompleteMultipartUpload", "AbortMultipartUpload"):
            body = {}
        elif op == "SimulatePrincipalPolicy":
            body = {"EvaluationResults": []}
        elif op == "GetCallerIdentity":
            body = {"Account": "000000000000", "Arn": "arn:aws:iam::000000000000:user/dry-run",
                    "UserId": "dry-run"}
        elif op == "CreateProcessingJob":
            name = self.last(op)["ProcessingJobName"]
            body = {"ProcessingJobArn": f"{arn}:processing-job/{name}"}
        elif op == "CreateTrainingJob":
            name = self.last(op)["TrainingJobName"]
            body = {"TrainingJobArn": f"{arn}:training-job/{name}"}
        elif op == "DescribeTrainingJob":  # the SDK reads back what it created
            req = self.last("CreateTrainingJob")
            body = {k: v for k, v in req.items() if k in (
                "TrainingJobName", "AlgorithmSpecification", "RoleArn", "InputDataConfig",
                "OutputDataConfig", "ResourceConfig", "StoppingCondition", "HyperParameters",
                "CheckpointConfig", "EnableManagedSpotTraining", "Environment")}
            body.update(TrainingJobArn=f"{arn}:training-job/{req['TrainingJobName']}",
                        TrainingJobStatus="InProgress", SecondaryStatus="Starting",
                        CreationTime=datetime.datetime.now(datetime.timezone.utc),
                        ModelArtifacts={"S3ModelArtifacts": ""})
        else:
            raise UserError(f"--dry-run: unexpected AWS call {model.service_model.service_name}"
                            f".{op}; nothing was sent")
        return AWSResponse("https://dry-run.invalid", 200, {}, None), body


_VALIDATED_CONFIGS: list[dict] = []


def _validate_once(config: dict) -> None:
    """Validate the SDK defaults config of our session once. The SDK re-validates the
    session's config against its JSON schema on every lookup (about 0.5 s each, dozens per
    job); repeats for this very object (identity, never mutated) are let through."""
    from sagemaker.core.config.config_manager import SageMakerConfig

    SageMakerConfig.validate_sagemaker_config(config)
    _VALIDATED_CONFIGS.append(config)
    current = SageMakerConfig.__dict__["validate_sagemaker_config"].__func__
    if getattr(current, "reviewlake_memo", False):
        return

    def validate(sagemaker_config=None):
        if any(sagemaker_config is c for c in _VALIDATED_CONFIGS):
            return None
        return current(sagemaker_config)

    validate.reviewlake_memo = True  # type: ignore[attr-defined]
    SageMakerConfig.validate_sagemaker_config = staticmethod(validate)


def sagemaker_session(aws: Aws, cfg, code_prefix: str, dry_run: bool = False):
    """A sagemaker SDK Session on the profile's AWS session; its default bucket and prefix are
    the code prefix (the SDK stages code and dependencies there, per job); SDK telemetry
    off unless the profile says otherwise."""
    import boto3
    from sagemaker.core.config.config import load_sagemaker_config
    from sagemaker.core.helper.session_helper import Session

    if dry_run:  # answered locally: no credential lookup, nothing sent
        boto_session = boto3.Session(region_name=aws.region, aws_access_key_id="dry-run",
                                     aws_secret_access_key="dry-run")
    else:
        boto_session = aws.session()
    for name in ("sagemaker", "sagemaker.config"):  # our own lines say what happened
        logging.getLogger(name).setLevel(logging.WARNING)
    # "No region provided. Using default region.": it does use the session's region
    logging.getLogger("sagemaker.core.utils.utils").setLevel(logging.ERROR)
    recorder = Recorder(dry_run, aws.region)
    recorder.attach(boto_session)
    bucket, key = parse_s3_uri(code_prefix)
    sm_config = load_sagemaker_config(s3_resource=None) or {}
    sm_config.setdefault("SchemaVersion", "1.0")
    if cfg.get("sagemaker.telemetry_opt_out", True):
        sm_config.setdefault("SageMaker", {}).setdefault("PythonSDK", {}) \
            .setdefault("Modules", {})["TelemetryOptOut"] = True
    _validate_once(sm_config)

    class LaunchSession(Session):
        def default_bucket(self):  # the configured bucket; never created or probed
            return bucket

    session = LaunchSession(boto_session=boto_session, default_bucket=bucket,
                            default_bucket_prefix=key.strip("/") or None,
                            sagemaker_config=sm_config)
    return session, recorder


def _role(cfg) -> str:
    role = cfg.get("sagemaker.role")
    if not role:
        raise UserError("no SageMaker execution role: set sagemaker.role to an IAM role ARN "
                        "(or pass --role arn:aws:iam::<account>:role/<name>)")
    if not _ROLE_ARN.match(str(role)):
        raise UserError(f"sagemaker.role must be an IAM role ARN "
                        f"(arn:aws:iam::<account>:role/<name>), got {role!r}")
    return str(role)


def _code_prefix(cfg) -> str:
    prefix = cfg.get("sagemaker.code_prefix")
    if not prefix:
        raise UserError("sagemaker.code_prefix is not set: the S3 prefix the SDK stages code "
                        "and dependencies to, e.g. --set sagemaker.code_prefix=s3://my-bucket/x")
    parse_s3_uri(str(prefix))
    return str(prefix).rstrip("/")


def _int(cfg, key: str, minimum: int = 1) -> int:
    value = cfg.get(key)
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be an integer, got {value!r}") from None
    if out < minimum:
        raise UserError(f"{key} must be at least {minimum}, got {out}")
    return out


# --------------------------------------------------------------------------- processing

def processing_job(cfg, stage: str, session, build_dir: Path) -> Callable[[], None]:
    """Start one Spark stage as a processing job through ``session``; returns a function
    that follows the job (its logs) to the end."""
    from sagemaker.core.spark import PySparkProcessor

    p = "sagemaker.processing"
    app = job_file(stage)
    # The job reads the profile where the SDK's "files" input puts it in the container.
    args = stage_args(cfg, stage, f"{PROCESSING_INPUT}/files/{profile_name(cfg)}")
    extra = stage_files(cfg, stage)
    for flag, path in extra:
        args += [flag, f"{PROCESSING_INPUT}/files/{path.name}"]
    version = str(cfg.get(f"{p}.framework_version") or "3.5")
    py_version = cfg.get(f"{p}.py_version") or None
    container = cfg.get(f"{p}.container_version")
    env = {"SPARK_VERSION": version, "PYTHONUNBUFFERED": "1",
           **{str(k): str(v) for k, v in (cfg.get(f"{p}.env") or {}).items()}}
    try:
        processor = PySparkProcessor(
            role=_role(cfg), instance_type=str(cfg.get(f"{p}.instance_type")),
            instance_count=_int(cfg, f"{p}.instance_count"), framework_version=version,
            py_version=py_version, container_version=str(container) if container else None,
            image_uri=cfg.get(f"{p}.image_uri") or None,
            volume_size_in_gb=_int(cfg, f"{p}.volume_size_gb"),
            max_runtime_in_seconds=_int(cfg, f"{p}.max_runtime_seconds"),
            base_job_name=f"reviewlake-{stage}", sagemaker_session=session, env=env)
    except ValueError as exc:  # no image for that version / instance type
        raise UserError(f"sagemaker.processing: {exc}") from None

    (build_dir / "launch").mkdir(parents=True, exist_ok=True)
    own = Path(tempfile.mkdtemp(prefix="profile-", dir=build_dir / "launch"))
    profile = write_profile(cfg, own / profile_name(cfg))  # this launch's settings only
    zip_path = build_zip(build_dir)
    jars = profile_jars(cfg, with_jars_dir=False) + \
        [str(j) for j in cfg.get(f"{p}.jars") or []]
    configuration = []
    packages = profile_packages(cfg)
    if packages:
        configuration.append({"Classification": "spark-defaults",
                              "Properties": {"spark.jars.packages": ",".join(packages)}})
    events = cfg.get(f"{p}.spark_event_logs")
    if events:
        parse_s3_uri(str(events))
    try:
        with aws_errors(f"starting the {stage} processing job"), \
                _sdk_errors("sagemaker.processing"):
            processor.run(submit_app=str(app), submit_py_files=[str(zip_path)],
                          submit_jars=jars or None,
                          submit_files=[str(profile)] + [str(path) for _, path in extra],
                          arguments=args, wait=False, logs=False,
                          configuration=configuration or None,
                          spark_event_logs_s3_uri=str(events) if events else None)
    finally:
        shutil.rmtree(own, ignore_errors=True)  # the SDK staged its own copy
    name = processor.latest_job.processing_job_name
    return lambda: _wait_processing(session, name)


def _wait_processing(session, name: str) -> None:
    from sagemaker.core.processing import logs_for_processing_job

    logs_for_processing_job(sagemaker_session=session, job_name=name, wait=True)


# What the SDK raises when a job it follows fails, stops or times out.
JOB_FAILURES = ("UnexpectedStatusException", "CapacityError", "FailedStatusError",
                "TimeoutExceededError", "WaiterError")


def _wait(follow: Callable[[], None], kind: str, name: str) -> None:
    try:
        follow()
    except Exception as exc:
        if type(exc).__name__ not in JOB_FAILURES:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"SageMaker {kind} job {name} did not complete: {first}",
                        exit_code=1) from None


# --------------------------------------------------------------------------- training

def gpus_per_instance(instance_type: str, region: str) -> int:
    """GPUs of a SageMaker instance type (0 for CPU types), from the SDK's table."""
    from sagemaker.core.image_uris import config_for_framework

    table = config_for_framework("instance_gpu_info")
    for reg in (region, "us-east-1"):
        info = (table.get(reg) or {}).get(instance_type)
        if info:
            return int(info.get("Count", 0))
    return 0


def efa_options(instance_type: str) -> list[str]:
    """The mpirun options the SDK's MPI driver adds on EFA instances (its own lists of them:
    libfabric's EFA provider, NCCL's simple protocol, RDMA where the instance has it); our
    launcher gets them through REVIEWLAKE_MPI_OPTIONS, before the profile's options."""
    from sagemaker.train.container_drivers.common import utils

    out: list[str] = []
    if instance_type in utils.SM_EFA_NCCL_INSTANCES:
        out += ["-x", "FI_PROVIDER=efa", "-x", "NCCL_PROTO=simple"]
    if instance_type in utils.SM_EFA_RDMA_INSTANCES:
        out += ["-x", "FI_EFA_USE_DEVICE_RDMA=1"]
    return out


def hyperparameters(cfg) -> dict[str, Any]:
    """The profile's train options the training function takes (TrainSpec fields)."""
    import dataclasses

    from ..train.spec import TrainSpec

    fields = {f.name for f in dataclasses.fields(TrainSpec)}
    section = cfg.section("train")
    unknown = sorted(set(section) - fields - _NOT_HYPERPARAMETERS)
    if unknown:
        raise UserError(f"unknown train option(s) {', '.join(unknown)} in the profile")
    return {k: v for k, v in section.items()
            if k in fields and k not in _NOT_HYPERPARAMETERS and v is not None}


def train_requirements() -> list[str]:
    """What the training image lacks: the tokenizer and model libraries, as pinned by the
    package's ``features`` extra (TensorFlow, Horovod and MPI come with the image)."""
    try:
        from importlib.metadata import requires

        reqs = [r.split(";")[0].strip() for r in requires("reviewlake") or []
                if 'extra == "features"' in r]
    except Exception:  # not installed: a plain checkout on sys.path
        reqs = []
    return (reqs or ["transformers==4.57.6", "tokenizers==0.22.2"]) + ["matplotlib"]


def train_source_dir(build_dir: Path) -> Path:
    """The training job's code: the launcher, the entry script, the packaged library,
    requirements.txt
    (in a directory of its own, which the caller removes once the SDK uploaded it)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    src = Path(tempfile.mkdtemp(prefix="sagemaker-train-", dir=build_dir))
    shutil.copy2(JOBS_DIR / TRAIN_ENTRY, src / TRAIN_ENTRY)
    shutil.copy2(JOBS_DIR / TRAIN_LAUNCHER, src / TRAIN_LAUNCHER)
    shutil.copy2(build_zip(build_dir), src)
    (src / "requirements.txt").write_text("\n".join(train_requirements()) + "\n")
    return src


def _features_layout(features: str, instance_count: int, s3, dry_run: bool) -> dict[str, str]:
    """channel -> S3 prefix. The split directories come from FEATURES/_meta.json when it can
    be read (not in a dry run); the train split must have a file for every instance."""
    from ..train.channels import split_dir, tokenizer_dir

    layout = {"meta": s3_join(features, "_meta.json"),
              "tokenizer": s3_join(features, "tokenizer") + "/",
              **{split: s3_join(features, split) + "/" for split in ("train", "validation", "test")}}
    if dry_run:
        return layout
    text = s3.read_text(layout["meta"])
    if text is None:
        raise UserError(f"no features at {features} ({layout['meta']} not found): run the "
                        "prepare stage first (reviewlake launch sagemaker --stage prepare)")
    meta = json.loads(text)
    for split in ("train", "validation", "test"):
        folder = split_dir(meta, split)
        if not folder:
            raise UserError(f"the {split} files must be in a directory of {features}")
        layout[split] = s3_join(features, folder) + "/"
    layout["tokenizer"] = s3_join(features, tokenizer_dir(meta)) + "/"
    n_files = len(meta["splits"]["train"]["files"])
    if n_files < instance_count:
        raise UserError(f"{features} has {n_files} train file(s) for {instance_count} instances; "
                        "the train channel is sharded by S3 key, so every instance needs one: "
                        "re-run prepare with more output files or use fewer instances")
    return layout


@dataclass
class TrainJob:
    """The training job's settings, resolved from the profile (``sagemaker.train``)."""

    role: str
    image: str
    instance_type: str
    instance_count: int
    processes_per_host: int
    volume_size_gb: int
    input_mode: str
    spot: bool
    max_runtime: int
    max_wait: int | None
    checkpoint_s3_uri: str | None
    output: str                     # data.model: model.tar.gz under <output>/<job>/output/
    channels: dict[str, str]        # channel -> S3 prefix
    hyperparameters: dict[str, Any]
    mpi_options: list[str]
    gpu: bool = False               # GPU instances: the image's Horovod needs NCCL

    @classmethod
    def from_config(cls, cfg, region: str, s3=None, dry_run: bool = False) -> "TrainJob":
        from sagemaker.core import image_uris

        t = "sagemaker.train"
        role = _role(cfg)
        features, model = stage_paths(cfg, "train")
        instance_type = str(cfg.get(f"{t}.instance_type"))
        count = _int(cfg, f"{t}.instance_count")
        try:
            image = cfg.get(f"{t}.image_uri") or image_uris.retrieve(
                "tensorflow", region, version=str(cfg.get(f"{t}.framework_version")),
                py_version=cfg.get(f"{t}.py_version"), instance_type=instance_type,
                image_scope="training")
        except ValueError as exc:
            raise UserError(f"{t}: {exc}") from None
        if not cfg.get(f"{t}.image_uri"):
            log.warning("sagemaker.train.image_uri is not set: the stock TensorFlow %s training "
                        "image has no Horovod from TF 2.12 on and the job stops at its start; "
                        "build the image of docker/ and set sagemaker.train.image_uri (README)",
                        cfg.get(f"{t}.framework_version"))
        spot = bool(cfg.get(f"{t}.spot"))
        max_run = _int(cfg, f"{t}.max_runtime_seconds")
        max_wait = _int(cfg, f"{t}.max_wait_seconds") if spot else None
        if max_wait is not None and max_wait < max_run:
            raise UserError(f"{t}.max_wait_seconds ({max_wait}) must be at least "
                            f"{t}.max_runtime_seconds ({max_run}) for spot training")
        checkpoint = cfg.get(f"{t}.checkpoint_s3_uri") or None
        if checkpoint:
            parse_s3_uri(str(checkpoint))
        hps = hyperparameters(cfg)
        hps["checkpoint_dir"] = CHECKPOINTS_LOCAL
        gpus = gpus_per_instance(instance_type, region)
        return cls(
            role=role, image=str(image), instance_type=instance_type, instance_count=count,
            processes_per_host=_int(cfg, f"{t}.processes_per_host")
            if cfg.get(f"{t}.processes_per_host") is not None else (gpus or 1), gpu=gpus > 0,
            volume_size_gb=_int(cfg, f"{t}.volume_size_gb"),
            input_mode=str(cfg.get(f"{t}.input_mode") or "File"), spot=spot,
            max_runtime=max_run, max_wait=max_wait,
            checkpoint_s3_uri=str(checkpoint) if checkpoint else None, output=model,
            channels=_features_layout(features, count, s3, dry_run), hyperparameters=hps,
            mpi_options=efa_options(instance_type) +
            [str(o) for o in cfg.get(f"{t}.mpi_options") or []])

    def input_channels(self) -> list[Any]:
        """``train`` sharded by S3 key (each instance downloads its share of the files);
        everything every process needs in full, fully replicated."""
        from sagemaker.core.shapes import Channel, DataSource, S3DataSource

        def channel(name: str, distribution: str) -> Any:
            return Channel(channel_name=name, input_mode=self.input_mode, data_source=DataSource(
                s3_data_source=S3DataSource(s3_data_type="S3Prefix", s3_uri=self.channels[name],
                                            s3_data_distribution_type=distribution)))

        return [channel("train", "ShardedByS3Key")] + \
            [channel(n, "FullyReplicated") for n in ("meta", "tokenizer", "validation", "test")]

    def model_trainer(self, session, source_dir: Path):
        from sagemaker.core.shapes import MetricDefinition
        from sagemaker.core.training.configs import (CheckpointConfig, Compute,
                                                     OutputDataConfig, SourceCode,
                                                     StoppingCondition)
        from sagemaker.train.model_trainer import ModelTrainer

        from .sagemaker_mpi import IMAGE_ENV, MPI_OPTIONS_ENV, PROCESSES_ENV

        stopping = StoppingCondition(max_runtime_in_seconds=self.max_runtime,
                                     **({"max_wait_time_in_seconds": self.max_wait}
                                        if self.max_wait else {}))
        trainer = ModelTrainer(
            sagemaker_session=session, role=self.role, base_job_name="reviewlake-train",
            training_image=self.image, training_input_mode=self.input_mode,
            # No `distributed=MPI(...)`: the SDK's driver runs `mpirun -np <per node>`
            # (sagemaker_mpi says more); the SDK's basic driver runs our launcher instead.
            source_code=SourceCode(source_dir=str(source_dir),
                                   entry_script=TRAIN_LAUNCHER, requirements="requirements.txt"),
            compute=Compute(instance_type=self.instance_type, instance_count=self.instance_count,
                            volume_size_in_gb=self.volume_size_gb,
                            enable_managed_spot_training=self.spot),
            stopping_condition=stopping,
            output_data_config=OutputDataConfig(s3_output_path=self.output),
            checkpoint_config=CheckpointConfig(s3_uri=self.checkpoint_s3_uri,
                                               local_path=CHECKPOINTS_LOCAL),
            hyperparameters=dict(self.hyperparameters),
            environment={"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
                         PROCESSES_ENV: str(self.processes_per_host),
                         MPI_OPTIONS_ENV: json.dumps(self.mpi_options), IMAGE_ENV: self.image})
        trainer.with_metric_definitions([MetricDefinition(name=n, regex=r) for n, r in METRICS])
        return trainer

    def distribution(self) -> dict[str, Any]:
        """What the job's launcher will run (on the leader, with SageMaker's host names)."""
        from .sagemaker_mpi import mpirun_command

        hosts = [f"algo-{i + 1}" for i in range(self.instance_count)]
        mpirun = mpirun_command(hosts, self.processes_per_host, ["python", TRAIN_ENTRY, "..."],
                                gpu=self.gpu, options=self.mpi_options)
        return {"mpi": {"hosts": self.instance_count,
                        "processes_per_host": self.processes_per_host,
                        "processes": self.instance_count * self.processes_per_host,
                        "mpi_options": self.mpi_options, "launcher": TRAIN_LAUNCHER,
                        "mpirun": mpirun}}


def training_job(cfg, session, aws: Aws, build_dir: Path, dry_run: bool,
                 s3=None) -> tuple[TrainJob, Callable[[], None]]:
    """Start the training job; returns its settings and a function that follows it."""
    job = TrainJob.from_config(cfg, aws.region, s3, dry_run)
    validate = bool(cfg.get("sagemaker.validate_role", True)) and not dry_run
    source_dir = train_source_dir(build_dir)
    try:
        with _role_validation(validate), _sdk_errors("sagemaker.train"):
            trainer = job.model_trainer(session, source_dir)
        with aws_errors("starting the train training job"), _sdk_errors("sagemaker.train"):
            trainer.train(input_data_config=job.input_channels(), wait=False, logs=False)
    finally:
        shutil.rmtree(source_dir, ignore_errors=True)  # uploaded (or never to be)
    started = trainer._latest_training_job  # the SDK's handle on the job it created
    return job, lambda: started.wait(logs=True)


@contextlib.contextmanager
def _role_validation(enabled: bool):
    """The SDK checks the training role with iam:SimulatePrincipalPolicy unless the
    SAGEMAKER_VALIDATE_ROLE environment variable says false (its only switch)."""
    if enabled:
        yield
        return
    old = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SAGEMAKER_VALIDATE_ROLE", None)
        else:
            os.environ["SAGEMAKER_VALIDATE_ROLE"] = old


@contextlib.contextmanager
def _sdk_errors(section: str):
    """What the SDK rejects before anything is created (a role without the needed
    permissions, an invalid value) as one line."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        if type(exc).__name__ not in ("RoleValidationError", "ValueError", "ValidationError"):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{section}: {first}") from None


# --------------------------------------------------------------------------- launch

def launch_sagemaker(cfg, *, stage: str, wait: bool = False, dry_run: bool = False,
                     build_dir: str | Path = "build", aws: Aws | None = None,
                     out: Callable[[str], None] = print) -> dict[str, Any]:
    """Start one stage as a SageMaker job (and follow it with ``wait``); returns
    ``{"operation", "request", "uploads", ["distribution"]}``: the create request as sent (or,
    with ``dry_run``, as it would have been sent, and the uploads that would have been made)."""
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    _role(cfg)
    code_prefix = _code_prefix(cfg)
    stage_paths(cfg, stage)  # one-line errors before the SDK is even imported
    if stage in SPARK_STAGES:
        job_file(stage)
    aws = aws or Aws.from_config(cfg)
    build_dir = Path(build_dir)
    session, recorder = sagemaker_session(aws, cfg, code_prefix, dry_run)
    extra: dict[str, Any] = {}
    if stage in SPARK_STAGES:
        kind, operation = "processing", "CreateProcessingJob"
        follow = processing_job(cfg, stage, session, build_dir)
    else:
        kind, operation = "training", "CreateTrainingJob"
        s3 = None if dry_run else S3(session.boto_session.client("s3", region_name=aws.region))
        job, follow = training_job(cfg, session, aws, build_dir, dry_run, s3)
        extra["distribution"] = job.distribution()
    request = recorder.last(operation)
    result = {"operation": operation, "request": request, "uploads": recorder.uploads, **extra}
    name = request.get("ProcessingJobName") or request.get("TrainingJobName")
    if dry_run:
        out(json.dumps({"operation": operation, "request": request, **extra,
                        "would_upload": recorder.uploads}, indent=2, default=str))
        return result
    out(f"started {kind} job {name} in {aws.region} (reviewlake {__version__}, stage {stage})")
    if wait:
        _wait(follow, kind, name)
        out(f"{kind} job {name} completed")
    return result
