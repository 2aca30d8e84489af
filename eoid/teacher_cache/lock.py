"""A writer lock on a folder: an O_EXCL file holding the owner's pid and host.

A second writer is refused with a message naming the holder. A lock left by a dead process on
this host is stale for certain: it is removed with a warning, so rerunning a killed command
just resumes. A lock from another host cannot be checked (shared file systems): it is removed
only when the caller passes break_lock (`--break-lock`).
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

log = logging.getLogger(__name__)


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
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class FolderLock:
    """Held while writing; use as a context manager or call release()."""

    def __init__(self, path: Path, break_lock: bool = False, wait_s: float = 0.0):
        """wait_s: how long to wait for a live holder to let go before refusing."""
        self.path = Path(path)
        self.held = False
        self._acquire(break_lock, time.monotonic() + wait_s)

    def _acquire(self, break_lock: bool, deadline: float) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
                holder = _read_holder(self.path)
                if not holder:  # created but not yet written by its owner: look again once
                    time.sleep(0.1)
                    holder = _read_holder(self.path)
                pid, host = holder.get("pid"), holder.get("host", "?")
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
                local = host == socket.gethostname()
                if local and isinstance(pid, int) and _pid_alive(pid):
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        return self._acquire(break_lock, deadline)
                    raise LockedError(
                        f"{self.path.parent}: another writer holds it (pid {pid} on {host}, since "
                        f"{since}; lock file {self.path}). Wait for it to finish or stop it; two "
                        "writers on one folder would corrupt it.") from None
                if not (break_lock or local):
                    raise LockedError(
                        f"{self.path.parent}: lock file {self.path} is held by pid {pid} on another "
                        f"host {host} (since {since}), which cannot be checked from here. If no "
                        "process writes there any more, rerun with --break-lock.") from None
                log.warning("%s: removing the stale lock of pid %s on %s (since %s)",
                            self.path, pid, host, since)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return
        raise LockedError(f"{self.path}: could not take the lock (another writer raced for it).")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
