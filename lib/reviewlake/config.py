"""Configuration: YAML profiles in ``conf/``, overridden by command-line flags.

A profile is a nested mapping. A profile may name another with ``extends:`` (a path relative
to itself); it is merged over that one key by key. Flags override single keys by dotted path
(``--set spark.shuffle_partitions=16``), and stage flags such as ``--output`` map onto the same
keys, so every option has one name and one documented default (``conf/local.yaml``).

The path-valued keys (:data:`PATH_KEYS`) may start with ``~``: it is expanded to the home
directory when the profile loads and when a flag or ``--set`` sets one, as a shell would
(``--model=~/x`` and YAML values reach us unexpanded).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import UserError

PACKAGE_CONF = Path(__file__).resolve().parent / "conf"
DEFAULT_PROFILE = "local.yaml"


# Keys whose values are local paths or URIs (a string, or a list of strings for
# ingest.input): "~" and "~/..." are expanded; URIs (s3://...) never start with "~".
PATH_KEYS = ("data.raw", "data.lake", "data.quality", "data.features", "data.model",
             "ingest.input", "quality.repository", "quality.suite", "prepare.input",
             "prepare.tokenizer", "train.model", "train.checkpoint_dir")


def expand_home(value: Any) -> Any:
    """``~`` and ``~user`` at the start of a path (or of each path in a list) expanded."""
    if isinstance(value, str) and value.startswith("~"):
        return os.path.expanduser(value)
    if isinstance(value, list):
        return [expand_home(v) for v in value]
    return value


def _in_zip(path: Path) -> tuple[Path, str] | None:
    """(archive, member) when ``path`` lies inside a ``.zip`` file (the packaged library
    under ``--py-files``: the profiles travel in it as ``reviewlake/conf/``)."""
    for parent in path.parents:
        if parent.suffix == ".zip" and parent.is_file():
            return parent, path.relative_to(parent).as_posix()
    return None


def resource_is_file(path: str | os.PathLike) -> bool:
    """``Path.is_file``, also for a file inside the packaged zip."""
    path = Path(path)
    if path.is_file():
        return True
    inside = _in_zip(path)
    if inside is None:
        return False
    import zipfile

    with zipfile.ZipFile(inside[0]) as zf:
        return inside[1] in zf.namelist()


def read_resource(path: str | os.PathLike) -> str:
    """A text file's content, also from inside the packaged zip (OSError when absent)."""
    path = Path(path)
    inside = None if path.exists() else _in_zip(path)
    if inside is None:
        return path.read_text(encoding="utf-8")
    import zipfile

    with zipfile.ZipFile(inside[0]) as zf:
        try:
            return zf.read(inside[1]).decode("utf-8")
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", str(path)) from None


def _repo_conf_dir() -> Path | None:
    """``conf/`` of a source checkout (lib/reviewlake/config.py -> ../../conf)."""
    here = Path(__file__).resolve().parent.parent.parent / "conf"
    return here if (here / DEFAULT_PROFILE).is_file() else None


def default_profile_path() -> Path:
    env = os.environ.get("REVIEWLAKE_CONFIG")
    if env:
        return Path(env)
    repo = _repo_conf_dir()
    if repo is not None:
        return repo / DEFAULT_PROFILE
    return PACKAGE_CONF / DEFAULT_PROFILE


def resolve_profile(name: str | os.PathLike | None) -> Path:
    """A profile given as a path, or as a bare name (``emr``) looked up in conf/."""
    if name is None:
        return default_profile_path()
    path = Path(name)
    if path.is_file():
        return path
    for folder in filter(None, [_repo_conf_dir(), PACKAGE_CONF]):
        for candidate in (folder / str(name), folder / f"{name}.yaml"):
            if resource_is_file(candidate):
                return candidate
    raise UserError(f"config profile not found: {name} (give a YAML path or one of conf/*.yaml)")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise UserError(f"config profile {path} extends itself")
    try:
        data = yaml.safe_load(read_resource(path)) or {}
    except OSError as exc:
        raise UserError(f"cannot read config profile {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"config profile {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config profile {path} must be a mapping at the top level")
    parent = data.pop("extends", None)
    if parent:
        base = _load_yaml((path.parent / parent), seen + (path,))
        data = deep_merge(base, data)
    return data


def parse_scalar(text: str) -> Any:
    """``--set key=value``: the value is read as YAML (numbers, booleans, lists)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


class Config:
    """A loaded profile with dotted-path access."""

    def __init__(self, data: Mapping[str, Any], source: str | None = None):
        self.data = dict(data)
        self.source = source

    @classmethod
    def load(cls, profile: str | os.PathLike | None = None,
             overrides: Iterable[str] = ()) -> "Config":
        path = resolve_profile(profile)
        cfg = cls(_load_yaml(path), source=str(path))
        for key in PATH_KEYS:
            value = cfg.get(key)
            if value is not None:
                cfg.set(key, value)   # set expands it
        for item in overrides:
            if "=" not in item:
                raise UserError(f"--set expects key=value, got {item!r}")
            key, value = item.split("=", 1)
            cfg.set(key.strip(), parse_scalar(value))
        return cfg

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def set(self, dotted: str, value: Any) -> None:
        if dotted in PATH_KEYS:
            value = expand_home(value)
        parts = dotted.split(".")
        node = self.data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value

    def section(self, name: str) -> dict[str, Any]:
        value = self.get(name, {})
        return dict(value) if isinstance(value, Mapping) else {}

    def apply(self, values: Mapping[str, Any]) -> None:
        """Set every dotted key whose value is not None (command-line flags)."""
        for key, value in values.items():
            if value is not None:
                self.set(key, value)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)
