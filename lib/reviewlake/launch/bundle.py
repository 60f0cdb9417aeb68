"""The code a cluster runs: the packaged library, the jobs, the profile.

* :func:`build_zip`: ``reviewlake-<version>.zip`` of ``lib/reviewlake`` (with its profiles),
  importable from ``spark-submit --py-files``.
* :func:`build_wheel`: ``reviewlake-<version>-py3-none-any.whl``, what cluster nodes install
  (the EMR bootstrap action ``pip install``s it).
* :func:`write_profile`: the resolved profile as one self-contained YAML file (no
  ``extends:``), so a job on a cluster reads exactly the settings the launcher resolved.
* :class:`Bundle`: all of the above plus ``jobs/*.py``, the EMR bootstrap script and the
  jars of ``jars/``, laid out under ``<code prefix>/<version>/`` in S3.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import __version__
from ..errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PACKAGE_DIR.parent.parent
JOBS_DIR = REPO_ROOT / "jobs"
BOOTSTRAP_SCRIPT = Path(__file__).resolve().parent / "emr_bootstrap.sh"
WHEEL_NAME = f"reviewlake-{__version__}-py3-none-any.whl"
ZIP_NAME = f"reviewlake-{__version__}.zip"


def _package_sources() -> list[Path]:
    return [p for p in sorted(PACKAGE_DIR.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc",)]


def _profiles() -> list[Path]:
    conf_dir = REPO_ROOT / "conf"
    return sorted([*conf_dir.glob("*.yaml"), *conf_dir.glob("*.properties")]) \
        if conf_dir.is_dir() else []


def _up_to_date(dest: Path, sources: list[Path]) -> bool:
    newest = max(p.stat().st_mtime for p in sources)
    return dest.exists() and dest.stat().st_mtime >= newest


def build_zip(dest_dir: str | os.PathLike) -> Path:
    """Write ``reviewlake-<version>.zip`` (importable from ``--py-files``) and return its path.

    Rebuilt only when a source file is newer than the zip.
    """
    dest = Path(dest_dir) / ZIP_NAME
    sources, profiles = _package_sources(), _profiles()
    if _up_to_date(dest, sources + profiles):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sources:
            zf.write(path, Path("reviewlake") / path.relative_to(PACKAGE_DIR))
        for path in profiles:  # profiles travel inside the package (reviewlake/conf/)
            zf.write(path, Path("reviewlake") / "conf" / path.name)
    os.replace(tmp, dest)
    return dest


def build_wheel(dest_dir: str | os.PathLike) -> Path:
    """Build ``reviewlake-<version>-py3-none-any.whl`` from the checkout (pip wheel, no
    dependencies, no build isolation: nothing is downloaded). Rebuilt only when a source,
    a profile or setup.py is newer than the wheel."""
    setup_py = REPO_ROOT / "setup.py"
    if not setup_py.is_file():
        raise UserError(f"building the wheel needs a source checkout; {setup_py} not found")
    dest_dir = Path(dest_dir)
    dest = dest_dir / WHEEL_NAME
    if _up_to_date(dest, _package_sources() + _profiles() + [setup_py]):
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    # setuptools builds in the checkout's build/lib: files of deleted modules must not linger
    shutil.rmtree(REPO_ROOT / "build" / "lib", ignore_errors=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--disable-pip-version-check", "-q",
                           "-w", str(dest_dir), str(REPO_ROOT)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not dest.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"building {WHEEL_NAME} failed: {tail[0]}")
    os.utime(dest)  # pip keeps the build time of an unchanged wheel; mark it fresh
    return dest


def write_profile(cfg, dest: str | os.PathLike) -> Path:
    """The resolved profile (``extends`` merged, ``--set`` applied) as one YAML file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# reviewlake profile resolved by `reviewlake launch` from {cfg.source}\n"
              "# (self-contained: no extends; every key as the launcher saw it)\n")
    dest.write_text(header + yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    return dest


def job_file(stage: str) -> Path:
    """``jobs/<stage>.py`` of the checkout; a one-line error if this checkout lacks it."""
    path = JOBS_DIR / f"{stage}.py"
    if not path.is_file():
        raise UserError(f"{path} not found: this checkout has no {stage} job")
    return path


def profile_name(cfg) -> str:
    """The file name the profile travels under (emr.yaml, sagemaker.yaml, ...)."""
    stem = Path(cfg.source).stem if cfg.source else "profile"
    return f"{stem}.yaml"


@dataclass
class Bundle:
    """What a launch ships, locally (``files``: S3 URI -> local path) and in S3."""

    code_prefix: str                       # s3://bucket/prefix (the version is appended)
    profile: str                           # file name of the resolved profile
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"{self.code_prefix.rstrip('/')}/{__version__}"

    def uri(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    @property
    def zip_uri(self) -> str:
        return self.uri(ZIP_NAME)

    @property
    def wheel_uri(self) -> str:
        return self.uri(WHEEL_NAME)

    @property
    def profile_uri(self) -> str:
        return self.uri("conf", self.profile)

    @property
    def bootstrap_uri(self) -> str:
        return self.uri("bootstrap", BOOTSTRAP_SCRIPT.name)

    def job_uri(self, stage: str) -> str:
        return self.uri("jobs", f"{stage}.py")

    def jar_uris(self) -> list[str]:
        return [u for u in self.files if u.endswith(".jar")]

    @classmethod
    def plan(cls, cfg, code_prefix: str, build_dir: str | os.PathLike,
             jars: list[str] | None = None, conf: list[Path] | None = None) -> "Bundle":
        """The layout without building anything (what --dry-run prints)."""
        from ..aws import parse_s3_uri

        parse_s3_uri(code_prefix)
        bundle = cls(code_prefix=code_prefix, profile=profile_name(cfg))
        build_dir = Path(build_dir)
        bundle.files = {
            bundle.zip_uri: build_dir / ZIP_NAME,
            bundle.wheel_uri: build_dir / "dist" / WHEEL_NAME,
            bundle.profile_uri: build_dir / "launch" / bundle.profile,
            bundle.bootstrap_uri: BOOTSTRAP_SCRIPT,
        }
        for job in sorted(JOBS_DIR.glob("*.py")):
            bundle.files[bundle.uri("jobs", job.name)] = job
        for jar in jars or []:
            bundle.files[bundle.uri("jars", Path(jar).name)] = Path(jar)
        for path in conf or []:  # files a stage reads besides the profile (quality's suite)
            bundle.files[bundle.uri("conf", Path(path).name)] = Path(path)
        return bundle

    def build(self, cfg) -> "Bundle":
        """Build the zip and the wheel where :meth:`plan` put them, and write the resolved
        profile (in a directory of its own: launches with other settings may run at once)."""
        build_zip(self.files[self.zip_uri].parent)
        build_wheel(self.files[self.wheel_uri].parent)
        planned = self.files[self.profile_uri]
        planned.parent.mkdir(parents=True, exist_ok=True)
        own = Path(tempfile.mkdtemp(prefix="profile-", dir=planned.parent)) / planned.name
        self.files[self.profile_uri] = write_profile(cfg, own)
        missing = [str(p) for p in self.files.values() if not p.is_file()]
        if missing:
            raise UserError(f"cannot ship {missing[0]}: no such file")
        return self

    def upload(self, s3) -> list[str]:
        """Upload every file (an :class:`~reviewlake.aws.S3`); returns the URIs.
        The resolved profile's local copy is removed afterwards."""
        try:
            for uri, path in self.files.items():
                s3.upload(str(path), uri)
        finally:
            profile = self.files[self.profile_uri]
            if profile.parent.name.startswith("profile-"):
                shutil.rmtree(profile.parent, ignore_errors=True)
        return list(self.files)
