"""The SageMaker training job's own MPI launcher (defect 5 of issue 14: the SDK's MPI driver
runs `mpirun --host a:4,b:4 -np 4`, every rank on the first instance) and the checks every
rank makes at its start: the image's Horovod (defect 6) and the world it was started in."""
import json
import os
import subprocess
import sys
import types

import pytest

from conftest import ROOT
from reviewlake.errors import UserError
from reviewlake.launch import sagemaker_mpi
from reviewlake.launch.sagemaker_mpi import (exported_names, hosts_of, mpirun_command,
                                             wait_for_hosts)
from reviewlake.launch.sagemaker_train import check_horovod, check_world, main

PROGRAM = ["python", "sagemaker_train.py", "--epochs", "3"]


def option(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def exported(cmd):
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "-x"]


@pytest.mark.parametrize("hosts, per_host, np_", [(["algo-1", "algo-2"], 4, 8),
                                                  (["algo-1"], 8, 8),
                                                  (["algo-1", "algo-2", "algo-3"], 1, 3)])
def test_mpirun_starts_hosts_times_processes_per_host(hosts, per_host, np_):
    cmd = mpirun_command(hosts, per_host, PROGRAM, gpu=True)
    assert cmd[0] == "mpirun"
    assert option(cmd, "--host") == ",".join(f"{h}:{per_host}" for h in hosts)
    assert option(cmd, "-np") == str(np_)                       # not per_host, as the SDK's
    assert option(cmd, "-map-by") == "slot" and option(cmd, "-bind-to") == "none"
    assert cmd[-len(PROGRAM):] == PROGRAM


def test_mpirun_gpu_and_cpu_options():
    gpu = mpirun_command(["algo-1", "algo-2"], 4, PROGRAM, gpu=True, interface="eth1",
                         export=["SM_HOSTS", "PATH", "REVIEWLAKE_PROCESSES_PER_HOST"])
    assert {"NCCL_SOCKET_IFNAME=eth1", "NCCL_DEBUG=WARN"} <= set(exported(gpu))
    assert exported(gpu).count("PATH") == 1 and "SM_HOSTS" in exported(gpu)
    assert "REVIEWLAKE_PROCESSES_PER_HOST" in exported(gpu)
    assert "btl_tcp_if_include" in gpu and gpu[gpu.index("btl_tcp_if_include") + 1] == "eth1"
    assert option(gpu, "plm_rsh_num_concurrent") == "2"
    cpu = mpirun_command(["algo-1", "algo-2"], 2, PROGRAM, gpu=False)
    assert not [x for x in exported(cpu) if x.startswith("NCCL_")]
    assert option(cpu, "-bind-to") == "none" and option(cpu, "-np") == "4"
    # the profile's options go last before the program; its NCCL_DEBUG wins
    mine = mpirun_command(["algo-1"], 2, PROGRAM, gpu=True,
                          options=["-x", "NCCL_DEBUG=INFO", "--report-bindings"])
    assert mine[-len(PROGRAM) - 3:-len(PROGRAM)] == ["-x", "NCCL_DEBUG=INFO", "--report-bindings"]
    assert "NCCL_DEBUG=WARN" not in mine
    with pytest.raises(ValueError):
        mpirun_command([], 1, PROGRAM, gpu=False)


def test_hosts_and_exported_variables():
    env = {"SM_HOSTS": json.dumps(["algo-10", "algo-2", "algo-1"]), "SM_CURRENT_HOST": "algo-2",
           "SM_CHANNEL_TRAIN": "/t", "SM_MODEL_DIR": "/m", "REVIEWLAKE_IMAGE": "img",
           "SM_TRAINING_ENV": "{...}", "HOME": "/root"}
    assert hosts_of(env) == ["algo-1", "algo-2", "algo-10"]
    names = exported_names(env)
    assert {"SM_HOSTS", "SM_CHANNEL_TRAIN", "SM_MODEL_DIR", "REVIEWLAKE_IMAGE"} == set(names)
    with pytest.raises(UserError, match="SM_HOSTS is not a JSON list"):
        hosts_of({"SM_HOSTS": "algo-1,algo-2"})


def test_leader_waits_for_ssh_then_gives_up_in_one_line():
    calls = []

    def run(cmd, **_):
        calls.append(cmd[-2])
        ok = cmd[-2] == "algo-2" or len(calls) > 3
        return types.SimpleNamespace(returncode=0 if ok else 255)

    wait_for_hosts(["algo-2", "algo-3"], 60, run=run, sleep=lambda s: None)
    assert calls == ["algo-2", "algo-3", "algo-3", "algo-3"]   # only the unreachable again
    clock = iter(range(0, 1000, 100))
    with pytest.raises(UserError) as err:
        wait_for_hosts(["algo-3"], 150, run=lambda cmd, **_: types.SimpleNamespace(returncode=255),
                       sleep=lambda s: None, clock=lambda: next(clock))
    assert "cannot ssh into algo-3 after 150 s" in str(err.value) and "\n" not in str(err.value)


def fake_hvd_module(mpi=True, gloo=True, nccl=2708):
    return types.SimpleNamespace(mpi_built=lambda: mpi, gloo_built=lambda: gloo,
                                 nccl_built=lambda: nccl)


SM_ENV = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "4",
          "SM_CURRENT_INSTANCE_TYPE": "ml.g5.12xlarge",
          "REVIEWLAKE_IMAGE": "123.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.14.1-gpu"}


@pytest.mark.parametrize("module, env, message", [
    (None, SM_ENV, "has no usable Horovod (import horovod.tensorflow"),
    (fake_hvd_module(mpi=False), SM_ENV, "built without MPI, which a 2-instance job needs"),
    (fake_hvd_module(nccl=0), SM_ENV, "built without NCCL, which GPU instances (ml.g5.12xlarge)"),
    (fake_hvd_module(gloo=False), dict(SM_ENV, HOROVOD_GLOO_RENDEZVOUS_ADDR="127.0.0.1"),
     "built without Gloo"),
])
def test_image_without_the_right_horovod_fails_in_one_line(monkeypatch, module, env, message):
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", module)
    with pytest.raises(UserError) as err:
        check_horovod(env)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert text.startswith(SM_ENV["REVIEWLAKE_IMAGE"]) and "docker/" in text
    assert "sagemaker.train.image_uri" in text


def test_image_horovod_that_fits(monkeypatch):
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", fake_hvd_module())
    check_horovod(SM_ENV)
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", fake_hvd_module(mpi=False, nccl=0))
    check_horovod({"SM_HOSTS": '["algo-1"]', "SM_NUM_GPUS": "0"})  # one CPU instance: no MPI


def fake_world(size, local_size, cross_size, rank=0, cross_rank=0):
    return types.SimpleNamespace(size=lambda: size, local_size=lambda: local_size,
                                 cross_size=lambda: cross_size, rank=lambda: rank,
                                 cross_rank=lambda: cross_rank)


def test_world_check():
    env = dict(SM_ENV, REVIEWLAKE_PROCESSES_PER_HOST="4", REVIEWLAKE_HOSTS='["algo-1", "algo-2"]')
    check_world(fake_world(8, 4, 2), env)
    check_world(fake_world(8, 4, 2, rank=5, cross_rank=1), dict(env, SM_CURRENT_HOST="algo-2"))
    # the SDK driver's world: -np 4 over algo-1:4,algo-2:4 -> all 4 ranks on algo-1
    with pytest.raises(UserError) as err:
        check_world(fake_world(4, 4, 1), env)
    assert str(err.value).startswith("rank 0: Horovod has 4 process(es), 4 on this instance, "
                                     "1 instance(s); the job has 2 instance(s) x 4 "
                                     "processes_per_host = 8")
    with pytest.raises(UserError, match="local"):  # right total, wrong shape
        try:
            check_world(fake_world(8, 8, 1), env)
        except UserError as exc:
            assert "8 on this instance" in str(exc)
            raise UserError("local") from None
    with pytest.raises(UserError, match="rank 5 runs on algo-1, but mpirun's host order puts "
                                        "it on algo-2"):
        check_world(fake_world(8, 4, 2, rank=5, cross_rank=1), env)
    check_world(fake_world(3, 3, 1), {})   # not started by the job's launcher: no expectation


def test_entry_world_mismatch_is_one_line_and_non_zero(monkeypatch, tmp_path, capsys):
    """sagemaker_train.main: the world check runs right after hvd.init() (train's on_init)."""
    import reviewlake.launch.sagemaker_train as entry
    import reviewlake.train.worker as worker

    monkeypatch.setitem(sys.modules, "horovod.tensorflow", fake_hvd_module())
    monkeypatch.setattr(entry, "features_view", lambda channels, dest: str(tmp_path))
    monkeypatch.setattr(entry, "train_spec", lambda *a: None)
    monkeypatch.setattr(worker, "train", lambda spec, on_init: on_init(fake_world(4, 4, 1)))
    monkeypatch.setattr(sagemaker_mpi, "FAILURE_FILE", str(tmp_path / "failure"))
    env = dict(SM_ENV, REVIEWLAKE_PROCESSES_PER_HOST="4")
    assert main(["--epochs", "1"], env) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("reviewlake train (sagemaker): error: rank 0: Horovod has 4 process")
    # the job's FailureReason: the same line
    assert (tmp_path / "failure").read_text() == err.split("error: ", 1)[1]


FAKE_BIN = {
    # records its arguments and the variables it would pass, exits as told
    "mpirun": '#!/bin/sh\necho "$@" > "$LOG/mpirun"\nexit ${MPIRUN_EXIT:-0}\n',
    "ssh": '#!/bin/sh\necho "$@" >> "$LOG/ssh"\nexit 0\n',
}


@pytest.mark.parametrize("mpirun_exit", [0, 3])
def test_launcher_on_the_leader_and_a_worker(tmp_path, monkeypatch, mpirun_exit):
    """jobs/sagemaker_launch.py's main, with mpirun, ssh and sshd stand-ins: the leader waits
    for the other instance's ssh, runs the right mpirun, tells it it is done and exits with
    mpirun's status; the other instance serves until told."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in FAKE_BIN.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", fake_hvd_module())
    monkeypatch.setattr(sagemaker_mpi, "SSHD", sys.executable)  # any existing file
    started = []
    env = dict(SM_ENV, PATH=f"{bin_dir}:{os.environ['PATH']}", LOG=str(log),
               MPIRUN_EXIT=str(mpirun_exit), REVIEWLAKE_PROCESSES_PER_HOST="4",
               REVIEWLAKE_MPI_OPTIONS='["-x", "FI_PROVIDER=efa"]', SM_CHANNEL_TRAIN="/data/train")
    code = sagemaker_mpi.main(["--epochs", "3"], env, here="/code", popen=started.append,
                              environment_file=str(tmp_path / "etc"))
    assert code == mpirun_exit
    assert started == [[sys.executable, "-D"]]
    mpirun = (log / "mpirun").read_text().split()
    assert mpirun[:4] == ["--host", "algo-1:4,algo-2:4", "-np", "8"]
    assert mpirun[-4:] == [sys.executable, "/code/sagemaker_train.py", "--epochs", "3"]
    assert "FI_PROVIDER=efa" in mpirun and "SM_CHANNEL_TRAIN" in mpirun
    assert "NCCL_DEBUG=WARN" in mpirun and "SM_CURRENT_HOST" not in mpirun
    ssh = (log / "ssh").read_text().splitlines()
    assert ssh[0].endswith("algo-2 true")
    assert ssh[-1].endswith(f"algo-2 echo {mpirun_exit} > {sagemaker_mpi.DONE_FILE}")
    etc = (tmp_path / "etc").read_text()
    assert "SM_CURRENT_HOST=algo-1\n" in etc and 'REVIEWLAKE_HOSTS=["algo-1", "algo-2"]' in etc

    # the other instance: sshd, then it waits for the leader's word
    done = tmp_path / "done"
    done.write_text("0\n")
    monkeypatch.setattr(sagemaker_mpi, "DONE_FILE", str(done))
    started.clear()
    assert sagemaker_mpi.main([], dict(env, SM_CURRENT_HOST="algo-2"), popen=started.append,
                              environment_file=str(tmp_path / "etc2")) == 0
    assert started == [[sys.executable, "-D"]]
    assert not (log / "ssh").read_text().count("true") > 1   # it never ssh-ed anywhere


def test_launcher_errors_are_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "jobs/sagemaker_launch.py", "--epochs", "1"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT / "lib"), SM_HOSTS='["algo-1"]',
                           REVIEWLAKE_PROCESSES_PER_HOST="zero"),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("reviewlake launch (sagemaker): error: "
                                   "REVIEWLAKE_PROCESSES_PER_HOST must be a positive integer, "
                                   "got 'zero'")
