"""The training job's own MPI launcher (``jobs/sagemaker_launch.py``), run once per instance.

Why not the SDK's MPI distribution: sagemaker SDK v3's driver
(``sagemaker/train/container_drivers/distributed_drivers/mpi_driver.py``) builds
``mpirun --host algo-1:P,algo-2:P -np P`` with ``P`` the per-node process count
(``mpi_utils.get_mpirun_command(num_processes=process_count)``), so every rank lands on the
first instance: the other instances' ShardedByS3Key shares are never read and the learning
rate is scaled by P instead of hosts x P. ``MPI`` has no total-count field to correct it.

So the job's entry is this launcher (the SDK's basic script driver runs it with the
hyperparameters as ``--key value``):

* every instance writes its environment to ``/etc/environment`` (what processes started
  over ssh see) and, in a multi-instance job, starts sshd;
* the leader (``SM_MASTER_ADDR``, else the first of ``SM_HOSTS``) checks the image's
  Horovod, waits until it can ssh into every other instance, then runs
  :func:`mpirun_command` -- ``-np hosts x processes_per_host`` -- on
  ``jobs/sagemaker_train.py`` with the hyperparameters, and tells the others it is done;
* the other instances wait for that word and exit 0 (the leader reports the job's result).

Every rank of ``sagemaker_train.py`` then checks ``hvd.size() == hosts x processes_per_host``
(:func:`reviewlake.launch.sagemaker_train.check_world`).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Callable, Mapping, Sequence

from ..errors import UserError

# The launcher's settings, in the job's environment (sagemaker_jobs.TrainJob).
PROCESSES_ENV = "REVIEWLAKE_PROCESSES_PER_HOST"
MPI_OPTIONS_ENV = "REVIEWLAKE_MPI_OPTIONS"
IMAGE_ENV = "REVIEWLAKE_IMAGE"
HOSTS_ENV = "REVIEWLAKE_HOSTS"           # the host order mpirun was given (rank r on r // P)
SSH_WAIT_ENV = "REVIEWLAKE_SSH_WAIT_SECONDS"
DONE_FILE = "/tmp/reviewlake-mpi-done"
SSHD = "/usr/sbin/sshd"
FAILURE_FILE = "/opt/ml/output/failure"
ENTRY = "sagemaker_train.py"
SSH = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "ConnectTimeout=10"]

# What every rank needs from the leader's environment (the same on every instance);
# SM_CURRENT_HOST is per instance and comes from each instance's /etc/environment.
_EXPORTED = ("SM_HOSTS", "SM_MODEL_DIR", "SM_OUTPUT_DATA_DIR", "SM_NUM_GPUS", "SM_NUM_CPUS",
             "SM_CURRENT_INSTANCE_TYPE", "PYTHONPATH", "PYTHONUNBUFFERED", "TF_CPP_MIN_LOG_LEVEL",
             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
             "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")


def _host_key(host: str):
    """algo-2 before algo-10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", host)]


def hosts_of(env: Mapping[str, str]) -> list[str]:
    try:
        hosts = json.loads(env.get("SM_HOSTS") or '["algo-1"]')
    except json.JSONDecodeError:
        raise UserError(f"SM_HOSTS is not a JSON list: {env.get('SM_HOSTS')!r}") from None
    if not isinstance(hosts, list) or not hosts:
        raise UserError(f"SM_HOSTS is not a non-empty JSON list: {env.get('SM_HOSTS')!r}")
    return sorted((str(h) for h in hosts), key=_host_key)


def leader_of(hosts: Sequence[str], env: Mapping[str, str]) -> str:
    master = env.get("SM_MASTER_ADDR")
    return master if master in hosts else hosts[0]


def processes_per_host(env: Mapping[str, str]) -> int:
    value = env.get(PROCESSES_ENV)
    try:
        out = int(value or "")
    except ValueError:
        raise UserError(f"{PROCESSES_ENV} must be a positive integer, got {value!r}") from None
    if out < 1:
        raise UserError(f"{PROCESSES_ENV} must be a positive integer, got {value!r}")
    return out


def exported_names(env: Mapping[str, str]) -> list[str]:
    """The variables mpirun passes (``-x NAME``) from the leader to every rank."""
    names = [n for n in _EXPORTED if n in env]
    names += sorted(n for n in env if n.startswith(("SM_CHANNEL_", "REVIEWLAKE_")))
    return names


def mpirun_command(hosts: Sequence[str], processes_per_host: int, program: Sequence[str], *,
                   gpu: bool, interface: str = "eth0", export: Sequence[str] = (),
                   options: Sequence[str] = ()) -> list[str]:
    """``mpirun`` starting ``processes_per_host`` ranks on every host: ``--host
    h1:P,h2:P -np len(hosts) * P`` with ``-map-by slot`` (ranks 0..P-1 on h1, P..2P-1 on h2,
    ...) and ``-bind-to none`` (a rank uses several cores: TF's threads, Horovod's). On GPU
    instances NCCL is told the interface and warns on problems (``NCCL_DEBUG`` left to
    ``options`` when given there). ``export``: variable names passed to every rank;
    ``options``: the profile's extra mpirun options (``sagemaker.train.mpi_options``)."""
    if not hosts:
        raise ValueError("no hosts")
    if processes_per_host < 1:
        raise ValueError(f"processes_per_host must be at least 1, got {processes_per_host}")
    cmd = ["mpirun", "--host", ",".join(f"{h}:{processes_per_host}" for h in hosts),
           "-np", str(len(hosts) * processes_per_host),
           "--allow-run-as-root", "--tag-output", "-bind-to", "none", "-map-by", "slot",
           "-mca", "btl_tcp_if_include", interface, "-mca", "oob_tcp_if_include", interface,
           "-mca", "plm_rsh_no_tree_spawn", "1", "-mca", "plm_rsh_num_concurrent",
           str(len(hosts)), "-mca", "pml", "ob1", "-mca", "btl", "^openib",
           "-mca", "orte_abort_on_non_zero_status", "1",
           "-x", "PATH", "-x", "LD_LIBRARY_PATH"]
    if gpu:
        cmd += ["-x", f"NCCL_SOCKET_IFNAME={interface}"]
        if not any(str(o).startswith("NCCL_DEBUG") for o in options):
            cmd += ["-x", "NCCL_DEBUG=WARN"]
    for name in export:
        if name not in ("PATH", "LD_LIBRARY_PATH"):
            cmd += ["-x", name]
    return cmd + [str(o) for o in options] + [str(p) for p in program]


def _write_environment(env: Mapping[str, str], path: str = "/etc/environment") -> None:
    """Processes mpirun starts over ssh read this instance's environment from here."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            for name, value in env.items():
                if "\n" not in value:
                    fh.write(f"{name}={value}\n")
    except OSError:
        pass


def _ssh(host: str, *command: str, run=subprocess.run) -> bool:
    return run([*SSH, host, *command], capture_output=True, text=True).returncode == 0


def wait_for_hosts(hosts: Sequence[str], timeout: float, *, run=subprocess.run,
                   sleep: Callable[[float], None] = time.sleep,
                   clock: Callable[[], float] = time.monotonic) -> None:
    """Until every host takes an ssh command (its sshd is up); one line after ``timeout``."""
    waiting = list(hosts)
    start = clock()
    while waiting:
        waiting = [h for h in waiting if not _ssh(h, "true", run=run)]
        if not waiting:
            return
        if clock() - start > timeout:
            raise UserError(f"cannot ssh into {', '.join(waiting)} after {timeout:g} s: the "
                            "instances' sshd did not come up (the image needs openssh-server "
                            "and passwordless root ssh between instances, as the SageMaker "
                            "training images have)", exit_code=1)
        sleep(5)


def tell_done(hosts: Sequence[str], code: int, *, run=subprocess.run,
              sleep: Callable[[float], None] = time.sleep, tries: int = 6) -> None:
    for host in hosts:
        for _ in range(tries):
            if _ssh(host, f"echo {int(code)} > {DONE_FILE}", run=run):
                break
            sleep(5)


def wait_done(path: str | None = None, sleep: Callable[[float], None] = time.sleep) -> int:
    """A non-leader instance: serve mpirun's ssh until the leader says it is done."""
    path = path or DONE_FILE
    while not os.path.exists(path):
        sleep(10)
    return 0


def write_failure(message: str) -> None:
    """The job's FailureReason (SageMaker reads /opt/ml/output/failure; the first writer wins,
    so the SDK's driver does not replace it with its traceback)."""
    try:
        if os.path.isdir(os.path.dirname(FAILURE_FILE)) and not os.path.exists(FAILURE_FILE):
            with open(FAILURE_FILE, "w", encoding="utf-8") as fh:
                fh.write(message + "\n")
    except OSError:
        pass


def _fail(message: str) -> None:
    print(f"reviewlake launch (sagemaker): error: {message}", file=sys.stderr, flush=True)
    write_failure(message)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
         run=subprocess.run, popen=subprocess.Popen, here: str | None = None,
         environment_file: str = "/etc/environment") -> int:
    """The launcher of one instance; returns its exit status (the leader's is mpirun's)."""
    env = dict(os.environ if env is None else env)
    argv = list(sys.argv[1:] if argv is None else argv)
    here = here or os.getcwd()
    try:
        hosts = hosts_of(env)
        per_host = processes_per_host(env)
        current = env.get("SM_CURRENT_HOST") or hosts[0]
        leader = leader_of(hosts, env)
        others = [h for h in hosts if h != leader]
        env[HOSTS_ENV] = json.dumps(hosts)
        _write_environment(env, environment_file)
        if others:
            if not os.path.exists(SSHD):
                raise UserError(f"multi-instance training needs sshd ({SSHD}) in the training "
                                "image: build the image of docker/ (README, SageMaker)")
            popen([SSHD, "-D"])
        if current != leader:
            print(f"reviewlake launch (sagemaker): {current} serves {leader}'s mpirun",
                  flush=True)
            return wait_done()
        from .sagemaker_train import check_horovod

        check_horovod(env)  # before waiting for anyone: a wrong image fails in seconds
        ssh_run = functools.partial(run, env=env)
        if others:
            wait_for_hosts(others, float(env.get(SSH_WAIT_ENV) or 600), run=ssh_run)
        try:
            options = json.loads(env.get(MPI_OPTIONS_ENV) or "[]")
        except json.JSONDecodeError:
            raise UserError(f"{MPI_OPTIONS_ENV} is not a JSON list") from None
        program = [sys.executable, os.path.join(here, ENTRY), *argv]
        if len(hosts) * per_host == 1:  # one process: no MPI needed
            print(f"reviewlake launch (sagemaker): {shlex.join(program)}", flush=True)
            return run(program, env=env).returncode
        cmd = mpirun_command(hosts, per_host, program,
                             gpu=int(env.get("SM_NUM_GPUS") or 0) > 0,
                             interface=env.get("SM_NETWORK_INTERFACE_NAME") or "eth0",
                             export=exported_names(env), options=options)
        print(f"reviewlake launch (sagemaker): {shlex.join(cmd)}", flush=True)
        code = run(cmd, env=env).returncode
        tell_done(others, code, run=ssh_run)
        return code
    except UserError as exc:
        _fail(str(exc))
        return exc.exit_code
