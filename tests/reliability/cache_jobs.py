"""Run `eoid cache-teacher` jobs as real concurrent processes, cheaply: one Python
process imports torch and eoid once, then forks one child per job (a part, a killed run,
a rerun).

    python tests/reliability/cache_jobs.py SPEC.json RESULT.json

SPEC: {"synth": DIR, "weights": FILE, "root": DIR, "shard_rows": 16, "scenarios":
[...]}; each scenario writes the cache ROOT/NAME and reports its exit codes, every
file's sha256 and what it left that a finished cache must not hold. Kinds:
  parts:  {"parts": ["0/2", "1/2"], "delays": [0, 0.2]}: parts started together or staggered.
  killed: {"parts": [...], "kill": 1, "after_done": 1}: SIGKILL part `kill` once `after_done`
          shards are done (or once it claimed one), then rerun it alone.
  sweep:  {"steps": [1, 2, ...]}: for each N, a one-process run killed at its N-th durable file
          step (EOID_FAULT_AT=N), then the same run again; digests per N.
  count:  a one-process run listing its durable file steps (EOID_FAULT_LOG).
  random: {"delays": [...]}: SIGKILL a one-process run after each delay (s), then rerun it.
Exit codes of children: 0 done, 1 an EoidError (its line in ROOT/NAME.err-PART), 137
killed, 2 anything else (traceback on stderr).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import open_clip  # noqa: F401  imported once here, not in each child (a child then takes ~1.5 s)
import torch
import zarr  # noqa: F401

from eoid.config import CacheConfig, DataConfig, TeacherConfig
from eoid.devices import World
from eoid.errors import EoidError
from eoid.files import FAULT_AT, FAULT_LOG
from eoid.pipeline.run_cache import run_cache

TINY_CLIP = Path(__file__).resolve().parents[1] / "data" / "tiny-clip.json"


def config(spec: dict, out: Path, part: str = "", **teacher) -> CacheConfig:
    t = dict(
        model=str(TINY_CLIP),
        weights=spec["weights"],
        batch_size=16,
        num_workers=0,
        shard_rows=spec.get("shard_rows", 16),
    )
    t.update(teacher)
    synth = Path(spec["synth"])
    return CacheConfig(
        data=DataConfig(
            dataset=str(synth / "vocabulary.json"),
            train_annotations=str(synth / "train.json"),
            train_images=str(synth / "images"),
        ),
        teacher=TeacherConfig(**t),
        out=str(out),
        part=part,
    )


def start(spec: dict, out: Path, part: str = "", env: dict | None = None) -> int:
    """Fork a child running `eoid cache-teacher` into `out`; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 2
    try:
        os.environ.update(env or {})
        torch.set_num_threads(1)
        run_cache(config(spec, out, part), World())
        code = 0
    except EoidError as err:
        Path(f"{out}.err-{part.replace('/', 'of') or 'all'}").write_text(str(err))
        code = 1
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def leftovers(out: Path) -> list[str]:
    """Files a finished cache must not hold: temporaries, locks, claims, blocks, the
    recipe.
    """
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file()
        and (
            p.name.startswith(".")
            or p.name.endswith(".partial")
            or "partial/" in p.relative_to(out).as_posix()
        )
    )


def done_count(out: Path) -> int:
    return (
        len(list((out / "progress").glob("shard-*.done")))
        if (out / "progress").is_dir()
        else 0
    )


def run_scenario(spec: dict, sc: dict) -> dict:
    out = Path(spec["root"]) / sc["name"]
    kind = sc["kind"]
    result: dict = {"rcs": []}
    if kind == "parts":
        pids = []
        for part, delay in zip(sc["parts"], sc.get("delays", [0] * len(sc["parts"]))):
            time.sleep(delay)
            pids.append(start(spec, out, part))
        result["rcs"] = [wait(p) for p in pids]
    elif kind == "killed":
        pids = [start(spec, out, part) for part in sc["parts"]]
        victim = pids[sc["kill"]]
        mine = f".shard-{int(sc['parts'][sc['kill']].split('/')[0]):05d}.lock"
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline
            and done_count(out) < sc["after_done"]
            and not (out / "progress" / mine).exists()
        ):
            time.sleep(0.005)
        os.kill(victim, signal.SIGKILL)
        result["rcs"] = [wait(p) for p in pids]
        result["done_when_killed"] = done_count(out)
        result["rcs"].append(wait(start(spec, out, sc["parts"][sc["kill"]])))
    elif kind == "count":
        log = out.with_suffix(".steps")
        result["rcs"] = [wait(start(spec, out, env={FAULT_LOG: str(log)}))]
        result["steps"] = log.read_text().splitlines()
    elif kind == "sweep":
        result["per_step"] = {}
        for n in sc["steps"]:
            target = out / f"step{n:03d}"
            killed = wait(start(spec, target, env={FAULT_AT: str(n)}))
            rerun = wait(start(spec, target))
            result["per_step"][n] = {
                "rcs": [killed, rerun],
                "digests": digests(target),
                "leftovers": leftovers(target),
            }
        return result
    elif kind == "random":
        result["per_kill"] = []
        for i, delay in enumerate(sc["delays"]):
            target = out / f"kill{i:03d}"
            pid = start(spec, target)
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            killed = wait(pid)
            rerun = wait(start(spec, target))
            result["per_kill"].append(
                {
                    "rcs": [killed, rerun],
                    "digests": digests(target),
                    "leftovers": leftovers(target),
                }
            )
        return result
    result["errors"] = {
        p.name: p.read_text() for p in out.parent.glob(f"{out.name}.err-*")
    }
    result["digests"] = digests(out) if out.is_dir() else {}
    result["leftovers"] = leftovers(out) if out.is_dir() else []
    return result


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    results = {sc["name"]: run_scenario(spec, sc) for sc in spec["scenarios"]}
    Path(sys.argv[2]).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
