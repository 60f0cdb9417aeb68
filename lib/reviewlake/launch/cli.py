"""``reviewlake launch emr`` and ``reviewlake launch sagemaker``."""
from __future__ import annotations

import argparse

from ..cli import add_common, load_config
from ..errors import UserError
from .bundle import REPO_ROOT
from .stages import STAGES

BUILD_DIR = REPO_ROOT / "build"


def register(sub) -> None:
    p = sub.add_parser("launch", help="run the stages on Amazon EMR or SageMaker")
    where = p.add_subparsers(dest="target", metavar="TARGET", parser_class=type(p))
    where.required = True

    e = where.add_parser("emr", help="ship the code and add one EMR step per stage")
    add_common(e)
    e.add_argument("--cluster-id", metavar="ID", help="the running cluster (j-...; default "
                                                      "emr.cluster_id)")
    e.add_argument("--stages", help=f"comma-separated, in pipeline order (default all: "
                                    f"{','.join(STAGES)})")
    e.add_argument("--action-on-failure", choices=["CONTINUE", "CANCEL_AND_WAIT",
                                                   "TERMINATE_CLUSTER"],
                   help="what EMR does when a step fails (default emr.action_on_failure)")
    e.add_argument("--code-prefix", metavar="S3", help="where the code goes (emr.code_prefix)")
    e.add_argument("--region", help="AWS region (aws.region)")
    e.add_argument("--wait", action="store_true", help="follow the steps; exit 1 if one fails")
    e.add_argument("--dry-run", action="store_true",
                   help="print the steps as JSON for `aws emr add-steps --steps file://...`; "
                        "build, upload and add nothing")
    e.add_argument("--upload-only", action="store_true",
                   help="ship the code and print the --bootstrap-actions argument for "
                        "`aws emr create-cluster`; add no steps")
    e.set_defaults(func=cmd_emr, default_profile="emr")

    s = where.add_parser("sagemaker", help="run one stage as a SageMaker processing or "
                                           "training job")
    add_common(s)
    s.add_argument("--stage", required=True, help=f"one of {', '.join(STAGES)}")
    s.add_argument("--role", metavar="ARN", help="execution role (sagemaker.role)")
    s.add_argument("--region", help="AWS region (aws.region)")
    s.add_argument("--code-prefix", metavar="S3", help="where the SDK stages the code "
                                                       "(sagemaker.code_prefix)")
    s.add_argument("--instance-type", help="sagemaker.processing/train.instance_type")
    s.add_argument("--instance-count", type=int, help="sagemaker.processing/train.instance_count")
    s.add_argument("--spot", action=argparse.BooleanOptionalAction, default=None,
                   help="train on spot capacity (sagemaker.train.spot)")
    s.add_argument("--wait", action="store_true", help="follow the job and its logs; exit 1 if "
                                                       "it fails")
    s.add_argument("--dry-run", action="store_true",
                   help="print the job request as JSON; upload and create nothing")
    s.set_defaults(func=cmd_sagemaker, default_profile="sagemaker")


def _config(args: argparse.Namespace, flags: dict):
    if args.config is None:
        args.config = args.default_profile
    return load_config(args, flags)


def cmd_emr(args: argparse.Namespace) -> int:
    from .emr import launch_emr

    cfg = _config(args, {"emr.code_prefix": args.code_prefix, "aws.region": args.region})
    if args.dry_run and args.wait:
        raise UserError("--dry-run and --wait exclude each other")
    launch_emr(cfg, cluster_id=args.cluster_id, stages=args.stages,
               action=args.action_on_failure, wait=args.wait, dry_run=args.dry_run,
               upload_only=args.upload_only, build_dir=BUILD_DIR)
    return 0


def cmd_sagemaker(args: argparse.Namespace) -> int:
    if args.stage not in STAGES:
        raise UserError(f"unknown stage {args.stage!r} (one of {', '.join(STAGES)})")
    section = "sagemaker.train" if args.stage == "train" else "sagemaker.processing"
    cfg = _config(args, {"sagemaker.role": args.role, "aws.region": args.region,
                         "sagemaker.code_prefix": args.code_prefix,
                         f"{section}.instance_type": args.instance_type,
                         f"{section}.instance_count": args.instance_count,
                         "sagemaker.train.spot": args.spot})
    if args.dry_run and args.wait:
        raise UserError("--dry-run and --wait exclude each other")
    from .sagemaker_jobs import launch_sagemaker

    launch_sagemaker(cfg, stage=args.stage, wait=args.wait, dry_run=args.dry_run,
                     build_dir=BUILD_DIR)
    return 0
