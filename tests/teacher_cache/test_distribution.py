import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eoid.teacher_cache.distribution import (
    pair_verb_probs,
    teacher_verb_probs,
    valid_hoi_table,
)

# the tiny vocabulary of conftest: HOIs (verb, object)
HOIS = [(0, 0), (3, 0), (0, 1), (1, 1), (3, 1), (0, 2), (2, 2), (3, 2)]
HOI_TO_VERB = np.array([v for v, _ in HOIS])
HOI_TO_OBJECT = np.array([o for _, o in HOIS])
NO_INTERACTION = 3


def test_valid_table_keeps_the_objects_hois_without_no_interaction():
    table = valid_hoi_table(HOI_TO_OBJECT, HOI_TO_VERB, 3, [NO_INTERACTION])
    # ball (object 1): HOIs 2 (hold) and 3 (kick); HOI 4 is no_interaction
    assert np.flatnonzero(table[1]).tolist() == [2, 3]
    assert np.flatnonzero(table[0]).tolist() == [0]


def test_softmax_over_two_valid_hois_matches_the_hand_computed_value():
    # cos 0.30 (hold ball) vs 0.29 (kick ball), gamma 100: p(hold) = 1 / (1 + e^-1) =
    # 0.7311
    sim = torch.tensor([[0.9, 0.9, 0.30, 0.29, 0.9, 0.9, 0.9, 0.9]])
    valid = torch.from_numpy(
        valid_hoi_table(HOI_TO_OBJECT, HOI_TO_VERB, 3, [NO_INTERACTION])
    )[[1]]
    p = teacher_verb_probs(sim, valid, torch.from_numpy(HOI_TO_VERB), 4, 100.0)
    assert torch.allclose(p, torch.tensor([[0.7311, 0.2689, 0.0, 0.0]]), atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.floats(1.0, 200.0), st.integers(0, 2**31 - 1))
def test_rows_sum_to_one_with_no_mass_on_invalid_verbs_or_no_interaction(
    num_pairs, gamma, seed
):
    g = torch.Generator().manual_seed(seed)
    emb = torch.nn.functional.normalize(torch.randn(num_pairs, 8, generator=g), dim=1)
    text = torch.nn.functional.normalize(torch.randn(len(HOIS), 8, generator=g), dim=1)
    objects = torch.randint(0, 3, (num_pairs,), generator=g)
    table = torch.from_numpy(
        valid_hoi_table(HOI_TO_OBJECT, HOI_TO_VERB, 3, [NO_INTERACTION])
    )
    p = pair_verb_probs(
        emb, text, objects, table, torch.from_numpy(HOI_TO_VERB), 4, gamma
    )
    assert torch.allclose(p.sum(1), torch.ones(num_pairs), atol=1e-5)
    verb_ok = np.zeros((3, 4), bool)
    for h, (v, o) in enumerate(HOIS):
        verb_ok[o, v] = v != NO_INTERACTION
    assert (p[~torch.from_numpy(verb_ok[objects.numpy()])] == 0).all()


def test_a_pair_whose_object_has_no_valid_hoi_gets_an_all_zero_row():
    valid = torch.zeros(1, len(HOIS), dtype=torch.bool)
    p = teacher_verb_probs(
        torch.zeros(1, len(HOIS)), valid, torch.from_numpy(HOI_TO_VERB), 4, 100.0
    )
    assert p.tolist() == [[0.0, 0.0, 0.0, 0.0]]
