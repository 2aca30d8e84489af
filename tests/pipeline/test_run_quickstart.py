"""`eoid quickstart`, shortened: the whole pipeline runs, writes summary.json, and
distillation teaches the unseen verbs (EoID's Unseen mAP above the no-teacher
baseline's).

One shortened quickstart (fewer images and epochs than the packaged recipe, same recipe
for both runs otherwise) is shared by the tests of this module; it takes a few minutes
on 2 cores. Its own 120 test images are too few to judge the direction (below), so both
students are also scored, with `eoid evaluate`, on the 600 test images of another world
that neither has seen.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from eoid.cli import main
from eoid.pipeline.run_quickstart import run_quickstart
from eoid.pipeline.synth.layouts import QUICKSTART
from eoid.pipeline.synth.world import generate_world

pytestmark = pytest.mark.slow

SEED = 0
NUM_IMAGES = 400  # 280 training, 120 test images
# the packaged recipe's 36 shortened; both runs get the same budget
EPOCHS = 20
# images and seed of the held-out world; its test split has 600 images
HELD_OUT = (2000, 1234)
# Margins on the held-out world: EoID's Unseen mAP must beat the baseline's by
# UNSEEN_MARGIN points and UNSEEN_RATIO times, and its Seen mAP may not fall more than
# SEEN_SLACK points below. Measured with this shortened run and the packaged recipe (IS
# targets "overlap", distill 54, float32 teacher rows; 2026-12-01, 2-core CPU), mAP %,
# EoID vs baseline:
#                 held-out world (600 images)          the run's own test split (120 images)
#   seed 0: Unseen 8.37 vs 3.05, Seen 24.79 vs 25.35     Unseen 14.62 vs 4.58, Seen 23.92 vs 29.68
#   seed 1: Unseen 32.11 vs 9.70, Seen 18.02 vs 17.23    Unseen 35.30 vs 8.52, Seen 20.01 vs 19.60
#   seed 2: Unseen 17.87 vs 1.25, Seen 20.89 vs 19.18    Unseen 19.74 vs 3.54, Seen 24.48 vs 19.64
#   seed 3: Unseen 7.28 vs 5.28, Seen 15.93 vs 15.07     Unseen 7.35 vs 11.35, Seen 18.49 vs 18.95
# On the held-out world the margins hold on all four seeds (smallest: +2.0 points and
# 1.4 times Unseen, -0.6 Seen); on the 120 test images seed 3 reverses and seed 0 loses
# 5.8 Seen points, because each HOI there has 2-24 ground-truth pairs.
UNSEEN_MARGIN = 1.0
UNSEEN_RATIO = 1.2
SEEN_SLACK = 2.0


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    table = run_quickstart(
        out, seed=SEED, num_images=NUM_IMAGES, epochs=EPOCHS, predict=False
    )
    assert "EoID (distilled)" in table and "baseline (no teacher)" in table
    return out


@pytest.fixture(scope="module")
def summary(quickstart):
    return json.loads((quickstart / "summary.json").read_text())


@pytest.fixture(scope="module")
def held_out(quickstart, tmp_path_factory):
    """{run: mAP dict} of both students on the held-out world's test split."""
    images, seed = HELD_OUT
    world = generate_world(
        tmp_path_factory.mktemp("held_out"),
        images,
        seed,
        layout=QUICKSTART,
        progress=False,
    )
    scores = {}
    for run in ("eoid", "baseline"):
        out = world.root / f"eval_{run}"
        result = CliRunner().invoke(
            main,
            [
                "evaluate",
                "--checkpoint",
                str(quickstart / "runs" / run / "checkpoint.pt"),
                "--annotations",
                str(world.test_json),
                "--images",
                str(world.image_dir),
                "--setting",
                "ua",
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        scores[run] = json.loads((out / "results.json").read_text())["mAP"]
    return scores


def test_summary_has_the_keys_the_issue_lists(summary):
    for run in ("eoid", "baseline"):
        assert set(summary[run]) == {"full", "seen", "unseen", "hm"}
        assert all(
            0.0 <= summary[run][k] <= 100.0 for k in ("full", "seen", "unseen", "hm")
        )
    assert 0.0 <= summary["teacher_zero_shot_accuracy"] <= 100.0
    assert summary["seconds"] > 0 and math.isfinite(summary["seconds"])


def test_distillation_beats_the_baseline_on_unseen_verbs_without_losing_seen_ones(
    held_out,
):
    eoid, base = held_out["eoid"], held_out["baseline"]
    # the baseline never sees a carry/kick label, so only the teacher can teach them
    assert eoid["unseen"] >= base["unseen"] + UNSEEN_MARGIN, held_out
    assert eoid["unseen"] >= UNSEEN_RATIO * base["unseen"], held_out
    assert eoid["seen"] >= base["seen"] - SEEN_SLACK, held_out
