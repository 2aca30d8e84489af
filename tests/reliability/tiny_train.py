"""Helpers of the reliability tests: a seconds-long training run on the synthetic world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from eoid.config import TrainConfig
from eoid.config_loading import load_config
from eoid.devices import World

ROOT = Path(__file__).resolve().parents[2]
WORLD = World()

# tiny student, tiny images, no teacher: ~0.1 s per iteration; a run is mostly its ~5 s
# start-up
TINY = (
    "data.setting=ua",
    "loss.distill=0",
    "loss.a_u_only=false",
    "student.preset=tiny",
    "student.num_queries=8",
    "optim.batch_size=4",
    "optim.num_workers=0",
    "augment.scales=[96,112]",
    "augment.max_size=160",
    "augment.crop_scales=[96,112]",
    "augment.crop_min=80",
    "augment.crop_max=112",
    "augment.test_size=112",
)


def train_overrides(synth: Path, epochs: int = 2, *extra: str) -> tuple[str, ...]:
    return (
        f"data.dataset={synth / 'vocabulary.json'}",
        f"optim.epochs={epochs}",
        *TINY,
        *extra,
    )


def train_config(
    synth: Path,
    out: Path,
    epochs: int = 2,
    *extra: str,
    resume: bool = False,
    annotations: Path | None = None,
) -> TrainConfig:
    return load_config(
        TrainConfig,
        None,
        train_overrides(synth, epochs, *extra),
        out=str(out),
        data__train_annotations=str(annotations or synth / "train.json"),
        data__train_images=str(synth / "images"),
        resume=resume,
    )


def train_command(
    synth: Path, out: Path, epochs: int = 2, *extra: str, resume: bool = False
) -> list[str]:
    """`eoid train` as a user types it (for kill and signal tests)."""
    cmd = [
        sys.executable,
        "-m",
        "eoid",
        "train",
        "--out",
        str(out),
        "--annotations",
        str(synth / "train.json"),
        "--images",
        str(synth / "images"),
    ]
    for o in train_overrides(synth, epochs, *extra):
        cmd += ["--set", o]
    return cmd + (["--resume"] if resume else [])


def subprocess_env() -> dict[str, str]:
    """One thread everywhere: a subprocess run is bit-for-bit repeatable and shares the
    CPU fairly.
    """
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }


def run_cli(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def losses(run: Path) -> list[tuple[int, float]]:
    """(iteration, loss) of every logged training step."""
    rows = [
        json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    return [(r["iteration"], r["loss"]) for r in rows if "iteration" in r]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


TINY_CLIP = ROOT / "tests" / "data" / "tiny-clip.json"


def cache_config(synth: Path, clip_weights: Path, out: Path, **teacher):
    """A teacher cache of the synthetic world with a tiny random CLIP: 5 shards of 16
    pairs.
    """
    from eoid.config import CacheConfig, DataConfig, TeacherConfig

    t = dict(
        model=str(TINY_CLIP),
        weights=str(clip_weights),
        batch_size=16,
        num_workers=0,
        shard_rows=16,
    )
    t.update(teacher)
    return CacheConfig(
        data=DataConfig(
            dataset=str(synth / "vocabulary.json"),
            train_annotations=str(synth / "train.json"),
            train_images=str(synth / "images"),
        ),
        teacher=TeacherConfig(**t),
        out=str(out),
    )


def cache_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a cache but its locks: 'the same cache' byte for byte."""
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".lock" not in p.name
    }


def cache_command(synth: Path, clip_weights: Path, out: Path, *extra: str) -> list[str]:
    """`eoid cache-teacher` of `cache_config` as a user types it (for parallel and
    signal tests).
    """
    return [
        sys.executable,
        "-m",
        "eoid",
        "cache-teacher",
        "--dataset",
        str(synth / "vocabulary.json"),
        "--annotations",
        str(synth / "train.json"),
        "--images",
        str(synth / "images"),
        "--clip",
        str(TINY_CLIP),
        "--clip-weights",
        str(clip_weights),
        "--out",
        str(out),
        "--set",
        "teacher.batch_size=16",
        "--set",
        "teacher.num_workers=0",
        "--set",
        "teacher.shard_rows=16",
        *extra,
    ]


# forks cache-teacher processes
JOBS = Path(__file__).resolve().parent / "cache_jobs.py"


def run_jobs(
    synth: Path,
    clip_weights: Path,
    root: Path,
    scenarios: list[dict],
    shard_rows: int = 16,
) -> dict:
    """Run `scenarios` (cache_jobs.py) in one worker process; a one-process cache "one"
    first.
    """
    spec = {
        "synth": str(synth),
        "weights": str(clip_weights),
        "root": str(root),
        "shard_rows": shard_rows,
        "scenarios": [{"name": "one", "kind": "parts", "parts": [""]}, *scenarios],
    }
    (root / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(JOBS), str(root / "spec.json"), str(root / "result.json")],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((root / "result.json").read_text())
    one = results["one"]
    assert (
        one["rcs"] == [0]
        and one["leftovers"] == []
        and "manifest.json" in one["digests"]
    )
    return results


def assert_like_one_process(results: dict, name: str, rcs: list[int]) -> None:
    got = results[name]
    assert got["rcs"] == rcs, got.get("errors")
    assert got["digests"] == results["one"]["digests"]  # every file, byte for byte
    # no lock, claim, temporary or block
    assert got["leftovers"] == []
