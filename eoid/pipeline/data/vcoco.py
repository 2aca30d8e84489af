"""V-COCO in the HOIA-format JSON of CDN/GEN-VLKT, and the V-COCO facts a Vocabulary
cannot hold.

The file has the HICO-DET JSON schema (see hico.py) with 29 verb-role classes,
`category_id` 0..28 in CDN's order (`hold_obj`, `stand`, `sit_instr`, ...;
vocab.verb_ids = 0..28).

Role-less labels: V-COCO writes `object_id = -1` for actions without an object box
(`stand`, `walk`, `run`, `smile`, and object actions whose object is not visible). eoid
trains and evaluates human-object *pairs*, and an index of -1 would silently pick the
last box in numpy, so these labels are **dropped** by the reader (the image and all its
boxes stay). Only the HOIA reader does this; a -1 in a HICO-DET file is an index error.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from eoid.pipeline.data.checks import RawImage
from eoid.pipeline.data.hico import parse_hoi_json


def parse_hoia_json(raw: list) -> list[RawImage]:
    """RawImages of a V-COCO HOIA JSON list (read with drop_objectless=True: -1 objects
    dropped).
    """
    return parse_hoi_json(raw)


@lru_cache(maxsize=1)
def _vcoco_json() -> dict:
    return json.loads(
        resources.files("eoid.data").joinpath("vocab_vcoco.json").read_text()
    )


def vcoco_actions() -> dict:
    """V-COCO's extra facts from eoid/data/vocab_vcoco.json.

    Returns {"actions": [26 action names], "roles": {verb-role name: [action, role]},
    "objectless": [verb indices with no object role], "eval_verbs": [24 verb indices of
    the role-AP evaluation (CDN's thesis_map_indices: every object role except
    point_instr)], "object_verbs": [25 verb indices that take an object]}.
    """
    raw = _vcoco_json()
    return {
        k: raw[k]
        for k in ("actions", "roles", "objectless", "eval_verbs", "object_verbs")
    }
