"""`eoid report`: loss curves on a symmetric-log axis, so a term that stays 0 is drawn,
not lost.
"""

from __future__ import annotations

import json

import matplotlib.figure
import pytest

from eoid.pipeline.run_report import log_floor, run_report


@pytest.mark.parametrize(
    "values,floor",
    [
        ([0.0, 0.03, 2.0], 0.01),
        ([5.0, 12.0], 1.0),
        ([0.0, 0.0], 1.0),
        ([float("nan"), 0.2], 0.1),
    ],
)
def test_log_floor_is_the_power_of_ten_at_or_below_the_smallest_positive_value(
    values, floor
):
    assert log_floor(values) == pytest.approx(floor)


def test_a_loss_term_that_stays_zero_is_plotted_and_labelled(tmp_path, monkeypatch):
    rows = [
        {
            "iteration": i,
            "epoch": 0,
            "loss": 3.0 / i,
            "loss_verb_focal": 1.0 / i,
            "loss_verb_distill": 0.0,
        }
        for i in range(1, 11)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    drawn = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def keep(fig, path, **kwargs):
        ax = fig.axes[0]
        drawn.update(
            {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()},
            yscale=ax.get_yscale(),
            ymin=ax.get_ylim()[0],
        )
        return real_savefig(fig, path, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    run_report(tmp_path)
    assert (tmp_path / "loss.png").is_file()
    assert drawn["loss_verb_distill (0 throughout)"] == [0.0] * 10
    # 0 lies inside the drawn range
    assert drawn["yscale"] == "symlog" and drawn["ymin"] <= 0.0


def test_the_plot_keeps_the_last_layers_terms_and_leaves_out_the_earlier_layers():
    from eoid.pipeline.run_report import final_layer_terms

    # metrics.jsonl names an earlier decoder layer's term with its index: loss_obj_ce_0
    # is layer 0's
    row = {
        "iteration": 3,
        "loss": 9.0,
        "loss_obj_ce": 1.0,
        "loss_obj_ce_0": 1.2,
        "loss_verb_focal": 2.0,
        "loss_verb_focal_4": 2.5,
        "loss_is": 0.5,
    }
    assert final_layer_terms(row) == ["loss_is", "loss_obj_ce", "loss_verb_focal"]


def test_the_report_ends_with_the_runs_test_map_and_its_hm(tmp_path):
    rows = [{"iteration": i, "epoch": 0, "loss": 1.0 / i} for i in range(1, 4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # no results.json: not evaluated yet
    assert "test mAP" not in run_report(tmp_path)
    # a results.json written before HM was added: 2 * 60 * 20 / 80 = 30
    (tmp_path / "results.json").write_text(
        json.dumps({"mAP": {"full": 50.0, "seen": 60.0, "unseen": 20.0}})
    )
    assert (
        run_report(tmp_path).splitlines()[-1]
        == "test mAP (%): Full 50.00, Seen 60.00, Unseen 20.00, HM 30.00"
    )
