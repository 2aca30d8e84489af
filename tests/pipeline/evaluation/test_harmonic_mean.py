"""HM, the harmonic mean of Seen and Unseen mAP: one definition for every table."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eoid.pipeline.evaluation.ap_arithmetic import harmonic_mean

percent = st.floats(min_value=0.0, max_value=100.0)


def test_hand_built_values():
    assert harmonic_mean(60.0, 20.0) == pytest.approx(30.0)  # 2 * 60 * 20 / 80
    assert harmonic_mean(50.0, 50.0) == pytest.approx(50.0)  # equal parts: their value
    # nothing unseen learnt: HM 0
    assert harmonic_mean(40.0, 0.0) == 0.0
    assert harmonic_mean(0.0, 0.0) == 0.0  # not 0 / 0


def test_a_missing_group_has_no_hm():
    assert harmonic_mean(25.0, None) is None
    assert harmonic_mean(None, 25.0) is None
    assert harmonic_mean(25.0, math.nan) is None


@given(percent, percent)
def test_hm_is_symmetric_and_lies_between_the_smaller_part_and_the_arithmetic_mean(
    s, u
):
    hm = harmonic_mean(s, u)
    assert hm == pytest.approx(harmonic_mean(u, s))
    assert min(s, u) - 1e-9 <= hm <= (s + u) / 2 + 1e-9
