"""benchmarks/device_run.sh: every GPU row, and its dry run on the CPU that keeps it
working.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def device_run(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import device_run

    return device_run


def test_a_failing_step_is_a_failed_row_the_next_step_still_runs_and_the_exit_is_1(
    device_run, tmp_path, monkeypatch, capsys
):
    def broken(run):
        raise RuntimeError("CUDA out of memory")

    def fine(run):
        return [device_run.Row("fine", "a row that came out", 2.0, "crops/s")]

    monkeypatch.setattr(device_run, "STEPS", {"broken": broken, "fine": fine})
    monkeypatch.setattr(
        sys, "argv", ["device_run.py", "--dry-run", "--out", str(tmp_path)]
    )
    assert device_run.main() == 1
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    assert [(r["name"], r["status"]) for r in rows] == [
        ("broken: step", "failed"),
        ("a row that came out", "ok"),
    ]
    assert "RuntimeError: CUDA out of memory" in rows[0]["detail"]
    assert "FAILED: broken: step" in capsys.readouterr().out


def test_a_gpu_run_without_a_gpu_refuses_before_measuring(
    device_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(device_run.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["device_run.py", "--out", str(tmp_path)])
    assert device_run.main() == 2
    assert not (tmp_path / "rows.json").exists()


@pytest.mark.slow
def test_the_dry_run_prints_every_gpu_row_on_the_cpu(tmp_path):
    # the same steps as on a GPU with tiny models and a 20-image world (~40 s of CPU): a
    # row that a change breaks fails here, not on the day a GPU is lent
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    env.pop("OUT", None)
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "device_run.sh"),
            "--dry-run",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    doc = json.loads((tmp_path / "rows.json").read_text())
    rows = doc["rows"]
    assert doc["dry_run"] is True and not [r for r in rows if r["status"] == "failed"]
    by_step = {}
    for r in rows:
        by_step.setdefault(r["step"], []).append(r)
    # both towers x the dry run's 4 variants, each with crops/s and FLOPs per crop
    assert len(by_step["tower"]) == 8
    assert all(
        r["value"] > 0 and r["extra"]["gflops_per_crop"] > 0 for r in by_step["tower"]
    )
    assert [r["name"] for r in by_step["e2e"]] == [
        "cache-teacher end to end",
        "bare encoder, same crops",
        "cache-teacher / bare encoder",
    ]
    world = by_step["e2e"][0]["detail"]
    assert "20 images" in world and "HICO-shaped" in world
    assert len(by_step["train"]) == 4 and all(
        r["value"] is not None for r in by_step["train"]
    )
    # torch fp32, bf16 (skipped on CPU), onnxruntime
    assert len(by_step["infer"]) == 3
    tests = by_step["tests"][0]
    # no CUDA
    assert (
        tests["extra"]["tests"] > 0
        and tests["extra"]["skipped"] == tests["extra"]["tests"]
    )
    assert (tmp_path / "cuda_tests.xml").is_file()
    # the closing table names every row
    for r in rows:
        assert r["name"] in done.stdout
