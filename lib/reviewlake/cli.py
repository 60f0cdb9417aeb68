"""``reviewlake``: one sub-command per stage.

Each sub-command reads the YAML profile (``--config``, default ``conf/local.yaml``), applies
``--set key=value`` overrides and its own flags (which are shorthands for profile keys), builds
the Spark session when it needs one and calls one library function. ``jobs/<stage>.py`` calls
:func:`main` with the same arguments, so ``spark-submit jobs/ingest.py ARGS`` and
``reviewlake ingest ARGS`` are the same program.

A :class:`~reviewlake.errors.UserError` prints one line and exits non-zero (2 for usage and
input problems, 3 for a failed quality gate); other exceptions keep their tracebacks.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any, Sequence

from . import __version__
from .config import Config
from .errors import EXIT_USER_ERROR, UserError

log = logging.getLogger("reviewlake")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def add_common(p: argparse.ArgumentParser) -> None:
    """Options every sub-command takes."""
    p.add_argument("--config", metavar="PROFILE",
                   help="YAML profile: a path or a name in conf/ (default: conf/local.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one profile key, e.g. --set spark.shuffle_partitions=16")
    p.add_argument("--master", help="Spark master (default from the profile: local[*])")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def add_snapshot_args(p: argparse.ArgumentParser) -> None:
    """The flags of the stages that read the lake: which table, at which Iceberg snapshot."""
    p.add_argument("--table", metavar="NAMESPACE.TABLE",
                   help="read this table of the profile's catalog (e.g. reviewlake.reviews in "
                        "Glue) instead of the lake's own reviews table")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--snapshot", type=int, metavar="ID",
                      help="Iceberg lakes: read this snapshot id (default: the current one)")
    when.add_argument("--as-of", metavar="TIMESTAMP",
                      help="Iceberg lakes: read the snapshot current at this time (ISO 8601, "
                           "UTC unless it names a zone; or epoch milliseconds)")


def load_config(args: argparse.Namespace, flags: dict[str, Any]) -> Config:
    cfg = Config.load(args.config, args.overrides)
    cfg.apply({"spark.master": getattr(args, "master", None), **flags})
    return cfg


def _setup_logging(quiet: bool) -> None:
    """Our messages at INFO (WARNING with -q); other libraries' only from WARNING up (some,
    like Horovod's rendezvous server, log chatter to the root logger at INFO)."""
    logging.basicConfig(level=logging.WARNING, format="reviewlake: %(message)s", stream=sys.stderr)
    logging.getLogger("reviewlake").setLevel(logging.WARNING if quiet else logging.INFO)


# --------------------------------------------------------------------------- main

# Each stage's package has a cli module whose register(subparsers) adds its sub-command(s)
# (the package is named for what it holds: features/ registers `prepare`).
STAGES = ["generate", "ingest", "quality", "features", "train", "pipeline", "launch"]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reviewlake", description="Product reviews from the data lake to a "
                                                      "trained, distributed text classifier.")
    parser.add_argument("--version", action="version", version=f"reviewlake {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for stage in STAGES:
        importlib.import_module(f"reviewlake.{stage}.cli").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), "")
    prog = f"reviewlake {command}".strip()
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(getattr(args, "quiet", False))
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
