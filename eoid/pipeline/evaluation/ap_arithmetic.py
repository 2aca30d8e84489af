"""The arithmetic of average precision, apart from any dataset's matching rules.

`average_precision` turns one category's ranked true-positive flags into its AP and
final recall, by one of the `AP_METHODS`: the official HICO-DET 11-point interpolation
with the thresholds MATLAB's colon operator builds ("official"), CDN's Python port with
`np.arange` thresholds ("voc11"), or the VOC2010+ all-point area ("area", as V-COCO's
vsrl_eval.py uses). `harmonic_mean` summarises a Seen and an Unseen mAP as the
zero-shot HOI papers report it. HICO-DET's matching and grouping live in hico_map,
V-COCO's in vcoco_map; both score their ranked lists here.
"""

from __future__ import annotations

import math

import numpy as np

AP_METHODS = ("official", "voc11", "area")


def harmonic_mean(seen: float | None, unseen: float | None) -> float | None:
    """HM = 2 * S * U / (S + U) of the Seen and Unseen mAP, in their unit (e.g.
    percent).

    The summary recent zero-shot HOI papers report beside Full: high only when both are.
    It is 0 when both are 0, and None when either is None or NaN (a group without ground
    truth, e.g. Unseen under the default setting).
    """
    if (
        seen is None
        or unseen is None
        or not (math.isfinite(seen) and math.isfinite(unseen))
    ):
        return None
    if seen + unseen == 0:
        return 0.0
    return 2.0 * seen * unseen / (seen + unseen)


# t = 0:0.1:1 as MATLAB's colon operator builds it: the first half as a + k*d, the
# second half as b - (n-k)*d (MathWorks' colonop), so 0.6 and 0.7 are the doubles
# nearest to them.
_MATLAB_11_POINTS = np.array(
    [k * 0.1 for k in range(6)] + [1.0 - (10 - k) * 0.1 for k in range(6, 11)]
)
# CDN's hico_eval.py: 0.6000000000000001, 0.7000000000000001
_NUMPY_11_POINTS = np.arange(0.0, 1.1, 0.1)


def average_precision(
    is_tp_ranked: np.ndarray, num_gt: int, ap_method: str = "official"
) -> tuple[float, float]:
    """AP and final recall of one category from its ranked true-positive flags (N,)
    bool.

    Returns (0, 0) without detections; (nan, nan) when num_gt is 0 (no category to
    score).
    """
    if ap_method not in AP_METHODS:
        raise ValueError(f"ap_method must be one of {AP_METHODS}, got {ap_method!r}")
    if num_gt == 0:
        return float("nan"), float("nan")
    if len(is_tp_ranked) == 0:
        return 0.0, 0.0
    tp = np.cumsum(is_tp_ranked, dtype=np.float64)
    fp = np.cumsum(~np.asarray(is_tp_ranked, dtype=bool), dtype=np.float64)
    rec = tp / num_gt
    prec = tp / (tp + fp)
    if ap_method == "area":
        mrec = np.concatenate(([0.0], rec, [1.0]))
        mpre = np.maximum.accumulate(np.concatenate(([0.0], prec, [0.0]))[::-1])[::-1]
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1])), float(
            rec[-1]
        )
    thresholds = _MATLAB_11_POINTS if ap_method == "official" else _NUMPY_11_POINTS
    ap = 0.0
    for t in thresholds:  # summed one by one, as both originals do
        above = rec >= t
        ap += (prec[above].max() if above.any() else 0.0) / 11
    return float(ap), float(rec[-1])
