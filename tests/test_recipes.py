"""The shipped recipes: what they choose where eoid offers the original's behaviour or another."""
from pathlib import Path

import pytest

from eoid.config import TrainConfig, load_config
from eoid.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
HICO_TRAIN = sorted(p for p in (ROOT / "configs").rglob("*.toml")
                    if "studies" not in p.parts and "phase: train" in p.read_text().splitlines()[0]
                    and "hico" in load_config(TrainConfig, p).data.train_annotations)


def test_there_are_hico_training_recipes():
    assert len(HICO_TRAIN) > 20


@pytest.mark.parametrize("path", HICO_TRAIN, ids=lambda p: p.name)
def test_every_hico_recipe_sets_the_original_is_targets(path):
    assert load_config(TrainConfig, path).loss.is_positives == "overlap"


def test_the_quickstart_keeps_the_paper_is_targets_until_measured():
    assert load_config(TrainConfig, ROOT / "eoid" / "data" / "quickstart.toml").loss.is_positives == "matched"


def test_a_misspelled_is_positives_key_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[loss]\nis_positive = "overlap"\n')
    with pytest.raises(ConfigError, match="did you mean 'is_positives'"):
        load_config(TrainConfig, bad)
