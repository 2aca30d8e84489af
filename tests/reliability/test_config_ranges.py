"""A value out of range is refused when the config is loaded: one line naming the key
and the ONE source that set it (the --config file, a --set, a flag, a checkpoint's
recipe), before any work."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from eoid.cli import main
from eoid.config import CacheConfig, EvalConfig, PredictConfig, TrainConfig
from eoid.config_loading import load_config
from eoid.errors import ConfigError

# (phase, --set, the key the message must name)
BAD_VALUES = [
    (TrainConfig, "optim.batch_size=0", "optim.batch_size"),
    (TrainConfig, "optim.batch_size=-1", "optim.batch_size"),
    (TrainConfig, "augment.scales=[]", "augment.scales"),
    (TrainConfig, "augment.scales=[512, 0]", "augment.scales"),
    (TrainConfig, "augment.test_size=0", "augment.test_size"),
    (TrainConfig, "augment.crop_min=700", "augment.crop_min"),  # above crop_max 600
    (TrainConfig, "data.val_images=-1", "data.val_images"),
    (TrainConfig, "data.max_boxes=0", "data.max_boxes"),
    (TrainConfig, "data.unknown_pairs=some", "data.unknown_pairs"),
    # (0, 1]: no images is no run
    (TrainConfig, "data.fraction=0", "data.fraction"),
    (TrainConfig, "data.fraction=1.5", "data.fraction"),
    (TrainConfig, "data.fraction=-0.1", "data.fraction"),
    (TrainConfig, "optim.num_workers=-1", "optim.num_workers"),
    (TrainConfig, "optim.epochs=0", "optim.epochs"),
    (TrainConfig, "optim.lr=-1", "optim.lr"),
    (TrainConfig, "optim.lr=nan", "optim.lr"),
    (TrainConfig, "optim.lr=inf", "optim.lr"),
    (TrainConfig, "optim.lr_drop=0", "optim.lr_drop"),
    (TrainConfig, "optim.seed=-3", "optim.seed"),
    (TrainConfig, "optim.eval_every=0", "optim.eval_every"),
    (TrainConfig, "student.num_queries=0", "student.num_queries"),
    (TrainConfig, "student.preset=cdn-xl", "student.preset"),
    (TrainConfig, "student.is_head=decoder", "student.is_head"),
    (TrainConfig, "student.dropout=1.5", "student.dropout"),
    (TrainConfig, "teacher.min_iou=2", "teacher.min_iou"),
    (TrainConfig, "teacher.precision=fp8", "teacher.precision"),
    (TrainConfig, "teacher.gamma=nan", "teacher.gamma"),
    (TrainConfig, "teacher.gamma=0", "teacher.gamma"),
    (TrainConfig, "teacher.template='a {bogus} thing'", "teacher.template"),
    (TrainConfig, "matcher.topk=-1", "matcher.topk"),
    (TrainConfig, "matcher.thres_is=1.5", "matcher.thres_is"),
    (TrainConfig, "matcher.is_iou=-0.1", "matcher.is_iou"),
    (TrainConfig, "matcher.cost_giou=-1", "matcher.cost_giou"),
    (TrainConfig, "loss.distill=-700", "loss.distill"),
    (TrainConfig, "loss.distill_norm=batch", "loss.distill_norm"),
    (TrainConfig, "loss.focal_alpha=2", "loss.focal_alpha"),
    (TrainConfig, "post.top_k=0", "post.top_k"),
    (TrainConfig, "post.nms_threshold=3", "post.nms_threshold"),
    (CacheConfig, "teacher.batch_size=0", "teacher.batch_size"),
    (CacheConfig, "teacher.shard_rows=0", "teacher.shard_rows"),
    (CacheConfig, "teacher.num_workers=-2", "teacher.num_workers"),
    (CacheConfig, "part='3/2'", "part"),
    (EvalConfig, "mode=known", "mode"),
    (EvalConfig, "batch_size=0", "batch_size"),
    (PredictConfig, "top_k=0", "top_k"),
    (PredictConfig, "threshold=-0.5", "threshold"),
]


@pytest.mark.parametrize("cls,override,key", BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_an_out_of_range_value_is_refused_in_one_line_naming_the_key_and_the_set(
    cls, override, key
):
    with pytest.raises(ConfigError) as err:
        load_config(cls, None, (override,))
    msg = str(err.value)
    assert "\n" not in msg
    assert key in msg and f"--set {override}" in msg


def test_the_message_names_the_file_that_set_the_value_not_every_source_merged(
    tmp_path,
):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[optim]\nlr = -1.0\n")
    with pytest.raises(ConfigError) as err:
        load_config(
            TrainConfig,
            recipe,
            ("optim.epochs=3", "loss.distill=5", "student.num_queries=8"),
        )
    msg = str(err.value)
    assert msg.startswith(f"{recipe}") and "optim.lr" in msg and "--set" not in msg


def test_a_value_set_in_a_base_recipe_names_the_base_file(tmp_path):
    (tmp_path / "base.toml").write_text("[matcher]\ntopk = -1\n")
    (tmp_path / "child.toml").write_text("base = 'base.toml'\n[optim]\nepochs = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, tmp_path / "child.toml")
    assert str(err.value).startswith(
        str(tmp_path / "base.toml")
    ) and "matcher.topk" in str(err.value)


def test_a_bad_value_from_a_flag_names_the_flag_field():
    with pytest.raises(ConfigError, match=r"mode") as err:
        load_config(EvalConfig, None, (), mode="fast")
    assert "--set" not in str(err.value)


def test_a_later_set_that_fixes_an_earlier_one_is_accepted():
    cfg = load_config(TrainConfig, None, ("optim.lr=-1", "optim.lr=2e-4"))
    assert cfg.optim.lr == 2e-4


def test_a_misspelled_key_from_a_set_names_that_set():
    with pytest.raises(
        ConfigError, match=r"^--set matcher\.top_k=3.*did you mean 'topk'"
    ):
        load_config(TrainConfig, None, ("optim.epochs=3", "matcher.top_k=3"))


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--out", "x", "--set", "optim.batch_size=0"],
        ["train", "--out", "x", "--set", "optim.lr=nan"],
        ["cache-teacher", "--out", "x", "--set", "teacher.precision=fp8"],
        ["evaluate", "--predictions", "p.json", "--out", "x", "--set", "post.top_k=-5"],
    ],
)
def test_the_cli_refuses_a_bad_value_within_a_second_with_exit_1_and_one_line(
    tmp_path, args
):
    start = time.monotonic()
    result = CliRunner().invoke(main, args)
    assert time.monotonic() - start < 1.0
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: --set ")


def test_a_prompt_template_with_an_unknown_placeholder_names_the_valid_ones():
    from eoid.pipeline.data.vocab import load_vocabulary

    with pytest.raises(
        ConfigError, match=r"teacher\.template.*\{bogus\}.*\{verb_ing\}.*\{object\}"
    ):
        load_vocabulary("hico-det").prompts("a {bogus} thing")
