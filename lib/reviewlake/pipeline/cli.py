"""``reviewlake pipeline``: generate -> ingest -> quality (gate) -> prepare -> train."""
from __future__ import annotations

import argparse
import time

from ..cli import add_common, load_config
from ..errors import UserError


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="run the stages in order, skipping unchanged ones")
    add_common(p)
    p.add_argument("--stages", help="comma-separated subset, in pipeline order (default: all)")
    p.add_argument("--force", action="store_true", help="re-run stages even if unchanged")
    p.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from .runner import Pipeline, format_summary

    cfg = load_config(args, {})
    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    started = time.time()
    pipeline = Pipeline(cfg, stages, args.force)
    try:
        pipeline.run()
    except UserError:
        print(format_summary(pipeline.outcomes, time.time() - started))
        raise
    print(format_summary(pipeline.outcomes, time.time() - started))
    return 0
