import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from eoid.errors import LockedError
from eoid.locks import FolderLock


def test_a_second_writer_is_refused_with_the_holders_pid_and_host(tmp_path):
    with FolderLock(tmp_path / ".lock"):
        with pytest.raises(LockedError) as err:
            FolderLock(tmp_path / ".lock")
    assert f"pid {os.getpid()}" in str(err.value) and socket.gethostname() in str(
        err.value
    )


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
    (tmp_path / ".lock").write_text(
        json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "since": 0})
    )
    lock = FolderLock(tmp_path / ".lock")
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_from_another_host_needs_break_lock(tmp_path):
    (tmp_path / ".lock").write_text(
        json.dumps({"pid": 1, "host": "elsewhere-node-7", "since": 0})
    )
    with pytest.raises(LockedError, match="elsewhere-node-7.*--break-lock"):
        FolderLock(tmp_path / ".lock")
    FolderLock(tmp_path / ".lock", break_lock=True).release()


def test_an_empty_lock_file_left_by_a_kill_during_creation_is_taken_over_with_a_warning(
    tmp_path, caplog
):
    # a writer fills its lock file right after creating it: one still empty a minute
    # later was left by a process killed in between (or a full disk), never by a live
    # writer
    (tmp_path / ".lock").write_text("")
    old = os.path.getmtime(tmp_path / ".lock") - 60
    os.utime(tmp_path / ".lock", (old, old))
    caplog.set_level("WARNING")
    with FolderLock(tmp_path / ".lock"):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert (
        "empty lock file" in caplog.text
        and "None" not in caplog.text
        and "1970" not in caplog.text
    )


def test_a_lock_file_that_cannot_be_removed_is_a_warning_not_a_second_error(
    tmp_path, monkeypatch, caplog
):
    # e.g. the run folder became read-only mid-training: the first error is the one to
    # see
    lock = FolderLock(tmp_path / ".lock")
    real = type(tmp_path).unlink

    def read_only(path, *args, **kwargs):
        if path.name == ".lock":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "unlink", read_only)
    caplog.set_level("WARNING")
    with pytest.raises(ValueError, match="the first error"):
        with lock:
            raise ValueError("the first error")
    assert str(tmp_path / ".lock") in caplog.text and "Permission denied" in caplog.text


def test_break_lock_never_breaks_a_live_local_holder(tmp_path):
    with FolderLock(tmp_path / ".lock"):
        with pytest.raises(LockedError, match="another writer"):
            FolderLock(tmp_path / ".lock", break_lock=True)


@pytest.mark.parametrize("out", ["cache", "cache/sub", "."])
def test_an_output_folder_that_is_in_or_around_an_input_is_refused_before_anything_is_made(
    tmp_path, out
):
    from eoid.errors import EoidError
    from eoid.files import output_folder

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "manifest.json").write_text("{}")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(EoidError, match="this command reads") as err:
        output_folder(tmp_path / out, "the merged cache", inputs=[tmp_path / "cache"])
    assert "\n" not in str(err.value) and "Pass a new folder" in str(err.value)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_an_output_folder_beside_its_inputs_is_made(tmp_path):
    from eoid.files import output_folder

    (tmp_path / "cache").mkdir()
    assert output_folder(tmp_path / "merged", inputs=[tmp_path / "cache"]).is_dir()


def test_a_new_file_is_refused_where_a_file_exists_and_its_folder_is_made_otherwise(
    tmp_path,
):
    from eoid.errors import ConfigError
    from eoid.files import new_file

    (tmp_path / "model.onnx").write_bytes(b"kept")
    with pytest.raises(ConfigError, match="already exists; choose another --out"):
        new_file(tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").read_bytes() == b"kept"
    assert new_file(tmp_path / "sub" / "model.onnx") == tmp_path / "sub" / "model.onnx"
    assert (tmp_path / "sub").is_dir() and not (
        tmp_path / "sub" / "model.onnx"
    ).exists()


def test_a_stale_lock_is_removed_only_if_it_still_holds_the_holder_judged_stale(
    tmp_path,
):
    # writers A and B both judge a dead pid's lock stale; B breaks it first and takes
    # the lock. A, breaking it next, must find B's lock there and leave it: two holders
    # would be two writers
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "since": 0}
    with FolderLock(tmp_path / ".lock") as taken_by_b:
        assert taken_by_b._break_stale(stale) is False
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock.break").exists()


def test_many_processes_breaking_one_stale_lock_leave_one_holder_at_a_time(tmp_path):
    # 6 processes find the lock of a dead pid and each holds the lock for a moment,
    # appending "in"/"out" to a log: with one holder at a time, the log alternates in,
    # out, in, out ...
    (tmp_path / ".lock").write_text(
        json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "since": 0})
    )
    script = (
        "import sys, time; from pathlib import Path; from eoid.locks import"
        f" FolderLock\nroot = Path({str(tmp_path)!r})\nwith FolderLock(root / '.lock',"
        " wait_s=60):\n    with open(root / 'log', 'a') as f: f.write('in\\n')\n   "
        " time.sleep(0.05)\n    with open(root / 'log', 'a') as f: f.write('out\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env) for _ in range(6)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * 6
    assert (tmp_path / "log").read_text().split() == ["in", "out"] * 6


def test_a_full_disk_while_taking_a_lock_is_one_error_and_leaves_no_lock_file(
    tmp_path, monkeypatch
):
    import errno

    from eoid import files
    from eoid.errors import EoidError

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(
        EoidError,
        match=r"\.lock: could not write the lock file \(No space left on device\)",
    ):
        FolderLock(tmp_path / ".lock")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ whose folder an
# --out is


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_folder_holding_the_users_files_is_refused_naming_a_few_of_them_and_left_as_it_was(
    tmp_path,
):
    from eoid.errors import EoidError
    from eoid.files import output_folder

    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("train.json", "a.png", "b.png", "c.png"):
        (mine / name).write_text("the user's")
    with pytest.raises(EoidError) as err:
        output_folder(mine, "the synthetic world", owner="synth")
    line = str(err.value)
    assert "\n" not in line and str(mine) in line and "not written by eoid" in line
    assert "a.png, b.png, c.png and 1 more" in line and "new or empty folder" in line
    # no marker, no probe
    assert _names(mine) == ["a.png", "b.png", "c.png", "train.json"]


def test_a_folder_a_command_made_is_claimed_once_and_that_command_may_write_it_again(
    tmp_path,
):
    from eoid.files import OWNER_FILE, output_folder

    out = output_folder(tmp_path / "w", owner="synth")
    assert json.loads((out / OWNER_FILE).read_text()) == {"command": "synth"}
    (out / "train.json").write_text("written by synth")
    assert output_folder(out, owner="synth") == out  # a rerun, or a resume


def test_another_command_may_not_write_into_a_folder_made_by_one_except_where_it_fills_it(
    tmp_path,
):
    from eoid.errors import EoidError
    from eoid.files import output_folder

    run = output_folder(tmp_path / "run", owner="train")
    (run / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(EoidError, match="written by `eoid train`"):
        output_folder(run, owner="synth")
    # report adds its plots
    assert output_folder(run, owner="report", fills=("train",)) == run
    # and the run stays train's
    assert "train" in (run / ".eoid-output").read_text()


def test_a_folder_made_before_markers_is_recognised_by_its_signs_or_its_own_marker(
    tmp_path,
):
    from eoid.files import OWNER_FILE, output_folder

    old_run = tmp_path / "old_run"
    old_run.mkdir()
    (old_run / "checkpoint.pt").write_bytes(b"x")
    assert output_folder(old_run, owner="train", signs=("checkpoint.pt",)) == old_run
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ".eoid-teacher-cache").write_bytes(b"")
    (cache / "shard").write_bytes(b"x")
    assert (
        output_folder(cache, owner="cache-teacher", marker=".eoid-teacher-cache")
        == cache
    )
    # the cache keeps its own marker only
    assert not (cache / OWNER_FILE).exists()


def test_eoids_own_bookkeeping_files_do_not_make_a_folder_foreign(tmp_path):
    """A part starting beside another sees its write probe or marker temporary: not a
    user's file.
    """
    from eoid.files import output_folder

    out = tmp_path / "shared"
    out.mkdir()
    (out / ".eoid-write-test-999").write_bytes(b"")
    (out / "..eoid-output.tmp-999").write_bytes(b"")
    assert output_folder(out, owner="sweep") == out


def test_an_output_under_a_symlink_loop_is_one_line(tmp_path):
    from eoid.errors import EoidError
    from eoid.files import output_folder

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(EoidError, match="symlink loop") as err:
        output_folder(tmp_path / "loop" / "out", owner="predict")
    assert "\n" not in str(err.value) and str(tmp_path / "loop") in str(err.value)
