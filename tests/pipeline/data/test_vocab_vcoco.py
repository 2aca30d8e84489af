"""The built-in V-COCO vocabulary: CDN's 29 verb-role classes, COCO objects, and the
evaluation subsets.
"""

import pytest

from eoid.pipeline.data.vcoco import vcoco_actions
from eoid.pipeline.data.vocab import load_vocabulary


@pytest.fixture(scope="module")
def vcoco():
    return load_vocabulary("v-coco")


def test_vcoco_has_29_verb_roles_with_ids_0_to_28_in_cdn_order(vcoco):
    assert vcoco.num_verbs == 29 and vcoco.verb_ids == list(range(29))
    assert vcoco.verbs[:4] == ["hold_obj", "stand", "sit_instr", "ride_instr"]
    assert vcoco.verbs[-1] == "snowboard_instr" and vcoco.verbs[7] == "hit_obj"
    assert vcoco.no_interaction is None


def test_vcoco_objects_are_the_80_coco_classes_of_hico(vcoco):
    hico = load_vocabulary("hico-det")
    assert vcoco.objects == hico.objects and vcoco.object_ids == hico.object_ids


def test_every_verb_role_maps_to_one_of_26_actions():
    facts = vcoco_actions()
    assert len(facts["actions"]) == 26 and set(
        a for a, _ in facts["roles"].values()
    ) == set(facts["actions"])
    # cut, eat and hit have two roles each: 26 actions + 3 = 29 verb-roles
    assert facts["roles"]["cut_instr"] == ["cut", "instr"] and facts["roles"][
        "cut_obj"
    ] == ["cut", "obj"]
    assert facts["roles"]["smile"] == ["smile", None]


def test_hois_are_every_object_taking_verb_role_with_every_object(vcoco):
    facts = vcoco_actions()
    assert [vcoco.verbs[i] for i in facts["objectless"]] == [
        "stand",
        "walk",
        "run",
        "smile",
    ]
    assert len(facts["object_verbs"]) == 25 and len(vcoco.hois) == 25 * 80
    assert {v for v, _ in vcoco.hois} == set(facts["object_verbs"])
    assert vcoco.valid[:, facts["objectless"]].sum() == 0


def test_role_ap_evaluation_uses_24_verb_roles_without_point(vcoco):
    facts = vcoco_actions()
    assert len(facts["eval_verbs"]) == 24
    assert set(facts["object_verbs"]) - set(facts["eval_verbs"]) == {
        vcoco.verbs.index("point_instr")
    }


def test_vcoco_prompts_read_as_phrases(vcoco):
    prompts = vcoco.prompts("a picture of person {verb_ing} {object}")
    assert (
        prompts[
            vcoco.hoi_index()[
                vcoco.verbs.index("look_obj"), vcoco.objects.index("sports_ball")
            ]
        ]
        == "a picture of person looking at sports ball"
    )
