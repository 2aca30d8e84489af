"""data.fraction: a seeded, nested subset of the training images, trained on the full
teacher cache.
"""

import json
from pathlib import Path

import numpy as np

from eoid.config import DataConfig, TrainConfig
from eoid.config_loading import load_config
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.transforms import augment_params
from eoid.pipeline.data.vocab import load_vocabulary
from eoid.pipeline.training.dataset import TrainDataset
from eoid.pipeline.training.teacher_source import open_teacher_for_training
from eoid.pipeline.training.training_set import fraction_subset, prepare_training_set

ROOT = Path(__file__).resolve().parents[3]


def _records(n: int) -> list[ImageRecord]:
    empty = np.zeros((0, 4), np.float32)
    return [
        ImageRecord(
            f"img{i:03d}.png",
            Path(f"img{i:03d}.png"),
            10,
            10,
            empty,
            np.zeros(0, np.int64),
            np.zeros((0, 3), np.int64),
        )
        for i in range(n)
    ]


def _keys(records: list[ImageRecord]) -> list[str]:
    return [r.key for r in records]


def test_a_fraction_keeps_round_fraction_times_n_images_in_the_files_order():
    records = _records(40)
    kept = fraction_subset(records, 0.25, seed=3)
    assert len(kept) == 10
    # the file's order, not the draw's
    assert _keys(kept) == sorted(_keys(kept))
    # same seed, same subset
    assert _keys(fraction_subset(records, 0.25, seed=3)) == _keys(kept)
    assert _keys(fraction_subset(records, 0.25, seed=4)) != _keys(kept)


def test_smaller_fractions_are_inside_larger_ones_with_the_same_seed():
    records = _records(200)
    subsets = [
        set(_keys(fraction_subset(records, f, seed=42))) for f in (0.1, 0.25, 0.5, 1.0)
    ]
    assert [len(s) for s in subsets] == [20, 50, 100, 200]
    assert subsets[0] < subsets[1] < subsets[2] < subsets[3]


def test_fraction_one_keeps_every_image_and_a_tiny_fraction_keeps_one():
    records = _records(7)
    assert fraction_subset(records, 1.0, seed=0) == records
    # round(0.07) = 0, at least one
    assert len(fraction_subset(records, 0.01, seed=0)) == 1


def test_the_validation_split_is_carved_first_and_is_the_same_at_every_fraction(
    tmp_path,
):
    # 20 images; 4 held out for validation whatever the fraction, the fraction of the
    # other 16 trained
    from eoid.pipeline.synth.world import generate_world

    # 20 train, 9 test
    world = generate_world(tmp_path / "w", 29, 0, image_size=96, progress=False)
    data = DataConfig(
        dataset=str(world.vocabulary),
        train_annotations=str(world.train_json),
        train_images=str(world.image_dir),
        val_images=4,
    )
    vocab = load_vocabulary(data.dataset)
    full = prepare_training_set(data, vocab, seed=7)
    half = prepare_training_set(
        DataConfig(**{**data.__dict__, "fraction": 0.5}), vocab, seed=7
    )
    assert (
        _keys(half.val_records) == _keys(full.val_records) and len(full.records) == 16
    )
    assert len(half.records) == 8 and set(_keys(half.records)) < set(
        _keys(full.records)
    )


def _train_config(world: Path, cache: Path, out: Path, *sets: str) -> TrainConfig:
    """The synthetic recipe on the session's 10-image world and its cache, sized for one
    CPU step.
    """
    return load_config(
        TrainConfig,
        ROOT / "configs" / "synth_ua.toml",
        (
            f"data.dataset={json.dumps(str(world / 'vocabulary.json'))}",
            "data.val_fraction=0",
            "optim.epochs=1",
            "optim.max_iters=1",
            "optim.batch_size=2",
            "optim.num_workers=0",
            "augment.scales=[96]",
            "augment.max_size=128",
            "augment.crop_scales=[96]",
            "augment.crop_min=64",
            "augment.crop_max=96",
            "augment.test_size=96",
            "student.num_queries=8",
            *sets,
        ),
        cache=str(cache),
        out=str(out),
        data__train_annotations=str(world / "train.json"),
        data__train_images=str(world / "images"),
        data__test_annotations=str(world / "test.json"),
        data__test_images=str(world / "images"),
    )


def test_a_fractional_run_reads_the_full_cache_and_its_images_get_the_full_runs_teacher_rows(
    synth_cache, tmp_path
):
    from eoid.devices import World

    world = synth_cache.parent / "world"
    rows = {}
    for fraction in (1.0, 0.5):
        cfg = _train_config(
            world, synth_cache, tmp_path / "unused", f"data.fraction={fraction}"
        )
        vocab = load_vocabulary(cfg.data.dataset)
        data = prepare_training_set(cfg.data, vocab, seed=cfg.optim.seed)
        # no mismatch refusal
        reader, _ = open_teacher_for_training(cfg, vocab, World(), data.records)
        dataset = TrainDataset(
            data.records,
            vocab.num_verbs,
            vocab.human,
            vocab.no_interaction,
            augment_params(cfg.augment),
            cfg.data.unknown_pairs,
            reader,
            0,
            data.annotated_pairs,
            train=False,
        )
        rows[fraction] = {
            meta.key: (
                meta.pair_box_idx,
                t.teacher_verb_probs.numpy(),
                t.teacher_hit.numpy(),
            )
            for _, t, meta in (dataset[i] for i in range(len(dataset)))
        }
    assert (
        len(rows[1.0]) == 7
        and len(rows[0.5]) == 4
        and rows[0.5].keys() < rows[1.0].keys()
    )
    for key, (pairs, probs, hit) in rows[0.5].items():
        full_pairs, full_probs, full_hit = rows[1.0][key]
        assert (
            np.array_equal(pairs, full_pairs)
            and hit.all()
            and np.array_equal(hit, full_hit)
        )
        assert np.array_equal(probs, full_probs)


def test_a_fractional_run_trains_on_the_shared_cache_and_says_how_many_images_it_used(
    synth_cache, tmp_path
):
    import torch

    from eoid.config_loading import read_toml
    from eoid.devices import World
    from eoid.pipeline.run_train import run_train

    torch.set_num_threads(1)
    cfg = _train_config(
        synth_cache.parent / "world", synth_cache, tmp_path / "run", "data.fraction=0.5"
    )
    run = run_train(cfg, World())
    meta = json.loads((run / "results.json").read_text())["meta"]
    # round(0.5 x 7) = 4
    assert meta["train_images"] == 4 and meta["data_fraction"] == 0.5
    assert read_toml(run / "config.toml")["data"]["fraction"] == 0.5
    extra = torch.load(run / "checkpoint.pt", weights_only=True)["extra"]
    assert extra["train_images"] == 4


def test_the_fraction_study_trains_four_fractions_on_one_cache_with_one_seed(tmp_path):
    from eoid.pipeline import study as studies
    from eoid.pipeline import study_plan as plans

    study = studies.read_study(ROOT / "configs" / "studies" / "data_fraction.toml")
    runs = plans.plan_study(study, tmp_path)
    assert [r.cfg.data.fraction for r in runs] == [0.1, 0.25, 0.5, 1.0]
    assert (
        len({r.cfg.cache for r in runs}) == 1
        and len({r.cfg.optim.seed for r in runs}) == 1
    )
