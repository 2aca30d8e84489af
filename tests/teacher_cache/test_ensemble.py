"""Prompt ensembles (mean of unit text embeddings) and teacher ensembles (mean /
geometric rows).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.teacher_cache.ensemble import (
    GEOMETRIC_FLOOR,
    combine_rows,
    mean_of_sets,
    normalised_weights,
)
from eoid.teacher_cache.manifest import prompts_sha256


def test_a_set_of_one_text_keeps_its_embedding_bit_for_bit():
    emb = F.normalize(torch.randn(5, 7), dim=-1)
    out = mean_of_sets(emb, torch.arange(5), 5)
    # no renormalisation: one template = the single-prompt bytes
    assert torch.equal(out, emb)


def test_a_set_of_several_texts_is_their_renormalised_mean():
    # set 0 = two orthogonal unit vectors -> their bisector; set 1 = one text, unchanged
    emb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    out = mean_of_sets(emb, torch.tensor([0, 0, 1]), 2)
    half = 2**-0.5
    assert torch.allclose(out, torch.tensor([[half, half, 0.0], [0.0, 0.0, 1.0]]))


def test_one_text_per_hoi_hashes_as_the_flat_prompt_list_and_a_real_set_does_not():
    assert prompts_sha256([["a"], ["b"]]) == prompts_sha256(["a", "b"])
    assert prompts_sha256([["a", "c"], ["b"]]) != prompts_sha256(["a", "b"])


# verbs 0, 1 valid for the pair's object, verb 2 not; second row: an object with no
# valid verb
P1 = np.array([[0.8, 0.2, 0.0], [0.0, 0.0, 0.0]], np.float32)
P2 = np.array([[0.2, 0.8, 0.0], [0.0, 0.0, 0.0]], np.float32)
VALID = np.array([[True, True, False], [False, False, False]])


def test_mean_rule_is_the_weighted_sum_of_rows():
    # weights 3, 1 -> 0.75 * 0.8 + 0.25 * 0.2 = 0.65 and 0.75 * 0.2 + 0.25 * 0.8 = 0.35
    out = combine_rows([P1, P2], normalised_weights([3, 1], 2), "mean", VALID)
    assert np.allclose(out, [[0.65, 0.35, 0.0], [0, 0, 0]], atol=1e-7)


def test_geometric_rule_is_the_renormalised_weighted_product_over_valid_verbs():
    # equal weights: sqrt(0.8 * 0.2) for both verbs -> 1/2 each; weights 3/4, 1/4: the
    # ratio of the two products is (0.8 / 0.2) ** (3/4 - 1/4) = 2 -> 2/3 and 1/3; the
    # row without valid verbs stays 0
    equal = combine_rows([P1, P2], normalised_weights(None, 2), "geometric", VALID)
    skewed = combine_rows([P1, P2], normalised_weights([3, 1], 2), "geometric", VALID)
    assert np.allclose(equal, [[0.5, 0.5, 0.0], [0, 0, 0]], atol=1e-7)
    assert np.allclose(skewed, [[2 / 3, 1 / 3, 0.0], [0, 0, 0]], atol=1e-7)


def test_a_zero_under_the_geometric_rule_is_floored_not_a_veto_of_the_row():
    # each member is sure of a different verb and gives the other 0: both products are
    # sqrt(1 * floor), so the row is split evenly instead of becoming 0 / 0
    a, b = (
        np.array([[1.0, 0.0, 0.0]], np.float32),
        np.array([[0.0, 1.0, 0.0]], np.float32),
    )
    out = combine_rows([a, b], normalised_weights(None, 2), "geometric", VALID[:1])
    assert np.allclose(out, [[0.5, 0.5, 0.0]], atol=1e-7)
    # against a verb both members gave mass, the zero counts as the floor
    c = np.array([[0.5, 0.5, 0.0]], np.float32)
    out = combine_rows([a, c], normalised_weights(None, 2), "geometric", VALID[:1])
    expected = np.sqrt(GEOMETRIC_FLOOR * 0.5) / (
        np.sqrt(0.5) + np.sqrt(GEOMETRIC_FLOOR * 0.5)
    )
    assert out[0, 1] == pytest.approx(expected, rel=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3),
    st.sampled_from(["mean", "geometric"]),
    st.integers(2, 4),
)
def test_merging_a_row_with_itself_gives_the_row_back(raw, rule, copies):
    row = np.array([raw], np.float32)
    # verb 2 is not valid for the object
    row[0, 2] = 0.0
    row /= row.sum()
    out = combine_rows(
        [row] * copies, normalised_weights(None, copies), rule, VALID[:1]
    )
    assert np.allclose(out, row, atol=1e-7) and abs(out.sum() - 1) < 1e-6
