"""Filesystem operations through Hadoop's FileSystem API (local, hdfs://, s3a://, s3:// on EMR).

The stages commit their outputs with these (stage, rename, delete) and read and write their
small JSON side files (reports, manifests, markers) with them, so one code path serves the
laptop and the cluster. Only small files are ever read into the driver.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import UserError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
GLOB_CHARS = set("*?[{")


def is_remote(path: str) -> bool:
    return bool(_SCHEME.match(path)) and not path.startswith("file://")


def check_writable_output(path: str) -> None:
    """A local output path must be creatable: its nearest existing ancestor a writable
    directory (remote paths are checked by the job that writes them)."""
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


def _is_checksum(name: str) -> bool:
    """Hadoop's local file system keeps a ``.NAME.crc`` beside each file it writes and hides it
    from listings (ChecksumFileSystem)."""
    return name.startswith(".") and name.endswith(".crc")


def _checksum_of(local: str) -> str:
    head, name = os.path.split(local)
    return os.path.join(head, f".{name}.crc")


def _list_local(root: str) -> dict[str, int]:
    """:meth:`HadoopFS.list_files` of a local path, by the operating system."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return {}
    if not stat.S_ISDIR(st.st_mode):
        return {"": st.st_size}
    out: dict[str, int] = {}
    pending = [("", root)]
    while pending:
        rel, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = f"{rel}{entry.name}"
                if entry.is_dir():
                    pending.append((name + "/", entry.path))
                elif not _is_checksum(entry.name):
                    out[name] = entry.stat().st_size
    return out


def qualify(path: str) -> str:
    """Local paths become absolute (spark-submit and executors may have another cwd)."""
    if is_remote(path) or path.startswith("file:"):
        return path
    return os.path.abspath(os.path.expanduser(path))


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def canonical_uri(uri: str) -> str:
    """One spelling per file: ``file:/x`` and ``file:///x`` name the same local file."""
    if uri.startswith("file:"):
        return "file:///" + uri[len("file:"):].lstrip("/")
    return uri


def has_glob(path: str) -> bool:
    return any(c in GLOB_CHARS for c in path)


@dataclass(frozen=True)
class FileInfo:
    path: str   # Hadoop path string: what to pass back to Spark readers
    size: int
    mtime: int
    uri: str    # URL-encoded URI: what Spark's input_file_name() reports for this file


class HadoopFS:
    """Thin wrapper over org.apache.hadoop.fs.FileSystem for one Spark session."""

    def __init__(self, spark):
        self._spark = spark
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._default_local: bool | None = None

    def _path(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str):
        return self._path(path).getFileSystem(self._conf)

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def is_dir(self, path: str) -> bool:
        fs = self._fs(path)
        p = self._path(path)
        return bool(fs.exists(p) and fs.getFileStatus(p).isDirectory())

    def mkdirs(self, path: str) -> None:
        self._fs(path).mkdirs(self._path(path))

    def delete(self, path: str, recursive: bool = True) -> bool:
        fs = self._fs(path)
        p = self._path(path)
        return bool(fs.exists(p) and fs.delete(p, recursive))

    def rename(self, src: str, dst: str) -> None:
        local_src, local_dst = self._local(src), self._local(dst)
        if local_src and local_dst and os.path.isfile(local_src) and \
                not os.path.lexists(local_dst):
            # a local file to a free name: what Hadoop's local rename does, without its
            # forks for the permissions of the directories it creates; its checksum moves too
            os.makedirs(os.path.dirname(local_dst), exist_ok=True)
            try:
                os.rename(local_src, local_dst)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                local_src = None   # another device: Hadoop copies and deletes
            if local_src:
                crc = _checksum_of(local_src)
                if os.path.exists(crc):
                    os.replace(crc, _checksum_of(local_dst))
                return
        fs = self._fs(src)
        dst_p = self._path(dst)
        parent = dst_p.getParent()
        if parent is not None and not fs.exists(parent):
            fs.mkdirs(parent)
        if not fs.rename(self._path(src), dst_p):
            raise OSError(f"rename failed: {src} -> {dst}")

    def list_dir(self, path: str) -> list[FileInfo]:
        fs = self._fs(path)
        p = self._path(path)
        if not fs.exists(p):
            return []
        return [self._info(s) for s in fs.listStatus(p)]

    def list_subdirs(self, path: str) -> list[str]:
        fs = self._fs(path)
        p = self._path(path)
        if not fs.exists(p):
            return []
        return [s.getPath().toString() for s in fs.listStatus(p) if s.isDirectory()]

    def _prefix(self, path: str) -> str:
        fs = self._fs(path)
        return fs.makeQualified(self._path(path)).toString().rstrip("/")

    def _local(self, path: str) -> str | None:
        """The operating system's path of ``path`` when it is on the local file system (the
        ``file`` scheme, or no scheme with a local default file system), else None."""
        if is_remote(path):
            return None
        rest = path[len("file:"):] if path.startswith("file:") else path
        if rest.startswith("//"):
            rest = rest[2:]   # file:///x; file://host/x is left to Hadoop
        if rest.startswith("/") and (path.startswith("file:") or self._default_is_local()):
            return os.path.normpath(rest)
        fs = self._fs(path)   # a relative path: Hadoop's working directory decides
        if fs.getScheme() != "file":
            return None
        return str(fs.makeQualified(self._path(path)).toUri().getPath())

    def _default_is_local(self) -> bool:
        if self._default_local is None:
            default = self._jvm.org.apache.hadoop.fs.FileSystem.get(self._conf)
            self._default_local = default.getScheme() == "file"
        return self._default_local

    def list_files(self, path: str) -> dict[str, int]:
        """Every file under ``path`` (recursive, hidden names included), as relative path ->
        size; a file is ``{"": size}``; nothing there is ``{}``.

        Local paths are listed by the operating system, with Hadoop's local listing's
        result: Hadoop builds each local file's status with its owner and permissions, which
        without Hadoop's native library means forking ``ls`` or ``stat`` once per file (most
        of a commit's time on a laptop: benchmarks/NOTES.md)."""
        local = self._local(path)
        if local is not None:
            return _list_local(local)
        return self._list_files_hadoop(path)

    def _list_files_hadoop(self, path: str) -> dict[str, int]:
        fs = self._fs(path)
        p = self._path(path)
        if not fs.exists(p):
            return {}
        status = fs.getFileStatus(p)
        if not status.isDirectory():
            return {"": int(status.getLen())}
        prefix = self._prefix(path) + "/"
        out = {}
        it = fs.listFiles(p, True)
        while it.hasNext():
            s = it.next()
            full = s.getPath().toString()
            if not full.startswith(prefix):
                raise OSError(f"listing {path} returned {full}, outside it")
            out[full[len(prefix):]] = int(s.getLen())
        return out

    def file_size(self, path: str) -> int | None:
        """The size of a file, None when there is none (or a directory is there)."""
        local = self._local(path)
        if local is not None:
            try:
                st = os.stat(local)
            except FileNotFoundError:
                return None
            return None if stat.S_ISDIR(st.st_mode) else st.st_size
        fs = self._fs(path)
        p = self._path(path)
        try:
            status = fs.getFileStatus(p)
        except Exception as exc:  # py4j: java.io.FileNotFoundException
            if "FileNotFoundException" in str(exc):
                return None
            raise
        return None if status.isDirectory() else int(status.getLen())

    def prune_empty_dirs(self, path: str) -> None:
        """Remove the directories under ``path`` that hold no file (at any depth)."""
        fs = self._fs(path)
        p = self._path(path)
        if not fs.exists(p) or not fs.getFileStatus(p).isDirectory():
            return
        for s in fs.listStatus(p):
            if s.isDirectory():
                child = s.getPath().toString()
                if self.list_files(child):
                    self.prune_empty_dirs(child)
                else:
                    fs.delete(s.getPath(), True)

    @staticmethod
    def _info(status) -> FileInfo:
        p = status.getPath()
        return FileInfo(p.toString(), int(status.getLen()), int(status.getModificationTime()),
                        canonical_uri(p.toUri().toString()))

    def files_under(self, path: str) -> Iterator[FileInfo]:
        """Data files under a file, directory (recursive) or glob, skipping _hidden and .hidden
        names as Spark does."""
        fs = self._fs(path)
        p = self._path(path)
        statuses = fs.globStatus(p) if has_glob(path) else (
            [fs.getFileStatus(p)] if fs.exists(p) else [])
        for status in statuses or []:
            yield from self._walk(fs, status)

    def _walk(self, fs, status) -> Iterator[FileInfo]:
        name = status.getPath().getName()
        if name.startswith(("_", ".")):
            return
        if status.isDirectory():
            for child in sorted(fs.listStatus(status.getPath()), key=lambda s: s.getPath().toString()):
                yield from self._walk(fs, child)
        else:
            yield self._info(status)

    def copy_to_local(self, src: str, local_dir: str) -> None:
        """Copy a file or directory (recursively) to a local directory (driver side)."""
        fs = self._fs(src)
        fs.copyToLocalFile(False, self._path(src), self._path(local_dir), True)

    def copy_from_local(self, local: str, dst: str) -> None:
        """Copy a local file or directory (recursively) to dst (driver side).

        Through FileUtil.copy (streams), not FileSystem.copyFromLocalFile: the optimized S3A
        copyFromLocal of Hadoop 3.3.2+ (hadoop-aws 3.3.4 here, as pyspark 3.5 carries Hadoop
        3.3.4) fails with "Cannot get relative path for URI:file:///..." (the problem of
        SPARK-38652 and HADOOP-19309), measured on moto's S3."""
        jvm = self._jvm
        src = self._path("file://" + os.path.abspath(local))
        jvm.org.apache.hadoop.fs.FileUtil.copy(src.getFileSystem(self._conf), src, self._fs(dst),
                                               self._path(dst), False, True, self._conf)

    def read_text(self, path: str) -> str:
        fs = self._fs(path)
        stream = fs.open(self._path(path))
        try:
            scanner = self._jvm.java.util.Scanner(stream, "UTF-8").useDelimiter("\\A")
            return scanner.next() if scanner.hasNext() else ""
        finally:
            stream.close()

    def write_text(self, path: str, text: str) -> None:
        """Write a small file; local files go through a temporary name and a rename (and
        without Hadoop's .crc side files)."""
        fs = self._fs(path)
        if fs.getUri().getScheme() == "file":
            fs = self._jvm.org.apache.hadoop.fs.FileSystem.getLocal(self._conf).getRawFileSystem()
        tmp = self._path(path + ".tmp") if not is_remote(path) else self._path(path)
        out = fs.create(tmp, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
        if not is_remote(path):
            target = self._path(path)
            if fs.exists(target):
                fs.delete(target, False)
            fs.rename(tmp, target)

    def read_json(self, path: str, default: Any = None) -> Any:
        if not self.exists(path):
            return default
        try:
            return json.loads(self.read_text(path))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON ({exc.msg}); remove or repair it") from None

    def write_json(self, path: str, data: Any) -> None:
        self.write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def check_writable(self, path: str) -> None:
        """Fail early, with one line, when an output location cannot be written."""
        probe = join(path, f"_reviewlake_write_probe_{os.getpid()}")
        try:
            self.mkdirs(path)
            self.write_text(probe, "ok")
            self.delete(probe, False)
        except Exception as exc:  # py4j wraps the Java IOException
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "java.io" in reason or "org.apache" in reason:
                reason = reason.split(":", 1)[-1].strip() or reason
            raise UserError(f"output {path} is not writable ({reason[:200]})") from None
