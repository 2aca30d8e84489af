"""Phase 1 end to end on a tiny world: random images, a HICO-format JSON, a tiny random
CLIP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eoid.config import CacheConfig, DataConfig, TeacherConfig
from eoid.devices import World
from eoid.errors import CacheMismatchError, LockedError
from eoid.locks import FolderLock
from eoid.pipeline.run_cache import run_cache
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.plan import ShardLayout
from eoid.teacher_cache.schema import TEACHER_NAMES

TINY_CONFIG = Path(__file__).resolve().parents[1] / "data" / "tiny-clip.json"
# verbs: hold, kick, drink_with, no_interaction; objects: person, ball, cup
TINY_VOCAB = {
    "name": "tiny",
    "verbs": [
        {"name": "hold", "phrase": "holding"},
        {"name": "kick", "phrase": "kicking"},
        {"name": "drink_with", "phrase": "drinking with"},
        {"name": "no_interaction", "phrase": "no interaction"},
    ],
    "objects": [
        {"name": "person", "id": 1},
        {"name": "sports_ball", "id": 2},
        {"name": "cup", "id": 3},
    ],
    "hois": [[0, 0], [3, 0], [0, 1], [1, 1], [3, 1], [0, 2], [2, 2], [3, 2]],
    "human": "person",
    "no_interaction": "no_interaction",
}
WORLD = World()


def make_world(
    root: Path, num_images: int = 6, seed: int = 0
) -> tuple[Path, Path, Path]:
    """Random images + a HICO-format JSON + a vocabulary JSON under root."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(num_images):
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        name = f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            images / name
        )
        boxes, cats = [], []
        for j in range(int(rng.integers(2, 5))):
            x1, y1 = float(rng.integers(0, w // 2)), float(rng.integers(0, h // 2))
            boxes.append(
                [x1, y1, float(rng.integers(x1 + 5, w)), float(rng.integers(y1 + 5, h))]
            )
            cats.append(1 if j == 0 else int(rng.integers(1, 4)))
        records.append(
            {
                "file_name": name,
                "width": w,
                "height": h,
                "annotations": [
                    {"bbox": b, "category_id": c} for b, c in zip(boxes, cats)
                ],
                "hoi_annotation": [
                    {"subject_id": 0, "object_id": 1, "category_id": cats[1]}
                ],
            }
        )
    (root / "train.json").write_text(json.dumps(records))
    (root / "vocab.json").write_text(json.dumps(TINY_VOCAB))
    return root / "train.json", images, root / "vocab.json"


@pytest.fixture(scope="module")
def weights(tiny_weights) -> Path:
    return tiny_weights


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path, Path]:
    return make_world(tmp_path_factory.mktemp("world"), num_images=12)


def config(world, weights, out, **teacher) -> CacheConfig:
    ann, images, vocab = world
    t = dict(
        model=str(TINY_CONFIG),
        weights=str(weights),
        batch_size=4,
        num_workers=0,
        shard_rows=8,
    )
    t.update(teacher)
    return CacheConfig(
        data=DataConfig(
            dataset=str(vocab), train_annotations=str(ann), train_images=str(images)
        ),
        teacher=TeacherConfig(**t),
        out=str(out),
    )


def cache_bytes(path: Path) -> dict[str, bytes]:
    """Every file of a cache except lock files: what 'the same cache' means byte for
    byte.
    """
    return {
        str(p.relative_to(path)): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and ".lock" not in p.name
    }


@pytest.fixture(scope="module")
def reference(world, weights, tmp_path_factory) -> Path:
    return run_cache(
        config(world, weights, tmp_path_factory.mktemp("ref") / "cache"), WORLD
    )


def test_the_cache_holds_every_candidate_pair_with_distributions_summing_to_one(
    reference,
):
    reader = CacheReader(reference)
    fp = reader.fingerprint
    assert fp["num_images"] == 12 and fp["num_pairs"] == len(reader.verb_probs) > 12
    assert reader.verb_probs.dtype == np.float32
    assert np.allclose(reader.verb_probs.sum(1), 1.0, atol=1e-5)
    assert (reader.verb_probs[:, 3] == 0).all()  # no mass on no_interaction
    assert reader.labelled.sum() == 12  # one labelled pair per image


def test_cache_rows_equal_the_online_teacher_on_the_same_pairs(
    reference, world, weights
):
    from eoid.pipeline.data.vocab import load_vocabulary
    from eoid.teacher_cache.distribution import valid_hoi_table
    from eoid.teacher_cache.online import online_teacher
    from eoid.teacher_cache.teacher import load_teacher

    reader = CacheReader(reference)
    vocab = load_vocabulary(world[2])
    teacher = load_teacher(str(TINY_CONFIG), str(weights))
    text = teacher.encode_texts(vocab.prompts(TeacherConfig().template))
    images = [Image.open(world[1] / k).convert("RGB") for k in reader.image_keys]
    pair_image = np.repeat(np.arange(len(images)), np.diff(reader.offsets))
    probs = online_teacher(
        teacher,
        images,
        pair_image,
        reader.human_xyxy,
        reader.object_xyxy,
        reader.object_class,
        text,
        torch.from_numpy(
            valid_hoi_table(vocab.hoi_to_object, vocab.hoi_to_verb, 3, [3])
        ),
        torch.from_numpy(vocab.hoi_to_verb),
        4,
        100.0,
        batch_size=7,
    )
    # float32 rows: what the loss reads from the cache is what the online teacher gives
    assert np.abs(probs.numpy() - reader.verb_probs).max() <= 1e-6


def test_lookup_by_the_cached_boxes_hits_every_pair(reference):
    reader = CacheReader(reference)
    key = reader.image_keys[3]
    r = reader.rows(key)
    probs, hit = reader.lookup(
        key, reader.human_xyxy[r] + 0.5, reader.object_xyxy[r], reader.object_class[r]
    )
    assert hit.all() and np.array_equal(probs, reader.verb_probs[r].astype(np.float32))


def test_parts_run_separately_equal_one_run(reference, world, weights, tmp_path):
    out = tmp_path / "cache"
    for i in (1, 0, 2):
        cfg = config(world, weights, out)
        run_cache(
            CacheConfig(
                data=cfg.data, teacher=cfg.teacher, out=str(out), part=f"{i}/3"
            ),
            WORLD,
        )
    assert cache_bytes(out) == cache_bytes(reference)


def test_a_rerun_on_a_finished_cache_changes_nothing(reference, world, weights):
    before = cache_bytes(reference)
    run_cache(config(world, weights, reference), WORLD)
    assert cache_bytes(reference) == before


def test_a_cache_folder_with_another_fingerprint_is_refused_naming_the_difference(
    reference, world, weights
):
    with pytest.raises(
        CacheMismatchError, match="gamma: cache has 100.0, expected 50.0"
    ):
        run_cache(config(world, weights, reference, gamma=50.0), WORLD)


def test_a_cache_built_at_another_precision_is_another_cache(
    reference, world, weights, tmp_path, monkeypatch
):
    # a GPU's default ("auto" = fp16) stood in for on the CPU: the teacher really runs
    # float16 weights
    import eoid.pipeline.run_cache as run_cache_mod

    monkeypatch.setattr(
        run_cache_mod, "resolve_precision", lambda precision, device: "fp16"
    )
    with pytest.raises(
        CacheMismatchError, match="teacher precision: cache has 'fp32', expected 'fp16'"
    ):
        run_cache(config(world, weights, reference), WORLD)
    fp16 = CacheReader(run_cache(config(world, weights, tmp_path / "fp16"), WORLD))
    assert fp16.fingerprint["precision"] == "fp16"
    assert 0 < np.abs(fp16.verb_probs - CacheReader(reference).verb_probs).max() < 0.05


def test_gamma_model_is_resolved_once_for_cache_relabel_and_the_online_teacher(
    reference, world, weights, tmp_path
):
    from eoid.config import TrainConfig
    from eoid.pipeline.data.vocab import load_vocabulary
    from eoid.pipeline.run_cache_relabel import run_relabel
    from eoid.pipeline.training.teacher_source import OnlineTeacher

    scale = float(torch.load(weights, weights_only=True)["logit_scale"].exp())
    built = CacheReader(
        run_cache(config(world, weights, tmp_path / "model", gamma="model"), WORLD)
    )
    relabelled = CacheReader(
        run_relabel(reference, tmp_path / "relabelled", gamma="model")
    )
    ann, images, vocab = world
    online = OnlineTeacher(
        TrainConfig(
            teacher=TeacherConfig(
                model=str(TINY_CONFIG), weights=str(weights), gamma="model"
            )
        ),
        load_vocabulary(str(vocab)),
        [],
        "cpu",
    )
    assert built.fingerprint["gamma"] == relabelled.fingerprint["gamma"] == online.gamma
    assert online.gamma == pytest.approx(scale)
    assert built.manifest["config"]["teacher"]["gamma"] == "model"
    assert np.allclose(built.verb_probs, relabelled.verb_probs, atol=5e-3)


def test_an_unfinished_cache_with_another_fingerprint_is_refused(
    world, weights, tmp_path, monkeypatch
):
    out = tmp_path / "cache"
    _kill_after_shards(monkeypatch, 1, config(world, weights, out))
    with pytest.raises(CacheMismatchError, match="prompt template"):
        run_cache(
            config(world, weights, out, template="a photo of {verb_ing} {object}"),
            WORLD,
        )


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    world, weights, tmp_path
):
    out = tmp_path / "cache"
    out.mkdir()
    with FolderLock(out / ".lock-part-0-of-1"):
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            run_cache(config(world, weights, out), WORLD)


def _kill_after_shards(monkeypatch, n: int, cfg) -> None:
    """Run `cfg` and simulate a kill: the (n+1)-th shard write raises before anything of
    it is written.
    """
    from eoid.teacher_cache import store

    real, count = store.write_shard, [0]

    def flaky(*args, **kwargs):
        if count[0] >= n:
            raise KeyboardInterrupt("simulated kill")
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_shard", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_cache(cfg, WORLD)
    monkeypatch.undo()


def test_a_run_stopped_after_some_shards_resumes_to_the_same_bytes(
    reference, world, weights, tmp_path, monkeypatch
):
    out = tmp_path / "cache"
    _kill_after_shards(monkeypatch, 2, config(world, weights, out))
    with pytest.raises(CacheMismatchError, match="unfinished"):
        CacheReader(out)
    run_cache(config(world, weights, out), WORLD)
    assert cache_bytes(out) == cache_bytes(reference)


def test_a_half_written_shard_left_by_a_kill_is_rewritten_from_scratch(
    reference, world, weights, tmp_path, monkeypatch
):
    from eoid.teacher_cache import store

    out = tmp_path / "cache"
    _kill_after_shards(monkeypatch, 2, config(world, weights, out))
    # a kill inside zarr's write of the next shard leaves its file cut short and not
    # marked done
    undone = min(set(range(7)) - store.done_shards(out))
    for name in TEACHER_NAMES:
        torn = out / name / "c" / str(undone) / "0"
        torn.parent.mkdir(parents=True, exist_ok=True)
        torn.write_bytes(b"\x28\xb5\x2f\xfd torn shard")
    run_cache(config(world, weights, out), WORLD)
    assert cache_bytes(out) == cache_bytes(reference)


def test_sigint_stops_at_the_next_block_saying_how_to_resume(
    reference, world, weights, tmp_path, monkeypatch
):
    from eoid.errors import Interrupted
    from eoid.teacher_cache import store

    real = store.write_shard

    def interrupting(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-run, like Ctrl-C
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_shard", interrupting)
    out = tmp_path / "cache"
    with pytest.raises(Interrupted, match="same command again"):
        run_cache(config(world, weights, out), WORLD)
    monkeypatch.undo()
    assert len(store.done_shards(out)) == 1
    run_cache(config(world, weights, out), WORLD)
    assert cache_bytes(out) == cache_bytes(reference)


NEW_TEMPLATE = "a photo of a person {verb_ing} a {object}"


def test_relabel_with_new_prompts_equals_a_fresh_cache_built_with_them(
    reference, world, weights, tmp_path
):
    from eoid.pipeline.run_cache_relabel import run_relabel

    fresh = run_cache(
        config(world, weights, tmp_path / "fresh", template=NEW_TEMPLATE, gamma=50.0),
        WORLD,
    )
    relabelled = run_relabel(
        reference, tmp_path / "relabelled", template=NEW_TEMPLATE, gamma=50.0
    )
    a, b = CacheReader(fresh), CacheReader(relabelled)
    assert a.fingerprint == b.fingerprint and a.prompts == b.prompts
    # relabel starts from the float16 embeddings: equal within float16 tolerance
    assert np.allclose(a.verb_probs, b.verb_probs, atol=5e-3)
    assert not np.allclose(a.verb_probs, CacheReader(reference).verb_probs, atol=5e-3)


def test_an_old_format_cache_is_refused_and_relabel_upgrades_it(reference, tmp_path):
    import shutil

    from eoid.pipeline.run_cache_relabel import run_relabel
    from eoid.teacher_cache.manifest import FORMAT_VERSION

    old = tmp_path / "old"
    shutil.copytree(reference, old)
    manifest = json.loads((old / "manifest.json").read_text())
    # float16 verb rows
    manifest["format_version"] = manifest["fingerprint"]["format_version"] = 1
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        CacheMismatchError,
        match=r"version 1, this eoid reads version 2\. Rebuild it with "
        r"`eoid cache-teacher`, or upgrade it: `eoid cache relabel",
    ):
        CacheReader(old)
    upgraded = CacheReader(run_relabel(old, tmp_path / "new"))
    assert (
        upgraded.manifest["format_version"]
        == upgraded.fingerprint["format_version"]
        == FORMAT_VERSION
    )
    assert np.allclose(
        upgraded.verb_probs, CacheReader(reference).verb_probs, atol=5e-3
    )


def test_verify_accepts_its_own_dataset_and_refuses_another(
    reference, world, weights, tmp_path
):
    from eoid.pipeline.run_cache_verify import run_verify

    report = run_verify(reference, world[0], world[1], str(world[2]))
    assert report["ok"] and report["pairs"] > 0
    other_ann, other_images, _ = make_world(tmp_path, num_images=3, seed=5)
    with pytest.raises(CacheMismatchError, match="annotation file"):
        run_verify(reference, other_ann, other_images, str(world[2]))


def test_inspect_reports_entropy_and_draws_a_grid(reference, tmp_path):
    from eoid.pipeline.run_cache_inspect import run_inspect

    stats = run_inspect(reference, png=tmp_path / "grid.png", num_samples=6)
    # at most 2 valid verbs per object here
    assert 0 < stats["mean_entropy_nats"] <= np.log(2) + 1e-3
    assert (
        abs(sum(stats["verb_mass"].values()) - 1) < 5e-3
        and stats["verb_mass"]["no_interaction"] == 0
    )
    assert (tmp_path / "grid.png").stat().st_size > 1000


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_the_same_bytes(
    reference, world, weights, tmp_path
):
    from eoid.teacher_cache import store

    out = tmp_path / "cache"
    script = (
        "from tests.pipeline.test_run_cache import *;"
        f" run_cache(config({tuple(str(p) for p in world)!r}, {str(weights)!r},"
        f" {str(out)!r}), WORLD)"
    )
    root = Path(__file__).resolve().parents[2]
    rng = np.random.default_rng(1)
    killed_at = []
    for target in (0, 1, 2):
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # kill once the folder exists (target 0) or `target` shards are written, plus a
        # random delay
        started = (
            (lambda: (out / "plan.json").exists())
            if target == 0
            else (lambda: len(store.done_shards(out)) >= target)
        )
        while proc.poll() is None and not started():
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.01))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at.append(len(store.done_shards(out)))
    subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert cache_bytes(out) == cache_bytes(reference), killed_at
    # the first kill lands before any shard is finished; later ones may find the run
    # done on a fast machine (the rerun must then change nothing), so only their order
    # is checked
    num_shards = ShardLayout(
        **json.loads((out / "plan.json").read_text())["layout"]
    ).num_shards
    assert killed_at[0] < num_shards and killed_at == sorted(killed_at), killed_at
