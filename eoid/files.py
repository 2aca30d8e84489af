"""Files written so that a kill never leaves half of one: atomic writes, hashes, the folder lock.

Every output eoid writes (cache metadata, checkpoints, predictions, tables) goes through
`write_atomic`: a temporary name in the same folder, fsync, rename over the target, fsync of
the folder. A reader then sees the old file or the new one, never a torn one.

The lock is an O_EXCL file holding the owner's pid and host. A second writer is refused with a
message naming the holder. A lock left by a dead process on this host is stale for certain: it
is removed with a warning, so rerunning a killed command just resumes. A lock from another host
cannot be checked (shared file systems): it is removed only when the caller passes break_lock
(`--break-lock`).

A temporary file is named `.NAME.tmp-HOST-PID`, so `remove_dead_temporaries` can tell the
temporaries of a killed writer (this host, pid gone) from those of one still writing.
`fault_point` marks each durable file step; the tests kill a process at every one of them
(EOID_FAULT_AT) to prove that a kill at any instant is resumable.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from eoid.errors import ConfigError, EoidError, LockedError

log = logging.getLogger(__name__)
EMPTY_STALE_S = 5.0   # a lock file still empty this long after creation was left by a killed writer
FAULT_AT = "EOID_FAULT_AT"      # N: the N-th durable file step of a process kills it (tests)
FAULT_LOG = "EOID_FAULT_LOG"    # FILE: each durable file step appends its name there (tests)
_fault_steps: dict[int, int] = {}   # pid -> steps taken; per pid, so a forked child counts from 0


# ---------------------------------------------------------------- fault injection

def fault_point(step: str) -> None:
    """One durable file step (a file renamed into place, a store file written) has just happened.

    With EOID_FAULT_AT=N in the environment, the N-th step of this process ends it at once, as
    SIGKILL does (exit 137, no cleanup, no finally blocks): the reliability tests sweep N over
    every step of a run. EOID_FAULT_LOG=FILE lists the steps (how many to sweep). Without either
    variable this is one dictionary update.
    """
    pid = os.getpid()
    _fault_steps[pid] = count = _fault_steps.get(pid, 0) + 1
    log_file = os.environ.get(FAULT_LOG)
    if log_file:
        with open(log_file, "a") as f:
            f.write(f"{count} {step}\n")
    if os.environ.get(FAULT_AT) == str(count):
        os._exit(137)


# ---------------------------------------------------------------- atomic writes

def fsync_dir(path: Path) -> None:
    """Make a rename inside folder `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write(f)` on a temporary file, fsync it and rename it over `path`.

    An OSError (disk full, permission) propagates; the temporary file never survives, not even
    a second Ctrl-C mid-write.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "w+b") as f:   # readable too: h5py reads back what it writes
            write(f)
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"{tmp.name} written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    fault_point(f"{path.name} renamed into place")


TEMPORARY = ".tmp-"   # `.NAME.tmp-HOST-PID`: a temporary of write_atomic


def temporary_path(path: Path) -> Path:
    """Where write_atomic writes `path` before renaming it: `.NAME.tmp-HOST-PID` in its folder."""
    return path.with_name(f".{path.name}{TEMPORARY}{socket.gethostname()}-{os.getpid()}")


def remove_dead_temporaries(folder: Path) -> list[Path]:
    """Remove, anywhere under `folder`, the temporaries of writers that died (killed mid-write).

    A temporary is a dead writer's when its host is this host and its pid is gone, or when it has
    the older `.NAME.tmp-PID` form and that pid is gone; one of another host is kept (it cannot be
    checked from here). Returns the files removed.
    """
    removed = []
    host = socket.gethostname()
    for tmp in Path(folder).rglob(f".*{TEMPORARY}*"):
        owner = tmp.name.rsplit(TEMPORARY, 1)[1]
        owner_host, _, pid = owner.rpartition("-")
        if pid.isdigit() and owner_host in ("", host) and not _pid_alive(int(pid)) and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def os_error_fix(err: OSError) -> str:
    """What the user can do about a failed write to a path they chose."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "Free disk space"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return "A file stands where a folder is needed: choose another output path (--out)"
    if err.errno == errno.ELOOP:
        return "The path is a symlink loop: remove the link or choose another output path (--out)"
    if err.errno == errno.ENAMETOOLONG:
        return "The path is longer than the file system allows: choose a shorter output path (--out)"
    return ("Make the folder writable (chmod u+w, or ask its owner) or choose another output path "
            "(--out)")


@contextmanager
def writing(target: Path, what: str) -> Iterator[None]:
    """Turn a failed write (disk full, quota, permission, read-only) into an EoidError saying what is kept."""
    try:
        yield
    except OSError as err:
        raise EoidError(f"{target}: could not write {what} ({err.strerror or err}). {os_error_fix(err)}, "
                        "then run the same command again: what was written before is kept and the "
                        "run resumes from it.") from None


OWNER_FILE = ".eoid-output"   # JSON {"command": ...}: the eoid command that made (claimed) the folder


def _ours(name: str) -> bool:
    """eoid's bookkeeping files (owner marker, write probe, their temporaries, FolderLock files such
    as .lock, .init.lock, .lock-part-0-of-2): never a user's, and present while another part starts."""
    return name.lstrip(".").startswith("eoid-") or name.startswith(".lock") or name.endswith(".lock")


def _owner_of(path: Path) -> str | None:
    try:
        found = json.loads((path / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found.get("command") if isinstance(found, dict) else None


def _require_ours(path: Path, what: str, owner: str, fills: Iterable[str], signs: Iterable[str],
                  marker: str) -> bool:
    """Refuse an existing folder holding files that `owner` (or a command in `fills`) did not write;
    True when the folder is new or empty, so that it may be claimed (marked)."""
    try:
        names = sorted(p.name for p in path.iterdir() if not _ours(p.name))
    except FileNotFoundError:
        return True
    if not names:
        return True
    made_by = _owner_of(path)
    own_marker = marker != OWNER_FILE and (path / marker).exists()
    if made_by in (owner, *fills) or own_marker or any((path / s).exists() for s in signs):
        return False
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    whose = f"written by `eoid {made_by}`" if made_by else "not written by eoid"
    raise ConfigError(f"{path}: {what} would go into a folder holding files {whose} ({shown}); "
                      f"nothing was changed. Pass a new or empty folder as --out.")


def output_folder(path: Path, what: str = "the output folder", inputs: Iterable[Path] = (),
                  owner: str | None = None, fills: Iterable[str] = (), signs: Iterable[str] = (),
                  marker: str = OWNER_FILE) -> Path:
    """Create `path` (with its parents) and prove it writable now, before any work is done.

    Every command that writes calls this where it creates its output folder: a folder that
    cannot be created or written is one EoidError naming it and the fix, never a traceback later.
    `inputs`: folders or files the command reads; an output that is one of them, or inside or
    around one, is refused before anything is created, so a command never writes over what it reads.
    `owner`: the command writing here (e.g. "train"). An existing folder that is not empty must be
    this command's (its `marker` file, by default OWNER_FILE naming the command, or one of the
    `signs`: files only this command writes, e.g. a run made before markers existed) or one whose
    maker is in `fills` (a command documented to add its files to another's folder, e.g. report
    into train's run); otherwise it is refused naming a few of the files, so nothing a user wrote
    is overwritten. A new or empty folder gets the marker; resuming it is allowed.
    """
    path = Path(path)
    try:
        where = path.resolve()
        for folder in inputs:
            source = Path(folder).resolve()
            if where == source or source in where.parents or where in source.parents:
                raise EoidError(f"{path}: {what} cannot be written there: this command reads {folder}, "
                                "and the output may not be it, inside it or around it. Pass a new folder "
                                "as --out.")
        claim = owner is not None and _require_ours(path, what, owner, fills, signs, marker)
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".eoid-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        if claim and not (path / marker).exists():   # a folder already in use is left as it is
            body = json.dumps({"command": owner}) + "\n" if marker == OWNER_FILE else ""
            write_atomic(path / marker, lambda f: f.write(body.encode()))
    except (OSError, RuntimeError) as err:   # RuntimeError: resolve() of a symlink loop (Python < 3.13)
        raise EoidError(f"{path}: cannot write {what} there ({getattr(err, 'strerror', None) or err}). "
                        f"{os_error_fix(err) if isinstance(err, OSError) else 'Remove the symlink loop'}"
                        ", then run the same command again.") from None
    return path


def new_file(path: Path, what: str = "the output file") -> Path:
    """Check that `path` can become a new file: it does not exist and its folder is writable.

    Commands whose --out is one file (export, cache export, import-checkpoint, cache inspect --png,
    pseudo-label) call this before any work: an existing file is never overwritten, and a folder
    that cannot be written is one line.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{path} already exists; choose another --out (nothing was overwritten).")
    output_folder(path.parent, f"{what}'s folder")
    return path


def write_bytes_atomic(path: Path, data: bytes, what: str = "a file") -> None:
    """`data` to `path` atomically; a failure is an EoidError naming the file."""
    with writing(path, what):
        write_atomic(path, lambda f: f.write(data))


def write_text_atomic(path: Path, text: str, what: str = "a file") -> None:
    """UTF-8 `text` to `path` atomically; a failure is an EoidError naming the file."""
    write_bytes_atomic(path, text.encode(), what)


def write_json_atomic(path: Path, obj: Any, what: str = "a file") -> None:
    """`obj` as indented JSON (one trailing newline) to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=False) + "\n", what)


def read_json(path: Path, error: type[EoidError] | None = None, fix: str = "") -> Any:
    """Parse a JSON file; with `error`, a missing, unreadable or invalid file is that EoidError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        if error is None:
            raise
        why = ("does not exist" if isinstance(err, FileNotFoundError) else
               f"cannot be read ({err.strerror or err})" if isinstance(err, OSError) else
               f"is not valid JSON ({err}): truncated or edited")
        raise error(f"{path} {why}. {fix}".strip()) from None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB blocks (annotation files and weights in fingerprints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- the folder lock

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


class FolderLock:
    """Held while writing; use as a context manager or call release()."""

    def __init__(self, path: Path, break_lock: bool = False, wait_s: float = 0.0):
        """wait_s: how long to wait for a live holder to let go before refusing."""
        self.path = Path(path)
        self.held = False
        with writing(self.path, "the lock file"):
            self._acquire(break_lock, time.monotonic() + wait_s)

    def _acquire(self, break_lock: bool, deadline: float) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        turns = 0   # tries that found no live holder: a stale lock broken, or one released meanwhile
        while turns < 100:
            turns += 1
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
                holder = self._holder()
                if holder is None:  # empty for good: its writer died between creating and writing it
                    if self._break_stale(None):
                        log.warning("%s: removing an empty lock file (its writer died before writing "
                                    "its pid); nobody holds this folder.", self.path)
                    continue
                if not holder:      # released while we looked
                    continue
                pid, host = holder.get("pid"), holder.get("host", "?")
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
                local = host == socket.gethostname()
                if local and isinstance(pid, int) and _pid_alive(pid):
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        turns -= 1
                        continue
                    raise LockedError(
                        f"{self.path.parent}: another writer holds it (pid {pid} on {host}, since "
                        f"{since}; lock file {self.path}). Wait for it to finish or stop it; two "
                        "writers on one folder would corrupt it.") from None
                if not (break_lock or local):
                    raise LockedError(
                        f"{self.path.parent}: lock file {self.path} is held by pid {pid} on another "
                        f"host {host} (since {since}), which cannot be checked from here. If no "
                        "process writes there any more, rerun with --break-lock.") from None
                if self._break_stale(holder):
                    log.warning("%s: removing the stale lock of pid %s on %s (since %s)",
                                self.path, pid, host, since)
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:   # disk full: no half-written lock stays behind
                self.path.unlink(missing_ok=True)
                raise
            self.held = True
            return
        raise LockedError(f"{self.path}: could not take the lock (other writers kept racing for it).")

    def _break_stale(self, judged: dict | None) -> bool:
        """Remove the lock file if it still holds `judged` (None: still empty); True if removed.

        Two writers may judge one lock stale at once; if both removed it, the slower could remove
        the lock the faster had just taken. So the removal happens under a second O_EXCL file
        (NAME.break), after reading the holder again. A .break file older than EMPTY_STALE_S was
        left by a writer killed while breaking: it is removed.
        """
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            try:
                if time.time() - breaker.stat().st_mtime > EMPTY_STALE_S:
                    breaker.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            time.sleep(0.01)
            return False
        try:
            now = _read_holder(self.path)
            try:
                still = now == judged if judged is not None else \
                    (not now and self.path.stat().st_size == 0)
            except FileNotFoundError:
                still = False
            if still:
                self.path.unlink(missing_ok=True)
            return still
        finally:
            breaker.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        """The holder's pid and host; None for a lock file still empty EMPTY_STALE_S after it was made.

        Its owner writes it right after creating it, so an empty file is waited on that long first."""
        while True:
            holder = _read_holder(self.path)
            if holder:
                return holder
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:   # released meanwhile: an empty holder, the caller tries again
                return {}
            if age > EMPTY_STALE_S:
                return None
            time.sleep(0.1)

    def release(self) -> None:
        """Remove the lock file; if that fails (the folder became read-only), warn: the error that
        stopped the writer is the one to show, and a later run takes this lock over as stale."""
        if self.held:
            self.held = False
            try:
                self.path.unlink(missing_ok=True)
            except OSError as err:
                log.warning("%s: could not remove the lock file (%s); remove it by hand.", self.path,
                            err.strerror or err)

    @classmethod
    def claim(cls, path: Path, break_lock: bool = False) -> "FolderLock | None":
        """The lock if nobody else holds it now (a stale holder's is broken), else None: no wait."""
        try:
            return cls(path, break_lock=break_lock)
        except LockedError:
            return None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
