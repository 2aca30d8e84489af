"""benchmarks/gpu_peaks.py: the card's name picks its own dense peaks, never a
sibling's.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def card_peak(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from gpu_peaks import card_peak

    return card_peak


@pytest.mark.parametrize(
    "torch_name, card",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),  # what torch names the SXM part
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA A100 80GB PCIe", "A100"),
        ("NVIDIA L40S", "L40S"),  # not the L40 nor the L4
        ("NVIDIA L40", "L40"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA A10", "A10"),  # not the A100
    ],
)
def test_each_card_name_finds_its_own_entry(card_peak, torch_name, card):
    assert card_peak(torch_name).card == card


def test_an_unknown_card_has_no_peak_rather_than_a_guess(card_peak):
    assert card_peak("NVIDIA GeForce GTX 1080") is None


def test_the_dense_peak_is_half_the_datasheets_sparse_figure(card_peak):
    # the H100 SXM datasheet prints BF16 1,979 TFLOP/s "with sparsity": dense is half of
    # it; float16 weights (fp16w) and fp16 autocast run on the same units as bf16
    h100 = card_peak("NVIDIA H100 80GB HBM3")
    assert h100.for_precision("bf16") == pytest.approx(1979 / 2, abs=1)
    assert h100.for_precision("fp16w") == h100.for_precision("fp16") == h100.bf16
    assert h100.for_precision("fp32") == 67.0
    # no bf16 units
    assert card_peak("Tesla V100-SXM2-32GB").for_precision("bf16") is None
