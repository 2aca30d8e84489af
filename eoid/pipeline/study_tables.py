"""A study's results as the paper's tables: one row per variant, mean ± std over its
runs.

Reads each run's results.json (mAP in %, default evaluation mode) and writes table.md,
table.csv (full precision, for scripts) and table.png (grouped bars with std error
bars). A study showing Seen and Unseen also shows HM, their harmonic mean, per run
(ap_arithmetic.harmonic_mean), then averaged like every other column. std is numpy's
population standard deviation (ddof=0) over the runs of a row (seeds or UC groups); a
row of one run shows its number alone.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eoid.errors import DataError
from eoid.files import writing
from eoid.pipeline.evaluation.ap_arithmetic import harmonic_mean
from eoid.pipeline.study import Study, Variant

LABELS = {
    "full": "Full",
    "rare": "Rare",
    "non_rare": "Non-rare",
    "seen": "Seen",
    "unseen": "Unseen",
    "hm": "HM",
}


def table_metrics(study: Study) -> tuple[str, ...]:
    """The study's metrics, and "hm" after them when it shows both Seen and Unseen."""
    metrics = tuple(study.metrics)
    if {"seen", "unseen"} <= set(metrics) and "hm" not in metrics:
        metrics += ("hm",)
    return metrics


@dataclass(frozen=True)
class Row:
    """One variant's numbers: per metric, the value of each finished run (None: no GT in
    that group).
    """

    variant: Variant
    runs_total: int
    runs_done: int
    values: dict[str, list[float | None]]


def read_map(results_json: Path) -> dict[str, float | None]:
    """The default-mode mAP block of a results.json ({"full": 29.2, ..., "hm": 27.0},
    percentages); "hm" is computed from Seen and Unseen when the file predates it."""
    try:
        mean_ap = dict(json.loads(results_json.read_text())["mAP"])
        mean_ap.setdefault(
            "hm", harmonic_mean(mean_ap.get("seen"), mean_ap.get("unseen"))
        )
        return mean_ap
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DataError(
            f"{results_json}: not a results.json of `eoid evaluate` ({err}). Delete it "
            "to rerun that run, then rerun the sweep."
        ) from None


def collect_rows(study: Study, folders: dict[str, list[Path]]) -> list[Row]:
    """One Row per variant from the results.json of its run folders (missing ones are
    not done yet).
    """
    rows = []
    for v in study.variants:
        done = [
            f / "results.json"
            for f in folders[v.name]
            if (f / "results.json").is_file()
        ]
        maps = [read_map(p) for p in done]
        rows.append(
            Row(
                v,
                len(folders[v.name]),
                len(done),
                {m: [mp.get(m) for mp in maps] for m in table_metrics(study)},
            )
        )
    return rows


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """(mean, population std) over the runs; None when a run has no number for the group
    or none ran.
    """
    if not values or any(x is None for x in values):
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def format_cell(mean: float | None, std: float | None, n: int) -> str:
    """ "28.91 ± 0.33" (several runs), "29.22" (one run) or "-"."""
    if mean is None:
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def markdown_table(study: Study, rows: list[Row]) -> str:
    """The study as a Markdown table: label, extra columns, metrics, runs done, paper
    numbers.
    """
    has_paper = any(r.variant.paper for r in rows)
    metrics = table_metrics(study)
    head = ["variant", *study.columns, *(LABELS[m] for m in metrics), "runs"]
    head += ["paper"] if has_paper else []
    lines = [
        f"**{study.about}** (mAP %, mean ± std over runs)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [
            r.variant.label,
            *(r.variant.columns.get(c, "") for c in study.columns),
        ]
        cells += [format_cell(*mean_std(r.values[m]), r.runs_done) for m in metrics]
        cells.append(f"{r.runs_done}/{r.runs_total}")
        if has_paper:
            cells.append(
                " / ".join(
                    f"{r.variant.paper[m]:.2f}" for m in metrics if m in r.variant.paper
                )
                or "-"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path: Path, study: Study, rows: list[Row]) -> None:
    """table.csv: one line per variant; means and stds at full precision (empty = no
    number).
    """

    def num(x: float | None) -> str:
        return "" if x is None else repr(x)

    metrics = table_metrics(study)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "variant",
                "label",
                *study.columns,
                "runs_done",
                "runs_total",
                *(f"{m}_{s}" for m in metrics for s in ("mean", "std")),
                *(f"paper_{m}" for m in metrics),
            ]
        )
        for r in rows:
            stats = [mean_std(r.values[m]) for m in metrics]
            w.writerow(
                [
                    r.variant.name,
                    r.variant.label,
                    *(r.variant.columns.get(c, "") for c in study.columns),
                    r.runs_done,
                    r.runs_total,
                    *(num(x) for pair in stats for x in pair),
                    *(num(r.variant.paper.get(m)) for m in metrics),
                ]
            )


def bar_plot(path: Path, study: Study, rows: list[Row]) -> None:
    """table.png: one group of bars per variant, one bar per metric, std as error bars."""
    # no pyplot: no global figure state, no GUI backend
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 2.0 + 0.9 * len(rows)), 4))
    ax = fig.add_subplot()
    metrics = table_metrics(study)
    width = 0.8 / len(metrics)
    x = np.arange(len(rows))
    for j, m in enumerate(metrics):
        stats = [mean_std(r.values[m]) for r in rows]
        means = [math.nan if s[0] is None else s[0] for s in stats]
        stds = [0.0 if s[1] is None else s[1] for s in stats]
        ax.bar(
            x + (j - (len(metrics) - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=3,
            label=LABELS[m],
        )
    ax.set_xticks(
        x, [r.variant.label for r in rows], rotation=20, ha="right", fontsize=8
    )
    ax.set_ylabel("mAP (%)")
    ax.set_title(study.about, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_tables(study: Study, rows: list[Row], out: Path) -> list[Path]:
    """Write table.md, table.csv and table.png into `out`; returns their paths."""
    paths = [out / "table.md", out / "table.csv", out / "table.png"]
    with writing(out, "the study's tables"):
        paths[0].write_text(markdown_table(study, rows) + "\n")
        write_csv(paths[1], study, rows)
        bar_plot(paths[2], study, rows)
    return paths
