import json
import os
import socket
import subprocess
import sys

import pytest

from eoid.errors import LockedError
from eoid.files import FolderLock


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(tmp_path):
    with FolderLock(tmp_path / ".lock"):
        with pytest.raises(LockedError) as err:
            FolderLock(tmp_path / ".lock")
    assert f"pid {os.getpid()}" in str(err.value) and socket.gethostname() in str(err.value)


def test_the_lock_is_released_on_exit(tmp_path):
    with FolderLock(tmp_path / ".lock"):
        pass
    assert not (tmp_path / ".lock").exists()
    FolderLock(tmp_path / ".lock").release()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lock_of_a_dead_process_on_this_host_is_removed(tmp_path):
    # the pid is certainly dead, so a rerun after a kill resumes without any flag
    (tmp_path / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(),
                                                "since": 0}))
    lock = FolderLock(tmp_path / ".lock")
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_from_another_host_needs_break_lock(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "elsewhere-node-7", "since": 0}))
    with pytest.raises(LockedError, match="elsewhere-node-7.*--break-lock"):
        FolderLock(tmp_path / ".lock")
    FolderLock(tmp_path / ".lock", break_lock=True).release()


def test_an_empty_lock_file_left_by_a_kill_during_creation_is_stale(tmp_path):
    (tmp_path / ".lock").write_text("")
    with pytest.raises(LockedError):
        FolderLock(tmp_path / ".lock")
    FolderLock(tmp_path / ".lock", break_lock=True).release()


def test_break_lock_never_breaks_a_live_local_holder(tmp_path):
    with FolderLock(tmp_path / ".lock"):
        with pytest.raises(LockedError, match="another writer"):
            FolderLock(tmp_path / ".lock", break_lock=True)
