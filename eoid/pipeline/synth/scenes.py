"""The synthetic world's scenes: what they depict and how one image is drawn.

Each image holds 1-3 drawn people, each with one object it interacts with through one
verb (the visible rules are in pipeline/synth/draw.py), and sometimes a loose object
nobody touches, so that cross pairs are left unlabelled as in HICO-DET. The vocabulary
the scenes are labelled with lives here too (`synth_vocabulary_json`, in eoid's
vocabulary file format, and `synth_vocabulary`): verbs named like HICO-DET's, several
verbs per object so the object class alone never tells the verb, rare HOIs drawn
1/RARE_RATE as often, and the `ua` / `uc` zero-shot settings. `sample_scene` places
and draws one image with its ground truth by a SceneLayout (layouts.py);
`sample_scenes` draws them from an independent random stream per use, so the same seed
gives the same pixels. world.py writes them as a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from eoid.pipeline.data.vocab import Vocabulary, vocabulary_from_json
from eoid.pipeline.synth.draw import (
    OBJECT_COLOURS,
    OBJECT_SHAPES,
    SHIRTS,
    SKIN,
    Pose,
    draw_lines,
    draw_object,
    draw_person,
    pose_for,
)
from eoid.pipeline.synth.layouts import FREE, SceneLayout

VERBS = [
    ("carry", "carrying"),
    ("fly", "flying"),
    ("hold", "holding"),
    ("kick", "kicking"),
    ("look_at", "looking at"),
    ("no_interaction", "no interaction"),
    ("push", "pushing"),
    ("ride", "riding"),
    ("throw", "throwing"),
]
# COCO ids
OBJECTS = [
    ("person", 1),
    ("bicycle", 2),
    ("suitcase", 33),
    ("sports_ball", 37),
    ("kite", 38),
]
# HOI order: objects alphabetically, then verbs alphabetically (as HICO-DET's list)
VALID_VERBS = {
    "bicycle": ["look_at", "no_interaction", "push", "ride"],
    "kite": ["carry", "fly", "hold", "look_at", "no_interaction"],
    "sports_ball": ["carry", "hold", "kick", "look_at", "no_interaction", "throw"],
    "suitcase": ["carry", "hold", "look_at", "no_interaction", "push"],
}
UA_UNSEEN_VERBS = ("carry", "kick")
UC_UNSEEN_HOIS = (
    ("look_at", "bicycle"),
    ("hold", "kite"),
    ("carry", "sports_ball"),
    ("push", "suitcase"),
)
RARE_HOIS = (("hold", "suitcase"), ("look_at", "kite"), ("no_interaction", "bicycle"))
# a rare HOI is drawn once for every RARE_RATE draws of a common one
RARE_RATE = 4
# independent random streams per use
STREAMS = {"train": 0, "test": 1, "web": 2, "held_out": 3}


def synth_vocabulary_json() -> dict:
    """The world's vocabulary in eoid's vocabulary file format."""
    verbs = [v for v, _ in VERBS]
    objects = [o for o, _ in OBJECTS]
    hois = [
        (verbs.index(v), objects.index(o)) for o in VALID_VERBS for v in VALID_VERBS[o]
    ]
    index = {(verbs[v], objects[o]): i for i, (v, o) in enumerate(hois)}
    ua = [i for i, (v, _) in enumerate(hois) if verbs[v] in UA_UNSEEN_VERBS]
    return {
        "name": "eoid-synth",
        "verbs": [{"name": n, "phrase": p} for n, p in VERBS],
        "objects": [{"name": n, "id": i} for n, i in OBJECTS],
        "verb_ids": list(range(1, len(VERBS) + 1)),
        "hois": [list(h) for h in hois],
        "human": "person",
        "no_interaction": "no_interaction",
        "rare_hois": sorted(index[h] for h in RARE_HOIS),
        "settings": {
            "ua": {
                "kind": "verb",
                "unseen_hois": ua,
                "about": (
                    f"unseen verbs {', '.join(UA_UNSEEN_VERBS)}: every label with them"
                    " is removed"
                ),
            },
            "uc": {
                "kind": "hoi",
                "unseen_hois": sorted(index[h] for h in UC_UNSEEN_HOIS),
                "about": (
                    "unseen combinations; each of their verbs stays seen with another"
                    " object"
                ),
            },
        },
    }


def synth_vocabulary() -> Vocabulary:
    """The world's vocabulary as a Vocabulary."""
    return vocabulary_from_json(
        synth_vocabulary_json(), "the synthetic world's vocabulary"
    )


@dataclass(frozen=True)
class Scene:
    """One generated image and its ground truth (boxes in image px, indices into the
    vocabulary).
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes_xyxy_px: np.ndarray  # (num_boxes, 4) float32, integer-valued
    box_classes: np.ndarray  # (num_boxes,) int64 object index
    # (num_labels, 3) int64 (human_box_idx, object_box_idx, verb_idx)
    hois: np.ndarray


def hoi_stream(rng: np.random.Generator, vocab: Vocabulary) -> Iterator[int]:
    """HOI indices to give the people of a split: every HOI once first, then weighted
    shuffled rounds.

    The first round makes any split with >= num_hois people show every HOI; rare HOIs
    then come at 1/RARE_RATE the rate of the others.
    """
    num = len(vocab.hois)
    first = rng.permutation(num)
    yield from first.tolist()
    rare = set(vocab.rare_hois)
    rounds = [i for i in range(num) for _ in range(1 if i in rare else RARE_RATE)]
    while True:
        yield from rng.permutation(rounds).tolist()


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pale sky over pale ground with a little grey noise: (size, size, 3) uint8."""
    sky = rng.integers(190, 245, 3)
    ground = np.array(
        [rng.integers(170, 215), rng.integers(185, 230), rng.integers(150, 200)]
    )
    horizon = int(size * rng.uniform(0.5, 0.8))
    img = np.empty((size, size, 3), np.int16)
    img[:horizon], img[horizon:] = sky, ground
    img += rng.integers(-6, 7, (size, size, 1), dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _overlaps(box, others, margin: float) -> bool:
    return any(
        box[0] < o[2] + margin
        and o[0] < box[2] + margin
        and box[1] < o[3] + margin
        and o[1] < box[3] + margin
        for o in others
    )


def _place(rng: np.random.Generator, extent, size: int, taken: list, tries: int = 40):
    """A shift (dx, dy) putting `extent` (xyxy) inside the image clear of `taken`, or
    None.
    """
    w, h = extent[2] - extent[0], extent[3] - extent[1]
    if w > size - 4 or h > size - 4:
        return None
    for _ in range(tries):
        x1, y1 = rng.uniform(2, size - 2 - w), rng.uniform(2, size - 2 - h)
        box = (x1, y1, x1 + w, y1 + h)
        if not _overlaps(box, taken, 3.0):
            return x1 - extent[0], y1 - extent[1]
    return None


def _int_box(box, dx: float, dy: float, size: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [
        float(np.clip(round(v), 0, size)) for v in (x1 + dx, y1 + dy, x2 + dx, y2 + dy)
    ]


def _slot_shift(
    rng: np.random.Generator,
    pose: Pose,
    size: int,
    slot: int,
    num_slots: int,
    taken: list,
):
    """A shift standing `pose` in column `slot` of `num_slots` on the ground line, or
    None.
    """
    cx = size * (slot + 0.5) / num_slots + rng.uniform(-0.04, 0.04) * size
    ground = size * rng.uniform(0.9, 0.94)
    ext = pose.extent_xyxy()
    # slide along the ground line, or lower the feet, just enough for the extent to fit
    dx = min(max(cx, 2 - ext[0]), size - 2 - ext[2])
    dy = max(ground - pose.h, 2 - ext[1])
    box = (ext[0] + dx, ext[1] + dy, ext[2] + dx, ext[3] + dy)
    if (
        box[0] < 2
        or box[1] < 2
        or box[2] > size - 2
        or box[3] > size - 2
        or _overlaps(box, taken, 3.0)
    ):
        return None
    return dx, dy


def sample_scene(
    rng: np.random.Generator,
    size: int,
    hois: Iterator[int],
    vocab: Vocabulary,
    layout: SceneLayout = FREE,
) -> Scene:
    """Draw one image of `size` x `size` px; the people take their HOIs from the `hois`
    stream.
    """
    num_people = int(
        rng.choice(np.arange(1, len(layout.people) + 1), p=list(layout.people))
    )
    scale = {1: 1.0, 2: 0.8, 3: 0.68}.get(num_people, 0.6) if not layout.slots else 1.0
    # pose, dx, dy, verb, object
    placed: list[tuple[Pose, float, float, str, str]] = []
    taken: list[tuple[float, ...]] = []
    pending = next(hois)
    for person in range(num_people):
        verb_idx, obj_idx = vocab.hois[pending]
        verb, obj = vocab.verbs[verb_idx], vocab.objects[obj_idx]
        h = size * rng.uniform(*layout.height) * scale
        side = int(rng.choice([-1, 1]))
        # objects point away from the neighbour
        if layout.slots and num_people > 1:
            side = -1 if person == 0 else 1
        for _shrink in range(6 if layout.slots else 4):
            pose = pose_for(verb, obj, max(h, 0.3 * size), side, rng)
            if layout.slots and _shrink < 5:
                shift = _slot_shift(rng, pose, size, person, num_people, taken)
            else:
                shift = _place(rng, pose.extent_xyxy(), size, taken)
            if shift is not None:
                break
            h *= 0.88
        if shift is None:
            # no room: the HOI goes to the next person
            continue
        ext = pose.extent_xyxy()
        taken.append(
            (ext[0] + shift[0], ext[1] + shift[1], ext[2] + shift[0], ext[3] + shift[1])
        )
        placed.append((pose, shift[0], shift[1], verb, obj))
        pending = next(hois)
    loose = []
    if rng.random() < layout.loose_rate:
        obj = str(rng.choice(list(OBJECT_SHAPES)))
        ref = size * rng.uniform(0.35, 0.5) * scale
        w, h = (f * ref for f in OBJECT_SHAPES[obj])
        shift = _place(rng, (0.0, 0.0, w, h), size, taken)
        if shift is not None:
            loose.append((obj, (shift[0], shift[1], shift[0] + w, shift[1] + h)))

    canvas = Image.fromarray(_background(rng, size))
    draw = ImageDraw.Draw(canvas)
    colours = {}
    for k, (pose, dx, dy, _, obj) in enumerate(placed):
        jitter = rng.integers(-20, 21, 3)
        colours[k] = tuple(
            int(c) for c in np.clip(np.array(OBJECT_COLOURS[obj]) + jitter, 0, 255)
        )
    facing = [int(rng.choice([-1, 1])) for _ in placed]
    for k, (pose, dx, dy, verb, obj) in enumerate(placed):
        if pose.object_behind:
            box = pose.object_xyxy
            draw_object(
                draw,
                obj,
                (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy),
                colours[k],
                facing=-1 if pose.hands[0][0] < 0 else 1,
            )
    for pose, dx, dy, _, _ in placed:
        draw_lines(draw, pose, dx, dy)
        skin = SKIN[int(rng.integers(len(SKIN)))]
        shirt = SHIRTS[int(rng.integers(len(SHIRTS)))]
        draw_person(draw, pose, dx, dy, skin, shirt)
    for k, (pose, dx, dy, verb, obj) in enumerate(placed):
        if not pose.object_behind:
            box = pose.object_xyxy
            placed_box = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
            draw_object(draw, obj, placed_box, colours[k], facing[k])
    for obj, box in loose:
        draw_object(draw, obj, box, OBJECT_COLOURS[obj], int(rng.choice([-1, 1])))

    boxes, classes, labels = [], [], []
    implied = dict(layout.implied)
    for pose, dx, dy, verb, obj in placed:
        labels.append((len(boxes), len(boxes) + 1, vocab.verbs.index(verb)))
        if (
            verb in implied
            and (vocab.verbs.index(implied[verb]), vocab.objects.index(obj))
            in vocab.hois
        ):
            labels.append(
                (len(boxes), len(boxes) + 1, vocab.verbs.index(implied[verb]))
            )
        boxes += [
            _int_box(pose.person_xyxy(), dx, dy, size),
            _int_box(pose.object_xyxy, dx, dy, size),
        ]
        classes += [vocab.human, vocab.objects.index(obj)]
    for obj, box in loose:
        boxes.append(_int_box(box, 0.0, 0.0, size))
        classes.append(vocab.objects.index(obj))
    return Scene(
        np.asarray(canvas),
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(classes, np.int64),
        np.array(labels, np.int64).reshape(-1, 3),
    )


def sample_scenes(
    num_images: int,
    seed: int,
    stream: str,
    image_size: int = 160,
    layout: SceneLayout = FREE,
) -> Iterator[Scene]:
    """`num_images` scenes from the named random stream ("train", "test", "web",
    "held_out") of `seed`.
    """
    rng = np.random.default_rng([seed, STREAMS[stream]])
    vocab = synth_vocabulary()
    hois = hoi_stream(rng, vocab)
    for _ in range(num_images):
        yield sample_scene(rng, image_size, hois, vocab, layout)
