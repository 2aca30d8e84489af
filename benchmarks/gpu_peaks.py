"""Dense (no sparsity) peak TFLOP/s of the GPUs eoid is run on, keyed by the card's
name.

The denominators of the "fraction of peak" rows (bench_teacher.py, device_run.py). The
figures are the vendor's datasheet numbers at boost clock; the datasheets print the
tensor-core rates "with sparsity", so the dense rate is half of the printed one (the
note after each row says which). A card that is not in the table gets no fraction (the
row says so); add it here with its source. `fp32` is the plain (CUDA-core) float32 rate;
`tf32` the tensor-core rate that cuDNN convolutions use for float32 by default
(torch.backends.cudnn.allow_tf32).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Peak:
    """One card's dense peaks, TFLOP/s, and where they come from."""

    card: str
    bf16: float | None
    fp16: float
    tf32: float | None
    fp32: float
    source: str

    def for_precision(self, precision: str) -> float | None:
        """The peak a variant runs against: fp32, bf16, or fp16 (also float16 weights,
        fp16w).
        """
        key = "fp16" if precision.startswith("fp16") else precision
        return getattr(self, key)


# (name pattern, peak); the first pattern that matches the torch device name wins, so
# the specific names (H100 NVL, H100 PCIe, L40S) come before the family's (H100, L40).
_HOPPER = (
    "NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100): BF16/FP16 {s}, TF32 {t}"
    " with sparsity"
)
TABLE: tuple[tuple[str, Peak], ...] = (
    # H100 NVL: BF16/FP16 1,671 and TF32 835 TFLOPS with sparsity, FP32 60
    (
        r"H100.*NVL",
        Peak("H100 NVL", 835.5, 835.5, 417.5, 60.0, _HOPPER.format(s="1,671", t="835")),
    ),
    # H100 PCIe: BF16/FP16 1,513 and TF32 756 with sparsity, FP32 51
    (
        r"H100.*PCIe",
        Peak(
            "H100 PCIe", 756.5, 756.5, 378.0, 51.0, _HOPPER.format(s="1,513", t="756")
        ),
    ),
    # GH200 (Grace Hopper): the GPU is an H100 SXM (NVIDIA GH200 datasheet)
    (
        r"GH200",
        Peak("GH200", 989.5, 989.5, 494.5, 67.0, _HOPPER.format(s="1,979", t="989")),
    ),
    # H200 NVL: NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200), as H100 NVL
    (
        r"H200.*NVL",
        Peak(
            "H200 NVL",
            835.5,
            835.5,
            417.5,
            60.0,
            "NVIDIA H200 datasheet: BF16/FP16 1,671, TF32 835 with sparsity",
        ),
    ),
    # H200 SXM: the H100 SXM's arithmetic (NVIDIA H200 datasheet: BF16/FP16 1,979
    # sparse, FP32 67)
    (
        r"H200",
        Peak(
            "H200 SXM",
            989.5,
            989.5,
            494.5,
            67.0,
            "NVIDIA H200 datasheet: BF16/FP16 1,979, TF32 989 with sparsity",
        ),
    ),
    # H100 SXM5 ("NVIDIA H100 80GB HBM3"): BF16/FP16 1,979 and TF32 989 with sparsity,
    # FP32 67
    (
        r"H100",
        Peak("H100 SXM", 989.5, 989.5, 494.5, 67.0, _HOPPER.format(s="1,979", t="989")),
    ),
    # A100 SXM4 and PCIe, 40 and 80 GB: BF16/FP16 312 dense (624 sparse), TF32 156, FP32
    # 19.5
    (
        r"A100",
        Peak(
            "A100",
            312.0,
            312.0,
            156.0,
            19.5,
            "NVIDIA A100 datasheet (nvidia.com/en-us/data-center/a100): BF16 312, TF32"
            " 156 dense",
        ),
    ),
    # L40S: BF16/FP16 733 and TF32 366 with sparsity (362.05 / 183 dense), FP32 91.6
    (
        r"L40S",
        Peak(
            "L40S",
            362.05,
            362.05,
            183.0,
            91.6,
            "NVIDIA L40S datasheet: BF16/FP16 733, TF32 366 with sparsity; FP32 91.6",
        ),
    ),
    # L40: BF16/FP16 362.1 and TF32 181 with sparsity, FP32 90.5
    (
        r"L40\b",
        Peak(
            "L40",
            181.05,
            181.05,
            90.5,
            90.5,
            "NVIDIA L40 datasheet: BF16/FP16 362.1, TF32 181 with sparsity; FP32 90.5",
        ),
    ),
    # L4: BF16/FP16 242 and TF32 120 with sparsity, FP32 30.3
    (
        r"L4\b",
        Peak(
            "L4",
            121.0,
            121.0,
            60.0,
            30.3,
            "NVIDIA L4 datasheet: BF16/FP16 242, TF32 120 with sparsity; FP32 30.3",
        ),
    ),
    # A10: BF16/FP16 250 and TF32 125 with sparsity, FP32 31.2
    (
        r"A10\b",
        Peak(
            "A10",
            125.0,
            125.0,
            62.5,
            31.2,
            "NVIDIA A10 datasheet: BF16/FP16 250, TF32 125 with sparsity; FP32 31.2",
        ),
    ),
    # V100 SXM2: FP16 tensor 125, FP32 15.7; no bf16 or tf32 units
    (
        r"V100",
        Peak(
            "V100 SXM2",
            None,
            125.0,
            None,
            15.7,
            "NVIDIA V100 datasheet: tensor (FP16) 125, FP32 15.7",
        ),
    ),
)


def card_peak(device_name: str) -> Peak | None:
    """The dense peaks of the card torch names `device_name` (e.g. 'NVIDIA H100 80GB
    HBM3'), or None.
    """
    for pattern, peak in TABLE:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None
