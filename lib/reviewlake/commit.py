"""Committing a run's output so that no failure, at any step, loses data (ingest, quality).

A stage owns an output root (ingest: the lake; quality: its directory). A run takes the
root's lock (:func:`lock_output`), writes everything under ``ROOT/_staging/<run_id>/`` and
changes nothing else under ROOT until all of it is written and checked. Then the commit
moves the staged files in, one object at a time (on S3 a directory rename is a copy and a
delete of every object, which a killed process leaves half done; a single object's copy is
atomic, so every state between two object operations is one the protocol knows):

1. ``ROOT/_commit.json`` (the marker) is written with one PUT. It records, for every target
   (e.g. ``reviews``), the manifest of the staged files (relative path and size: the new
   output) and the manifest of the files there now (the old output), and the JSON files
   (reports, manifests) to write once the new output is in place;
2. ``overwrite``: every old file is moved, one by one, to ``ROOT/_previous/<run_id>/`` (the
   park); then the marker's state becomes ``parked`` (one PUT);
3. every staged file is moved into place, one by one (``append``: into the existing
   directories, next to the old files, which are never touched);
4. the target is listed and checked against the new manifest (every file there, with its
   size; no old file left): the new output is verified complete *in place*; the state becomes
   ``verified``;
5. only now the reports are written and the old files (the park), the staging area and the
   marker are deleted.

:func:`recover` (the next run does it first) continues from the marker alone: before the
state is ``verified`` it checks that every file of the new manifest is still there (staged
or already in place, with its size). If so it rolls forward (steps 2-5, each repeatable);
if not (a staging area damaged or removed), it rolls back: the new files are removed and the
parked old ones moved back, checked against the old manifest, and the reports stay those of
the old output. Nothing old is deleted before the new output is verified complete, so a
failure at any point leaves, after recovery, the old output or the new one, complete, with
reports that describe it.

Readers of a plain-Parquet directory (Spark, pandas, Athena on the prefix) can see it
partial while a commit runs (steps 2-3); the Iceberg format is the answer for readers that
need an atomic switch.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from .errors import UserError
from .fs import HadoopFS, is_remote, join

log = logging.getLogger(__name__)

MARKER = "_commit.json"
STAGING = "_staging"
PREVIOUS = "_previous"
REPORTS = "_reports"
LOCK = "_lock.json"
MARKER_VERSION = 2
LOCK_TTL_SECONDS = 600       # a lock not refreshed for this long may be taken over
LOCK_SETTLE_SECONDS = 2.0    # S3 without conditional writes: PUT, wait, read back


class CommitError(UserError):
    """A commit that could not be finished nor undone without losing data."""

    exit_code = 5


class OutputLocked(UserError):
    """Another live run holds the output's lock."""

    exit_code = 6


def new_run_id() -> str:
    """A run's id: its UTC start time and a random suffix (sorts by time, unique per run)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def staging_dir(root: str, run_id: str) -> str:
    return join(root, STAGING, run_id)


def clean_stale_staging(fs: HadoopFS, root: str, keep: str | None = None) -> list[str]:
    """Remove staging areas of runs that died before committing. Call it only while holding
    the root's lock (:func:`lock_output`): then no other run on ROOT is alive."""
    removed = []
    for path in fs.list_subdirs(join(root, STAGING)):
        if keep and path.rstrip("/").endswith("/" + keep):
            continue
        fs.delete(path)
        removed.append(path)
    return removed


# --------------------------------------------------------------------------- the commit


def _at(base: str, rel: str) -> str:
    return join(base, rel) if rel else base


def _target_name(to: str) -> str:
    return to.rstrip("/").rsplit("/", 1)[-1]


def _complete(found: dict[str, int], manifest: dict[str, int]) -> list[str]:
    """Files of ``manifest`` absent from ``found`` or of another size."""
    return [rel for rel, size in manifest.items() if found.get(rel) != size]


def prepare_marker(fs: HadoopFS, root: str, marker: dict[str, Any]) -> dict[str, Any]:
    """The marker a commit writes: each move gets the manifests of its new (staged) and old
    (in place) files and the place where the old files are parked."""
    run_id = marker["run_id"]
    append = marker["mode"] != "overwrite"
    out = dict(marker, version=MARKER_VERSION, state="started")
    moves = []
    for move in marker["moves"]:
        src, dst = move["from"], move["to"]
        new = fs.list_files(src)
        old = {} if append else fs.list_files(dst)
        if append:   # data files only: markers such as _SUCCESS stay those of the target
            new = {rel: size for rel, size in new.items()
                   if not any(part.startswith(("_", ".")) for part in rel.split("/"))}
            clash = sorted(set(new) & set(fs.list_files(dst)))
            if clash:
                raise CommitError(f"cannot append to {dst}: {clash[0]} exists already there "
                                  f"(and in the staged output); nothing was committed")
        moves.append({"from": src, "to": dst, "new": new, "old": old,
                      "park": join(root, PREVIOUS, run_id, _target_name(dst))})
    out["moves"] = moves
    return out


def _put_state(fs: HadoopFS, root: str, marker: dict[str, Any], state: str) -> None:
    marker["state"] = state
    fs.write_json(join(root, MARKER), marker)


def _move_file(fs: HadoopFS, src: str, dst: str, size: int) -> None:
    """Move one file; a previous attempt may have copied it already (then only the source
    is left to delete) or left a different object at dst (replaced)."""
    have = fs.file_size(dst)
    if have == size:
        fs.delete(src, recursive=False)
        return
    if have is not None:
        fs.delete(dst, recursive=False)
    fs.rename(src, dst)


def _park_old(fs: HadoopFS, move: dict[str, Any]) -> None:
    """State ``started``: nothing new has been moved in, so every old path in place is old."""
    present = fs.list_files(move["to"])
    for rel, size in move["old"].items():
        if rel in present:
            _move_file(fs, _at(move["to"], rel), _at(move["park"], rel), present[rel])


def _install_new(fs: HadoopFS, move: dict[str, Any]) -> None:
    staged = fs.list_files(move["from"])
    for rel, size in move["new"].items():
        if staged.get(rel) == size:
            _move_file(fs, _at(move["from"], rel), _at(move["to"], rel), size)


def _new_available(fs: HadoopFS, marker: dict[str, Any]) -> list[str]:
    """New files neither staged nor in place (with their sizes): what makes a roll forward
    impossible."""
    missing = []
    for move in marker["moves"]:
        staged = fs.list_files(move["from"])
        placed = fs.list_files(move["to"]) if marker["state"] != "started" else {}
        for rel, size in move["new"].items():
            if staged.get(rel) != size and placed.get(rel) != size:
                missing.append(_at(move["to"], rel))
    return missing


def _verify_new(fs: HadoopFS, marker: dict[str, Any]) -> list[str]:
    problems = []
    for move in marker["moves"]:
        found = fs.list_files(move["to"])
        problems += [_at(move["to"], r) for r in _complete(found, move["new"])]
        problems += [_at(move["to"], r) + " (old)" for r in move["old"]
                     if r not in move["new"] and r in found]
    return problems


def _roll_back(fs: HadoopFS, root: str, marker: dict[str, Any], why: str) -> None:
    """Undo: the new files out, the parked old ones back, the old output checked."""
    if marker.get("state") != "rollback":
        _put_state(fs, root, marker, "rollback")
    for move in marker["moves"]:
        parked = fs.list_files(move["park"])
        placed = fs.list_files(move["to"])
        for rel in move["new"]:
            # a path of both outputs whose old file is no longer parked is the old file back
            if rel in placed and (rel not in move["old"] or rel in parked):
                fs.delete(_at(move["to"], rel), recursive=False)
        for rel, size in move["old"].items():
            if parked.get(rel) == size:
                _move_file(fs, _at(move["park"], rel), _at(move["to"], rel), size)
        missing = _complete(fs.list_files(move["to"]), move["old"])
        if missing:
            raise CommitError(
                f"the interrupted commit of run {marker['run_id']} in {root} can neither be "
                f"finished ({why}) nor undone ({len(missing)} old files missing, e.g. "
                f"{_at(move['to'], missing[0])}); nothing more was deleted: inspect "
                f"{join(root, MARKER)} and {join(root, PREVIOUS)}")
        fs.prune_empty_dirs(move["to"])
    _finish(fs, root, marker)
    log.warning("commit of run %s in %s undone (%s): the previous output is back, complete",
                marker["run_id"], root, why)


def _finish(fs: HadoopFS, root: str, marker: dict[str, Any]) -> None:
    fs.delete(join(root, PREVIOUS, marker["run_id"]))
    fs.delete(staging_dir(root, marker["run_id"]))
    fs.delete(join(root, MARKER), recursive=False)
    for parent in (join(root, PREVIOUS), join(root, STAGING)):
        if fs.exists(parent) and not fs.list_dir(parent):
            fs.delete(parent)


def apply_marker(fs: HadoopFS, root: str, marker: dict[str, Any]) -> str:
    """Finish (or undo) the commit a marker describes, from whatever state it is in; returns
    ``"committed"`` or ``"rolled back"``. Every step can be repeated."""
    if marker.get("version") != MARKER_VERSION:
        raise CommitError(f"{join(root, MARKER)} was written by an older reviewlake (no file "
                          f"manifests); finish it with that version, or remove it and check "
                          f"{root} by hand")
    state = marker.get("state", "started")
    if state == "rollback":
        _roll_back(fs, root, marker, "a roll back was under way")
        return "rolled back"
    if state != "verified":
        missing = _new_available(fs, marker)
        if missing:
            _roll_back(fs, root, marker, f"{len(missing)} new files lost, e.g. {missing[0]}")
            return "rolled back"
        if state == "started":
            if marker["mode"] == "overwrite":
                for move in marker["moves"]:
                    _park_old(fs, move)
            _put_state(fs, root, marker, "parked")
        for move in marker["moves"]:
            _install_new(fs, move)
        problems = _verify_new(fs, marker)
        if problems:
            _roll_back(fs, root, marker, f"the new output is not complete in place "
                                         f"({len(problems)} files, e.g. {problems[0]})")
            return "rolled back"
        for move in marker["moves"]:
            fs.prune_empty_dirs(move["to"])
        _put_state(fs, root, marker, "verified")
    for path, content in marker.get("files", {}).items():
        fs.write_json(path, content)
    _finish(fs, root, marker)
    return "committed"


def commit(fs: HadoopFS, root: str, marker: dict[str, Any]) -> None:
    """Commit a run: ``marker`` names the run, the mode, the moves ``{"from": staged,
    "to": target}`` and the JSON ``files`` to write; the manifests are added here."""
    full = prepare_marker(fs, root, marker)
    fs.write_json(join(root, MARKER), full)
    outcome = apply_marker(fs, root, full)
    if outcome != "committed":
        raise CommitError(f"run {marker['run_id']} could not be committed in {root} (its "
                          f"staged files changed during the commit); the previous output "
                          f"was kept")


def recover(fs: HadoopFS, root: str) -> str | None:
    """Finish or undo a commit that was interrupted; returns the run id it finished (None
    when there was nothing to do or the commit was undone)."""
    marker = fs.read_json(join(root, MARKER))
    if not marker:
        return None
    log.warning("finishing the interrupted commit of %s run %s in %s",
                marker.get("stage", "ingest"), marker.get("run_id"), root)
    outcome = apply_marker(fs, root, marker)
    return marker.get("run_id") if outcome == "committed" else None


# --------------------------------------------------------------------------- the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _local_path(path: str) -> str:
    return path[len("file:"):].replace("//", "/", 1) if path.startswith("file:") else path


class OutputLock:
    """``ROOT/_lock.json``: the run id, host, pid and expiry of the run that owns ROOT.

    Created exclusively: ``O_CREAT|O_EXCL`` on a local file system (atomic); on S3 (the
    hadoop-aws here has no conditional PUT) by a check, a PUT of a unique token, a wait of
    ``settle`` seconds and a read-back: of runs that race, the last PUT wins and only its
    owner sees its token. That excludes a second run as long as a run's check-to-PUT takes
    less than ``settle`` seconds (S3 reads are strongly consistent); it is not a consensus
    protocol. A lock whose expiry has passed (its owner stopped refreshing it: a thread
    refreshes it every ttl/3 while the run lives), or one left on this host by a process
    that is gone, is taken over."""

    def __init__(self, fs: HadoopFS, root: str, run_id: str, stage: str,
                 ttl: float = LOCK_TTL_SECONDS, settle: float = LOCK_SETTLE_SECONDS):
        self.fs, self.root, self.run_id, self.stage = fs, root, run_id, stage
        self.path = join(root, LOCK)
        self.ttl, self.settle = float(ttl), float(settle)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _content(self) -> dict[str, Any]:
        now = time.time()
        return {"run_id": self.run_id, "stage": self.stage, "host": socket.gethostname(),
                "pid": os.getpid(), "token": self.token, "heartbeat": now,
                "expires_at": now + self.ttl,
                "expires": dt.datetime.fromtimestamp(now + self.ttl,
                                                     dt.timezone.utc).isoformat()}

    def _stale(self, held: dict[str, Any]) -> bool:
        if float(held.get("expires_at", 0)) < time.time():
            return True
        return held.get("host") == socket.gethostname() and not _pid_alive(int(held.get("pid", 0)))

    def _create(self) -> bool:
        text = json.dumps(self._content(), indent=2) + "\n"
        if not is_remote(self.root):
            local = _local_path(self.path)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            try:
                fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            return True
        if self.fs.exists(self.path):
            return False
        self.fs.write_text(self.path, text)
        time.sleep(self.settle)
        return self._read().get("token") == self.token

    def _read(self) -> dict[str, Any]:
        try:
            return self.fs.read_json(self.path, default={}) or {}
        except UserError:
            return {"expires_at": 0}  # unreadable: treat as stale

    def acquire(self) -> "OutputLock":
        for _ in range(3):
            if self._create():
                self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                                name=f"lock-{self.run_id}")
                self._thread.start()
                return self
            held = self._read()
            if not held:
                continue  # released meanwhile
            if not self._stale(held):
                raise OutputLocked(
                    f"{self.root} is in use by {held.get('stage', 'a')} run "
                    f"{held.get('run_id')} (host {held.get('host')}, pid {held.get('pid')}, "
                    f"lock valid until {held.get('expires')}); wait for it to finish, or "
                    f"remove {self.path} if that run is dead")
            log.warning("taking over the stale lock of run %s on %s", held.get("run_id"),
                        self.root)
            if self._read().get("token") == held.get("token"):
                self.fs.delete(self.path, recursive=False)
        raise OutputLocked(f"could not take the lock {self.path} (other runs keep taking it); "
                           f"try again")

    def _heartbeat(self) -> None:
        while not self._stop.wait(max(self.ttl / 3, 0.05)):
            try:
                if self._read().get("token") != self.token:
                    self.lost = True
                    log.error("the lock %s was taken over by another run", self.path)
                    return
                self.fs.write_text(self.path, json.dumps(self._content(), indent=2) + "\n")
            except Exception as exc:  # the run goes on; a later refresh may work
                log.warning("could not refresh the lock %s: %s", self.path, exc)

    def check(self) -> None:
        """Fail (before committing) when the lock was taken over by another run."""
        if self.lost or self._read().get("token") != self.token:
            raise OutputLocked(f"the lock {self.path} of run {self.run_id} was taken over by "
                               f"another run (this run stalled past its expiry); nothing was "
                               f"committed by this run")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            if self._read().get("token") == self.token:
                self.fs.delete(self.path, recursive=False)
        except Exception as exc:  # the lock then expires by itself
            log.warning("could not remove the lock %s: %s", self.path, exc)

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def lock_output(fs: HadoopFS, root: str, run_id: str, stage: str,
                ttl: float = LOCK_TTL_SECONDS) -> OutputLock:
    """Take ROOT's lock for a run (a one-line :class:`OutputLocked` when a live run has it)."""
    fs.mkdirs(root)
    return OutputLock(fs, root, run_id, stage, ttl).acquire()
