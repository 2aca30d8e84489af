"""The quickstart's two parallel trainings: one progress line per run, drawn by the
parent.
"""

from __future__ import annotations

from eoid.pipeline.run_quickstart import RunBars


def test_the_parent_draws_one_progress_line_per_run_from_the_childrens_rows():
    bars = RunBars(["eoid", "baseline"])
    bars.update(0, {"iterations_total": 40, "iteration": 0})
    # a resumed run starts at 12
    bars.update(1, {"iterations_total": 40, "iteration": 12})
    bars.update(0, {"iteration": 5, "epoch": 1, "loss": 2.5})
    bars.update(0, {"epoch": 1, "val_map_full": 33.3})
    bars.update(0, {"iteration": 6, "epoch": 2, "loss": 2.25})
    assert [(b.n, b.total) for b in bars.bars] == [(6, 40), (12, 40)]
    assert bars.bars[0].postfix == "epoch 3, loss 2.250, val mAP 33.3"
    # two lines, not one shared line
    assert [b.pos for b in bars.bars] in ([0, 1], [0, -1])
    bars.close()
