"""Geometry and drawing of the synthetic world: a stick person posed for a verb, and its
object.

Every verb is a visible rule in the union crop of its pair (h = the person's height):
  hold      one arm straight out sideways, the object at that hand, shoulder height
  carry     both arms up, the object resting on the hands above the head
  throw     one arm raised diagonally, the object further up along it, not touching
  kick      one leg raised sideways, the object at that foot on the ground
  fly       one arm raised diagonally, a string from the hand up to a far kite
  ride      the person sits on the bicycle (it covers the lower body), hands on the handlebar
  push      both arms reach down to one side, the object on the ground at the hands
  look_at   arms down, the object at head height at a distance, a dotted gaze line to it
  no_interaction  arms down, the object on the ground at a distance, the face turned away
Poses are computed in the person's frame (x = 0 at the body's centre line, y = 0 at the
top of the head, px), then shifted onto the canvas by the scene layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import ImageDraw

Point = tuple[float, float]

# Object classes of the world (vocabulary names) with their size (w, h) in units of the
# person's height and their base colour.
OBJECT_SHAPES: dict[str, tuple[float, float]] = {
    "bicycle": (0.75, 0.45),
    "kite": (0.28, 0.38),
    "sports_ball": (0.22, 0.22),
    "suitcase": (0.34, 0.28),
}
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "bicycle": (30, 150, 60),
    "kite": (40, 80, 225),
    "sports_ball": (215, 35, 35),
    "suitcase": (135, 80, 40),
}
SKIN = [(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36)]
SHIRTS = [(130, 60, 170), (235, 205, 50), (235, 120, 180), (110, 110, 110)]
PANTS = (50, 50, 70)
INK = (25, 25, 25)


@dataclass
class Pose:
    """A person and its object in the person's frame (px, y down, head top at y = 0)."""

    h: float  # person height, px
    limbs: list[tuple[Point, Point, str]]  # (start, end, "arm" | "leg")
    hands: list[Point]
    eye_side: int  # -1 left, +1 right
    object_xyxy: tuple[float, float, float, float]
    # "string" | "gaze"
    extra_lines: list[tuple[Point, Point, str]] = field(default_factory=list)
    object_behind: bool = False  # drawn before the person (ride)

    def person_xyxy(self) -> tuple[float, float, float, float]:
        """Tight box of everything drawn for the person: head, torso, limbs, hands."""
        xs = [-0.11 * self.h, 0.11 * self.h, -0.09 * self.h, 0.09 * self.h]
        ys = [0.0, 0.56 * self.h]
        for a, b, _ in self.limbs:
            xs += [a[0], b[0]]
            ys += [a[1], b[1]]
        pad = 0.02 * self.h  # hands and line widths stick out a little
        for x, y in self.hands:
            xs.append(x)
            ys.append(y)
        return (min(xs) - pad, min(ys), max(xs) + pad, max(ys) + pad)

    def extent_xyxy(self) -> tuple[float, float, float, float]:
        """Box of the person, its object and any string/gaze line: what must fit in the
        image.
        """
        p, o = self.person_xyxy(), self.object_xyxy
        return (min(p[0], o[0]), min(p[1], o[1]), max(p[2], o[2]), max(p[3], o[3]))


def _box(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def pose_for(
    verb: str, obj: str, h: float, side: int, rng: np.random.Generator
) -> Pose:
    """The person posed for `verb` with object class `obj` on `side` (-1 left, +1
    right).
    """
    s = side
    ow, oh = (f * h * rng.uniform(0.9, 1.1) for f in OBJECT_SHAPES[obj])
    sy = 0.25 * h  # shoulder height
    shoulder = {-1: (-0.11 * h, sy), 1: (0.11 * h, sy)}
    hip = {-1: (-0.06 * h, 0.56 * h), 1: (0.06 * h, 0.56 * h)}
    foot = {-1: (-0.13 * h, h), 1: (0.13 * h, h)}
    arm = 0.3 * h
    down = {k: (shoulder[k][0] + k * 0.08 * h, sy + 0.29 * h) for k in (-1, 1)}
    hands = dict(down)
    eye = s
    extra: list[tuple[Point, Point, str]] = []
    behind = False
    near = shoulder[s]
    if verb == "hold":
        hands[s] = (near[0] + s * arm, sy)
        obox = _box(hands[s][0] + s * 0.4 * ow, sy, ow, oh)
    elif verb == "carry":
        hands = {k: (shoulder[k][0] + k * 0.09 * h, sy - 0.285 * h) for k in (-1, 1)}
        obox = _box(0.0, hands[1][1] - oh / 2 + 0.03 * h, ow, oh)
    elif verb in ("throw", "fly"):
        hands[s] = (near[0] + s * 0.71 * arm, sy - 0.71 * arm)
        if verb == "throw":
            gap = rng.uniform(0.2, 0.3) * h + ow / 2
            obox = _box(hands[s][0] + s * 0.71 * gap, hands[s][1] - 0.71 * gap, ow, oh)
        else:
            obox = _box(
                hands[s][0] + s * rng.uniform(0.25, 0.45) * h,
                hands[s][1] - rng.uniform(0.55, 0.75) * h,
                ow,
                oh,
            )
            extra.append(
                (hands[s], ((obox[0] + obox[2]) / 2, obox[1] + 0.75 * oh), "string")
            )
    elif verb == "kick":
        cy = h - oh / 2
        foot[s] = (hip[s][0] + s * 0.3 * h, cy)
        obox = _box(foot[s][0] + s * 0.45 * ow, cy, ow, oh)
    elif verb == "ride":
        behind = True
        top = 0.52 * h
        obox = (-ow / 2, top, ow / 2, top + oh)
        bar = (s * 0.32 * ow, top + 0.05 * h)
        hands = {-1: bar, 1: (bar[0], bar[1] + 0.03 * h)}
        foot = {-1: (-0.06 * h, top + 0.62 * oh), 1: (0.08 * h, top + 0.7 * oh)}
    elif verb == "push":
        near_x = 0.11 * h + rng.uniform(0.25, 0.32) * h
        obox = (
            (near_x, h - oh, near_x + ow, h)
            if s > 0
            else (-near_x - ow, h - oh, -near_x, h)
        )
        grip = (s * (near_x + 0.04 * h), h - oh + 0.03 * h)
        hands = {s: grip, -s: (grip[0] - s * 0.02 * h, grip[1] + 0.04 * h)}
    elif verb in ("look_at", "no_interaction"):
        gap = rng.uniform(0.18, 0.45) * h
        cx = s * (0.2 * h + gap + ow / 2)
        cy = (
            0.09 * h + rng.uniform(-0.05, 0.05) * h if verb == "look_at" else h - oh / 2
        )
        obox = _box(cx, cy, ow, oh)
        if verb == "look_at":
            extra.append(((s * 0.06 * h, 0.08 * h), (cx - s * ow / 2, cy), "gaze"))
        else:
            eye = -s
    else:
        raise ValueError(f"unknown synthetic verb {verb!r}")
    limbs = [(shoulder[k], hands[k], "arm") for k in (-1, 1)]
    limbs += [(hip[k], foot[k], "leg") for k in (-1, 1)]
    return Pose(h, limbs, [hands[-1], hands[1]], eye, obox, extra, behind)


def _shift(p: Point, dx: float, dy: float) -> Point:
    return (p[0] + dx, p[1] + dy)


def draw_person(
    draw: ImageDraw.ImageDraw,
    pose: Pose,
    dx: float,
    dy: float,
    skin: tuple[int, int, int],
    shirt: tuple[int, int, int],
) -> None:
    """Draw the stick person of `pose` shifted by (dx, dy) px."""
    h = pose.h
    arm_w, leg_w = max(2, round(0.045 * h)), max(2, round(0.06 * h))
    for a, b, kind in pose.limbs:
        if kind == "leg":
            draw.line([_shift(a, dx, dy), _shift(b, dx, dy)], fill=PANTS, width=leg_w)
    draw.rectangle(
        [dx - 0.11 * h, dy + 0.2 * h, dx + 0.11 * h, dy + 0.58 * h], fill=shirt
    )
    for a, b, kind in pose.limbs:
        if kind == "arm":
            draw.line([_shift(a, dx, dy), _shift(b, dx, dy)], fill=shirt, width=arm_w)
    r_hand = max(1.5, 0.03 * h)
    for x, y in pose.hands:
        draw.ellipse(
            [dx + x - r_hand, dy + y - r_hand, dx + x + r_hand, dy + y + r_hand],
            fill=skin,
        )
    r = 0.09 * h
    draw.ellipse([dx - r, dy, dx + r, dy + 2 * r], fill=skin)
    ex, ey, re = dx + pose.eye_side * 0.05 * h, dy + 0.08 * h, max(1.0, 0.02 * h)
    draw.ellipse([ex - re, ey - re, ex + re, ey + re], fill=INK)


def draw_lines(draw: ImageDraw.ImageDraw, pose: Pose, dx: float, dy: float) -> None:
    """The kite string (solid, thin) and the gaze line (dotted) of `pose`."""
    for a, b, kind in pose.extra_lines:
        a, b = _shift(a, dx, dy), _shift(b, dx, dy)
        if kind == "string":
            draw.line([a, b], fill=INK, width=1)
            continue
        length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
        num = max(2, int(length // 5))
        for t in np.linspace(0.15, 0.9, num):
            x, y = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
            draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=INK)


def draw_object(
    draw: ImageDraw.ImageDraw,
    name: str,
    box: tuple[float, float, float, float],
    colour: tuple[int, int, int],
    facing: int = 1,
) -> None:
    """Draw object class `name` filling `box` (canvas px); a bicycle's front points to
    `facing`.
    """
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if name == "sports_ball":
        draw.ellipse(box, fill=colour)
        draw.line(
            [(x1 + 0.2 * w, y1 + 0.5 * h), (x2 - 0.2 * w, y1 + 0.5 * h)],
            fill=(250, 250, 250),
            width=1,
        )
    elif name == "kite":
        cx, top, mid, bottom = (x1 + x2) / 2, y1, y1 + 0.3 * h, y1 + 0.75 * h
        draw.polygon([(cx, top), (x2, mid), (cx, bottom), (x1, mid)], fill=colour)
        draw.line(
            [(cx, bottom), (cx - 0.2 * w, y1 + 0.87 * h), (cx, y2)],
            fill=(240, 180, 0),
            width=1,
        )
    elif name == "suitcase":
        draw.rectangle([x1, y1 + 0.22 * h, x2, y2], fill=colour)
        draw.rectangle(
            [x1 + 0.3 * w, y1, x2 - 0.3 * w, y1 + 0.25 * h],
            outline=colour,
            width=max(1, round(0.08 * h)),
        )
    elif name == "bicycle":
        r, width = 0.36 * h, max(2, round(0.06 * h))
        cx = (x1 + x2) / 2

        # u in [-0.5, 0.5] along the facing direction
        def at(u: float, v: float) -> Point:
            return (cx + facing * u * w, y1 + v * h)

        back, front, crank = (
            at(-0.5 + r / w, 1 - r / h),
            at(0.5 - r / w, 1 - r / h),
            at(0.0, 1 - r / h),
        )
        for ax, ay in (back, front):
            draw.ellipse([ax - r, ay - r, ax + r, ay + r], outline=INK, width=width)
        seat, bar = at(-0.1, 0.12), at(0.28, 0.05)
        draw.line([back, seat, crank, back], fill=colour, width=width)
        draw.line([seat, bar, front], fill=colour, width=width)
        draw.line([crank, bar], fill=colour, width=width)
        draw.rectangle(
            [seat[0] - 0.06 * w, y1, seat[0] + 0.06 * w, y1 + 0.06 * h], fill=INK
        )
    else:
        raise ValueError(f"unknown synthetic object {name!r}")
