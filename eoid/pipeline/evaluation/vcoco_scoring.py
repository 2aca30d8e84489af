"""From eoid records and student scores to the arrays of vcoco_map.evaluate_vcoco, and
back to mAPs.

V-COCO's labels are verb-roles (`eat_obj`, `eat_instr`); its evaluator works on actions
(`eat`) with up to R object roles. `VcocoStructure` holds that correspondence. For the
built-in V-COCO vocabulary it comes from eoid/data/vocab_vcoco.json ("roles",
"eval_verbs"); a vocabulary file without those keys gets one action per verb with a
single "obj" role, and every verb but no_interaction is evaluated.

Detections: one per student query. Its person box is the query's human box; each role
box is the query's object box; the role score of a verb-role is the query's triplet
score for it (sigmoid(verb) x object probability), the agent score of an action the best
of its roles. A model is scored through `mixed_vocab.verb_table_to_source` of its own
vocabulary: the identity for a model of V-COCO's own verb-roles; for a merged one, a
merged verb's score counts for each source verb-role it maps to and the best one wins,
as the original hvcoco_eval.convert_hois does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from eoid.pipeline.data.records import ImageRecord
from eoid.pipeline.data.vocab import BUILTIN, Vocabulary
from eoid.pipeline.evaluation.ap_arithmetic import harmonic_mean
from eoid.pipeline.evaluation.vcoco_map import VcocoImageDetections, VcocoImageGT


@dataclass(frozen=True)
class VcocoStructure:
    """Actions and roles behind a vocabulary's verb-roles."""

    actions: list[str]  # (A,) action names, e.g. "eat"
    verb_action: np.ndarray  # (V,) int64 action of each verb-role
    # (V,) int64 role slot within its action, -1 = role-less (stand)
    verb_role: np.ndarray
    num_roles: list[int]  # (A,) object roles of each action
    # verb-roles whose role AP is averaged (CDN's 24 for V-COCO)
    eval_verbs: list[int]


def _raw_vocabulary(name: str | Path) -> dict:
    if str(name) in BUILTIN:
        from importlib import resources

        return json.loads(
            resources.files("eoid.data").joinpath(BUILTIN[str(name)]).read_text()
        )
    return json.loads(Path(name).read_text())


def vcoco_structure(
    vocab: Vocabulary, vocabulary_file: str | Path | None = None
) -> VcocoStructure:
    """The action/role structure of `vocab`, read from its file's "roles" and
    "eval_verbs" when present.
    """
    raw = _raw_vocabulary(vocabulary_file) if vocabulary_file is not None else {}
    roles = raw.get("roles")
    if not roles:  # one action per verb, one object role each
        eval_verbs = [v for v in range(vocab.num_verbs) if v != vocab.no_interaction]
        return VcocoStructure(
            list(vocab.verbs),
            np.arange(vocab.num_verbs),
            np.zeros(vocab.num_verbs, np.int64),
            [1] * vocab.num_verbs,
            raw.get("eval_verbs", eval_verbs),
        )
    actions: list[str] = []
    verb_action, verb_role = [], []
    role_names: dict[str, list[str]] = {}
    for verb in vocab.verbs:
        action, role = roles[verb]
        if action not in actions:
            actions.append(action)
            role_names[action] = []
        verb_action.append(actions.index(action))
        if role is None:
            verb_role.append(-1)
        else:
            role_names[action].append(role)
            verb_role.append(len(role_names[action]) - 1)
    eval_verbs = raw.get("eval_verbs", [v for v, r in enumerate(verb_role) if r >= 0])
    return VcocoStructure(
        actions,
        np.asarray(verb_action, np.int64),
        np.asarray(verb_role, np.int64),
        [len(role_names[a]) for a in actions],
        list(eval_verbs),
    )


def objectless_labels(path: Path) -> dict[str, list[tuple[int, int]]]:
    """(person box index, verb category_id) of the labels with object_id -1, per
    file_name of a HOIA JSON.

    The reader drops them (eoid trains pairs), but the evaluator needs them: they make
    the person a positive of the action, with no object for that role.
    """
    raw = json.loads(Path(path).read_text())
    out: dict[str, list[tuple[int, int]]] = {}
    for rec in raw if isinstance(raw, list) else []:
        for h in rec.get("hoi_annotation", []):
            if h.get("object_id") == -1:
                out.setdefault(rec["file_name"], []).append(
                    (int(h["subject_id"]), int(h["category_id"]))
                )
    return out


def vcoco_gt_from_records(
    records: Sequence[ImageRecord],
    vocab: Vocabulary,
    structure: VcocoStructure,
    objectless: Mapping[str, list[tuple[int, int]]] | None = None,
) -> dict[str, VcocoImageGT]:
    """Ground truth per image key: every box of the human class is an annotated person.

    objectless: role-less labels (person box index, verb category_id) per key, see
    objectless_labels.
    """
    num_actions = len(structure.actions)
    max_roles = max(structure.num_roles + [1])
    verb_index = {vid: i for i, vid in enumerate(vocab.verb_ids)}
    gt = {}
    for rec in records:
        persons = np.nonzero(rec.box_classes == vocab.human)[0]
        slot = {int(p): k for k, p in enumerate(persons)}
        actions = np.zeros((len(persons), num_actions), dtype=np.int64)
        roles = np.full((len(persons), num_actions, max_roles, 4), np.nan)
        for h, o, v in rec.hois.tolist():
            if h not in slot:
                continue
            a, r = structure.verb_action[v], structure.verb_role[v]
            actions[slot[h], a] = 1
            if r >= 0 and np.isnan(roles[slot[h], a, r]).all():
                roles[slot[h], a, r] = rec.boxes_xyxy_px[o]
        for h, vid in (objectless or {}).get(rec.key, []):
            if h in slot and vid in verb_index:
                actions[slot[h], structure.verb_action[verb_index[vid]]] = 1
        gt[rec.key] = VcocoImageGT(
            rec.boxes_xyxy_px[persons].astype(np.float64), actions, roles
        )
    return gt


def source_scores(
    merged_scores: np.ndarray, merged_to_source: np.ndarray
) -> np.ndarray:
    """(Q, V_source) best student score of each source verb; 0 for a source verb no
    student verb maps to.

    merged_scores (Q, V_student), the student's own verbs (merged, base or source);
    merged_to_source (V_student, V_source) bool, from verb_table_to_source.
    """
    # (Q, Vm, Vs)
    masked = np.where(merged_to_source[None, :, :], merged_scores[:, :, None], -np.inf)
    if merged_scores.shape[1]:
        best = masked.max(axis=1)
    else:
        best = np.full((len(merged_scores), merged_to_source.shape[1]), -np.inf)
    return np.where(np.isfinite(best), best, 0.0)


def vcoco_detections(
    human_xyxy: np.ndarray,
    object_xyxy: np.ndarray,
    verb_scores: np.ndarray,
    structure: VcocoStructure,
) -> VcocoImageDetections:
    """One detection per query: human_xyxy, object_xyxy (Q, 4) px, verb_scores (Q, V)
    per source verb-role.
    """
    num_q = len(human_xyxy)
    num_actions = len(structure.actions)
    max_roles = max(structure.num_roles + [1])
    role_scores = np.full((num_q, num_actions, max_roles), np.nan)
    agent = np.full((num_q, num_actions), np.nan)
    for v in range(verb_scores.shape[1]):
        a, r = structure.verb_action[v], structure.verb_role[v]
        agent[:, a] = np.fmax(agent[:, a], verb_scores[:, v])
        if r >= 0:
            role_scores[:, a, r] = verb_scores[:, v]
    role_shape = (num_q, num_actions, max_roles, 4)
    role_boxes = np.broadcast_to(object_xyxy[:, None, None, :], role_shape).astype(
        np.float64
    )
    return VcocoImageDetections(
        human_xyxy.astype(np.float64), agent, role_boxes, role_scores
    )


def role_map_summary(
    result: dict,
    structure: VcocoStructure,
    seen_verbs: Sequence[int],
    unseen_verbs: Sequence[int],
    verb_names: Sequence[str],
) -> dict:
    """Role mAP (percent) over the evaluated verb-roles, over their Seen / Unseen
    parts and the harmonic mean of those two (HM), per scenario."""
    out: dict = {}
    for scenario in (1, 2):
        table = result[f"role_ap_scenario_{scenario}"]
        ap = {
            v: float(table[structure.verb_action[v], structure.verb_role[v]])
            for v in structure.eval_verbs
            if structure.verb_role[v] >= 0
        }

        def mean(vs) -> float | None:
            vals = [ap[v] for v in vs if v in ap and np.isfinite(ap[v])]
            return round(100 * float(np.mean(vals)), 2) if vals else None

        seen = mean([v for v in ap if v in set(seen_verbs)])
        unseen = mean([v for v in ap if v in set(unseen_verbs)])
        out[f"scenario_{scenario}"] = {
            "full": mean(list(ap)),
            "seen": seen,
            "unseen": unseen,
            "hm": harmonic_mean(seen, unseen),
            "per_verb": {
                verb_names[v]: round(100 * a, 2) if np.isfinite(a) else None
                for v, a in ap.items()
            },
        }
    out["num_seen"] = len([v for v in structure.eval_verbs if v in set(seen_verbs)])
    out["num_unseen"] = len([v for v in structure.eval_verbs if v in set(unseen_verbs)])
    return out
