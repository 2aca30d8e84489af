"""Files written so that a kill never leaves half of one: atomic writes, hashes, output
folders.

The one-writer lock of a folder is in eoid/locks.py.

Every output eoid writes (cache metadata, checkpoints, predictions, tables) goes through
`write_atomic`: a temporary name in the same folder, fsync, rename over the target,
fsync of the folder. A reader then sees the old file or the new one, never a torn one.

A temporary file is named `.NAME.tmp-HOST-PID`, so `remove_dead_temporaries` can tell
the temporaries of a killed writer (this host, pid gone) from those of one still
writing. `fault_point` marks each durable file step; the tests kill a process at every
one of them (EOID_FAULT_AT) to prove that a kill at any instant is resumable.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import socket
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from eoid.errors import ConfigError, EoidError

log = logging.getLogger(__name__)
# N: the N-th durable file step of a process kills it (tests)
FAULT_AT = "EOID_FAULT_AT"
# FILE: each durable file step appends its name there (tests)
FAULT_LOG = "EOID_FAULT_LOG"
# pid -> steps taken; per pid, so a forked child counts from 0
_fault_steps: dict[int, int] = {}


# ---------------------------------------------------------------- fault injection


def fault_point(step: str) -> None:
    """One durable file step (a file renamed into place, a store file written) has just
    happened.

    With EOID_FAULT_AT=N in the environment, the N-th step of this process ends it at
    once, as SIGKILL does (exit 137, no cleanup, no finally blocks): the reliability
    tests sweep N over every step of a run. EOID_FAULT_LOG=FILE lists the steps (how
    many to sweep). Without either variable this is one dictionary update.
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

    An OSError (disk full, permission) propagates; the temporary file never survives,
    not even a second Ctrl-C mid-write.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with open(tmp, "w+b") as f:  # readable too: h5py reads back what it writes
            write(f)
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"{tmp.name} written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    fault_point(f"{path.name} renamed into place")


TEMPORARY = ".tmp-"  # `.NAME.tmp-HOST-PID`: a temporary of write_atomic


def temporary_path(path: Path) -> Path:
    """Where write_atomic writes `path` before renaming it: `.NAME.tmp-HOST-PID` in its
    folder.
    """
    return path.with_name(
        f".{path.name}{TEMPORARY}{socket.gethostname()}-{os.getpid()}"
    )


def remove_dead_temporaries(folder: Path) -> list[Path]:
    """Remove, anywhere under `folder`, the temporaries of writers that died (killed
    mid-write).

    A temporary is a dead writer's when its host is this host and its pid is gone, or
    when it has the older `.NAME.tmp-PID` form and that pid is gone; one of another host
    is kept (it cannot be checked from here). Returns the files removed.
    """
    removed = []
    host = socket.gethostname()
    for tmp in Path(folder).rglob(f".*{TEMPORARY}*"):
        owner = tmp.name.rsplit(TEMPORARY, 1)[1]
        owner_host, _, pid = owner.rpartition("-")
        if (
            pid.isdigit()
            and owner_host in ("", host)
            and not pid_alive(int(pid))
            and tmp.is_file()
        ):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def os_error_fix(err: OSError) -> str:
    """What the user can do about a failed write to a path they chose."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "Free disk space"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return (
            "A file stands where a folder is needed: choose another output path (--out)"
        )
    if err.errno == errno.ELOOP:
        return (
            "The path is a symlink loop: remove the link or choose another output path"
            " (--out)"
        )
    if err.errno == errno.ENAMETOOLONG:
        return (
            "The path is longer than the file system allows: choose a shorter output"
            " path (--out)"
        )
    return (
        "Make the folder writable (chmod u+w, or ask its owner) or choose another"
        " output path (--out)"
    )


@contextmanager
def writing(target: Path, what: str) -> Iterator[None]:
    """Turn a failed write (disk full, quota, permission, read-only) into an EoidError
    saying what is kept.
    """
    try:
        yield
    except OSError as err:
        raise EoidError(
            f"{target}: could not write {what} ({err.strerror or err})."
            f" {os_error_fix(err)}, then run the same command again: what was written"
            " before is kept and the run resumes from it."
        ) from None


# JSON {"command": ...}: the eoid command that made (claimed) the folder
OWNER_FILE = ".eoid-output"


def _ours(name: str) -> bool:
    """eoid's bookkeeping files (owner marker, write probe, their temporaries,
    FolderLock files such as .lock, .init.lock, .lock-part-0-of-2): never a user's,
    and present while another part starts."""
    return (
        name.lstrip(".").startswith("eoid-")
        or name.startswith(".lock")
        or name.endswith(".lock")
    )


def _owner_of(path: Path) -> str | None:
    try:
        found = json.loads((path / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found.get("command") if isinstance(found, dict) else None


def _require_ours(
    path: Path,
    what: str,
    owner: str,
    fills: Iterable[str],
    signs: Iterable[str],
    marker: str,
) -> bool:
    """Refuse an existing folder holding files that `owner` (or a command in `fills`)
    did not write; True when the folder is new or empty, so that it may be claimed
    (marked)."""
    try:
        names = sorted(p.name for p in path.iterdir() if not _ours(p.name))
    except FileNotFoundError:
        return True
    if not names:
        return True
    made_by = _owner_of(path)
    own_marker = marker != OWNER_FILE and (path / marker).exists()
    if (
        made_by in (owner, *fills)
        or own_marker
        or any((path / s).exists() for s in signs)
    ):
        return False
    shown = ", ".join(names[:3]) + (
        f" and {len(names) - 3} more" if len(names) > 3 else ""
    )
    whose = f"written by `eoid {made_by}`" if made_by else "not written by eoid"
    raise ConfigError(
        f"{path}: {what} would go into a folder holding files {whose} ({shown}); "
        "nothing was changed. Pass a new or empty folder as --out."
    )


def output_folder(
    path: Path,
    what: str = "the output folder",
    inputs: Iterable[Path] = (),
    owner: str | None = None,
    fills: Iterable[str] = (),
    signs: Iterable[str] = (),
    marker: str = OWNER_FILE,
) -> Path:
    """Create `path` (with its parents) and prove it writable now, before any work is
    done.

    Every command that writes calls this where it creates its output folder: a folder
    that cannot be created or written is one EoidError naming it and the fix, never a
    traceback later. `inputs`: folders or files the command reads; an output that is one
    of them, or inside or around one, is refused before anything is created, so a
    command never writes over what it reads. `owner`: the command writing here (e.g.
    "train"). An existing folder that is not empty must be this command's (its `marker`
    file, by default OWNER_FILE naming the command, or one of the `signs`: files only
    this command writes, e.g. a run made before markers existed) or one whose maker is
    in `fills` (a command documented to add its files to another's folder, e.g. report
    into train's run); otherwise it is refused naming a few of the files, so nothing a
    user wrote is overwritten. A new or empty folder gets the marker; resuming it is
    allowed.
    """
    path = Path(path)
    try:
        where = path.resolve()
        for folder in inputs:
            source = Path(folder).resolve()
            if where == source or source in where.parents or where in source.parents:
                raise EoidError(
                    f"{path}: {what} cannot be written there: this command reads"
                    f" {folder}, and the output may not be it, inside it or around it."
                    " Pass a new folder as --out."
                )
        claim = owner is not None and _require_ours(
            path, what, owner, fills, signs, marker
        )
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".eoid-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        # a folder already in use is left as it is
        if claim and not (path / marker).exists():
            body = json.dumps({"command": owner}) + "\n" if marker == OWNER_FILE else ""
            write_atomic(path / marker, lambda f: f.write(body.encode()))
    # RuntimeError: resolve() of a symlink loop (Python < 3.13)
    except (OSError, RuntimeError) as err:
        raise EoidError(
            f"{path}: cannot write {what} there"
            f" ({getattr(err, 'strerror', None) or err})."
            f" {os_error_fix(err) if isinstance(err, OSError) else 'Remove the symlink loop'},"
            " then run the same command again."
        ) from None
    return path


def new_file(path: Path, what: str = "the output file") -> Path:
    """Check that `path` can become a new file: it does not exist and its folder is
    writable.

    Commands whose --out is one file (export, cache export, import-checkpoint, cache
    inspect --png, pseudo-label) call this before any work: an existing file is never
    overwritten, and a folder that cannot be written is one line.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise ConfigError(
            f"{path} already exists; choose another --out (nothing was overwritten)."
        )
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
    """Parse a JSON file; with `error`, a missing, unreadable or invalid file is that
    EoidError naming it.
    """
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        if error is None:
            raise
        why = (
            "does not exist"
            if isinstance(err, FileNotFoundError)
            else (
                f"cannot be read ({err.strerror or err})"
                if isinstance(err, OSError)
                else f"is not valid JSON ({err}): truncated or edited"
            )
        )
        raise error(f"{path} {why}. {fix}".strip()) from None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 8 MiB blocks (annotation files and weights in
    fingerprints).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
