"""`eoid report RUN`: the loss and mAP curves of a run, as PNG files, and its test mAP
with HM.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from eoid.errors import DataError
from eoid.files import output_folder, writing
from eoid.pipeline.evaluation.ap_arithmetic import harmonic_mean


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    """(per-iteration rows, per-validation rows) of RUN/metrics.jsonl."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise DataError(
            f"{path}: no metrics file. Pass a run folder written by `eoid train`."
        )
    steps, evals = [], []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(
                f"{path}: line {i + 1} is not JSON (a run killed mid-write?). "
                "Delete that line and rerun."
            ) from None
        (evals if "val_map_full" in row else steps).append(row)
    return steps, evals


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average over `window` values (window >= 1)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def final_layer_terms(row: dict) -> list[str]:
    """The loss terms of the last decoder layer in a metrics row, sorted.

    Earlier layers' terms carry the layer's index (`loss_obj_ce_0`, ...) and are left
    out, so the plot shows one line per term, not one per term and layer.
    """
    return sorted(
        k for k in row if k.startswith("loss_") and not re.search(r"_\d+$", k)
    )


def log_floor(values: list[float]) -> float:
    """The power of ten at or below the smallest positive finite value (1.0 if there is
    none).
    """
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    return 10.0 ** math.floor(math.log10(min(positive))) if positive else 1.0


def test_map_line(results_json: Path) -> str | None:
    """ "test mAP (%): Full ..., Seen ..., Unseen ..., HM ..." from a run's
    results.json (HM computed from Seen and Unseen when the file predates it); None
    when the run has no readable results.json."""
    try:
        mean_ap = json.loads(results_json.read_text())["mAP"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None
    mean_ap = {
        **mean_ap,
        "hm": mean_ap.get(
            "hm", harmonic_mean(mean_ap.get("seen"), mean_ap.get("unseen"))
        ),
    }

    def cell(x: object) -> str:
        return f"{x:.2f}" if isinstance(x, (int, float)) else "-"

    labels = {"full": "Full", "seen": "Seen", "unseen": "Unseen", "hm": "HM"}
    return "test mAP (%): " + ", ".join(
        f"{label} {cell(mean_ap.get(k))}" for k, label in labels.items()
    )


def run_report(run: Path) -> str:
    """Write RUN/loss.png (total and every term) and RUN/map.png (validation mAP);
    returns a summary (the files written, and the test mAP with HM when the run has
    its results.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    steps, evals = read_metrics(run)
    if not steps:
        raise DataError(f"{run}/metrics.jsonl has no training steps yet.")
    output_folder(
        run,
        "the plots into the run folder",
        owner="report",
        fills=("train",),
        signs=("metrics.jsonl",),
    )
    it = [r["iteration"] for r in steps]
    window = max(1, len(steps) // 50)
    terms = final_layer_terms(steps[-1])
    curves = {"total": smooth([r["loss"] for r in steps], window)}
    curves.update(
        {k: smooth([r.get(k, float("nan")) for r in steps], window) for k in terms}
    )
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, values in curves.items():
        # e.g. the distillation term of a no-teacher run
        zero = all(v == 0 for v in values)
        ax.plot(
            it,
            values,
            label=f"{name} (0 throughout)" if zero else name,
            linewidth=2 if name == "total" else 1,
            linestyle=":" if zero else "-",
        )
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (unweighted terms, smoothed)")
    # symmetric log: logarithmic above the smallest positive value, linear below, so a
    # term that stays 0 is drawn at the bottom instead of vanishing from a log axis
    ax.set_yscale(
        "symlog", linthresh=log_floor([v for values in curves.values() for v in values])
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    with writing(run / "loss.png", "the loss plot"):
        fig.savefig(run / "loss.png", dpi=100)
    plt.close(fig)
    written = [run / "loss.png"]
    if evals:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(
            [r["epoch"] + 1 for r in evals],
            [r["val_map_full"] for r in evals],
            marker="o",
        )
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation mAP, Full (%)")
        fig.tight_layout()
        with writing(run / "map.png", "the mAP plot"):
            fig.savefig(run / "map.png", dpi=100)
        plt.close(fig)
        written.append(run / "map.png")
    summary = "wrote " + ", ".join(str(p) for p in written)
    test_map = test_map_line(run / "results.json")
    return summary if test_map is None else f"{summary}\n{test_map}"
