"""The loss terms' table: one row per term, weights from LossConfig, switches checked
once.
"""

from dataclasses import fields

import pytest

from eoid.config import LossConfig
from eoid.errors import ConfigError
from eoid.student.loss_terms import (
    TERMS,
    LossParams,
    active_terms,
    divides_by_own_count,
    loss_weights,
)


def test_every_term_has_one_row_with_a_weight_field_of_loss_config():
    names = [t.name for t in TERMS]
    assert len(names) == len(set(names))
    config_fields = {f.name for f in fields(LossConfig)}
    assert all(t.weight in config_fields for t in TERMS)
    assert loss_weights(LossConfig(distill=5.0)) == {
        t.name: float(getattr(LossConfig(distill=5.0), t.weight)) for t in TERMS
    }


def test_the_distillation_and_is_terms_exist_only_when_switched_on():
    on = [t.name for t in active_terms(LossParams())]
    off = [t.name for t in active_terms(LossParams(distill=False, interactive=False))]
    assert "loss_verb_distill" in on and "loss_is" in on
    assert off == [n for n in on if n not in ("loss_verb_distill", "loss_is")]


def test_distill_norm_chooses_what_divides_the_distillation_term():
    # "tensor": its own count (batch x queries x verbs); "pairs": the matched pairs
    distill = next(t for t in TERMS if t.name == "loss_verb_distill")
    assert divides_by_own_count(distill, LossParams(distill_norm="tensor"))
    assert not divides_by_own_count(distill, LossParams(distill_norm="pairs"))


@pytest.mark.parametrize(
    "field, value", [("distill_norm", "batch"), ("is_positives", "all")]
)
def test_loss_params_refuse_a_switch_value_outside_the_configs_range(field, value):
    with pytest.raises(ConfigError, match=f'loss.{field} = "{value}" must be one of'):
        LossParams(**{field: value})
