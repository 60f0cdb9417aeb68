"""The stages a launcher can run and the arguments each one gets on a cluster.

One table for both launchers: each stage reads one profile path and writes another
(``data.raw -> data.lake -> data.quality / data.features -> data.model``), and on a cluster
both are given explicitly on the command line so a step's arguments say what it does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent.parent

# stage -> (profile key of its input, profile key of its output)
STAGE_IO: dict[str, tuple[str, str]] = {
    "ingest": ("data.raw", "data.lake"),
    "quality": ("data.lake", "data.quality"),
    "prepare": ("data.lake", "data.features"),
    "train": ("data.features", "data.model"),
}
STAGES = tuple(STAGE_IO)
SPARK_STAGES = ("ingest", "quality", "prepare")


def parse_stages(value: str | Iterable[str] | None, default: Iterable[str] = STAGES) -> list[str]:
    """``"ingest,quality"`` (or a list) -> the stages in pipeline order; unknown names fail."""
    if value is None or value == "" or value == []:
        names = list(default)
    elif isinstance(value, str):
        names = [s.strip() for s in value.split(",") if s.strip()]
    else:
        names = [str(s).strip() for s in value]
    unknown = [s for s in names if s not in STAGE_IO]
    if unknown:
        raise UserError(f"unknown stage {unknown[0]!r} (known: {', '.join(STAGES)})")
    if not names:
        raise UserError(f"no stages given (known: {', '.join(STAGES)})")
    return [s for s in STAGES if s in names]


def stage_paths(cfg, stage: str, remote_only: bool = True) -> tuple[str, str]:
    """The stage's input and output from the profile; on clusters both must be S3 URIs."""
    in_key, out_key = STAGE_IO[stage]
    paths = []
    for key in (in_key, out_key):
        value = cfg.get(key)
        if not value:
            raise UserError(f"{stage}: {key} is not set in the profile {cfg.source}")
        value = str(value)
        if remote_only and not value.startswith(("s3://", "s3a://")):
            raise UserError(f"{stage}: {key} is {value!r}; a cluster needs an s3:// path "
                            f"(set it in the profile or with --set {key}=s3://...)")
        paths.append(value)
    return paths[0], paths[1]


def stage_args(cfg, stage: str, config_arg: str) -> list[str]:
    """The job's arguments: the profile it reads, its input and output, and for train the
    Spark launcher (one Horovod process per Spark task slot)."""
    src, dst = stage_paths(cfg, stage)
    args = ["--config", config_arg, "--input", src, "--output", dst]
    if stage == "train":
        args += ["--launcher", "spark"]
    return args


def stage_files(cfg, stage: str) -> list[tuple[str, Path]]:
    """Local files a stage's job reads besides the profile, as (flag, path): they travel
    with the job (``--files``) and the flag names the shipped copy. The quality stage's
    suite (``quality.suite``, default ``conf/quality.yaml``) is the one today."""
    if stage != "quality":
        return []
    suite = Path(str(cfg.get("quality.suite") or "conf/quality.yaml"))
    if not suite.is_absolute() and not suite.is_file():
        suite = REPO_ROOT / suite
    return [("--suite", suite)] if suite.is_file() else []
