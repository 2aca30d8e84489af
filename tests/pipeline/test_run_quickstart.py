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
# Measured with this shortened run and the packaged recipe (IS targets "overlap", distill 54,
# float32 teacher rows; mAP %, EoID vs baseline; 2026-12-01, 2-core CPU):
#   seed 0: Unseen 14.62 vs 4.58, Seen 23.92 vs 29.68   (the test's seed)
#   seed 1: Unseen 35.30 vs 8.52, Seen 20.01 vs 19.60
#   seed 2: Unseen 19.74 vs 3.54, Seen 24.48 vs 19.64
#   seed 3: Unseen 7.35 vs 11.35, Seen 18.49 vs 18.95   (fails the Unseen margins)
# This short a run is a direction alarm, not a per-seed guarantee: it held on 3 of 4 seeds, and
# under the paper's "matched" targets it failed on seed 1 (Unseen 13.99 vs 12.36, Seen 15.83 vs
# 23.97). A change that moves these numbers may fail it without a regression; the measurement is
# the full quickstart on seeds 0-4 (README), where Unseen is 1.9-4.5 times the baseline's on all
# five. SEEN_SLACK covers seed 0's -5.8 (the full quickstart's seed 0 has -9.8: a strong baseline).
UNSEEN_MARGIN = 2.5
UNSEEN_RATIO = 2.0
SEEN_SLACK = 7.0


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

