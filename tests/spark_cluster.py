"""A Spark standalone cluster on this machine for the tests: a master and N workers, each its
own JVM (``spark-class org.apache.spark.deploy.master.Master`` / ``...worker.Worker`` from the
venv's pyspark), bound to 127.0.0.1 only.

``standalone_cluster(base)`` (a context manager) starts the master on free ports, then the
workers (``cores`` and ``memory`` each, a work directory of their own under ``base``), waits
until the master's JSON (its web UI, ``/json/``) lists every worker ALIVE, and yields a
:class:`Cluster`. Each daemon runs in a process group of its own, which also holds the
executors and Python workers it starts; on the way out (also on failure) every group is
terminated, then killed if it lingers.

The workers run without PYTHONPATH: an executor imports reviewlake only from what the job
ships (``--py-files``) or the venv's editable install, never from the test's own path.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from conftest import free_port

SPARK_HOME = Path(pyspark.__file__).resolve().parent
SPARK_CLASS = SPARK_HOME / "bin" / "spark-class"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def daemon_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_GATEWAY_PORT",
                                                            "PYSPARK_GATEWAY_SECRET")}
    env.update(SPARK_HOME=str(SPARK_HOME), SPARK_LOCAL_IP="127.0.0.1",
               PYSPARK_PYTHON=sys.executable, SPARK_NO_DAEMONIZE="1")
    return env


@dataclass
class Cluster:
    master: str                      # spark://127.0.0.1:PORT
    ui: str                          # the master's web UI (http://127.0.0.1:PORT)
    work_dirs: list[Path]            # one per worker, in start order
    logs: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def state(self) -> dict:
        with urllib.request.urlopen(self.ui + "/json/", timeout=5) as resp:
            return json.load(resp)

    def executor_dirs(self, app_id: str) -> dict[int, list[str]]:
        """worker index -> the executor ids it ran for ``app_id`` (their work directories)."""
        out = {}
        for i, work in enumerate(self.work_dirs):
            app = work / app_id
            out[i] = sorted(p.name for p in app.iterdir()) if app.is_dir() else []
        return out

    def tail(self, lines: int = 40) -> str:
        text = []
        for log in sorted(self.logs.glob("*.log")):
            text.append(f"--- {log.name}\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(text)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
        # the group: the daemon and whatever it started (executors, Python workers)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


@contextlib.contextmanager
def standalone_cluster(base: Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                       timeout: float = 90):
    base = Path(base)
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port, ui_port = free_port(), free_port()
    env = daemon_env()
    cluster = Cluster(master=f"spark://127.0.0.1:{port}", ui=f"http://127.0.0.1:{ui_port}",
                      work_dirs=[base / f"worker{i}" for i in range(workers)], logs=logs)

    def start(name: str, args: list[str]) -> None:
        with open(logs / f"{name}.log", "wb") as out:
            cluster.procs.append(subprocess.Popen(
                [str(SPARK_CLASS), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True))

    try:
        start("master", [MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port),
                         "--webui-port", str(ui_port)])
        for i, work in enumerate(cluster.work_dirs):
            work.mkdir(parents=True)
            start(f"worker{i}", [WORKER_CLASS, cluster.master, "--host", "127.0.0.1",
                                 "--cores", str(cores), "--memory", memory,
                                 "--webui-port", "0", "--work-dir", str(work)])
        deadline = time.time() + timeout
        while True:
            dead = [p.args[1] for p in cluster.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited while starting\n{cluster.tail()}")
            try:
                alive = [w for w in cluster.state().get("workers", []) if w["state"] == "ALIVE"]
            except OSError:
                alive = []
            if len(alive) == workers:
                break
            if time.time() > deadline:
                raise RuntimeError(f"{len(alive)} of {workers} workers registered in "
                                   f"{timeout:.0f} s\n{cluster.tail()}")
            time.sleep(0.3)
        yield cluster
    finally:
        _stop(cluster.procs)
