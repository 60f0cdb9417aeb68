"""Starting the training processes: horovodrun (local or several hosts) or horovod.spark.run.

Both launchers run :func:`reviewlake.train.worker.train` with the same TrainSpec. One local
process needs no launcher at all.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from ..errors import UserError
from ..executors import shipped_archives
from .spec import TrainSpec

log = logging.getLogger("reviewlake.train")

LAUNCHERS = ("horovodrun", "spark")
SPEC_FILE = "train_spec.json"


def parse_hosts(hosts: str) -> int:
    """Total slots of a horovodrun host list such as 'h1:4,h2:4' (a bare host counts 1)."""
    total = 0
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, slots = item.partition(":")
        if not name or (slots and not slots.isdigit()):
            raise UserError(f"--hosts expects host:slots[,host:slots], got {hosts!r}")
        total += int(slots or 1)
    if total < 1:
        raise UserError(f"--hosts expects host:slots[,host:slots], got {hosts!r}")
    return total


def _controller(controller: str) -> list[str]:
    """Gloo where Horovod was built without MPI (as here); MPI (NCCL for GPUs) where built."""
    if controller == "gloo":
        return ["--gloo"]
    if controller == "mpi":
        return ["--mpi"]
    from horovod.common.util import gloo_built, mpi_built

    if mpi_built() and shutil.which("mpirun"):
        return ["--mpi"]
    if gloo_built():
        return ["--gloo"]
    raise UserError("this Horovod has neither Gloo nor MPI; rebuild it (make setup builds Gloo)")


def horovodrun_command(spec_path: str, np: int, hosts: str | None, controller: str = "auto",
                       extra: list[str] | None = None) -> list[str]:
    horovodrun = Path(sys.executable).parent / "horovodrun"
    cmd = [str(horovodrun) if horovodrun.exists() else "horovodrun", "-np", str(np),
           "-H", hosts or f"localhost:{np}", *_controller(controller), *(extra or []),
           sys.executable, "-m", "reviewlake.train.worker", "--spec", spec_path]
    return cmd


def write_spec(spec: TrainSpec) -> str:
    os.makedirs(spec.output, exist_ok=True)
    path = os.path.join(spec.output, SPEC_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(spec.to_json())
    return path


def run_horovodrun(spec: TrainSpec, np: int, hosts: str | None = None,
                   controller: str = "auto") -> int:
    """Run `np` processes (on `hosts` if given) and wait; returns their exit code."""
    if hosts:
        slots = parse_hosts(hosts)
        if np > slots:
            raise UserError(f"--np {np} is more than the {slots} slots of --hosts {hosts}")
    spec_path = write_spec(spec)
    if np == 1 and not hosts:
        from .worker import train

        train(spec)
        return 0
    cmd = horovodrun_command(spec_path, np, hosts, controller)
    log.info("launching: %s", " ".join(cmd))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # horovodrun's own helpers end the workers if it dies, however it dies.
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise


def _spark_entry(spec_json: str, run_id: str = "") -> dict:
    import reviewlake

    from .remote import is_s3, train_remote
    from .spec import TrainSpec as _Spec
    from .worker import train

    # which code this rank runs (the shipped --py-files zip, or an installed copy)
    print(f"horovod.spark rank {os.environ.get('HOROVOD_RANK', '?')}: reviewlake "
          f"{reviewlake.__version__} from {reviewlake.__file__} (in {os.getcwd()})", flush=True)
    spec = _Spec.from_json(spec_json)
    if is_s3(spec.input) or is_s3(spec.output):
        return train_remote(spec, run_id)  # executors share no filesystem: stage from/to S3
    return train(spec)


def _shipped_entry(zips: list[str]):
    """The function horovod.spark.run sends to the ranks, pickled by value (a closure):
    a rank is a process of its own that the executor's task service starts, with the
    executor's environment but not the Python path Spark gives its Python workers, so the
    ``--py-files`` archives the job shipped (in the executor's directory) are not on it.
    Unpickling :func:`_spark_entry` there would import whatever reviewlake the node has
    installed, or fail. This puts the shipped archives first, then imports it."""
    def entry(spec_json: str, run_id: str = "") -> dict:
        import os as _os
        import sys as _sys

        work = _os.environ.get("HOROVOD_SPARK_WORK_DIR") or _os.getcwd()
        for name in reversed(zips):
            path = _os.path.join(work, name)
            if _os.path.isfile(path) and path not in _sys.path:
                _sys.path.insert(1, path)
        from reviewlake.train.launch import _spark_entry as _entry

        return _entry(spec_json, run_id)
    return entry


def run_spark(spark, spec: TrainSpec, np: int | None = None) -> dict:
    """One training process per Spark task slot of the active cluster (horovod.spark.run).

    The features and model paths are S3 prefixes (each host stages its share: see
    :mod:`reviewlake.train.remote`) or visible to every executor (a shared filesystem, or
    local paths on a one-machine cluster)."""
    import horovod.spark

    num_proc = np or spark.sparkContext.defaultParallelism
    run_id = uuid.uuid4().hex[:12]
    entry = _shipped_entry(shipped_archives(spark))
    results = horovod.spark.run(entry, args=(spec.to_json(), run_id), num_proc=num_proc,
                                use_gloo=True, stdout=sys.stdout, stderr=sys.stderr,
                                verbose=1)
    return next((r for r in results if r), {})
