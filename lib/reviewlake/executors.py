"""Which reviewlake the executors import: a check before a job runs on a cluster.

With ``spark.check_executors: true`` (``--set spark.check_executors=true``) a job on a
non-local master first runs one small task per executor core. Each reports where it runs
(host, executor, working directory, Python) and the ``reviewlake`` it imports (file and
version, or the import error). The job stops in one line unless every task imported the
driver's version of reviewlake, from the packaged library the job shipped (the
``--py-files`` zip that ``./spark-submit.sh`` and ``reviewlake launch emr`` add) when it
shipped one; otherwise it logs one line per executor and goes on. It catches an executor
running a stale installed copy instead of the code being submitted, or none at all, before
an hour of work fails or, worse, runs old code.
"""
from __future__ import annotations

import logging
import os
from urllib.parse import parse_qs, urlparse

from . import __version__
from .errors import UserError

log = logging.getLogger("reviewlake.executors")


def _probe_task():
    """The task's function, self-contained (pickled by value): it must run where reviewlake
    does not import."""
    def probe(_):
        import os as _os
        import socket
        import sys

        report = {"host": socket.gethostname(), "pid": _os.getpid(), "cwd": _os.getcwd(),
                  "python": sys.executable,
                  "log_url": _os.environ.get("SPARK_LOG_URL_STDERR"),   # standalone workers
                  "container": _os.environ.get("CONTAINER_ID")}         # YARN
        try:
            import reviewlake
            report.update(file=_os.path.abspath(reviewlake.__file__),
                          version=reviewlake.__version__)
        except Exception as exc:  # noqa: BLE001 - reported, judged on the driver
            report.update(file=None, version=None, error=f"{type(exc).__name__}: {exc}")
        yield report
    return probe


def executor_id(report: dict) -> str:
    """The executor a report came from: the standalone worker's log URL names it, YARN its
    container; else the task's working directory."""
    if report.get("log_url"):
        ids = parse_qs(urlparse(report["log_url"]).query).get("executorId")
        if ids:
            return ids[0]
    return report.get("container") or report.get("cwd") or "?"


def zip_of(path: str | None) -> str | None:
    """The ``.zip`` archive a module file lies in (``.../x.zip/reviewlake/__init__.py``)."""
    while path:
        if path.endswith(".zip"):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return None


def shipped_archives(spark, suffixes: tuple[str, ...] = (".zip", ".egg", ".whl")) -> list[str]:
    """File names of the archives the job ships to its Python workers (``--py-files``)."""
    files = spark.sparkContext.getConf().get("spark.submit.pyFiles", "") or ""
    return [os.path.basename(f.strip()) for f in files.split(",") if f.strip().endswith(suffixes)]


def shipped_zips(spark) -> list[str]:
    """File names of the ``.zip`` archives the job ships to its Python workers."""
    return shipped_archives(spark, (".zip",))


def probe_executors(spark, tasks: int | None = None) -> list[dict]:
    """One report per task; ``tasks`` defaults to one per executor core."""
    sc = spark.sparkContext
    n = tasks or max(1, sc.defaultParallelism)
    reports = sc.parallelize(range(n), n).mapPartitions(_probe_task()).collect()
    for report in reports:
        report["executor"] = executor_id(report)
    return reports


def judge(reports: list[dict], zips: list[str]) -> str | None:
    """The problem with these reports (one line), or None."""
    for r in reports:
        where = f"executor {r['executor']} on {r['host']}"
        if r.get("error"):
            return (f"{where} cannot import reviewlake ({r['error']}): ship it with "
                    "--py-files (./spark-submit.sh adds the packaged zip) or install it on "
                    "every node")
        if r.get("version") != __version__:
            return (f"{where} imports reviewlake {r['version']} from {r['file']}, the driver "
                    f"runs {__version__}: ship this version with --py-files or reinstall it")
        if zips and os.path.basename(zip_of(r["file"]) or "") not in zips:
            return (f"{where} imports reviewlake from {r['file']}, not from the shipped "
                    f"{', '.join(zips)}: an installed copy shadows it; remove it from the "
                    "node's Python or its PYTHONPATH")
    return None


def check_executors(spark) -> list[dict]:
    """Probe the executors and stop with a one-line :class:`UserError` if one of them does
    not import the shipped (or the driver's version of) reviewlake. Returns the reports."""
    reports = probe_executors(spark)
    for r in sorted(reports, key=lambda r: (r["host"], r["executor"])):
        log.info("executor %s on %s: reviewlake %s from %s (python %s)", r["executor"],
                 r["host"], r.get("version"), r.get("file") or r.get("error"), r["python"])
    problem = judge(reports, shipped_zips(spark))
    if problem:
        raise UserError(f"executor check failed: {problem}")
    executors = sorted({(r["host"], r["executor"]) for r in reports})
    log.info("executor check passed: %d task(s) on %d executor(s) import reviewlake %s",
             len(reports), len(executors), __version__)
    return reports
