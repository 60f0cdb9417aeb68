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
import glob
import logging
import os
import sys
from typing import Any, Callable, Sequence

from . import __version__
from .config import Config
from .errors import EXIT_USER_ERROR, UserError
from .fs import has_glob, is_remote

log = logging.getLogger("reviewlake")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PROFILE",
                   help="YAML profile: a path or a name in conf/ (default: conf/local.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one profile key, e.g. --set spark.shuffle_partitions=16")
    p.add_argument("--master", help="Spark master (default from the profile: local[*])")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def load_config(args: argparse.Namespace, flags: dict[str, Any]) -> Config:
    cfg = Config.load(args.config, args.overrides)
    cfg.apply({"spark.master": getattr(args, "master", None), **flags})
    return cfg


def _setup_logging(quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="reviewlake: %(message)s", stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)


# --------------------------------------------------------------------------- generate

def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="write a realistic sample of the reviews TSV")
    _common(p)
    p.add_argument("--rows", type=int, help="data lines to write (default: generate.rows)")
    p.add_argument("--output", help="directory (default: data.raw)")
    p.add_argument("--seed", type=int, help="random seed (default: generate.seed)")
    p.add_argument("--defects", action=argparse.BooleanOptionalAction, default=None,
                   help="add semantic defects and malformed lines")
    p.add_argument("--files", type=int, help="number of files (default: generate.files)")
    p.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                   help="write .tsv.gz")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import generate

    cfg = load_config(args, {
        "generate.rows": args.rows, "data.raw": args.output, "generate.seed": args.seed,
        "generate.defects": args.defects, "generate.files": args.files, "generate.gzip": args.gzip,
    })
    g = cfg.section("generate")
    out = cfg.get("data.raw")
    if is_remote(str(out)):
        raise UserError(f"generate writes local files only, got {out}; copy them with aws s3 cp")
    result = generate(rows=int(g.get("rows", 10000)), output=out, seed=int(g.get("seed", 42)),
                      defects=bool(g.get("defects", False)), files=int(g.get("files", 1)),
                      gzip=bool(g.get("gzip", False)))
    print(f"generated {result.rows} lines ({result.good_rows} well-formed) in "
          f"{len(result.files)} files under {result.output} in {result.seconds:.1f}s")
    return 0


# --------------------------------------------------------------------------- ingest

def _add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="TSV -> Parquet lake partitioned by product_category")
    _common(p)
    p.add_argument("--input", nargs="+", metavar="PATH",
                   help="files, directories or globs; local, hdfs://, s3a:// (default: data.raw)")
    p.add_argument("--output", metavar="LAKE", help="the lake (default: data.lake)")
    p.add_argument("--mode", choices=["overwrite", "append-new"],
                   help="overwrite: rebuild the lake from the inputs; append-new: add only "
                        "files not ingested before (default: ingest.mode)")
    p.add_argument("--max-split-bytes", help="largest input split per task (default: 1g)")
    p.add_argument("--files-per-category", type=int,
                   help="shuffle so each category gets at most N files (default: no shuffle)")
    p.set_defaults(func=cmd_ingest)


def _check_local_inputs(paths: Sequence[str]) -> None:
    """Fail before starting Spark when a local input obviously does not exist."""
    for path in paths:
        if is_remote(path):
            continue
        local = path[len("file://"):] if path.startswith("file://") else path
        if has_glob(local):
            if not glob.glob(os.path.expanduser(local)):
                raise UserError(f"no input files matched {path} (check the path, or quote a glob)")
        elif not os.path.exists(os.path.expanduser(local)):
            raise UserError(f"input not found: {path}")


def _check_local_output(path: str) -> None:
    if is_remote(path):
        return
    local = os.path.abspath(os.path.expanduser(path[7:] if path.startswith("file://") else path))
    probe = local
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UserError(f"output {path} is not writable ({probe} is a file, not a directory)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"output {path} is not writable (no write permission on {probe})")


def cmd_ingest(args: argparse.Namespace) -> int:
    from .ingest.job import IngestOptions, run_ingest
    from .session import get_spark

    cfg = load_config(args, {
        "ingest.input": args.input, "data.lake": args.output, "ingest.mode": args.mode,
        "ingest.max_split_bytes": args.max_split_bytes,
        "ingest.files_per_category": args.files_per_category,
    })
    inputs = cfg.get("ingest.input") or cfg.get("data.raw")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
    lake = cfg.get("data.lake")
    if not inputs:
        raise UserError("no input given: pass --input PATH or set data.raw in the profile")
    if not lake:
        raise UserError("no output given: pass --output LAKE or set data.lake in the profile")
    _check_local_inputs(inputs)
    _check_local_output(lake)
    opts = IngestOptions(
        mode=cfg.get("ingest.mode", "overwrite"),
        max_split_bytes=cfg.get("ingest.max_split_bytes"),
        files_per_category=cfg.get("ingest.files_per_category"),
    )
    spark = get_spark(cfg, "ingest")
    report = run_ingest(spark, inputs, lake, opts)
    print(format_ingest_report(report))
    return 0


def format_ingest_report(report: dict[str, Any]) -> str:
    lines = [f"ingest {report['status']}: run {report['run_id']} ({report['mode']}) "
             f"into {report['lake']}"]
    if report["status"] == "nothing_new":
        lines.append(f"  no new files ({len(report['skipped_files'])} already ingested)")
        return "\n".join(lines)
    lines.append(f"  files {len(report['files'])}   rows read {report['rows_read']}   "
                 f"written {report['rows_written']}   quarantined {report['rows_quarantined']}   "
                 f"in {report['seconds']:.1f}s ({report['rows_per_second']:.0f} rows/s)")
    for reason, count in report["by_reason"].items():
        lines.append(f"  quarantined {reason:<16} {count}")
    lines.append(f"  reviews    {report['output']['reviews']} "
                 f"({len(report['rows_by_category'])} categories)")
    lines.append(f"  quarantine {report['output']['quarantine']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main

REGISTRY: list[Callable] = [_add_generate, _add_ingest]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reviewlake", description="Product reviews from the data lake to a "
                                                      "trained, distributed text classifier.")
    parser.add_argument("--version", action="version", version=f"reviewlake {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in REGISTRY:
        add(sub)
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
