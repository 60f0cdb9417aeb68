"""``reviewlake launch emr``: the stages as EMR steps on a running cluster.

One step per stage, each ``command-runner.jar`` running ``spark-submit --deploy-mode
cluster`` with the packaged library (``--py-files``), the resolved profile (``--files``, read
by the job as ``--config <name>.yaml`` from the driver's working directory), the profile's
Maven packages (``--packages``) or jars in S3 (``--jars``), the job file in S3 and the
stage's S3 input and output. The train step runs ``--launcher spark``: one Horovod process
per Spark task slot (``horovod.spark.run``), with executors of its own (``emr.train``:
:func:`train_resources`), on nodes set up by the bootstrap action
(``emr_bootstrap.sh``: Python venv, the wheel, TensorFlow for the node's hardware, Horovod).

``--dry-run`` prints the steps in the JSON that ``aws emr add-steps --steps file://...``
reads and touches nothing; ``--upload-only`` ships the code and prints the
``--bootstrap-actions`` argument for ``aws emr create-cluster``; ``--wait`` follows the
steps and fails (exit 1) naming the first step that did not complete.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..aws import S3, Aws, aws_errors, parse_s3_uri
from .bundle import Bundle, job_file
from .stages import parse_stages, stage_args, stage_files
from .submit import profile_jars, profile_packages

log = logging.getLogger("reviewlake.launch")

ACTIONS_ON_FAILURE = ("CONTINUE", "CANCEL_AND_WAIT", "TERMINATE_CLUSTER")
ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
FAILED_STEP_STATES = ("CANCELLED", "FAILED", "INTERRUPTED")
MAX_STEP_CHARS = 10240  # EMR's limit on the strings of one HadoopJarStep
# Where EMR's Spark keeps the script that lists a node's GPUs for Spark's resource scheduler.
GPU_DISCOVERY_SCRIPT = "/usr/lib/spark/scripts/gpu/getGpusResources.sh"


def _positive_int(cfg, key: str, default: int, minimum: int = 1) -> int:
    value = cfg.get(key)
    value = default if value is None else value
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = minimum - 1
    if number < minimum or isinstance(value, bool):
        raise UserError(f"{key} must be an integer of at least {minimum}, got {value!r}")
    return number


def train_resources(cfg) -> tuple[list[str], int]:
    """The train step's own executor settings (``emr.train``) as spark-submit arguments, and
    the number of Horovod processes they give: a fixed number of executors (dynamic
    allocation off), one task, hence one rank, per GPU (``spark.task.resource.gpu.amount=1``
    and ``spark.task.cpus`` = cores / GPUs) or, without GPUs, one per executor (a task takes
    all its cores), and ``memoryOverhead`` for the TensorFlow process, whose memory is not
    Spark's heap but counts against the YARN container."""
    executors = _positive_int(cfg, "emr.train.executors", 2)
    cores = _positive_int(cfg, "emr.train.executor_cores", 4)
    gpus = _positive_int(cfg, "emr.train.gpus_per_executor", 0, minimum=0)
    if gpus and cores < gpus:
        raise UserError(f"emr.train.executor_cores {cores} is fewer than the {gpus} GPUs per "
                        "executor (emr.train.gpus_per_executor): each rank needs a core")
    tasks = gpus or 1
    conf = {"spark.dynamicAllocation.enabled": "false",
            "spark.executor.instances": executors, "spark.executor.cores": cores,
            "spark.task.cpus": cores // tasks}
    for key, name in (("executor_memory", "spark.executor.memory"),
                      ("memory_overhead", "spark.executor.memoryOverhead")):
        if cfg.get(f"emr.train.{key}"):
            conf[name] = cfg.get(f"emr.train.{key}")
    if gpus:
        conf.update({"spark.executor.resource.gpu.amount": gpus,
                     "spark.task.resource.gpu.amount": 1,
                     "spark.executor.resource.gpu.discoveryScript":
                         cfg.get("emr.train.gpu_discovery_script") or GPU_DISCOVERY_SCRIPT})
    np = executors * tasks
    given = None if cfg.get("train.np") is None else _positive_int(cfg, "train.np", np)
    if given is not None and given != np:
        raise UserError(f"train.np {given} does not match emr.train: {executors} executors x "
                        f"{tasks} {'GPUs' if gpus else 'rank'} = {np} processes; set "
                        "emr.train.executors (or leave train.np unset)")
    args: list[str] = []
    for name, value in conf.items():
        args += ["--conf", f"{name}={value}"]
    return args, np


def cluster_jars(cfg, bundle: Bundle | None = None) -> tuple[list[str], list[str]]:
    """(``--jars`` values, local jars to upload). ``jars/`` is for local runs and is not
    shipped (a cluster brings its own Hadoop and AWS jars); the profile's ``spark.jars`` and
    ``emr.jars`` are: S3 or HTTP URIs as they are, local files uploaded next to the code."""
    values, local = [], []
    for jar in profile_jars(cfg, with_jars_dir=False) + [str(j) for j in cfg.get("emr.jars") or []]:
        if "://" in jar:
            values.append(jar)
        else:
            local.append(jar)
            values.append(bundle.uri("jars", Path(jar).name) if bundle else jar)
    return values, local


def spark_submit_command(cfg, bundle: Bundle, stage: str, jars: list[str]) -> list[str]:
    """The command-runner.jar arguments of one stage's step."""
    extra = stage_files(cfg, stage)
    files = [bundle.profile_uri] + [bundle.uri("conf", path.name) for _, path in extra]
    cmd = ["spark-submit", "--master", "yarn", "--deploy-mode", "cluster",
           "--name", f"reviewlake-{stage}",
           "--py-files", bundle.zip_uri, "--files", ",".join(files)]
    packages = profile_packages(cfg)
    if packages:
        cmd += ["--packages", ",".join(packages)]
    if jars:
        cmd += ["--jars", ",".join(jars)]
    python = cfg.get("emr.python")
    if python:  # the bootstrap action's venv, on the driver and on every executor
        cmd += ["--conf", f"spark.pyspark.python={python}",
                "--conf", f"spark.pyspark.driver.python={python}"]
    np_args: list[str] = []
    if stage == "train":  # before submit_options, so a --conf there still overrides these
        resources, np = train_resources(cfg)
        cmd += resources
        np_args = ["--np", str(np)]
    options = cfg.get("emr.submit_options") or {}
    for key in ("all", stage):
        more = options.get(key) or []
        if not isinstance(more, list):
            raise UserError(f"emr.submit_options.{key} must be a list of spark-submit arguments")
        cmd += [str(x) for x in more]
    cmd += [bundle.job_uri(stage)] + stage_args(cfg, stage, bundle.profile) + np_args
    for flag, path in extra:  # --files puts them in the driver's working directory too
        cmd += [flag, path.name]
    if sum(len(a) for a in cmd) > MAX_STEP_CHARS:
        raise UserError(f"the {stage} step's arguments exceed EMR's {MAX_STEP_CHARS} characters")
    return cmd


def build_steps(cfg, bundle: Bundle, stages: list[str], action: str) -> list[dict[str, Any]]:
    """The steps as the EMR API (AddJobFlowSteps) takes them."""
    jars, _ = cluster_jars(cfg, bundle)
    return [{"Name": f"reviewlake {stage}", "ActionOnFailure": action,
             "HadoopJarStep": {"Jar": "command-runner.jar",
                               "Args": spark_submit_command(cfg, bundle, stage, jars)}}
            for stage in stages]


def cli_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same steps in the AWS CLI's format (``aws emr add-steps --steps file://x.json``)."""
    return [{"Type": "CUSTOM_JAR", "Name": s["Name"], "ActionOnFailure": s["ActionOnFailure"],
             "Jar": s["HadoopJarStep"]["Jar"], "Args": list(s["HadoopJarStep"]["Args"])}
            for s in steps]


def bootstrap_action(cfg, bundle: Bundle) -> dict[str, Any]:
    """The bootstrap action for ``aws emr create-cluster --bootstrap-actions``."""
    boot = cfg.section("emr.bootstrap")
    args = [bundle.wheel_uri]
    for key, flag in (("python", "--python"), ("venv", "--venv"), ("tensorflow", "--tensorflow"),
                      ("horovod", "--horovod"), ("gpu", "--gpu"), ("nccl", "--nccl"),
                      ("nccl_home", "--nccl-home")):
        if boot.get(key) is not None:
            args += [flag, str(boot[key])]
    return {"Path": bundle.bootstrap_uri, "Name": "reviewlake", "Args": args}


def bootstrap_cli_arg(action: dict[str, Any]) -> str:
    """The action in the CLI's shorthand: ``Path=s3://...,Name=reviewlake,Args=[a,b]``."""
    return f"Path={action['Path']},Name={action['Name']},Args=[{','.join(action['Args'])}]"


def _check_cluster(emr, cluster_id: str, region: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    with aws_errors(f"describing EMR cluster {cluster_id}"):
        try:
            cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in (
                    "InvalidRequestException", "ResourceNotFoundException"):
                raise UserError(f"EMR cluster {cluster_id} not found in {region}") from None
            raise
    state = cluster.get("Status", {}).get("State")
    if state not in ACTIVE_CLUSTER_STATES:
        raise UserError(f"EMR cluster {cluster_id} is {state}; steps can only be added to a "
                        f"cluster that is {', '.join(ACTIVE_CLUSTER_STATES)}")
    return cluster


def follow_steps(emr, cluster_id: str, steps: list[tuple[str, str]], poll_seconds: float,
                 out: Callable[[str], None], sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll the steps (in order) until all completed; the first one that failed, was
    cancelled or interrupted ends the wait with a UserError naming it (exit code 1)."""
    last: dict[str, str] = {}
    pending = list(steps)
    while pending:
        for step_id, name in list(pending):
            with aws_errors(f"describing EMR step {step_id}"):
                status = emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]
            state = status.get("State", "UNKNOWN")
            if last.get(step_id) != state:
                out(f"{name} ({step_id}): {state}")
                last[step_id] = state
            if state == "COMPLETED":
                pending.remove((step_id, name))
            elif state in FAILED_STEP_STATES:
                details = status.get("FailureDetails") or {}
                reason = details.get("Message") or details.get("Reason") or \
                    (status.get("StateChangeReason") or {}).get("Message") or "no reason given"
                logs = f"; logs: {details['LogFile']}" if details.get("LogFile") else ""
                raise UserError(f"EMR step '{name}' ({step_id}) {state}: {reason}{logs}",
                                exit_code=1)
            else:
                break  # steps run in order: no point polling the ones behind a running one
        if pending:
            sleep(poll_seconds)


def launch_emr(cfg, *, cluster_id: str | None, stages: list[str] | str | None = None,
               action: str | None = None, wait: bool = False, dry_run: bool = False,
               upload_only: bool = False, build_dir: str | Path = "build",
               aws: Aws | None = None, emr_client=None, s3_client=None,
               out: Callable[[str], None] = print,
               sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Ship the code and add one step per stage; returns what was done (for tests and
    callers): ``steps`` (API format), ``step_ids``, ``uploaded``, ``bootstrap_action``."""
    code_prefix = cfg.get("emr.code_prefix")
    if not code_prefix:
        raise UserError("emr.code_prefix is not set: the S3 prefix the code is shipped to, "
                        "e.g. --set emr.code_prefix=s3://my-bucket/reviewlake/code")
    parse_s3_uri(str(code_prefix))
    stages = parse_stages(stages, cfg.get("emr.stages") or None)
    action = (action or cfg.get("emr.action_on_failure") or "CANCEL_AND_WAIT").upper()
    if action not in ACTIONS_ON_FAILURE:
        raise UserError(f"unknown action on failure {action!r} "
                        f"(one of {', '.join(ACTIONS_ON_FAILURE)})")
    cluster_id = cluster_id or cfg.get("emr.cluster_id")
    if not (cluster_id or dry_run or upload_only):
        raise UserError("no EMR cluster: pass --cluster-id j-XXXXXXXXXXXXX (or set "
                        "emr.cluster_id); --upload-only ships the code for create-cluster")

    _, local_jars = cluster_jars(cfg)
    bundle = Bundle.plan(cfg, str(code_prefix), build_dir, jars=local_jars,
                         conf=[p for s in stages for _, p in stage_files(cfg, s)])
    steps = [] if upload_only else build_steps(cfg, bundle, stages, action)
    result: dict[str, Any] = {"steps": steps, "step_ids": [], "uploaded": [],
                              "bootstrap_action": bootstrap_action(cfg, bundle)}
    if dry_run:
        out(json.dumps(cli_steps(steps) if steps else [result["bootstrap_action"]], indent=2))
        return result

    for stage in ([] if upload_only else stages):
        job_file(stage)
    aws = aws or Aws.from_config(cfg)
    session = aws.session() if (emr_client is None or s3_client is None) else None
    emr = emr_client or (None if upload_only else aws.client("emr", session))
    if not upload_only:
        _check_cluster(emr, str(cluster_id), aws.region)
    bundle.build(cfg)
    result["uploaded"] = bundle.upload(S3(s3_client or aws.client("s3", session)))
    log.info("shipped %d files to %s", len(result["uploaded"]), bundle.root)
    if upload_only:
        out(f"code shipped to {bundle.root}/")
        out("bootstrap action for aws emr create-cluster:")
        out(f"  --bootstrap-actions {bootstrap_cli_arg(result['bootstrap_action'])}")
        return result

    with aws_errors(f"adding steps to EMR cluster {cluster_id}"):
        response = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)
    result["step_ids"] = list(response["StepIds"])
    for step_id, step in zip(result["step_ids"], steps):
        out(f"added {step['Name']} as step {step_id} on {cluster_id}")
    if wait:
        follow_steps(emr, str(cluster_id), list(zip(result["step_ids"],
                                                    [s["Name"] for s in steps])),
                     float(cfg.get("emr.poll_seconds") or 30), out, sleep)
        out(f"all {len(steps)} step(s) completed")
    return result
