"""The validation split: a count as before, or a share that scales with the data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from eoid.config import DataConfig, TrainConfig
from eoid.config_loading import load_config
from eoid.errors import ConfigError
from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.training.quickstart_recipe import recipe_path
from eoid.pipeline.training.training_set import split_validation, validation_count

ROOT = Path(__file__).resolve().parents[3]


def _records(num: int) -> list[ImageRecord]:
    empty = np.zeros((0, 4), np.float32)
    return [
        ImageRecord(
            f"train_{i:06d}.png",
            Path("x"),
            160,
            160,
            empty,
            np.zeros(0, np.int64),
            np.zeros((0, 3), np.int64),
        )
        for i in range(num)
    ]


def _keys_before_val_fraction(
    records: list[ImageRecord], data: DataConfig
) -> list[str]:
    """The validation keys as prepare_training_set chose them before data.val_fraction
    existed.
    """
    if data.val_images <= 0:
        return []
    held = set(
        np.random.default_rng(data.val_seed)
        .permutation(len(records))[: data.val_images]
        .tolist()
    )
    return [r.key for i, r in enumerate(records) if i in held]


@pytest.mark.parametrize("num_images", [600, 400])
def test_the_quickstart_recipe_selects_the_same_validation_images_as_before(num_images):
    # the quickstart world holds 70% of its images in train.json (420 of 600, 280 of
    # 400)
    records = _records(num_images - round(0.3 * num_images))
    data = load_config(TrainConfig, recipe_path()).data
    train, val = split_validation(records, data, "train.json")
    assert [r.key for r in val] == _keys_before_val_fraction(records, data) == []
    assert len(train) == len(records)


@pytest.mark.parametrize("val_images,val_seed", [(40, 0), (1000, 0), (7, 3)])
def test_a_count_selects_exactly_the_images_it_selected_before(val_images, val_seed):
    records = _records(1200)
    data = DataConfig(val_images=val_images, val_seed=val_seed)
    train, val = split_validation(records, data, "train.json")
    assert [r.key for r in val] == _keys_before_val_fraction(records, data)
    assert len(train) + len(val) == len(records) and not {r.key for r in train} & {
        r.key for r in val
    }


@pytest.mark.parametrize("num,expected", [(420, 42), (42, 4), (8, 1), (2, 1), (1, 0)])
def test_a_fraction_scales_with_the_data_keeping_at_least_one_image_and_one_to_train(
    num, expected
):
    # round(0.1 x num), at least 1, never every image (one image alone cannot be split)
    assert validation_count(num, DataConfig(val_fraction=0.1), "train.json") == expected


def test_the_synthetic_recipe_trains_on_the_small_worlds_the_readme_suggests():
    cfg = load_config(TrainConfig, ROOT / "configs" / "synth_ua.toml")
    for num in (42, 28, 4):  # training images of 60-, 40- and 6-image worlds
        train, val = split_validation(_records(num), cfg.data, "train.json")
        assert 1 <= len(val) < num and len(train) == num - len(val)


def test_a_count_larger_than_the_data_says_what_to_pass():
    with pytest.raises(
        ConfigError,
        match=r"only 28 training images.*data\.val_images=2.*val_fraction=0\.1",
    ):
        validation_count(28, DataConfig(val_images=40), "synth_world/train.json")


@pytest.mark.parametrize(
    "field,value", [("val_fraction", 1.0), ("val_fraction", -0.1), ("val_images", -1)]
)
def test_a_fraction_outside_zero_to_one_or_a_negative_count_is_refused(field, value):
    with pytest.raises(ConfigError, match="val_fraction"):
        validation_count(
            100, dataclasses.replace(DataConfig(), **{field: value}), "train.json"
        )


def test_a_misspelled_val_fraction_is_refused_with_the_nearest_key():
    with pytest.raises(ConfigError, match="val_fraction"):
        load_config(TrainConfig, None, ("data.val_fracton=0.1",))
