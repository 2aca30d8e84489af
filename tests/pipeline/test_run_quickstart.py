"""`eoid quickstart`, shortened: the whole pipeline runs, writes summary.json, and distillation
teaches the unseen verbs (EoID's Unseen mAP above the no-teacher baseline's).

One shortened quickstart (fewer images and epochs than the packaged recipe, same recipe for
both runs otherwise) is shared by the tests of this module; it takes a few minutes on 2 cores.
"""
from __future__ import annotations

import json
import math

import pytest

from eoid.pipeline.run_quickstart import run_quickstart

pytestmark = pytest.mark.slow

SEED = 0
NUM_IMAGES = 400       # 280 training, 120 test images
EPOCHS = 20            # the packaged recipe's 36 shortened; both runs get the same budget
# Margins: EoID's Unseen mAP must beat the baseline's by UNSEEN_MARGIN points and
# UNSEEN_RATIO times, and its Seen mAP may not fall more than SEEN_SLACK points below.
# Measured with this shortened run (mAP %, EoID vs baseline; 2026-11-25, 2-core CPU; recipe
# with loss.distill = 54 and loss.teacher_on_no_interaction = false):
#   seed 0: Unseen 5.65 vs 1.25, Seen 25.38 vs 17.52
#   seed 1: Unseen 13.95 vs 3.06, Seen 16.72 vs 13.20
#   seed 2: Unseen 24.01 vs 3.25, Seen 24.89 vs 24.82
#   seed 3: Unseen 16.06 vs 2.28, Seen 15.06 vs 15.98
# The margins hold on all four (smallest: +4.40 points and 4.5x Unseen, -0.92 Seen).
# With float32 teacher rows (cache format 2; 2026-12-01): seed 0: Unseen 20.35 vs 1.23,
# Seen 17.82 vs 17.33.
UNSEEN_MARGIN = 2.5
UNSEEN_RATIO = 2.0
SEEN_SLACK = 3.0


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    table = run_quickstart(out, seed=SEED, num_images=NUM_IMAGES, epochs=EPOCHS, predict=False)
    assert "EoID (distilled)" in table and "baseline (no teacher)" in table
    return json.loads((out / "summary.json").read_text())


def test_summary_has_the_keys_the_issue_lists(summary):
    for run in ("eoid", "baseline"):
        assert set(summary[run]) == {"full", "seen", "unseen"}
        assert all(0.0 <= summary[run][k] <= 100.0 for k in ("full", "seen", "unseen"))
    assert 0.0 <= summary["teacher_zero_shot_accuracy"] <= 100.0
    assert summary["seconds"] > 0 and math.isfinite(summary["seconds"])


def test_distillation_beats_the_baseline_on_unseen_verbs_without_losing_seen_ones(summary):
    eoid, base = summary["eoid"], summary["baseline"]
    # the baseline never sees a carry/kick label, so only the teacher can teach them
    assert eoid["unseen"] >= base["unseen"] + UNSEEN_MARGIN, summary
    assert eoid["unseen"] >= UNSEEN_RATIO * base["unseen"], summary
    assert eoid["seen"] >= base["seen"] - SEEN_SLACK, summary

