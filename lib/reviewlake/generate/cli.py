"""``reviewlake generate``: write a realistic sample of the reviews TSV."""
from __future__ import annotations

import argparse

from ..cli import add_common, load_config
from ..errors import UserError
from ..fs import is_remote


def register(sub) -> None:
    p = sub.add_parser("generate", help="write a realistic sample of the reviews TSV")
    add_common(p)
    p.add_argument("--rows", type=int, help="data lines to write (default: generate.rows)")
    p.add_argument("--output", help="directory (default: data.raw)")
    p.add_argument("--seed", type=int, help="random seed (default: generate.seed)")
    p.add_argument("--defects", nargs="?", const="all", choices=["all", "malformed", "none"],
                   help="all (the default when given alone): semantic defects for the quality "
                        "gate and malformed lines for ingest; malformed: only the latter "
                        "(default: generate.defects)")
    p.add_argument("--no-defects", dest="defects", action="store_const", const="none",
                   help="a clean sample")
    p.add_argument("--files", type=int, help="number of files (default: generate.files)")
    p.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                   help="write .tsv.gz")
    p.add_argument("--quirks", action=argparse.BooleanOptionalAction, default=None,
                   help="the quirks of real review text: <br />, HTML entities, emoji, control "
                        "characters, bare quotes, empty fields (default: generate.quirks, on)")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    cfg = load_config(args, {
        "generate.rows": args.rows, "data.raw": args.output, "generate.seed": args.seed,
        "generate.defects": args.defects, "generate.files": args.files, "generate.gzip": args.gzip,
        "generate.quirks": args.quirks,
    })
    print(summary(run(cfg)))
    return 0


def run(cfg, spark=None) -> dict:
    """The stage from a loaded profile; returns its result (also used by the pipeline)."""
    from . import generate

    g = cfg.section("generate")
    out = cfg.get("data.raw")
    if is_remote(str(out)):
        raise UserError(f"generate writes local files only, got {out}; copy them with aws s3 cp")
    result = generate(rows=int(g.get("rows", 10000)), output=out, seed=int(g.get("seed", 42)),
                      defects=g.get("defects", False), files=int(g.get("files", 1)),
                      gzip=bool(g.get("gzip", False)), quirks=bool(g.get("quirks", True)))
    return result.to_dict()


def summary(result: dict) -> str:
    return (f"generated {result['lines']} lines ({result['good_rows']} well-formed) in "
            f"{len(result['files'])} files under {result['output']} in {result['seconds']:.1f}s")
