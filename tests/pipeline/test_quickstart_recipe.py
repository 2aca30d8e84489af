"""`eoid quickstart --set`: the recipe's values are checked before any work, and a
run folder started with other values is never reused or resumed as if it were this
quickstart's."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from eoid.cli import main
from eoid.config import TrainConfig, dumps_toml
from eoid.config_loading import load_config
from eoid.errors import ConfigError
from eoid.pipeline.training.quickstart_recipe import (
    recipe_path,
    require_same_recipe,
    require_settable,
)


def test_a_misspelled_set_key_is_one_line_before_anything_is_written(tmp_path):
    out = tmp_path / "qs"
    result = CliRunner().invoke(
        main, ["quickstart", "--out", str(out), "--set", "loss.is_positive=matched"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: --set loss.is_positive=matched: unknown key 'is_positive'; did you mean"
        " 'is_positives'?"
    ]
    assert not out.exists()


def _run(tmp_path, *overrides: str) -> TrainConfig:
    cfg = load_config(TrainConfig, recipe_path(), ("optim.seed=0", *overrides))
    return dataclasses.replace(cfg, out=str(tmp_path / "runs" / "eoid"), resume=True)


def test_a_run_started_under_other_values_is_refused_with_what_differs(tmp_path):
    started = _run(tmp_path, "loss.distill=31")
    (tmp_path / "runs" / "eoid").mkdir(parents=True)
    (tmp_path / "runs" / "eoid" / "config.toml").write_text(dumps_toml(started))
    with pytest.raises(ConfigError, match=r"loss\.distill 31\.0 -> 54\.0.*--set"):
        require_same_recipe([_run(tmp_path)])
    # the same values: resumed or reused
    require_same_recipe([started])
    moved = dataclasses.replace(
        started, cache=str(tmp_path / "elsewhere" / "teacher_cache")
    )
    # the folder's place is not the recipe
    require_same_recipe([moved])


@pytest.mark.parametrize(
    "item",
    [
        "out=elsewhere",
        "cache=c",
        "resume=false",
        "data.train_images=x",
        "teacher.model=RN50",
        " out = x",
    ],
)
def test_a_set_of_a_key_the_quickstart_sets_itself_is_refused_naming_it(item):
    with pytest.raises(ConfigError, match="the quickstart sets") as err:
        require_settable(("optim.epochs=2", item))
    assert item.split("=")[0].strip() in str(err.value) and "\n" not in str(err.value)


def test_a_set_of_the_training_recipe_is_accepted_by_the_quickstart():
    require_settable(("optim.epochs=2", "loss.is_positives=matched", "data.setting=ua"))


def test_a_recipe_on_a_world_takes_the_worlds_data_paths_and_the_teacher_and_nothing_else():
    import dataclasses

    from eoid.config import DataConfig, TrainConfig
    from eoid.pipeline.training.quickstart_recipe import TEACHER, WORLD_PATHS, on_world

    recipe = TrainConfig(data=DataConfig(setting="ua", val_images=7))
    world = DataConfig(
        **{k: f"/w/{k}" for k in WORLD_PATHS}, setting="uc0", val_images=3
    )
    placed = on_world(recipe, world)
    # the paths come from the world; the recipe's own data values (setting, val_images) stay
    assert {k: getattr(placed.data, k) for k in WORLD_PATHS} == {
        k: f"/w/{k}" for k in WORLD_PATHS
    }
    assert (placed.data.setting, placed.data.val_images) == ("ua", 7)
    assert placed.teacher == TEACHER
    assert (
        dataclasses.replace(placed, data=recipe.data, teacher=recipe.teacher) == recipe
    )
