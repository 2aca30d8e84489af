"""The strict TOML configs: unknown keys and wrong types refused, precedence, round
trip.
"""

from pathlib import Path

import pytest

from eoid.config import CacheConfig, EvalConfig, PredictConfig, TrainConfig, dumps_toml
from eoid.config_loading import from_dict, load_config
from eoid.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.toml"))
PHASE = {
    "cache": CacheConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "predict": PredictConfig,
}


def _phase_of(path: Path) -> type:
    first = path.read_text().splitlines()[0]
    for name, cls in PHASE.items():
        if f"phase: {name}" in first:
            return cls
    return TrainConfig


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    if "studies" in path.parts:
        pytest.skip("study files are read by `eoid sweep`, not as a phase config")
    cfg = load_config(_phase_of(path), path)
    assert cfg is not None


def test_misspelled_key_is_refused_with_the_nearest_valid_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[matcher]\ntop_k = 3\n")
    with pytest.raises(
        ConfigError,
        match=r"bad.toml \[matcher\]: unknown key 'top_k'; did you mean 'topk'\?",
    ):
        load_config(TrainConfig, bad)


@pytest.mark.parametrize(
    "cls, override, near",
    [
        (TrainConfig, "student.init_fron=a.pt", "init_from"),
        (PredictConfig, "onnx_providers=CPUExecutionProvider", "onnx_provider"),
        (PredictConfig, "onx=model.onnx", "onnx"),
    ],
)
def test_misspelled_import_and_export_keys_are_refused(cls, override, near):
    with pytest.raises(ConfigError, match=f"did you mean '{near}'"):
        load_config(cls, None, (override,))


def test_unknown_section_is_refused_listing_valid_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[zzz]\na = 1\n")
    with pytest.raises(ConfigError, match="unknown key 'zzz'"):
        load_config(TrainConfig, bad)


@pytest.mark.parametrize(
    "text",
    [
        "[optim]\nepochs = 'ten'\n",
        "[student]\ndetach = 1\n",
        "[optim]\nlr = true\n",
        "[augment]\nscales = 5\n",
    ],
)
def test_wrong_types_are_refused(tmp_path, text):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match="expected"):
        load_config(TrainConfig, bad)


def test_precedence_is_defaults_then_file_then_flags_then_set(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("cache = 'from_file'\n[loss]\ndistill = 500.0\n[optim]\nepochs = 3\n")
    cfg = load_config(TrainConfig, f, ("optim.epochs=7",), cache="from_flag")
    assert cfg.cache == "from_flag"  # the flag beats the file
    assert cfg.optim.epochs == 7  # --set beats the file
    assert cfg.loss.distill == 500.0  # the file beats the default
    assert cfg.loss.giou == 1.0  # untouched default


def test_under_replaces_the_defaults_but_not_the_file_or_set(tmp_path):
    f = tmp_path / "e.toml"
    f.write_text("[augment]\nmax_size = 300\n")
    under = {"augment": {"test_size": 160, "max_size": 256}, "post": {"top_k": 50}}
    cfg = load_config(EvalConfig, f, ("post.top_k=7",), under=under)
    assert cfg.augment.test_size == 160  # from `under` (a checkpoint's recipe)
    assert cfg.augment.max_size == 300  # the file beats `under`
    assert cfg.post.top_k == 7  # --set beats `under`
    assert under["augment"] == {"test_size": 160, "max_size": 256}  # not mutated


def test_base_file_is_read_first_and_overridden(tmp_path):
    (tmp_path / "base.toml").write_text("[optim]\nepochs = 90\nlr_drop = 60\n")
    (tmp_path / "child.toml").write_text("base = 'base.toml'\n[optim]\nepochs = 10\n")
    cfg = load_config(TrainConfig, tmp_path / "child.toml")
    assert (cfg.optim.epochs, cfg.optim.lr_drop) == (10, 60)


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(
        TrainConfig, None, ("data.setting=ua", "augment.scales=[128, 160]")
    )
    path = tmp_path / "resolved.toml"
    path.write_text(dumps_toml(cfg))
    assert load_config(TrainConfig, path) == cfg


def test_a_bad_override_says_how_to_write_one():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(TrainConfig, None, ("loss.distill",))


def test_from_dict_refuses_a_non_table_section():
    with pytest.raises(ConfigError, match="expected a table"):
        from_dict(TrainConfig, {"loss": 3}, "x.toml")


def test_every_range_names_a_field_of_its_section():
    from dataclasses import fields

    from eoid.config_loading import PAIRS, RANGES

    for cls, checks in RANGES.items():
        assert set(checks) <= {f.name for f in fields(cls)}, cls.__name__
    for cls, names, _, _ in PAIRS:
        assert set(names) <= {f.name for f in fields(cls)}, cls.__name__


def test_the_preset_range_accepts_exactly_the_student_presets():
    from eoid.config import StudentConfig
    from eoid.config_loading import RANGES
    from eoid.student.presets import PRESETS

    check = RANGES[StudentConfig]["preset"]
    assert all(check(name) is None for name in PRESETS) and check("cdn-xl") is not None


def test_a_misspelled_allow_changes_is_refused():
    with pytest.raises(ConfigError, match="did you mean 'allow_changes'"):
        load_config(TrainConfig, None, ("allow_change=true",))
