"""The spark-submit command line for a job, from the profile and the user's arguments.

Used by ``./spark-submit.sh`` (``python -m reviewlake.launch.submit ARGS`` prints the full
argument list, one per line) and by the cluster launchers, so every way of submitting a job
adds the same things:

* ``--master`` from the profile unless given (``local[*]`` by default);
* in local mode, ``--driver-memory`` from the profile (everything runs in the driver);
* every jar in ``jars/`` with ``--jars``; the profile's ``spark.packages`` with ``--packages``;
* for non-local masters, the packaged library with ``--py-files``.

Everything after the application file is passed through untouched.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from ..config import Config
from ..errors import UserError
from ..session import REPO_ROOT, local_jars, log4j_config

# spark-submit options that take no value (everything else before the app takes one).
_FLAGS = {"--verbose", "-v", "--supervise", "--help", "-h", "--version", "--kill", "--status"}


def split_args(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """(spark-submit options, application, application arguments)."""
    opts: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            opts.append(arg)
            if arg not in _FLAGS and "=" not in arg and i + 1 < len(argv):
                opts.append(argv[i + 1])
                i += 1
            i += 1
            continue
        return opts, arg, list(argv[i + 1:])
    return opts, None, []


def _option(opts: list[str], name: str) -> str | None:
    for i, arg in enumerate(opts):
        if arg == name and i + 1 < len(opts):
            return opts[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _profile_from_app_args(app_args: list[str]) -> tuple[str | None, list[str]]:
    profile, overrides = None, []
    for i, arg in enumerate(app_args):
        if arg == "--config" and i + 1 < len(app_args):
            profile = app_args[i + 1]
        elif arg.startswith("--config="):
            profile = arg.split("=", 1)[1]
        elif arg == "--set" and i + 1 < len(app_args):
            overrides.append(app_args[i + 1])
    return profile, overrides


def profile_jars(cfg: Config, with_jars_dir: bool = True) -> list[str]:
    """The jars a job of this profile gets: every jar in ``jars/`` (local runs only: a
    cluster brings its own Hadoop and AWS jars) and the profile's ``spark.jars``."""
    return (local_jars() if with_jars_dir else []) + [str(j) for j in (cfg.get("spark.jars") or [])]


def profile_packages(cfg: Config) -> list[str]:
    """Maven coordinates for ``--packages`` (the profile's ``spark.packages``)."""
    return [str(p) for p in (cfg.get("spark.packages") or [])]


def spark_submit_args(argv: Sequence[str], build_dir: str | Path | None = None) -> list[str]:
    from .bundle import build_zip

    opts, app, app_args = split_args(argv)
    if app is None:
        raise UserError("no application given: ./spark-submit.sh [spark options] jobs/<stage>.py [job arguments]")
    profile, overrides = _profile_from_app_args(app_args)
    cfg = Config.load(profile, overrides)
    out = list(opts)
    master = _option(opts, "--master")
    if master is None:
        master = cfg.get("spark.master") or "local[*]"
        out = ["--master", master] + out
    local = master.startswith("local")
    if local and _option(opts, "--driver-memory") is None and cfg.get("spark.driver_memory"):
        out += ["--driver-memory", str(cfg.get("spark.driver_memory"))]
    log4j = log4j_config()
    if local and log4j and _option(opts, "--driver-java-options") is None:
        out += ["--driver-java-options", f"-Dlog4j2.configurationFile={log4j}"]
    jars = profile_jars(cfg)
    user_jars = _option(opts, "--jars")
    if jars:
        if user_jars:
            idx = out.index("--jars") if "--jars" in out else None
            merged = ",".join([user_jars] + jars)
            if idx is not None:
                out[idx + 1] = merged
            else:
                out += ["--jars", merged]
        else:
            out += ["--jars", ",".join(jars)]
    packages = profile_packages(cfg)
    if packages and _option(opts, "--packages") is None:
        out += ["--packages", ",".join(packages)]
    if not local and _option(opts, "--py-files") is None:
        out += ["--py-files", str(build_zip(build_dir or REPO_ROOT / "build"))]
    return out + [app] + app_args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = spark_submit_args(argv)
    except UserError as exc:
        print(f"spark-submit.sh: error: {exc}", file=sys.stderr)
        return exc.exit_code
    for arg in args:
        if "\n" in arg:
            print(f"spark-submit.sh: error: argument contains a newline: {arg!r}", file=sys.stderr)
            return 2
        print(arg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
