"""The quickstart's recipe: the shipped teacher it caches with, the packaged training
recipe (eoid/data/quickstart.toml) both of its runs start from, the keys it decides
itself, and the checks that refuse a `--set` of one of those keys or the reuse of a run
folder started with other values. `eoid quickstart` and the benchmarks that rebuild its
runs share them.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

from eoid.config import DataConfig, TeacherConfig, TrainConfig, to_dict
from eoid.config_loading import load_config
from eoid.errors import ConfigError
from eoid.pipeline.training.provenance import config_changes, describe_changes

TEACHER = TeacherConfig(
    model="eoid-synth-clip", weights="bundled", batch_size=128, num_workers=0
)


def recipe_path() -> Path:
    """The packaged quickstart training recipe."""
    return Path(str(resources.files("eoid.data").joinpath("quickstart.toml")))


WORLD_PATHS = (
    "dataset",
    "train_annotations",
    "train_images",
    "test_annotations",
    "test_images",
)  # the data fields a world (eoid synth) fixes


def on_world(
    recipe: TrainConfig, data: DataConfig, teacher: TeacherConfig = TEACHER
) -> TrainConfig:
    """`recipe` with the world's data paths (WORLD_PATHS of `data`) and `teacher`."""
    paths = {k: getattr(data, k) for k in WORLD_PATHS}
    return dataclasses.replace(
        recipe, data=dataclasses.replace(recipe.data, **paths), teacher=teacher
    )


# where the quickstart puts its world and cache: the folder's place, not the recipe
OWN_PATHS = (
    "cache",
    "data.dataset",
    "data.train_annotations",
    "data.train_images",
    "data.test_annotations",
    "data.test_images",
)


# what the quickstart decides itself for both runs: a --set of these would be silently
# overridden
OWN_KEYS = (*OWN_PATHS, "out", "resume", "allow_changes", "break_lock", "teacher")


def require_settable(overrides: tuple[str, ...]) -> None:
    """Refuse a --set of a key the quickstart sets itself (its place, its teacher),
    naming it.
    """
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in OWN_KEYS or key.split(".", 1)[0] == "teacher":
            raise ConfigError(
                f"--set {item}: the quickstart sets {key!r} itself (its world, cache,"
                " teacher and run folders live under --out), so this value would be"
                " ignored. Use --out DIR and --seed S; --set changes the training"
                " recipe (eoid/data/quickstart.toml), e.g. --set optim.epochs=5."
            )


def require_same_recipe(runs) -> None:
    """Refuse to reuse or resume a run of OUT started with other values (another
    --set or --seed, another eoid's recipe): its results would be reported as this
    quickstart's."""
    for cfg in runs:
        saved = Path(cfg.out) / "config.toml"
        if not saved.is_file():
            continue
        changes = {
            k: v
            for k, v in config_changes(
                to_dict(load_config(TrainConfig, saved)), cfg, str(saved)
            ).items()
            if k not in OWN_PATHS
        }
        if changes:
            raise ConfigError(
                f"{saved.parent} holds a run started with other values "
                f"({describe_changes(changes)}); "
                "rerun with that run's --seed and --set, or choose a new --out."
            )
