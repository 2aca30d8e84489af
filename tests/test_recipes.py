"""The shipped recipes: what they choose where eoid offers the original's behaviour or
another.
"""

from pathlib import Path

import pytest

from eoid.config import TrainConfig
from eoid.config_loading import load_config
from eoid.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
HICO_TRAIN = sorted(
    p
    for p in (ROOT / "configs").rglob("*.toml")
    if "studies" not in p.parts
    and "phase: train" in p.read_text().splitlines()[0]
    and "hico" in load_config(TrainConfig, p).data.train_annotations
)


def test_there_are_hico_training_recipes():
    assert len(HICO_TRAIN) > 20


@pytest.mark.parametrize("path", HICO_TRAIN, ids=lambda p: p.name)
def test_every_hico_recipe_sets_the_original_is_targets(path):
    assert load_config(TrainConfig, path).loss.is_positives == "overlap"


def test_the_quickstart_and_the_defaults_use_the_original_is_targets_too():
    assert (
        load_config(
            TrainConfig, ROOT / "eoid" / "data" / "quickstart.toml"
        ).loss.is_positives
        == "overlap"
    )
    assert TrainConfig().loss.is_positives == "overlap"


def test_a_misspelled_is_positives_key_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[loss]\nis_positive = "overlap"\n')
    with pytest.raises(ConfigError, match="did you mean 'is_positives'"):
        load_config(TrainConfig, bad)


SUPERVISED = ROOT / "configs" / "hico_supervised.toml"


def test_the_supervised_recipe_is_a_cdn_without_teacher_stage_two_or_is_loss():
    cfg = load_config(TrainConfig, SUPERVISED)
    assert cfg.cache == "" and not cfg.online_teacher and cfg.loss.distill == 0
    assert cfg.data.setting == "" and cfg.data.unknown_pairs == "none"
    assert (
        cfg.loss.interactive == 0
        and cfg.loss.verb_focal == 2.0
        and not cfg.student.detach
    )


def test_the_supervised_recipe_trains_without_a_cache_and_with_no_teacher_or_is_term(
    two_steps_of,
):
    # the tiny student on a small synthetic world, two iterations, from the recipe as
    # shipped
    steps = two_steps_of(SUPERVISED)
    assert len(steps) == 2
    for row in steps:
        terms = [k for k in row if k.startswith("loss_")]
        assert "loss_verb_focal" in terms and "loss_verb_focal_0" in terms
        # not computed
        assert not [k for k in terms if "distill" in k or k.startswith("loss_is")]
        # stage 1 only
        assert row["num_unknown_assigned"] == 0 and row["num_labelled_matched"] > 0
