"""The folder lock: one writer per folder (a run, a cache part, a cache shard).

The lock is an O_EXCL file holding the owner's pid and host. A second writer is refused with a
message naming the holder. A lock left by a dead process on this host is stale for certain: it
is removed with a warning, so rerunning a killed command just resumes. A lock from another host
cannot be checked (shared file systems): it is removed only when the caller passes break_lock
(`--break-lock`).

"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from pathlib import Path

from eoid.errors import LockedError
from eoid.files import pid_alive, writing

log = logging.getLogger(__name__)
# a lock file still empty this long after creation was left by a killed writer
EMPTY_STALE_S = 5.0


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
        # tries that found no live holder: a stale lock broken, or one released
        # meanwhile
        turns = 0
        while turns < 100:
            turns += 1
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
                holder = self._holder()
                # empty for good: its writer died between creating and writing it
                if holder is None:
                    if self._break_stale(None):
                        log.warning(
                            "%s: removing an empty lock file (its writer died before"
                            " writing its pid); nobody holds this folder.",
                            self.path,
                        )
                    continue
                if not holder:  # released while we looked
                    continue
                pid, host = holder.get("pid"), holder.get("host", "?")
                since = time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0))
                )
                local = host == socket.gethostname()
                if local and isinstance(pid, int) and pid_alive(pid):
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        turns -= 1
                        continue
                    raise LockedError(
                        f"{self.path.parent}: another writer holds it (pid {pid} on"
                        f" {host}, since {since}; lock file {self.path}). Wait for it"
                        " to finish or stop it; two writers on one folder would"
                        " corrupt it."
                    ) from None
                if not (break_lock or local):
                    raise LockedError(
                        f"{self.path.parent}: lock file {self.path} is held by pid"
                        f" {pid} on another host {host} (since {since}), which cannot"
                        " be checked from here. If no process writes there any more,"
                        " rerun with --break-lock."
                    ) from None
                if self._break_stale(holder):
                    log.warning(
                        "%s: removing the stale lock of pid %s on %s (since %s)",
                        self.path,
                        pid,
                        host,
                        since,
                    )
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:  # disk full: no half-written lock stays behind
                self.path.unlink(missing_ok=True)
                raise
            self.held = True
            return
        raise LockedError(
            f"{self.path}: could not take the lock (other writers kept racing for it)."
        )

    def _break_stale(self, judged: dict | None) -> bool:
        """Remove the lock file if it still holds `judged` (None: still empty); True if
        removed.

        Two writers may judge one lock stale at once; if both removed it, the slower
        could remove the lock the faster had just taken. So the removal happens under a
        second O_EXCL file (NAME.break), after reading the holder again. A .break file
        older than EMPTY_STALE_S was left by a writer killed while breaking: it is
        removed.
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
                still = (
                    now == judged
                    if judged is not None
                    else (not now and self.path.stat().st_size == 0)
                )
            except FileNotFoundError:
                still = False
            if still:
                self.path.unlink(missing_ok=True)
            return still
        finally:
            breaker.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        """The holder's pid and host; None for a lock file still empty EMPTY_STALE_S
        after it was made.

        Its owner writes it right after creating it, so an empty file is waited on
        that long first."""
        while True:
            holder = _read_holder(self.path)
            if holder:
                return holder
            try:
                age = time.time() - self.path.stat().st_mtime
            # released meanwhile: an empty holder, the caller tries again
            except FileNotFoundError:
                return {}
            if age > EMPTY_STALE_S:
                return None
            time.sleep(0.1)

    def release(self) -> None:
        """Remove the lock file; if that fails (the folder became read-only), warn:
        the error that stopped the writer is the one to show, and a later run takes
        this lock over as stale."""
        if self.held:
            self.held = False
            try:
                self.path.unlink(missing_ok=True)
            except OSError as err:
                log.warning(
                    "%s: could not remove the lock file (%s); remove it by hand.",
                    self.path,
                    err.strerror or err,
                )

    @classmethod
    def claim(cls, path: Path, break_lock: bool = False) -> "FolderLock | None":
        """The lock if nobody else holds it now (a stale holder's is broken), else None:
        no wait.
        """
        try:
            return cls(path, break_lock=break_lock)
        except LockedError:
            return None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
