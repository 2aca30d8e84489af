"""Teacher rows reach the loss unchanged: through the cache they equal what the online
teacher gives.
"""

import numpy as np
import torch

from eoid.files import write_json_atomic
from eoid.student.loss_targets import verb_targets
from eoid.student.loss_terms import distill_verb_loss, focal_verb_loss
from eoid.student.targets import PairTargets
from eoid.teacher_cache import manifest as mf
from eoid.teacher_cache import store
from eoid.teacher_cache.lookup import CacheReader
from eoid.teacher_cache.plan import CachePlan, make_layout

# verbs: hold, kick, no_interaction; the teacher is all but sure the pair is a kick
ROW = np.array([[0.0001, 0.9999, 0.0]], np.float32)
HUMAN, OBJECT = (
    np.array([[10, 10, 50, 90]], np.float32),
    np.array([[40, 60, 80, 95]], np.float32),
)
VOCAB = {
    "name": "tiny",
    "verbs": [
        {"name": "hold", "phrase": "holding"},
        {"name": "kick", "phrase": "kicking"},
        {"name": "no_interaction", "phrase": "no interaction"},
    ],
    "objects": [{"name": "person", "id": 1}, {"name": "ball", "id": 2}],
    "hois": [[0, 1], [1, 1], [2, 1]],
    "human": "person",
    "no_interaction": "no_interaction",
}


def one_row_cache(path) -> CacheReader:
    """A finished cache of one image and one pair whose verb row is ROW, written by the
    store.
    """
    plan = CachePlan(
        image_keys=["a.png"],
        image_sizes=np.array([[100, 100]]),
        image_offsets=np.array([0, 1]),
        pair_box_idx=np.array([[0, 1]], np.int32),
        human_xyxy=HUMAN,
        object_xyxy=OBJECT,
        object_class=np.array([1], np.int32),
        labelled=np.array([True]),
    )
    layout = make_layout(1, 8)
    fingerprint = mf.make_fingerprint(
        model="m",
        weights="w",
        template="t",
        prompts_sha256="",
        gamma=100.0,
        crop={},
        precision="fp32",
        vocabulary="v",
        excluded_verbs=[],
        annotations_sha256="",
        num_images=1,
        num_pairs=1,
    )
    store.create_store(
        path,
        plan,
        layout,
        np.ones((3, 4), np.float32),
        {
            "image_keys": ["a.png"],
            "image_sizes": [[100, 100]],
            "prompts": ["a", "b", "c"],
            "vocabulary": VOCAB,
        },
        {"fingerprint": fingerprint, "layout": layout.to_json()},
    )
    store.write_shard(
        path, layout, 0, {"image_emb": np.ones((1, 4), np.float16), "verb_probs": ROW}
    )
    checksums = store.collect_checksums(path, layout)
    write_json_atomic(
        path / "manifest.json",
        {
            "format_version": mf.FORMAT_VERSION,
            "complete": True,
            "fingerprint": fingerprint,
            "layout": layout.to_json(),
            "config": {},
            "checksums": checksums,
        },
    )
    return CacheReader(path)


def focal_and_distill(teacher_row: np.ndarray) -> tuple[float, float]:
    """The focal and BCE verb terms of one pair without a seen label, the teacher
    filling every verb.
    """
    target = PairTargets(
        torch.zeros(1, 4),
        torch.zeros(1, 4),
        torch.ones(1, dtype=torch.long),
        torch.zeros(1, 3),
        torch.tensor([True]),
        torch.tensor([True]),
        torch.from_numpy(teacher_row),
        torch.tensor([True]),
    )
    y, mask, _ = verb_targets(
        target, torch.tensor([0]), True, torch.ones(3, dtype=torch.bool)
    )
    logits = torch.tensor([[[-2.0, 0.0, -4.0]]])
    focal = focal_verb_loss(logits, y[None], mask[None], 0.5, 2.0)
    distill = distill_verb_loss(logits, y[None], mask[None], "tensor", num_pairs=1)
    return float(focal), float(distill)


def test_a_saturated_teacher_entry_trains_the_same_through_the_cache_as_online(
    tmp_path,
):
    reader = one_row_cache(tmp_path / "cache")
    cached, hit = reader.lookup("a.png", HUMAN, OBJECT, np.array([1]))
    assert hit.all() and cached.dtype == np.float32
    # the values the loss receives
    assert np.abs(cached - ROW).max() <= 1e-6
    # the online teacher's float32 row
    online = focal_and_distill(ROW)
    through_cache = focal_and_distill(cached)
    assert (
        abs(through_cache[0] - online[0]) <= 1e-6
        and abs(through_cache[1] - online[1]) <= 1e-6
    )
    # float16 (cache format 1) made 0.9999 exactly 1: a focal positive instead of a soft
    # entry
    rounded = ROW.astype(np.float16).astype(np.float32)
    assert (
        rounded[0, 1] == 1.0 and abs(focal_and_distill(rounded)[0] - online[0]) > 0.05
    )
